"""A burst fitted to a sensor's echoes, moved to its direct sound (fusion/locator/directsound.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fusion.locator.associate import Shot, search_bounds
from fusion.locator.directsound import direct_sounds, earlier_sounds
from fusion.locator.multilaterate import Geometry, fit_shots
from fusion.locator.picks import Picks

C_M_S = 343.0
SENSORS_M = np.array([[0.0, 0.0, 0.0], [600.0, 0.0, 0.0], [0.0, 600.0, 0.0], [600.0, 600.0, 0.0], [300.0, -200.0, 0.0]])
SOURCE_M = np.array([250.0, 320.0])
TRAVEL_S = np.hypot(*(SENSORS_M[:, :2] - SOURCE_M).T) / C_M_S
ROUNDS_T0_S = (0.0, 0.45, 1.2)
ECHO_S = 0.079  # sensor 0's echo after its direct sound, as in seed 602 scene 187
TOL_S = 0.02
GEOMETRY = Geometry("2d")


def _burst(sensors=(0, 1, 2, 3), echo_sensor: int | None = 0, other_gun_s: float | None = None):
    """Picks of a burst from SOURCE_M heard by ``sensors``, each round's direct sound and, at ``echo_sensor``, an
    echo ECHO_S after it; with ``other_gun_s`` a pulse that long before each round's arrival at every sensor
    (another gun, not one sensor's direct sound). Shots: the rounds with ``echo_sensor``'s echo taken for its
    arrival, placed where their arrivals fit."""
    rows, shots = [], []

    def add(sensor: int, t_s: float) -> int:
        rows.append((sensor, t_s))
        return len(rows) - 1

    for t0 in ROUNDS_T0_S:
        held = []
        for s in sensors:
            direct = add(s, t0 + TRAVEL_S[s])
            held.append(add(s, t0 + TRAVEL_S[s] + ECHO_S) if s == echo_sensor else direct)
            if other_gun_s is not None:
                add(s, t0 + TRAVEL_S[s] - other_gun_s)
        shots.append((t0, held))
    sensor = np.array([r[0] for r in rows])
    picks = Picks(sensor, np.array([r[1] for r in rows]), np.full(len(rows), 1e-4), SENSORS_M[sensor])
    # Placed where their arrivals fit best, as association leaves them (started 60 m off the shooter).
    groups = [(picks.pos_m[p], picks.t_s[p], picks.sigma_s[p]) for _, p in shots]
    fit = fit_shots(groups, C_M_S, GEOMETRY, [(SOURCE_M + [60.0, 0.0], t0) for t0, _ in shots], places=[0] * len(shots))
    return picks, [Shot(np.array(p), fit.positions[k].copy(), float(fit.t0_s[k]), C_M_S, fit.residuals_s[k])
                   for k, (_, p) in enumerate(shots)]


def _direct_sounds(picks, shots):
    return direct_sounds(picks, np.arange(len(picks)), shots, GEOMETRY, TOL_S, search_bounds(SENSORS_M[:, :2]))


def test_a_burst_fitted_to_a_sensors_echo_moves_to_the_direct_sound_before_it():
    picks, shots = _burst()
    moved = _direct_sounds(picks, shots)
    assert len(moved) == len(ROUNDS_T0_S)
    for shot, t0 in zip(moved, ROUNDS_T0_S):
        at0 = shot.pulses[picks.sensor[shot.pulses] == 0]
        assert picks.t_s[at0] == pytest.approx([t0 + TRAVEL_S[0]], abs=1e-9)
        assert math.dist(shot.position[:2], SOURCE_M) < 0.1
        assert shot.t0_s == pytest.approx(t0, abs=1e-5)


def test_a_burst_of_direct_sounds_stays_as_it_is():
    picks, shots = _burst(echo_sensor=None)
    assert [s.pulses.tolist() for s in _direct_sounds(picks, shots)] == [s.pulses.tolist() for s in shots]


def test_an_earlier_sound_at_every_sensor_is_no_one_sensors_direct_sound():
    """A pulse 50 ms before each round's arrival at every sensor (a second gun firing with the first): taken at
    any one sensor, the others' pulses say it is a sound from the place heard everywhere, and the rounds stay
    as they are (its arrivals moved, the four sensors' rounds would still fit within the tolerance)."""
    picks, shots = _burst(echo_sensor=None, other_gun_s=0.05)
    assert [s.pulses.tolist() for s in _direct_sounds(picks, shots)] == [s.pulses.tolist() for s in shots]


def test_rounds_that_five_sensors_hear_are_left_as_they_are():
    """Five sensors' arrivals check each other (associate.earlier_set weighs such sets): only rounds of d + 2
    sensors or fewer, whose one redundant arrival an echo fits elsewhere, are moved."""
    picks, shots = _burst(sensors=(0, 1, 2, 3, 4))
    assert [s.pulses.tolist() for s in _direct_sounds(picks, shots)] == [s.pulses.tolist() for s in shots]


def test_an_earlier_pulse_in_one_round_only_is_chance():
    """The earlier sound must repeat: before one round of three it is as likely a noise pulse."""
    picks, shots = _burst()
    free = np.setdiff1d(np.flatnonzero(picks.sensor == 0), np.concatenate([s.pulses for s in shots]))
    arrivals = [int(s.pulses[picks.sensor[s.pulses] == 0][0]) for s in shots]
    odds, rows = earlier_sounds(picks, free, arrivals)[0]
    assert odds > 0 and rows == free.tolist()
    assert all(odds < 0 for odds, _ in earlier_sounds(picks, free[:1], arrivals))


def test_the_direct_sound_is_found_before_another_guns_pulse():
    """Before the echo taken for sensor 0's arrival lie its direct sound (79 ms) and a second gun's pulse (50 ms
    before the direct at every sensor): both repeat after every round; the direct sound is the sensor's own."""
    picks, shots = _burst(other_gun_s=0.05)
    for shot, t0 in zip(_direct_sounds(picks, shots), ROUNDS_T0_S):
        assert picks.t_s[shot.pulses[picks.sensor[shot.pulses] == 0]] == pytest.approx([t0 + TRAVEL_S[0]], abs=1e-9)
        assert math.dist(shot.position[:2], SOURCE_M) < 0.1


@pytest.mark.parametrize("seed, index, rounds", [(602, 187, 3), (609, 86, 3)])
def test_a_pittsburgh_like_burst_fitted_to_an_echo_is_placed_at_its_shooter(pittsburgh, tmp_path, seed, index, rounds):
    """Seed 602 scene 187 of tests/pittsburgh_like.py: three sensors, three rounds, one sensor's echo 79 ms after
    its direct sound fitted a place 116 m off; seed 609 scene 86: five sensors, one sensor's echo 20 ms after
    its direct sound, 49 m off. Each rounds' direct sound at that sensor comes first, round after round."""
    import pittsburgh_like as pl
    from locator_scoring import dist_m

    sc, shots = pl.scene_shots(pittsburgh, seed, index, tmp_path)
    assert sc.rounds == rounds
    assert len(shots) == rounds and all(dist_m(s, sc.source_m) < 10.0 for s in shots)
