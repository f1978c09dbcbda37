"""fusion.classify: real Pittsburgh gunfire comes out as gunfire; the simulator's confounders mostly not."""
import pathlib

import numpy as np
import pytest

from fusion.attribution import shot_arrivals
from fusion.classify import CLASSES, FIREWORKS, GUNFIRE, cadence, classify, mortar_partner, source_level_db
from fusion.locate import locate
from fusion.sensors import Sensors
from pittsburgh_pulses import all_pulses, temperature_c
from simulator import fleet, scenario, score

NS = 1_000_000_000
FIRING_POSITIONS = ("FP1", "FP2", "FP3")
MIN_REAL_GUNFIRE_RATE = 0.95
# Measured on the first 200 s (seed 14): 1 false gunfire alert, 8 of 9 incidents right (0.89);
# the bounds leave one incident of margin.
MAX_FIREWORKS_NIGHT_GUNFIRE_ALERTS = 2
MIN_FIREWORKS_NIGHT_ACCURACY = 0.75
FIREWORKS_NIGHT_S = 200.0


def _classified(pulses, sensors, temperature):
    pulses = [dict(p, id=p.get("id", i)) for i, p in enumerate(pulses)]
    out = []
    for inc in locate(pulses, sensors, temperature):
        # The incidents before it, as a live caller would keep them, for the launch-and-burst cue.
        inc.update(classify(inc, shot_arrivals(inc, pulses, sensors, inc["c_mps"]), sensors, recent=out, pulses=pulses))
        out.append(inc)
    return out


def test_real_pittsburgh_gunfire_is_classed_gunfire(pittsburgh):
    """Every FP1-FP3 test (commercial pulse reports: calibrated SPL, ms times) through locate and classify."""
    tests = [t for t in pittsburgh if t.parent.name in FIRING_POSITIONS]
    classes, levels = [], []
    for test in tests:
        positions, pulses = all_pulses(test)
        for inc in _classified(pulses, Sensors.from_local(positions), temperature_c(test)):
            classes.append(inc["class"])
            levels.append(inc["class_cues"]["level"]["source_db"])
            assert 0.0 <= inc["confidence"] <= 1.0
    rate = np.mean([c == GUNFIRE for c in classes])
    assert len(classes) >= len(tests) and rate >= MIN_REAL_GUNFIRE_RATE, (rate, classes)
    # The back-propagated level of real muzzle blasts lies where the literature puts it.
    assert 138.0 <= np.median(levels) <= 165.0


def test_cues_on_their_own():
    sensors = Sensors.from_local({f"s{k}": (400.0 * np.cos(k), 400.0 * np.sin(k), 10.0) for k in range(6)})
    shot = {"t_ns": 0, "x": 0.0, "y": 0.0, "z": 1.5}
    # 100 dB SPL received at 400 m is about 154 dB at 1 m (spreading 52 dB, absorption 2 dB).
    arrivals = [{"sensor": f"s{k}", "t_ns": 0, "spl_db": 100.0} for k in range(6)]
    assert source_level_db(shot, arrivals, sensors, None) == pytest.approx(154.0, abs=0.5)
    # A firecracker string: many pops, irregular, often faster than any firearm.
    rng = np.random.default_rng(1)
    pops = np.cumsum(rng.exponential(0.06, 20) + 0.01)
    string = cadence([int(t * NS) for t in pops])
    assert string["fast_share"] > 0.2 or string["cv"] > 0.6
    regular = cadence([int(t * NS) for t in np.arange(6) * 0.25])
    assert regular["fast_share"] == 0.0 and regular["cv"] < 0.1
    # Unknown everything: a tie, called gunfire.
    bare = classify({"shots": [shot]}, [[{"sensor": "s0", "t_ns": 0}]], sensors)
    assert bare["class"] == GUNFIRE and bare["confidence"] == 0.5 and bare["class_cues"] == {}
    assert set(CLASSES) == {"gunfire", "fireworks", "other"}


