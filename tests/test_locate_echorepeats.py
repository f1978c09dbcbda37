"""Echo sets told by their repeats (fusion/locator/echorepeats.py): scripted bursts, then a Pittsburgh-like scene."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fusion.locator.associate import Shot
from fusion.locator.echorepeats import echo_burst, echo_pairs, repeat_log_odds, trails, without_repeated_echoes
from fusion.locator.picks import Picks

C_M_S = 343.0
RNG = np.random.default_rng(5)
SENSORS_M = np.column_stack([RNG.uniform(-400.0, 400.0, (10, 2)), np.zeros(10)])
TRAVEL_S = np.linalg.norm(SENSORS_M, axis=1) / C_M_S
ROUNDS_T0_S = (0.0, 0.4, 0.9)
# The set lined up from echoes at 5 of the 10 sensors: at three of them echoes of round 0 (0.55 s after it),
# at two of round 1 (0.15 s).
SET_T0_S = 0.55
SET_PARENT = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1}


def _burst(repeats: bool, rounds_t0_s=ROUNDS_T0_S, echo_set: bool = True, unlocated=()):
    """Picks and shots of a burst from the origin that all 10 sensors hear; with ``echo_set`` one more shot of
    echoes that line up at SET_T0_S; with ``repeats`` each of those echoes follows every round, as a sensor's
    walls make it. Rounds numbered in ``unlocated`` are pulses only, no shot."""
    rows, shots = [], []

    def add(sensor: int, t_s: float) -> int:
        rows.append((sensor, t_s))
        return len(rows) - 1

    for k, t0 in enumerate(rounds_t0_s):
        pulses = [add(s, t0 + TRAVEL_S[s]) for s in range(len(SENSORS_M))]
        if k not in unlocated:
            shots.append((t0, pulses))
    if echo_set:
        shots.append((SET_T0_S, [add(s, SET_T0_S + TRAVEL_S[s]) for s in SET_PARENT]))
        for s, parent in SET_PARENT.items():
            for k, t0 in enumerate(rounds_t0_s):
                if repeats and k != parent:
                    add(s, t0 + TRAVEL_S[s] + SET_T0_S - rounds_t0_s[parent])
    sensor = np.array([r[0] for r in rows])
    picks = Picks(sensor, np.array([r[1] for r in rows]), np.full(len(rows), 1e-4), SENSORS_M[sensor])
    return picks, [Shot(np.array(p), np.zeros(2), t0, C_M_S, np.zeros(len(p))) for t0, p in shots]


def test_a_set_of_echoes_that_recur_after_every_round_is_dropped():
    picks, shots = _burst(repeats=True)
    kept = without_repeated_echoes(shots, picks)
    assert [s.t0_s for s in kept] == list(ROUNDS_T0_S)


def test_a_set_whose_pulses_recur_nowhere_is_a_round():
    """Without the repeats the set is as good a round as any: timing at the place cannot tell them apart."""
    picks, shots = _burst(repeats=False)
    assert len(without_repeated_echoes(shots, picks)) == 4


def test_evenly_spaced_rounds_are_not_one_anothers_echoes():
    """Round 3 follows round 2 as round 2 follows round 1: those pulses are rounds, not repeats."""
    picks, shots = _burst(repeats=False, rounds_t0_s=(0.0, 0.3, 0.6, 0.9, 1.2), echo_set=False)
    assert len(without_repeated_echoes(shots, picks)) == 5


def test_a_round_the_shots_missed_is_no_echo_of_theirs():
    """Of four evenly spaced rounds the third is not located: its pulses are free, and round 4 lies a gap after
    round 2 as round 3 after round 1 at every sensor. Heard at every sensor of the place, they are a round."""
    picks, shots = _burst(repeats=False, rounds_t0_s=(0.0, 0.3, 0.6, 0.9), echo_set=False, unlocated=(2,))
    assert len(without_repeated_echoes(shots, picks)) == 3


def test_one_round_more_to_repeat_after_is_enough_and_none_says_nothing():
    """Two rounds and a set: each echo repeats after the round it does not echo, and the set goes. With one
    of the rounds left out, nothing could repeat: no evidence either way."""
    picks, shots = _burst(repeats=True, rounds_t0_s=(0.0, 0.4))
    assert [s.t0_s for s in without_repeated_echoes(shots, picks)] == [0.0, 0.4]
    arrivals = [dict(zip(picks.sensor[s.pulses].tolist(), picks.t_s[s.pulses].tolist())) for s in shots]
    free_s = {s: picks.t_s[picks.sensor == s] for s in range(len(SENSORS_M))}
    assert repeat_log_odds(2, [0], shots, arrivals, free_s) == 0.0


@pytest.mark.parametrize("seed, index, rounds", [(601, 30, 2), (604, 22, 3)])
def test_a_burst_among_dense_echoes_comes_out_with_its_rounds_only(pittsburgh, tmp_path, seed, index, rounds):
    """Scenes of tests/pittsburgh_like.py with 5 echoes per sensor and round (what `earwitness detect` finds in
    the recordings): echoes of different rounds at different sensors lined up at the burst's place as one
    more round; they recur after the burst's other rounds, sensor by sensor, and the set is dropped."""
    import pittsburgh_like as pl
    from locator_scoring import dist_m

    dense = dataclasses.replace(pl.Conditions(), echoes_mean=pl.DENSE_ECHOES)
    sc, shots = pl.scene_shots(pittsburgh, seed, index, tmp_path, dense)
    assert sc.rounds == rounds
    assert len(shots) == rounds and all(dist_m(s, sc.source_m) < 10.0 for s in shots)


