"""Sets mixed from another place's arrivals (fusion/locator/mixedsets.py): a lone weak shot whose pulses a
better-supported place's rounds explain goes to that place; on constructed shots, a Pittsburgh-like scene and the
Pittsburgh pulse reports thinned to 5 sensors (FP1; TN098 supplement by ShotSpotter, Inc., CC BY 4.0)."""
from __future__ import annotations

import math

import numpy as np

import pittsburgh_harder as ph
import pittsburgh_like as pl
from fusion.locator.associate import Shot
from fusion.locator.mixedsets import without_mixed_sets
from fusion.locator.multilaterate import speed_of_sound
from fusion.locator.picks import Picks

C = speed_of_sound(15.0)
SENSORS_XY = np.array([[0.0, 0.0], [600.0, 50.0], [550.0, 620.0], [-40.0, 580.0], [300.0, -200.0]])
PLACE_XY = np.array([250.0, 260.0])
ELSEWHERE_XY = np.array([900.0, -700.0])


def _picks_and_shots(lone_t_s: list[float]) -> tuple[Picks, list[Shot]]:
    """Two rounds at PLACE_XY heard by sensors 0-3 (rows 0-7), and a lone 4-sensor shot elsewhere whose pulses (rows
    8-11, sensors 1-4) are at ``lone_t_s``."""
    sensor, t_s = [], []
    for t0 in (1.0, 1.6):
        sensor += [0, 1, 2, 3]
        t_s += list(t0 + np.hypot(*(SENSORS_XY[:4] - PLACE_XY).T) / C)
    sensor += [1, 2, 3, 4]
    t_s += lone_t_s
    sensor = np.array(sensor)
    pos = np.column_stack([SENSORS_XY[sensor], np.zeros(len(sensor))])
    picks = Picks(sensor, np.array(t_s), np.full(len(sensor), 1e-3), pos)
    rounds = [Shot(np.arange(4 * k, 4 * k + 4), PLACE_XY.copy(), t0, C, np.zeros(4), "p") for k, t0 in enumerate((1.0, 1.6))]
    lone = Shot(np.arange(8, 12), ELSEWHERE_XY.copy(), 0.5, C, np.zeros(4))
    return picks, [*rounds, lone]


def test_a_lone_set_of_a_further_rounds_arrivals_becomes_that_round_at_the_place():
    """Three of the lone set's four pulses are a third round's arrivals at the place (t0 2.3 s, 0.7 s after the
    second): they become that round there, sharing the place's position; the fourth pulse is free."""
    arrive = 2.3 + np.hypot(*(SENSORS_XY[1:4] - PLACE_XY).T) / C
    picks, shots = _picks_and_shots([*arrive, 0.9])
    out = without_mixed_sets(picks, shots, need=4)
    assert [len(s.pulses) for s in out] == [4, 4, 3]
    third = out[-1]
    assert sorted(third.pulses.tolist()) == [8, 9, 10] and third.place == "p"
    assert np.allclose(third.position[:2], PLACE_XY) and abs(third.t0_s - 2.3) < 1e-6


def test_a_lone_set_of_arrivals_the_rounds_lack_joins_them():
    """A sensor the rounds did not hold (4) heard round 0; the lone set holds that arrival and three repeats of
    arrivals the rounds hold (double reports, 2 ms late): all four explained, the arrival joins round 0 and the
    repeats go."""
    travel = np.hypot(*(SENSORS_XY - PLACE_XY).T) / C
    picks, shots = _picks_and_shots([1.0 + travel[1] + 0.002, 1.6 + travel[2] + 0.002, 1.6 + travel[3] + 0.002,
                                     1.0 + travel[4]])
    out = without_mixed_sets(picks, shots, need=4)
    assert [sorted(s.pulses.tolist()) for s in out] == [[0, 1, 2, 3, 11], [4, 5, 6, 7]]


def test_a_lone_set_the_place_does_not_explain_stays():
    """Pulses that fit no round at the place, nor make one there, leave the lone shot and the rounds as they were."""
    picks, shots = _picks_and_shots([3.1, 3.5, 3.2, 3.9])
    out = without_mixed_sets(picks, shots, need=4)
    assert out is shots and [len(s.pulses) for s in out] == [4, 4, 4]


