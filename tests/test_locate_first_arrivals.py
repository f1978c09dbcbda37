"""Of two pulses at one sensor, the earlier is the first arrival (fusion/locator/associate.py,
first_arrivals): four sensors laid out as FP2's recorded ones in the Pittsburgh tests (TN098
supplement, ShotSpotter Inc., CC BY 4.0), where a reflection reaching one sensor 0.3 s after
the direct sound, louder, fits the mirror place of the other three exactly (test_031, test_036)."""
from __future__ import annotations

import math

import numpy as np

from earwitness.units import NS_PER_S, speed_of_sound
from fusion.locator.locate import locate
from fusion.locator.triplevote import triple_points

TEMPERATURE_C = 10.0
C_MPS = speed_of_sound(TEMPERATURE_C)
# Sensors about the shooter at the origin (m): FP2's 0559, 0681, 1159 and 2069.
SENSORS = {"A": (41.7, -51.6, 0.0), "B": (100.3, 238.8, 0.0), "C": (272.1, -52.9, 0.0), "D": (-342.7, -141.6, 0.0)}
# A diffracted first arrival at D: the direct set fits its place less tightly than the echo set fits the mirror's.
DELAY_S = {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.012}
DISCHARGES_S = (0.0, 0.62, 1.31)
T0_NS = 1_545_184_000 * NS_PER_S
NEAR_M = 10.0


def _arrival_s(sensor: str, place, t0_s: float) -> float:
    return t0_s + math.hypot(SENSORS[sensor][0] - place[0], SENSORS[sensor][1] - place[1]) / C_MPS


def _pulses(rounds=DISCHARGES_S):
    """Each round's direct arrivals, and at B its reflection where A, C and D's mirror place puts it."""
    direct = {s: _arrival_s(s, (0.0, 0.0), 0.0) + DELAY_S[s] for s in SENSORS}
    xy = np.array([[SENSORS[s][:2] for s in "ACD"]])
    points, t0s = triple_points(xy, np.array([[direct[s] for s in "ACD"]]), C_MPS)
    far = int(np.argmax(np.hypot(*points.T)))
    echo_lag_s = _arrival_s("B", points[far], float(t0s[far])) - direct["B"]
    assert 0.1 < echo_lag_s < 0.5  # a reflection's delay, after the direct sound
    pulses = []
    for t0 in rounds:
        for s, t in direct.items():
            pulses.append({"sensor": s, "t_ns": T0_NS + round((t0 + t) * NS_PER_S), "snr_db": 35.0, "peak_dbfs": -5.0})
        pulses.append({"sensor": "B", "t_ns": T0_NS + round((t0 + direct["B"] + echo_lag_s) * NS_PER_S),
                       "snr_db": 38.0, "peak_dbfs": -4.0})
    return sorted(pulses, key=lambda p: p["t_ns"]), points[far]


def test_the_direct_sound_wins_over_a_later_reflection_that_fits_the_mirror_place():
    for rounds in (DISCHARGES_S, DISCHARGES_S[:1]):
        pulses, mirror = _pulses(rounds)
        incidents = locate(pulses, SENSORS, TEMPERATURE_C)
        shots = [s for inc in incidents for s in inc["shots"]]
        assert len(shots) == len(rounds)
        assert all(math.hypot(s["x"], s["y"]) <= NEAR_M for s in shots), [(s["x"], s["y"]) for s in shots]
        assert math.hypot(*mirror) > 5 * NEAR_M  # the reflection's set fits a place far from the shooter


def test_a_swapped_set_that_fits_a_plane_wave_is_no_place(pittsburgh, tmp_path):
    """Seed 602 scene 83 of tests/pittsburgh_like.py's audio-like regime (5 sensors hear, 3 rounds, dense echoes).
    A four-pulse set with one pulse swapped for an earlier one fitted no place but a plane wave: its refit ran to
    2.4e9 m off, 82 days before the shots, and came out as an incident. A swapped set must fit a place in the area
    searched; every shot put out lies there."""
    import pittsburgh_like as pl
    from fusion.locator.associate import inside, search_bounds

    sc, shots = pl.scene_shots(pittsburgh, 602, 83, tmp_path, pl.Conditions().audio_like())
    assert sc.rounds == 3 and sc.tags["hearing"] == 5
    bounds = search_bounds(np.array(list(sc.sensors.values()))[:, :2])
    assert shots and all(inside(bounds, (s["x"], s["y"])) for s in shots), [(s["x"], s["y"]) for s in shots]


def test_an_earlier_pulse_that_moves_a_burst_round_off_every_rounds_place_is_no_first_arrival(pittsburgh, tmp_path):
    """Seed 604 scene 72 of tests/pittsburgh_like.py's audio-like regime: 4 rounds 0.46-0.9 s apart, the same 4 sensors
    hearing each, 5 echoes per sensor and round. A round's direct set, found 19 m off, took a sensor's earlier pulse,
    the round before's echo there, and moved 500 m to a place no other round comes from; so did others, and 10
    shots came out, none within 25 m. The earlier pulse is taken only where its set's place is repeated by other
    rounds as often as the shot's (associate._repeats): the 4 rounds come out at the shooter."""
    import pittsburgh_like as pl
    from locator_scoring import dist_m

    sc, shots = pl.scene_shots(pittsburgh, 604, 72, tmp_path, pl.Conditions().audio_like())
    assert sc.rounds == 4 and sc.tags["hearing"] == 4
    assert len(shots) == 4 and all(dist_m(s, sc.source_m) < 10.0 for s in shots)