def test_quiet_confounders_are_not_gunfire():
    """A slam (120 dB at 1 m) and a firecracker string located among six sensors."""
    sensors = Sensors.from_local({f"s{k}": (300.0 * np.cos(k), 300.0 * np.sin(k), 10.0) for k in range(6)})
    c = 343.0
    incidents = []
    for level, times in ((120.0, [0.0]), (140.0, np.cumsum(np.random.default_rng(2).exponential(0.06, 12) + 0.01))):
        shots, arrivals = [], []
        for t in times:
            shots.append({"t_ns": int(t * NS), "x": 5.0, "y": -3.0, "z": 1.5, "sensors": list(sensors.ids)})
            arrivals.append([{"sensor": s, "t_ns": int((t + np.linalg.norm(xyz[:2] - (5.0, -3.0)) / c) * NS),
                              "t_unc_ns": 20_000,
                              "spl_db": level - 20 * np.log10(np.linalg.norm(xyz - (5.0, -3.0, 1.5)))}
                             for s, xyz in zip(sensors.ids, sensors.enu_m)])
        incidents.append(classify({"shots": shots, "c_mps": c}, arrivals, sensors))
    slam, string = incidents
    assert slam["class"] != GUNFIRE and slam["confidence"] > 0.9
    assert string["class"] == FIREWORKS


def test_fireworks_night_raises_few_gunfire_alerts():
    """The first minutes of the library's fireworks night (fleet pulses: levels, no waveforms)."""
    scn = scenario.load("fireworks_night")
    scn.events = [e for e in scn.events if e.t_s < FIREWORKS_NIGHT_S]
    scn.duration_s = FIREWORKS_NIGHT_S
    pulses, _ = fleet.pulses(scn)
    sensors = Sensors.from_local({sid: tuple(xyz) for sid, xyz in zip(scn.array.ids, scn.array.xyz)})
    incidents = _classified(pulses, sensors, scn.atmosphere.temperature_c)
    s = score.score(incidents, scn.truth(), scn.array.area_m2(), scn.duration_s)
    assert s["false_alerts"] <= MAX_FIREWORKS_NIGHT_GUNFIRE_ALERTS, s["class_by_kind"]
    assert s["class_accuracy"] >= MIN_FIREWORKS_NIGHT_ACCURACY, s["class_by_kind"]


def _single(sensors, level_db, t_s, xy=(5.0, -3.0), c=343.0):
    shot = {"t_ns": int(t_s * NS), "x": xy[0], "y": xy[1], "z": 1.5}
    arrivals = [{"sensor": s, "t_ns": int((t_s + np.linalg.norm(xyz[:2] - xy) / c) * NS), "t_unc_ns": 20_000,
                 "spl_db": level_db - 20 * np.log10(np.linalg.norm(xyz - (*xy, 1.5)))}
                for s, xyz in zip(sensors.ids, sensors.enu_m)]
    return {"shots": [shot], "c_mps": c}, [arrivals]


def test_mortar_launch_then_burst_is_fireworks():
    """A quiet thump, then 3 s later a loud impulse 40 m away: a mortar, not a gunshot; a loud
    impulse alone is gunfire but not a confident call (bursts are as loud as guns)."""
    sensors = Sensors.from_local({f"s{k}": (300.0 * np.cos(k), 300.0 * np.sin(k), 10.0) for k in range(6)})
    launch, launch_arr = _single(sensors, 130.0, 0.0, xy=(45.0, -3.0))
    launch.update(classify(launch, launch_arr, sensors))
    burst, burst_arr = _single(sensors, 155.0, 3.0)
    alone = classify(burst, burst_arr, sensors)
    assert alone["class"] == GUNFIRE and 0.5 < alone["confidence"] < 0.9
    paired = classify(burst, burst_arr, sensors, recent=[launch])
    assert paired["class"] == FIREWORKS and paired["class_cues"]["mortar"]["lag_s"] == pytest.approx(3.0)
    # Two loud shots 3 s apart (a shooter pausing) are not a launch and its burst.
    first, first_arr = _single(sensors, 155.0, 0.0)
    first.update(classify(first, first_arr, sensors))
    assert mortar_partner(burst["shots"], [first], sensors) is None
    # Nor is a quiet thump too far away or too long before.
    far, far_arr = _single(sensors, 130.0, 0.0, xy=(200.0, -3.0))
    far.update(classify(far, far_arr, sensors))
    late, late_arr = _single(sensors, 155.0, 9.0)
    assert mortar_partner(burst["shots"], [far], sensors) is None
    assert mortar_partner(late["shots"], [launch], sensors) is None
