"""fusion.locator.classify: real Pittsburgh gunfire comes out as gunfire; the simulator's confounders mostly not."""

import numpy as np
import pytest

from earwitness.units import NS_PER_S
from fusion.locator.attribution import shot_arrivals
from fusion.locator.classify import (
    CLASSES,
    FIREWORKS,
    GUNFIRE,
    UNKNOWN,
    cadence,
    classify,
    crackle,
    height_above_sensors_m,
    mortar_partner,
    source_level_db,
)
from fusion.locator.locate import locate
from fusion.locator.sensors import Sensors
from pittsburgh_pulses import all_pulses, temperature_c
from simulator import fleet, scenario, score

pytestmark = pytest.mark.slow

FIRING_POSITIONS = ("FP1", "FP2", "FP3")
MIN_REAL_GUNFIRE_RATE = 0.95
# Measured on the whole night (600 s, seed 14): 28 of 28 incidents right; the one "false" alert
# is the second of the two celebratory handgun bursts, which the truth counts as one incident
# (so a located second burst, rightly gunfire, is unmatched). No confounder may alert; one
# wrong call of 28 is the margin on the accuracy.
MAX_FIREWORKS_NIGHT_GUNFIRE_ALERTS = 1
MIN_FIREWORKS_NIGHT_ACCURACY = 0.95
# Wind and the height cue: the seed city's wind, the sensors that hear a rifle, their survey error.
WIND_MPS = 3.0
HEARD_WITHIN_M = 1600.0
GPS_ERROR_M = 2.0
BURST_M = 150.0


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
    string = cadence([int(t * NS_PER_S) for t in pops])
    assert string["fast_share"] > 0.2 or string["cv"] > 0.6
    regular = cadence([int(t * NS_PER_S) for t in np.arange(6) * 0.25])
    assert regular["fast_share"] == 0.0 and regular["cv"] < 0.1
    # Unknown everything: no cue speaks, no coin flip: class unknown, p(gunfire) 0.5.
    bare = classify({"shots": [shot]}, [[{"sensor": "s0", "t_ns": 0}]], sensors)
    assert bare["class"] == UNKNOWN and bare["confidence"] == 0.5 and bare["class_cues"] == {}
    # Cues measured but mute (a level at the boundary, gunfire's own spectrum) are no call either.
    at_boundary_db = 100.0 + 137.0 - source_level_db(shot, [{"sensor": "s0", "t_ns": 0, "spl_db": 100.0}], sensors, None)
    mute = classify({"shots": [shot]}, [[{"sensor": "s0", "t_ns": 0, "spl_db": at_boundary_db,
                                           "features": {"high_ratio_db": -24.0}}]], sensors, sensitivity_dbfs_per_pa=None)
    assert mute["class"] == UNKNOWN and set(mute["class_cues"]) == {"level", "spectrum"}
    assert set(CLASSES) == {"gunfire", "fireworks", "other", "unknown"}


def test_quiet_confounders_are_not_gunfire():
    """A slam (120 dB at 1 m) and a firecracker string located among six sensors."""
    sensors = Sensors.from_local({f"s{k}": (300.0 * np.cos(k), 300.0 * np.sin(k), 10.0) for k in range(6)})
    c = 343.0
    incidents = []
    for level, times in ((120.0, [0.0]), (140.0, np.cumsum(np.random.default_rng(2).exponential(0.06, 12) + 0.01))):
        shots, arrivals = [], []
        for t in times:
            shots.append({"t_ns": int(t * NS_PER_S), "x": 5.0, "y": -3.0, "z": 1.5, "sensors": list(sensors.ids)})
            arrivals.append([{"sensor": s, "t_ns": int((t + np.linalg.norm(xyz[:2] - (5.0, -3.0)) / c) * NS_PER_S),
                              "t_unc_ns": 20_000,
                              "spl_db": level - 20 * np.log10(np.linalg.norm(xyz - (5.0, -3.0, 1.5)))}
                             for s, xyz in zip(sensors.ids, sensors.enu_m)])
        incidents.append(classify({"shots": shots, "c_mps": c}, arrivals, sensors))
    slam, string = incidents
    assert slam["class"] != GUNFIRE and slam["confidence"] > 0.9
    assert string["class"] == FIREWORKS


