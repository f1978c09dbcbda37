"""The small-array cap counts the sensors listening at a shot (fusion/locator/chance.py, listening;
issue 14): on the Pittsburgh audio (TN098 supplement, ShotSpotter Inc., CC BY 4.0) FP2's test_032 has
six recordings, two of them 1 km off, which heard only the later rounds; counted, they raised the
support a shot needed to 5 of 6, which no round reached, and nothing was located. One silent sensor
is forgiven at most (associate.SILENT_FORGIVEN): more cost the fireworks night's busy windows 5x the time."""
from __future__ import annotations

import numpy as np
import pytest

import locator_lopo as lopo
from fusion.locator.associate import SILENT_FORGIVEN, SearchConfig, find_shots
from fusion.locator.chance import LISTEN_S, listening
from fusion.locator.picks import Picks

WITHIN_M = 25.0
C_MPS = 340.0


def test_listening_counts_sensors_with_a_pulse_near_the_shots_arrival():
    # Three sensors on a line from a shot at the origin at t = 0; sensor 2 reports only long after.
    xy = np.array([[100.0, 0.0], [200.0, 0.0], [1000.0, 0.0]])
    sensor = np.array([0, 1, 2, 2])
    arrival_s = np.hypot(*xy.T) / C_MPS
    t_s = np.array([arrival_s[0], arrival_s[1] + 0.4 * LISTEN_S, arrival_s[2] + 1.5 * LISTEN_S,
                    arrival_s[2] - 2.0 * LISTEN_S])
    pos_m = np.column_stack([xy[sensor], np.zeros(len(sensor))])
    picks = Picks(sensor, t_s, np.full(len(sensor), 1e-3), pos_m)
    assert listening(picks, (0.0, 0.0), 0.0, C_MPS) == 2
    assert listening(picks, (0.0, 0.0), 1.5 * LISTEN_S, C_MPS) == 1  # the shot later: sensor 2's pulse is then near


def _ring_with_a_shot_and_a_crackle(sensors_n: int, hearing_n: int) -> tuple[Picks, np.ndarray]:
    """A ring of ``sensors_n`` sensors, radius 300 m,; a shot inside it heard by the first ``hearing_n``
    (the rest silent then); 15 s later every sensor busy with 40 pops in 5 s, so that the count
    cannot reach significance (the small-array cap binds)."""
    ang = 2 * np.pi * np.arange(sensors_n) / sensors_n
    xy = 300.0 * np.column_stack([np.cos(ang), np.sin(ang)])
    rng = np.random.default_rng(1)
    sensor = np.r_[np.arange(hearing_n), np.repeat(np.arange(sensors_n), 40)]
    t_s = np.r_[5.0 + np.hypot(*(xy[:hearing_n] - SHOT_XY).T) / C_MPS, 20.0 + rng.uniform(0.0, 5.0, 40 * sensors_n)]
    return Picks(sensor, t_s, np.full(len(sensor), 1e-3), np.column_stack([xy[sensor], np.zeros(len(sensor))])), xy


SHOT_XY = np.array([40.0, -30.0])


def _shot_found(sensors_n: int, hearing_n: int) -> bool:
    picks, _ = _ring_with_a_shot_and_a_crackle(sensors_n, hearing_n)
    shots = find_shots(picks, SearchConfig(c=C_MPS, tol_s=0.04, min_tol_s=0.005, min_sensors=4))
    return any(np.hypot(*(s.position[:2] - SHOT_XY)) < 5.0 for s in shots)


def test_a_set_one_short_of_the_small_array_cap_is_kept_where_a_sensor_was_silent():
    # 7 sensors, the cap asks 6; 5 hear the shot and 2 were silent at it.
    assert SILENT_FORGIVEN == 1 and _shot_found(7, 5)


def test_a_set_two_short_of_the_cap_is_not_kept_however_many_were_silent():
    # 4 of 7 hear it, 3 silent: forgiving more than one sensor made the fireworks night's busy
    # windows search and refuse every coincidence far below the count (its stream test 5x as long).
    assert not _shot_found(7, 4)


@pytest.mark.slow
def test_far_silent_sensors_do_not_raise_the_bar_on_pittsburgh_test_032(pittsburgh, tmp_path):
    fired, off_m = lopo.audio_offsets_m(pittsburgh, "test_032", tmp_path)
    assert len(off_m) == fired and max(off_m) <= WITHIN_M, off_m
