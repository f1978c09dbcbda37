"""The locator's use of pulse levels and burst structure, on synthetic arrivals with known truth:
later rounds of a burst heard with a lower SNR (the detector's floor risen in the first round's
reverberation) but the same peak, and a wall's specular echo that looks like a second source."""
import math

import numpy as np

from fusion.locate import locate
from synthetic_shots import EPOCH_NS, NS_PER_S, ring_array, speed_of_sound

TEMPERATURE_C = 15.0
SHOOTER = np.array([40.0, -25.0, 1.5])


def _pulse(sid, t_s, snr_db, peak_dbfs):
    return {"sensor": sid, "t_ns": EPOCH_NS + int(round(t_s * NS_PER_S)), "t_unc_ns": 20_000,
            "snr_db": snr_db, "peak_dbfs": peak_dbfs}


def _arrival_s(sensor_xyz, source, t0_s):
    return t0_s + float(np.linalg.norm(np.asarray(sensor_xyz) - source)) / speed_of_sound(TEMPERATURE_C)


def test_later_rounds_with_lower_snr_but_the_same_peak_are_located():
    rng = np.random.default_rng(7)
    sensors = ring_array(rng, n=6)
    pulses = []
    for k, t0 in enumerate((0.0, 0.4, 0.8)):
        for sid, xyz in sensors.items():
            t = _arrival_s(xyz, SHOOTER, t0)
            # Round 1 over a quiet floor; later rounds over the first's reverberation.
            pulses.append(_pulse(sid, t, 50.0 if k == 0 else 39.0, -30.0 + rng.normal(0, 0.5)))
            for delay in rng.uniform(0.03, 0.35, 2):
                pulses.append(_pulse(sid, t + delay, rng.uniform(25, 35), rng.uniform(-50, -40)))
    incidents = locate(pulses, sensors, TEMPERATURE_C)
    assert len(incidents) == 1 and incidents[0]["rounds"] == 3
    for shot in incidents[0]["shots"]:
        assert math.hypot(shot["x"] - SHOOTER[0], shot["y"] - SHOOTER[1]) < 3.0


def test_clipped_sensors_rank_pulses_by_snr():
    rng = np.random.default_rng(11)
    sensors = ring_array(rng, n=5)
    pulses = []
    for sid, xyz in sensors.items():
        t = _arrival_s(xyz, SHOOTER, 0.0)
        pulses.append(_pulse(sid, t, 50.0, 0.0))
        # Clipped echoes: the peak says nothing, their SNR does; far from the source they
        # would form a chance set as large as the shot's.
        for delay in rng.uniform(0.05, 0.6, 3):
            pulses.append(_pulse(sid, t + delay, rng.uniform(25, 35), -0.5))
    incidents = locate(pulses, sensors, TEMPERATURE_C)
    assert [i["rounds"] for i in incidents] == [1]
    shot = incidents[0]["shots"][0]
    assert math.hypot(shot["x"] - SHOOTER[0], shot["y"] - SHOOTER[1]) < 3.0


def test_a_walls_image_of_a_shot_is_not_a_second_shot():
    rng = np.random.default_rng(3)
    sensors = ring_array(rng, n=12, radius_m=800.0)
    image = SHOOTER + np.array([0.0, 36.0, 0.0])  # mirrored in a wall 18 m north of the shooter
    pulses = []
    for k, (sid, xyz) in enumerate(sensors.items()):
        t = _arrival_s(xyz, SHOOTER, 0.0)
        pulses.append(_pulse(sid, t, 50.0, -20.0))
        if k % 4:  # the wall reflects toward most of the array, as loud as the first arrival
            pulses.append(_pulse(sid, _arrival_s(xyz, image, 0.0), 47.0, -21.0))
    incidents = locate(pulses, sensors, TEMPERATURE_C)
    assert len(incidents) == 1 and incidents[0]["rounds"] == 1
    shot = incidents[0]["shots"][0]
    assert math.hypot(shot["x"] - SHOOTER[0], shot["y"] - SHOOTER[1]) < 3.0