def _two_places(ghost_lags_s: np.ndarray, ghost_t0_s=ROUNDS_T0_S[1:]):
    """Picks and shots of the burst from the origin (ROUNDS_T0_S, all 10 sensors) and of a second "burst":
    its shot j's arrival at each sensor that of round j + 1 plus ``ghost_lags_s`` there (a sensor's own echo
    lag), or (``ghost_t0_s`` off the rounds' times) a burst of its own at those lags' place."""
    t_s, sensor, rounds, ghosts = [], [], [], []
    for t0 in ROUNDS_T0_S:
        rounds.append(np.arange(len(t_s), len(t_s) + len(SENSORS_M)))
        t_s += list(t0 + TRAVEL_S)
        sensor += list(range(len(SENSORS_M)))
    for t0 in ghost_t0_s:
        ghosts.append(np.arange(len(t_s), len(t_s) + len(SENSORS_M)))
        t_s += list(t0 + TRAVEL_S + ghost_lags_s)
        sensor += list(range(len(SENSORS_M)))
    sensor = np.array(sensor)
    picks = Picks(sensor, np.array(t_s), np.full(len(t_s), 1e-4), SENSORS_M[sensor])

    def shots(groups, t0s):
        return [Shot(g, np.zeros(2), t0, C_M_S, np.zeros(len(g))) for g, t0 in zip(groups, t0s)]

    return picks, shots(rounds, ROUNDS_T0_S), shots(ghosts, ghost_t0_s)


def test_a_burst_of_echoes_elsewhere_follows_the_rounds_at_each_sensors_own_lag():
    """Each sensor's echo comes at its own lag (20-200 ms) after every round: the echoes of rounds 1 and 2
    line up as a burst elsewhere, later than the rounds at every sensor by the same lags: a ghost. The rounds
    seen from the ghost come earlier at every sensor (no echo precedes its sound): no ghost the other way."""
    lags_s = np.random.default_rng(8).uniform(0.02, 0.2, len(SENSORS_M))
    picks, rounds, ghost = _two_places(lags_s)
    assert echo_burst(rounds, ghost, picks)
    assert not echo_burst(ghost, rounds, picks)


def test_a_second_burst_whose_gap_repeats_none_of_the_rounds_is_no_echo():
    """Another shooter's two rounds, as late after the first's at every sensor, but 37 ms further apart than
    any two of the first's rounds: the lags do not repeat, it is no echo of them. One shot alone never is."""
    lags_s = np.random.default_rng(8).uniform(0.02, 0.2, len(SENSORS_M))
    picks, rounds, other = _two_places(lags_s, (ROUNDS_T0_S[1], ROUNDS_T0_S[2] + 0.037))
    assert not echo_burst(rounds, other, picks)
    picks, rounds, ghost = _two_places(lags_s)
    assert not echo_burst(rounds, ghost[:1], picks)


def test_a_set_trails_a_round_only_if_later_at_every_sensor_they_share():
    """The echo set of _burst (0.55 s) follows rounds 0 and 1 at its 5 sensors, not round 2 (0.9 s); round 1 is later
    than round 0 everywhere too (a trail alone says nothing of which came from where); round 0 trails nothing,
    and a set sharing fewer than 3 sensors with a round is not compared."""
    picks, shots = _burst(repeats=False)
    round0, round1, round2, echoes = shots
    assert trails(echoes, round0, picks) and trails(echoes, round1, picks) and trails(round1, round0, picks)
    assert not trails(echoes, round2, picks) and not trails(round0, echoes, picks)
    two = dataclasses.replace(echoes, pulses=echoes.pulses[:2])
    assert not trails(two, round0, picks)


def test_two_sets_of_the_same_echoes_after_two_rounds_are_dropped_together():
    """Echoes at each sensor's own lag (20-200 ms) after rounds 1 and 2, each set located as a round at the place:
    each holds the other's repeats, which the repeat count leaves out, but both follow a round by the same lags,
    which differ by sensor as no round's do. Both go; the rounds stay."""
    lags_s = np.random.default_rng(8).uniform(0.02, 0.2, len(SENSORS_M))
    picks, rounds, sets = _two_places(lags_s)
    assert echo_pairs(rounds + sets, picks) == {id(s) for s in sets}
    assert without_repeated_echoes(rounds + sets, picks) == rounds


def test_rounds_after_rounds_at_one_lag_are_no_echo_sets():
    """Two more rounds 0.15 s after rounds 1 and 2 (a 5-round burst, its gaps repeating): the same lag at every
    sensor, within the picks' error (0.5 ms), is a gap between discharges, not a sensor's walls: none goes."""
    lags_s = 0.15 + np.random.default_rng(8).uniform(-5e-4, 5e-4, len(SENSORS_M))
    picks, rounds, more = _two_places(lags_s)
    assert echo_pairs(rounds + more, picks) == set()


def test_sets_of_echoes_after_two_rounds_in_an_audio_like_scene(pittsburgh, tmp_path):
    """Seed 277 scene 91 of tests/pittsburgh_like.py, audio-like (held out for the rule): 4 rounds that 4 sensors
    heard; the same echoes (82-187 ms, by sensor) after rounds 1 and 3 came out as two more rounds 16 m off. The 4
    rounds come out, nothing else."""
    import pittsburgh_like as pl
    from locator_scoring import dist_m

    sc, shots = pl.scene_shots(pittsburgh, 277, 91, tmp_path, pl.Conditions().audio_like())
    assert sc.rounds == 4
    assert len(shots) == 4 and all(dist_m(s, sc.source_m) < 10.0 for s in shots)
