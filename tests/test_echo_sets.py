"""Echo sets told from rounds (fusion/locator/echosets.py): by the levels each sensor measured for
a set of arrivals at a burst's place against an earlier round's; on made-up levels, on the
simulator's rifle (through render, detect and locate) and on one Pittsburgh test's audio."""
from __future__ import annotations

import numpy as np

from fusion.locator import echosets
from fusion.locator.echosets import echo_log_odds, is_echo_set, received_levels


def _set(t0_s: float, levels_db, clipped=None) -> dict:
    clipped = clipped or [False] * len(levels_db)
    return {"t0_s": t0_s, "levels": {s: (lv, float(c)) for s, (lv, c) in enumerate(zip(levels_db, clipped))}}


ROUND = [-30.0, -36.5, -42.8, -37.4, -43.7, -48.2]


def test_a_set_weaker_at_every_sensor_is_an_echo_one_as_loud_is_a_round():
    rng = np.random.default_rng(1)
    echo = list(np.array(ROUND) - 6.0 + rng.normal(0, 1.0, len(ROUND)))
    again = list(np.array(ROUND) + rng.normal(0, 1.0, len(ROUND)))
    assert is_echo_set(_set(0.11, echo), [_set(0.0, ROUND)])
    assert not is_echo_set(_set(0.80, again), [_set(0.0, ROUND)])
    # a round 2 dB quieter on the whole (shot-to-shot variation) is still a round
    assert not is_echo_set(_set(0.80, list(np.array(ROUND) - 2.0)), [_set(0.0, ROUND)])


def test_an_echo_needs_an_earlier_round_within_the_echo_delay():
    echo = list(np.array(ROUND) - 8.0)
    assert not is_echo_set(_set(0.0, echo), [_set(0.1, ROUND)])            # the "round" comes after it
    late = echosets.ECHO_MAX_DELAY_S + 0.5
    assert not is_echo_set(_set(late, echo), [_set(0.0, ROUND)])           # too long after
    assert not is_echo_set(_set(0.1, echo), [])                             # nothing to echo
    assert not is_echo_set(_set(0.1, echo), [{"t0_s": 0.0, "levels": {}}])  # no level to compare


def test_clipped_levels_are_lower_bounds():
    # The earlier round clipped at every sensor, the later set 10-20 dB under the clip: an echo.
    clip = [0.6, 2.6, 5.2, 0.6]
    assert is_echo_set(_set(0.3, [-19.5, -4.3, -11.9, -10.7]), [_set(0.0, clip, [True] * 4)])
    # Both clipped says nothing: no evidence either way, so a round.
    assert echo_log_odds(np.array([-0.5, 0.3]), np.array([True, True]), np.array([True, True])) == 0.0
    assert not is_echo_set(_set(0.6, clip, [True] * 4), [_set(0.0, clip, [True] * 4)])
    # The later clipped and the earlier not: it is at least as loud, so not its echo.
    assert echo_log_odds(np.array([-1.0]), np.array([True]), np.array([False])) < 0.0


def test_received_levels_prefer_spl_and_flag_clipped_peaks():
    level, clipped = received_levels(np.array([95.0, np.nan, np.nan, np.nan]), np.array([0.5, 0.5, -20.0, np.nan]))
    assert level[0] == 95.0 and not clipped[0]
    assert level[1] == 0.5 and clipped[1]
    assert level[2] == -20.0 and not clipped[2]
    assert np.isnan(level[3]) and not clipped[3]
