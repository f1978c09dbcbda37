"""Echo sets told from rounds (fusion/locator/echosets.py): by the levels each sensor measured for
a set of arrivals at a burst's place against an earlier round's; on made-up levels, on the
simulator's rifle (through render, detect and locate) and on one Pittsburgh test's audio."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fusion.locator import echosets
from fusion.locator.burst import DETECTION_PROB as P_D
from fusion.locator.echosets import echo_log_odds, hearing_log_odds, is_echo_set, received_levels


def _set(t0_s: float, levels_db, clipped=None) -> dict:
    clipped = clipped or [False] * len(levels_db)
    return {"t0_s": t0_s, "levels": {s: (lv, float(c)) for s, (lv, c) in enumerate(zip(levels_db, clipped))}}


ROUND = [-30.0, -36.5, -42.8, -37.4, -43.7, -48.2]


def test_a_set_weaker_at_every_sensor_is_an_echo_one_as_loud_is_a_round():
    rng = np.random.default_rng(1)
    echo = list(np.array(ROUND) - 6.0 + rng.normal(0, 1.0, len(ROUND)))
    again = list(np.array(ROUND) + rng.normal(0, 1.0, len(ROUND)))
    assert is_echo_set(_set(0.11, echo), [_set(0.0, ROUND)], P_D)
    assert not is_echo_set(_set(0.80, again), [_set(0.0, ROUND)], P_D)
    # a round 2 dB quieter on the whole (shot-to-shot variation) is still a round
    assert not is_echo_set(_set(0.80, list(np.array(ROUND) - 2.0)), [_set(0.0, ROUND)], P_D)


def test_a_set_few_of_the_rounds_sensors_heard_is_an_echo_whatever_its_levels():
    """The seed city's exchange: 3 of the 14 sensors that heard a round heard a set 48 ms later,
    louder there by 0.8, 1.7 and 5.4 dB (a reflection stronger than a diffracted first arrival), and
    4 sensors the round did not reach: an echo (with completion it came out as a fourth round)."""
    parent = {"t0_s": 0.0, "levels": {s: (-60.0, 0.0) for s in range(14)}}
    later = {"t0_s": 0.048, "levels": {0: (-59.2, 0.0), 1: (-58.3, 0.0), 2: (-54.6, 0.0),
                                       **{s: (-62.0, 0.0) for s in range(20, 24)}}}
    assert is_echo_set(later, [parent], P_D)
    # every one of them heard it, as loud: a round
    again = {"t0_s": 0.6, "levels": {s: (-60.0 + 0.5 * (s % 3 - 1), 0.0) for s in range(14)}}
    assert not is_echo_set(again, [parent], P_D)
    # with 4-5 sensors (the Pittsburgh audio) one missing sensor says little: 4 of 5 is still a round
    assert abs(hearing_log_odds(4, 5, P_D)) < 1.0
    assert not is_echo_set({"t0_s": 0.5, "levels": {s: (-60.0, 0.0) for s in range(4)}},
                           [{"t0_s": 0.0, "levels": {s: (-60.0, 0.0) for s in range(5)}}], P_D)
    # a reflector every sensor sees or a beta-binomial share of them, against P_D^k (1 - P_D)^(n - k), written out
    partial = math.factorial(3) * math.factorial(11) / math.factorial(15)
    assert hearing_log_odds(3, 14, 0.8) == pytest.approx(math.log(0.5 + 0.5 * partial / (0.8 ** 3 * 0.2 ** 11)))
    # every sensor hearing it: no evidence against an echo beyond the even odds of a partial reflector
    assert hearing_log_odds(14, 14, 0.8) > math.log(0.5)


def test_a_set_none_of_the_rounds_sensors_heard_is_told_by_their_silence():
    """No sensor in common: no level to compare, but 0 of the round's n sensors hearing it is
    P_D's (1 - P_D)^n for a round of that place against 1 / (n + 1) for a partial reflector's echo."""
    elsewhere = {"t0_s": 0.3, "levels": {s: (-60.0, 0.0) for s in range(10, 14)}}
    assert hearing_log_odds(0, 6, P_D) == pytest.approx(math.log(0.5 + 0.5 / 7 / 0.2 ** 6))
    # six silent sensors outweigh the prior odds against an echo set; one or two do not
    assert is_echo_set(elsewhere, [_set(0.0, ROUND)], P_D)
    assert not is_echo_set(elsewhere, [_set(0.0, ROUND[:2])], P_D)
    assert not is_echo_set(elsewhere, [_set(0.0, ROUND[:1])], P_D)


def test_an_echo_needs_an_earlier_round_within_the_echo_delay():
    echo = list(np.array(ROUND) - 8.0)
    assert not is_echo_set(_set(0.0, echo), [_set(0.1, ROUND)], P_D)            # the "round" comes after it
    late = echosets.ECHO_MAX_DELAY_S + 0.5
    assert not is_echo_set(_set(late, echo), [_set(0.0, ROUND)], P_D)           # too long after
    assert not is_echo_set(_set(0.1, echo), [], P_D)                             # nothing to echo
    assert not is_echo_set(_set(0.1, echo), [{"t0_s": 0.0, "levels": {}}], P_D)  # no level to compare


def test_clipped_levels_are_lower_bounds():
    # The earlier round clipped at every sensor, the later set 10-20 dB under the clip: an echo.
    clip = [0.6, 2.6, 5.2, 0.6]
    assert is_echo_set(_set(0.3, [-19.5, -4.3, -11.9, -10.7]), [_set(0.0, clip, [True] * 4)], P_D)
    # Both clipped says nothing: no evidence either way, so a round.
    assert echo_log_odds(np.array([-0.5, 0.3]), np.array([True, True]), np.array([True, True])) == 0.0
    assert not is_echo_set(_set(0.6, clip, [True] * 4), [_set(0.0, clip, [True] * 4)], P_D)
    # The later clipped and the earlier not: it is at least as loud, so not its echo.
    assert echo_log_odds(np.array([-1.0]), np.array([True]), np.array([False])) < 0.0


def test_received_levels_prefer_spl_and_flag_clipped_peaks():
    level, clipped = received_levels(np.array([95.0, np.nan, np.nan, np.nan]), np.array([0.5, 0.5, -20.0, np.nan]))
    assert level[0] == 95.0 and not clipped[0]
    assert level[1] == 0.5 and clipped[1]
    assert level[2] == -20.0 and not clipped[2]
    assert np.isnan(level[3]) and not clipped[3]


def test_a_burst_heard_through_the_same_delayed_paths_is_completed_round_by_round():
    """Rounds from one place share each sensor's path delay (a diffraction, a survey or clock error):
    the anchor's residuals are taken as station terms, so the later rounds' implied discharge
    times cluster as tightly as the paths allow, however far the anchor's fit was pulled."""
    from fusion.locator import burst
    from fusion.locator.associate import Shot
    from fusion.locator.multilaterate import Geometry, fit_shots, speed_of_sound
    from fusion.locator.picks import Picks

    c = speed_of_sound(0.0)
    sensors = np.array([[0.0, 0.0, 0.0], [330.0, 20.0, 0.0], [40.0, 310.0, 0.0], [210.0, 400.0, 0.0],
                        [-150.0, 200.0, 0.0], [140.0, 110.0, 0.0]])
    source = np.array([120.0, 150.0])
    delay_s = np.array([0.0, -0.018, 0.004, 0.02, -0.012, 0.015])   # each sensor's own, every round alike
    t0s = (0.0, 0.79, 1.45)
    t = np.concatenate([t0 + np.hypot(*(sensors[:, :2] - source).T) / c + delay_s for t0 in t0s])
    sensor = np.tile(np.arange(len(sensors)), len(t0s))
    picks = Picks(sensor, t, np.full(len(t), 1e-4), sensors[sensor])
    first = np.arange(len(sensors))
    fit = fit_shots([(sensors, t[first], np.full(len(first), 1e-3))], c, Geometry("2d"), [(source, 0.0)])
    anchor = Shot(first, fit.positions[0], float(fit.t0_s[0]), c, fit.residuals_s[0])
    levels = (np.full(len(t), -20.0), np.zeros(len(t), dtype=bool))
    new = burst.complete_bursts(picks, np.arange(len(t)), [anchor], Geometry("2d"), 4, levels)
    assert len(new) == 2
    later, last = sorted(s.t0_s for s in new)
    assert abs(later - anchor.t0_s - 0.79) < 0.01 and abs(last - later - 0.66) < 1e-3
    # every sensor in every round (without the station terms, the sensor of the largest delay is lost)
    assert all(len(s.pulses) == len(sensors) for s in new)