def test_fireworks_night_raises_no_gunfire_alert():
    """The library's whole fireworks night (fleet pulses: levels, no waveforms): the mortars' bursts
    are placed aloft, the firecracker strings crackle, the celebratory gunfire stays gunfire."""
    scn = scenario.load("fireworks_night")
    pulses, _ = fleet.pulses(scn)
    sensors = Sensors.from_local({sid: tuple(xyz) for sid, xyz in zip(scn.array.ids, scn.array.xyz)})
    incidents = _classified(pulses, sensors, scn.atmosphere.temperature_c)
    s = score.score(incidents, scn.truth(), scn.array.area_m2(), scn.duration_s)
    by_kind = s["class_by_kind"]
    assert s["false_alerts"] <= MAX_FIREWORKS_NIGHT_GUNFIRE_ALERTS, by_kind
    assert s["class_accuracy"] >= MIN_FIREWORKS_NIGHT_ACCURACY, by_kind
    assert set(by_kind["handgun"]) == {GUNFIRE} and s["detected"] == s["incidents"], by_kind
    assert by_kind["fireworks"].get(GUNFIRE, 0) + by_kind["firecrackers"].get(GUNFIRE, 0) == 0, by_kind


def _single(sensors, level_db, t_s, xy=(5.0, -3.0), c=343.0):
    shot = {"t_ns": int(t_s * NS_PER_S), "x": xy[0], "y": xy[1], "z": 1.5}
    arrivals = [{"sensor": s, "t_ns": int((t_s + np.linalg.norm(xyz[:2] - xy) / c) * NS_PER_S), "t_unc_ns": 20_000,
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


def test_wind_does_not_lift_a_shot_on_the_ground():
    """The demo's rifle position in the seed city with 3 m/s of wind (exact arrivals, sensors
    placed with 2 m of GPS error): on the ground it is not aerial; a burst 150 m up still is."""
    import dataclasses

    from fusion.locator.classify import AERIAL_HEIGHT_M, height_above_sensors_m

    scn = scenario.load("city_demo")
    (rifle,) = [e for e in scn.events if e.kind == "rifle"]
    assert scn.atmosphere.wind_mps == WIND_MPS
    xyz = np.asarray(scn.array.xyz, dtype=float)
    near = np.linalg.norm(xyz[:, :2] - rifle.pos[:2], axis=1) < HEARD_WITHIN_M
    ids = [sid for sid, n in zip(scn.array.ids, near) if n]
    rng = np.random.default_rng(5)
    surveyed = xyz[near] + rng.normal(0.0, GPS_ERROR_M, (len(ids), 3)) * (1.0, 1.0, 0.0)
    sensors = Sensors.from_local({sid: tuple(p) for sid, p in zip(ids, surveyed)})
    heights = {}
    for up_m in (0.0, BURST_M):
        src = rifle.pos + (0.0, 0.0, up_m)
        for wind in (0.0, WIND_MPS):
            travel_s, _ = dataclasses.replace(scn.atmosphere, wind_mps=wind).travel_time_s(src, xyz[near])
            arrivals = [{"sensor": sid, "t_ns": int(round(t * NS_PER_S)), "t_unc_ns": 7_000} for sid, t in zip(ids, travel_s)]
            shot = {"t_ns": 0, "x": float(src[0]), "y": float(src[1]), "z": float(src[2])}
            heights[up_m, wind] = height_above_sensors_m(shot, arrivals, sensors, scn.atmosphere.c_mps)
    for wind in (0.0, WIND_MPS):
        h, sigma = heights[0.0, wind]
        assert not (h >= AERIAL_HEIGHT_M and h >= sigma), (wind, h, sigma)
        h, sigma = heights[BURST_M, wind]
        assert h >= AERIAL_HEIGHT_M and h >= sigma, (wind, h, sigma)


def _wind_arrivals(sensors, src, wind, c=343.0, t0_s=0.0, seed=3, pick_s=20e-6):
    """Arrivals at the sensors of a source at ``src`` (x, y, z) in a wind (east, north): the
    effective sound speed c + w . u along each path (as simulator.propagation)."""
    rng = np.random.default_rng(seed)
    out = []
    for name, xyz in zip(sensors.ids, sensors.enu_m):
        d = xyz - np.asarray(src)
        r = np.linalg.norm(d)
        t = t0_s + r / (c + d[:2] @ np.asarray(wind) / r) + rng.normal(0.0, pick_s)
        out.append({"sensor": name, "t_ns": int(t * NS_PER_S), "t_unc_ns": int(pick_s * NS_PER_S)})
    return out


def test_height_profile_finds_a_burst_aloft_in_the_wind():
    """A burst 120 m above a 4 x 4 rooftop grid (400 m apart) in a 3 m/s wind is aloft, by many
    sigmas; a shot on the ground in the same wind is not (the plane's saddle does not trap it)."""
    sensors = Sensors.from_local({f"s{i}{j}": (400.0 * i, 400.0 * j, 10.0) for i in range(4) for j in range(4)})
    wind = (2.6, 1.5)
    for z_m, aerial in ((130.0, True), (1.5, False)):
        src = (700.0, 500.0, z_m)
        # The shot as a 2D locator would give it: the right place, on the sensors' plane.
        shot = {"t_ns": 0, "x": src[0], "y": src[1], "z": 10.0}
        h, sigma = height_above_sensors_m(shot, _wind_arrivals(sensors, src, wind), sensors, 343.0)
        if aerial:
            assert h == pytest.approx(z_m - 10.0, abs=15.0) and h > 3.0 * sigma
        else:
            assert h <= 10.0
    # Six sensors cannot fit a height, a wind and a speed of sound with one to spare.
    few = Sensors.from_local({f"s{k}": (400.0 * np.cos(k), 400.0 * np.sin(k), 10.0) for k in range(6)})
    assert height_above_sensors_m({"t_ns": 0, "x": 0.0, "y": 0.0}, _wind_arrivals(few, (0.0, 0.0, 100.0), wind),
                                  few, 343.0) is None


def test_crackle_counts_the_pops_both_loudest_sensors_hear_not_echoes():
    """A string's pops reach both nearest sensors at the same TDOA; an echo heard by one does not count."""
    sensors = Sensors.from_local({"a": (100.0, 0.0, 10.0), "b": (-250.0, 0.0, 10.0), "c": (0.0, 600.0, 10.0)})
    c = 343.0
    d = {n: float(np.linalg.norm(xyz[:2])) for n, xyz in zip(sensors.ids, sensors.enu_m)}
    rng = np.random.default_rng(5)
    pops_s = np.cumsum(rng.exponential(0.06, 30) + 0.01)
    near = []
    for t in pops_s:
        for n, level in (("a", 100.0), ("b", 90.0), ("c", 80.0)):
            near.append({"sensor": n, "t_ns": int((t + d[n] / c) * NS_PER_S), "t_unc_ns": 20_000, "spl_db": level})
    # Echoes at the loudest sensor only, 30-300 ms after its pops.
    echoes = [{"sensor": "a", "t_ns": int((t + d["a"] / c + rng.uniform(0.03, 0.3)) * NS_PER_S), "t_unc_ns": 20_000,
               "spl_db": 95.0} for t in pops_s[::3]]
    located = pops_s[[4, 17]]   # the locator placed two of the pops
    shots = [{"t_ns": int(t * NS_PER_S), "x": 0.0, "y": 0.0} for t in located]
    arrivals = [[p for p in near if abs(p["t_ns"] - int((t + d[p["sensor"]] / c) * NS_PER_S)) < 1000] for t in located]
    pops = crackle(shots, arrivals, near + echoes)
    # Every pop from 2 s before the first located one to 2 s after the last (the crackle's span), no echo.
    assert pops["shots"] == int(np.sum((pops_s >= located[0] - 2.0) & (pops_s <= located[1] + 2.0)))
    incident = classify({"shots": shots, "c_mps": c}, arrivals, sensors, pulses=near + echoes)
    assert incident["class"] == FIREWORKS and incident["class_cues"]["cadence"]["log_odds"] < 0
    # A shooter's five rounds 0.5 s apart, with echoes at the loudest sensor: five pops, regular.
    rounds = np.arange(5) * 0.5
    gun = [{"sensor": n, "t_ns": int((t + d[n] / c) * NS_PER_S), "t_unc_ns": 20_000, "spl_db": lv}
           for t in rounds for n, lv in (("a", 110.0), ("b", 100.0), ("c", 90.0))]
    gun += [{"sensor": "a", "t_ns": int((t + d["a"] / c + lag) * NS_PER_S), "t_unc_ns": 20_000, "spl_db": 105.0}
            for t in rounds for lag in (0.04, 0.09)]
    shots = [{"t_ns": int(t * NS_PER_S), "x": 0.0, "y": 0.0} for t in rounds]
    arrivals = [[p for p in gun if p["t_ns"] == int((t + d[p["sensor"]] / c) * NS_PER_S)] for t in rounds]
    pops = crackle(shots, arrivals, gun)
    assert pops["shots"] == 5 and pops["cv"] < 0.05
    assert classify({"shots": shots, "c_mps": c}, arrivals, sensors, pulses=gun)["class"] == GUNFIRE


def test_crackle_takes_pops_the_second_sensor_missed_if_two_others_confirm_them():
    """The second loudest sensor's detector merged most pops of a string: the two next loudest
    confirm them at their TDOAs; an echo at the loudest that fits one of them alone does not count."""
    names = {"a": (100.0, 0.0, 10.0), "b": (-250.0, 0.0, 10.0), "c": (0.0, 600.0, 10.0), "d": (0.0, -700.0, 10.0)}
    c = 343.0
    d = {n: float(np.hypot(*xyz[:2])) for n, xyz in names.items()}
    levels = {"a": 100.0, "b": 90.0, "c": 80.0, "d": 78.0}
    rng = np.random.default_rng(8)
    pops_s = np.cumsum(rng.exponential(0.06, 30) + 0.01)
    heard = [{"sensor": n, "t_ns": int((t + d[n] / c) * NS_PER_S), "t_unc_ns": 20_000, "spl_db": levels[n]}
             for k, t in enumerate(pops_s) for n in names if n != "b" or k % 5 == 0]
    located = pops_s[[0, 25]]
    shots = [{"t_ns": int(t * NS_PER_S), "x": 0.0, "y": 0.0} for t in located]
    arrivals = [[p for p in heard if abs(p["t_ns"] - int((t + d[p["sensor"]] / c) * NS_PER_S)) < 1000] for t in located]
    # Echoes: at the loudest, each with a pulse at c that fits its TDOA (and none at d).
    echoes = []
    for t in pops_s[2::4] + 0.021:
        echoes += [{"sensor": n, "t_ns": int((t + d[n] / c) * NS_PER_S), "t_unc_ns": 20_000, "spl_db": 70.0} for n in "ac"]
    pops = crackle(shots, arrivals, heard + echoes)
    in_span = (pops_s >= located[0] - 2.0) & (pops_s <= located[1] + 2.0)
    assert pops["shots"] == int(np.sum(in_span))
    # The second loudest alone (as before) finds only the pops it heard.
    alone = crackle(shots, [[p for p in a if p["sensor"] in "ab"] for a in arrivals], heard)
    assert alone["shots"] == int(np.sum(in_span[::5]))
