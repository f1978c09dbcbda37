"""The locator's use of pulse levels and burst structure, on synthetic arrivals with known truth:
later rounds of a burst heard with a lower SNR (the detector's floor risen in the first round's
reverberation) but the same peak, and a wall's specular echo that looks like a second source."""
import math

import numpy as np

from fusion.locator.locate import locate
from synthetic_shots import EPOCH_NS, NS_PER_S, ring_array, speed_of_sound

TEMPERATURE_C = 15.0
SHOOTER = np.array([40.0, -25.0, 1.5])
# Downrange cracks: the blasts' level at 1 m in dB full scale, how far above it a crack is
# heard where the bullet passes near a sensor far from the muzzle, and its time off the blast's.
BLAST_DBFS_AT_1M = 10.0
CRACK_EXCESS_DB = 30.0
CRACK_OFFSET_S = 5e-4


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


def test_downrange_cracks_heard_without_their_blast_are_left_out():
    """Three sensors far down the bullet's path hear each round's crack (30 dB louder than any
    blast there, spectrum worn by absorption below the shape cue) and no blast; timed within a
    millisecond of the blast, so the fit alone keeps them."""
    rng = np.random.default_rng(5)
    sensors = ring_array(rng, n=12, radius_m=900.0)
    downrange = set(list(sensors)[:3])
    pulses = []
    for t0 in (0.0, 0.15, 0.3, 0.45):
        for sid, xyz in sensors.items():
            r_m = float(np.linalg.norm(np.asarray(xyz[:2]) - SHOOTER[:2]))
            t = _arrival_s(xyz, SHOOTER, t0) + rng.normal(0.0, 2e-4)
            # A blast of the same level at 1 m everywhere (spherical spreading); cracks far above it.
            peak = BLAST_DBFS_AT_1M - 20.0 * math.log10(r_m) + (CRACK_EXCESS_DB if sid in downrange else 0.0)
            pulses.append(dict(_pulse(sid, t + (CRACK_OFFSET_S if sid in downrange else 0.0), 40.0, peak),
                               features={"low_ratio_db": -4.0, "high_ratio_db": -9.0, "duration_ms": 1.3}))
    incidents = locate(pulses, sensors, TEMPERATURE_C)
    assert len(incidents) == 1 and incidents[0]["rounds"] == 4
    for shot in incidents[0]["shots"]:
        assert not downrange & set(shot["sensors"]) and len(shot["sensors"]) == len(sensors) - len(downrange)
        assert math.hypot(shot["x"] - SHOOTER[0], shot["y"] - SHOOTER[1]) < 3.0