def _with_unused(lone_t_s: list[float], unused_t_s: float) -> tuple[Picks, list[Shot], np.ndarray]:
    """:func:`_picks_and_shots` and one more pulse no shot holds, at sensor 0 (row 12): picks, shots, the stretch's rows."""
    picks, shots = _picks_and_shots(lone_t_s)
    sensor = np.append(picks.sensor, 0)
    picks = Picks(sensor, np.append(picks.t_s, unused_t_s), np.full(len(sensor), 1e-3),
                  np.column_stack([SENSORS_XY[sensor], np.zeros(len(sensor))]))
    return picks, shots, np.arange(len(sensor))


def test_a_set_holding_two_arrivals_of_a_further_round_goes_to_it_with_an_unused_pulse():
    """Two of the lone set's pulses (sensors 1, 2) are a third round's arrivals at the place (t0 2.3 s); its arrival
    at sensor 0 is a pulse no shot holds; sensors 3, 4 hold unrelated pulses. The third round is those three, at the
    place; the two left, too few for a round, are free."""
    travel = np.hypot(*(SENSORS_XY - PLACE_XY).T) / C
    picks, shots, rows = _with_unused([2.3 + travel[1], 2.3 + travel[2], 3.7, 0.2], 2.3 + travel[0])
    out = without_mixed_sets(picks, shots, need=4, rows=rows)
    assert [sorted(s.pulses.tolist()) for s in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 12]]
    assert out[-1].place == "p" and abs(out[-1].t0_s - 2.3) < 1e-6
    # Without the unused pulse the two arrivals make no round there: the set stays.
    assert without_mixed_sets(picks, shots, need=4) is shots
    # Nor where the pulse at sensor 0 is no arrival of that round (40 ms off it).
    picks, shots, rows = _with_unused([2.3 + travel[1], 2.3 + travel[2], 3.7, 0.2], 2.34 + travel[0])
    assert without_mixed_sets(picks, shots, need=4, rows=rows) is shots


def test_a_set_mixed_from_two_rounds_of_a_thinned_pittsburgh_test(pittsburgh):
    """The 28th thinned case of tests/pittsburgh_harder.py: FP1's test_014 on 5 sensors, 3 rounds. Association
    took round 1's arrivals at two sensors and two double reports of round 0 into a 4-sensor set fitting a place
    172 m off exactly; rounds 0 and 1 then lacked them. The place of the 3 rounds explains all four pulses: the
    3 rounds come out, 7 m off the survey, and nothing else."""
    fp, survey, sensors, rounds, shots = ph.thinned_shots(pittsburgh, 27)
    assert (fp, sensors, rounds) == ("FP1", 5, 3)
    assert len(shots) == 3 and all(math.hypot(s["x"] - survey[0], s["y"] - survey[1]) < 10.0 for s in shots)


def test_a_set_of_a_rounds_arrivals_and_an_echo_in_an_audio_like_scene(pittsburgh, tmp_path):
    """Seed 602 scene 16 of tests/pittsburgh_like.py, audio-like: 4 rounds that 4 sensors heard. Round 4's three
    arrivals and an echo fitted a place 93 m off exactly; at the burst's place they are its fourth round."""
    from locator_scoring import dist_m

    sc, shots = pl.scene_shots(pittsburgh, 602, 16, tmp_path, pl.Conditions().audio_like())
    assert sc.rounds == 4
    assert len(shots) == 4 and all(dist_m(s, sc.source_m) < 25.0 for s in shots)


def test_sets_mixed_from_rounds_and_unused_arrivals_in_an_audio_like_scene(pittsburgh, tmp_path):
    """Seed 277 scene 33 of tests/pittsburgh_like.py, audio-like (held out for the rules above): 4 rounds that 4
    sensors heard, 0.9-1.3 s apart, their arrivals interleaved over 1.6 s. Two 4-sensor sets 424-444 m off each held
    two of round 2's or round 3's three arrivals at the burst's place, the third unused, with echoes: the 4 rounds
    come out at the place (2 before), beside a 2-shot burst of echoes elsewhere that no rule here touches."""
    from locator_scoring import dist_m

    sc, shots = pl.scene_shots(pittsburgh, 277, 33, tmp_path, pl.Conditions().audio_like())
    assert sc.rounds == 4
    assert len([s for s in shots if dist_m(s, sc.source_m) < 25.0]) == 4
