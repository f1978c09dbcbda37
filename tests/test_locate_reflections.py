"""A wall's reflection louder than the direct sound (behind a muzzle): association takes the direct."""
import math

import numpy as np
import pytest

import uncertainty_records as ur
from fusion.locator import locate as locate_module
from fusion.locator.locate import PRECURSOR_LAG_S, PRECURSOR_MIN_SENSORS, _loud_enough
from simulator import fleet, scenario

NEAR_M = 3.0          # a round put this near its truth is on its direct arrivals (the reflections: 19-22 m)
SNR_DIRECT_DB, SNR_WALL_DB = 30.0, 40.0    # behind the muzzle: the wall's return 10 dB louder
WALL_LAG_S = 0.1


def _screen(n_sensors: int, t_s, snr_db, sensor):
    sensor = np.asarray(sensor)
    sensor = np.concatenate([sensor, np.arange(n_sensors)])   # every sensor heard the stretch
    t_s = np.concatenate([t_s, np.full(n_sensors, 10.0)])
    snr_db = np.concatenate([snr_db, np.full(n_sensors, 10.0)])
    return _loud_enough(sensor, snr_db, np.full(len(sensor), np.nan), t_s)[:-n_sensors]


def test_a_quiet_pulse_just_before_a_louder_one_is_kept_and_one_just_after_is_not():
    # Sensor 0: direct, then its wall reflection 10 dB louder; sensor 1: a pulse, then its echo 10 dB
    # quieter; sensor 2: the direct, then a reflection later than PRECURSOR_LAG_S.
    late_s = PRECURSOR_LAG_S * 1.5
    t_s = [0.0, WALL_LAG_S, 0.0, WALL_LAG_S, 0.0, late_s]
    snr_db = [SNR_DIRECT_DB, SNR_WALL_DB, SNR_WALL_DB, SNR_DIRECT_DB, SNR_DIRECT_DB, SNR_WALL_DB]
    sensor = [0, 0, 1, 1, 2, 2]
    assert _screen(PRECURSOR_MIN_SENSORS, t_s, snr_db, sensor).tolist() == [True, True, True, False, False, True]
    # A small array keeps to loudness alone: there a kept quiet pulse makes a chance set.
    assert _screen(PRECURSOR_MIN_SENSORS - 1, t_s, snr_db, sensor).tolist() == [False, True, True, False, False, True]


def test_a_quiet_pulse_that_may_echo_a_louder_one_before_it_is_left_out():
    # Round 1's direct (quiet) and its louder reflection, round 2's direct 50 ms after that
    # reflection: it may be the reflection's echo, so only round 1's direct comes back.
    t_s = [0.0, WALL_LAG_S, WALL_LAG_S + 0.05, 2 * WALL_LAG_S + 0.05]
    snr_db = [SNR_DIRECT_DB, SNR_WALL_DB, SNR_DIRECT_DB, SNR_WALL_DB]
    assert _screen(PRECURSOR_MIN_SENSORS, t_s, snr_db, [0, 0, 0, 0]).tolist() == [True, True, False, True]


@pytest.mark.slow
def test_the_park_rifle_of_city_demo_is_located_on_its_direct_arrivals():
    """city_demo's park rifle (4 rounds, barrel at 60 degrees): at the sensors behind it a wall returns
    the blast louder than the direct sound. Told the exact wind, every round is put within NEAR_M
    (before: 19-22 m off, on the reflections)."""
    scn = scenario.load("city_demo")
    pulses, _ = fleet.pulses(scn)
    incidents = locate_module.locate(pulses, ur.fleet_sensors(scn), scn.atmosphere.temperature_c,
                                     wind_m_s=tuple(scn.atmosphere.wind_vector()), frame_m=0.0)
    shots = [s for inc in incidents for s in inc["shots"]]
    rifle = [t for t in scn.truth() if t["gunfire"] and t["kind"] == "rifle"]
    assert len(rifle) == 4
    for t in rifle:
        shot = min(shots, key=lambda s: abs(s["t_ns"] - t["t_ns"]))
        assert math.hypot(shot["x"] - t["x"], shot["y"] - t["y"]) <= NEAR_M, (t["round"], shot)
