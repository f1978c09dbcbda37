"""fusion.tracking.incidents on a real Pittsburgh test: revisions as pulses arrive, final when the window closes."""
from __future__ import annotations

import math

import nacl.signing
import numpy as np
import pytest

from earwitness.units import NS_PER_S
from fusion.server.registry import load_registry, registry_from_nodes
from fusion.tracking.incidents import IncidentTracker
from fusion_replay import stream
from fusion_site import build_site

pytestmark = pytest.mark.slow



def test_revisions_then_final_when_the_window_closes(pittsburgh, tmp_path):
    site = build_site(pittsburgh[0], tmp_path)
    tracker = IncidentTracker(load_registry(site.registry_path).sensors, "pgh", temperature_c=site.temperature_c)
    pulses = [dict(p, id=i) for i, p in enumerate(site.pulses, 1)]
    received_ns, updates = 0, []
    for k in range(0, len(pulses), 10):            # ten pulses per batch, one batch per second
        received_ns = k // 10 * NS_PER_S
        updates += tracker.add(pulses[k:k + 10], received_ns)
        assert all(u.status != "final" for u in updates)
    statuses = [u.status for u in updates]
    assert statuses[0] == "preliminary" and set(statuses[1:]) <= {"revised"}
    assert len({u.incident["incident"] for u in updates}) == 1
    assert tracker.add(pulses[:5], received_ns) == []          # the same stored pulses again change nothing
    assert tracker.expire(received_ns + tracker.window_ns) == []     # the window is still open
    final, = tracker.expire(received_ns + tracker.window_ns + 1)
    assert final.status == "final" and final.incident["incident"] == updates[0].incident["incident"]
    assert final.incident["rounds"] == site.rounds and tracker.open_windows == 0
    x, y, _ = site.survey_xyz
    assert math.hypot(final.incident["x"] - x, final.incident["y"] - y) <= 25.0
    assert len(final.used) >= 4 * site.rounds and set(final.used).isdisjoint(final.rejected)
    assert final.meta["temperature_c"] == site.temperature_c and final.meta["sensors"]


def test_lone_pulses_open_windows_that_close_without_an_incident(pittsburgh, tmp_path):
    site = build_site(pittsburgh[0], tmp_path)
    tracker = IncidentTracker(load_registry(site.registry_path).sensors, "pgh", temperature_c=site.temperature_c)
    base, far = site.pulses[0]["t_ns"], 10 * tracker.window_ns
    sensor = site.pulses[0]["sensor"]
    for k in range(3):
        assert tracker.add([{"id": k, "sensor": sensor, "t_ns": base + k * far}], 0) == []
    assert tracker.open_windows == 3      # each its own anchor: no sound crosses the array that slowly
    assert tracker.expire(tracker.window_ns) == [] and tracker.open_windows == 3
    assert tracker.expire(tracker.window_ns + 1) == [] and tracker.open_windows == 0


CITY_SITES = 20            # neighbourhoods 15 km apart, each with its own ring of sensors
SITE_SPACING_M = 15_000.0
RING_SENSORS, RING_RADIUS_M = 6, 300.0
INCIDENTS, INCIDENT_EVERY_NS = 60, 600_000_000     # 100 incidents a minute across the city
C_M_S = 340.0


def test_overlapping_incidents_far_apart_stay_separate():
    """A busy city: an incident every 0.6 s, each in another neighbourhood; each located on its own."""
    rng = np.random.default_rng(7)
    centres = [(SITE_SPACING_M * (k % 5), SITE_SPACING_M * (k // 5)) for k in range(CITY_SITES)]
    nodes, rings = [], []
    for k, (cx, cy) in enumerate(centres):
        ring = []
        for j in range(RING_SENSORS):
            a = 2 * math.pi * j / RING_SENSORS
            name = f"s{k:02d}-{j}"
            key = nacl.signing.SigningKey(bytes([k, j]) * 16).verify_key
            nodes.append({"id": name, "public_key": bytes(key).hex(),
                          "x": cx + RING_RADIUS_M * math.cos(a), "y": cy + RING_RADIUS_M * math.sin(a), "z": 0.0})
            ring.append((name, nodes[-1]["x"], nodes[-1]["y"]))
        rings.append(ring)
    registry = registry_from_nodes(nodes)
    tracker = IncidentTracker(registry.sensors, "city", temperature_c=15.0)
    pulses, truth = [], {}
    t0 = 1_700_000_000 * NS_PER_S
    for n in range(INCIDENTS):
        k = n % CITY_SITES
        sx, sy = np.array(centres[k]) + rng.uniform(-150, 150, 2)
        truth[n] = (sx, sy)
        t_shot = t0 + n * INCIDENT_EVERY_NS
        for name, x, y in rings[k]:
            pulses.append({"id": len(pulses) + 1, "sensor": name, "incident": n,
                           "t_ns": t_shot + round(math.hypot(x - sx, y - sy) / C_M_S * NS_PER_S), "t_unc_ns": 10**5})
    pulses.sort(key=lambda p: p["t_ns"])
    updates = []
    for start in range(0, len(pulses), 50):
        updates += tracker.add(pulses[start:start + 50], received_ns=0)
    assert tracker.open_windows == INCIDENTS
    finals = tracker.flush()
    assert len(finals) == INCIDENTS == sum(u.status == "preliminary" for u in updates)
    incident_of = {p["id"]: p["incident"] for p in pulses}
    for final in finals:
        n, = {incident_of[i] for i in final.used}
        assert math.hypot(final.incident["x"] - truth[n][0], final.incident["y"] - truth[n][1]) <= 5.0


def _ring(prefix: str, key_seed: int) -> tuple[list[dict], list[tuple[str, float, float]]]:
    """RING_SENSORS nodes on a circle of RING_RADIUS_M about the origin: registry entries and (name, x, y)."""
    nodes, ring = [], []
    for j in range(RING_SENSORS):
        a = 2 * math.pi * j / RING_SENSORS
        key = nacl.signing.SigningKey(bytes([key_seed, j]) * 16).verify_key
        nodes.append({"id": f"{prefix}{j}", "public_key": bytes(key).hex(),
                      "x": RING_RADIUS_M * math.cos(a), "y": RING_RADIUS_M * math.sin(a), "z": 0.0})
        ring.append((nodes[-1]["id"], nodes[-1]["x"], nodes[-1]["y"]))
    return nodes, ring


CHAIN_INCIDENTS = 40


def test_shots_chained_in_one_neighbourhood_are_all_located():
    """A shot every 0.6 s at one ring of sensors, each somewhere else within 150 m: rounds of
    one incident to the tracker (one window, widened shot by shot), every one located."""
    rng = np.random.default_rng(11)
    nodes, ring = _ring("r", 99)
    tracker = IncidentTracker(registry_from_nodes(nodes).sensors, "chain", temperature_c=15.0)
    pulses, truth = [], {}
    t0 = 1_700_000_000 * NS_PER_S
    for n in range(CHAIN_INCIDENTS):
        sx, sy = rng.uniform(-150, 150, 2)
        truth[n] = (sx, sy)
        for name, x, y in ring:
            pulses.append({"id": len(pulses) + 1, "sensor": name, "incident": n, "t_unc_ns": 10**5,
                           "t_ns": t0 + n * INCIDENT_EVERY_NS + round(math.hypot(x - sx, y - sy) / C_M_S * NS_PER_S)})
    pulses.sort(key=lambda p: p["t_ns"])
    for start in range(0, len(pulses), 50):
        tracker.add(pulses[start:start + 50], received_ns=0)
    located, used = set(), []
    for final in tracker.flush():
        used += final.used
        for shot in final.incident["shots"]:
            n = round((shot["t_ns"] - t0) / INCIDENT_EVERY_NS)
            if n in truth and math.hypot(shot["x"] - truth[n][0], shot["y"] - truth[n][1]) <= 5.0:
                located.add(n)
    assert located == set(truth)
    assert len(used) == len(set(used))    # no pulse in two incidents


def test_a_shot_goes_out_once_a_spare_sensor_confirms_it():
    """Four sensors fix a shot but none is spare to refute it (a busy city's echoes and stray
    pulses place ghosts that way): it is held back, and published when a fifth hears it."""
    nodes, ring = _ring("q", 77)
    tracker = IncidentTracker(registry_from_nodes(nodes).sensors, "spare", temperature_c=15.0)
    assert tracker.alert_sensors == tracker.min_sensors + 1 == 5
    t0, src = 1_700_000_000 * NS_PER_S, (40.0, -70.0)
    pulses = sorted(({"id": j, "sensor": name, "t_unc_ns": 10**5,
                      "t_ns": t0 + round(math.hypot(x - src[0], y - src[1]) / C_M_S * NS_PER_S)}
                     for j, (name, x, y) in enumerate(ring)), key=lambda p: p["t_ns"])
    assert tracker.add(pulses[:4], received_ns=0) == []
    assert tracker.open_windows == 1 and tracker.open_incidents()   # located, held back
    first, = tracker.add(pulses[4:5], received_ns=0)
    assert first.status == "preliminary" and len(first.incident["sensors"]) == 5
    assert math.hypot(first.incident["x"] - src[0], first.incident["y"] - src[1]) <= 5.0
    # Heard by four alone, it never goes out, and its window closes.
    lone = IncidentTracker(registry_from_nodes(nodes).sensors, "spare", temperature_c=15.0)
    assert lone.add(pulses[:4], received_ns=0) == [] and lone.flush() == [] and lone.open_windows == 0


def test_the_classifier_hears_the_window_pulses():
    """A firecracker string over a ring of sensors: the tracker hands the classifier the window's
    pulses, whose crackle (the pops both loudest sensors hear, located or not) says fireworks."""
    rng = np.random.default_rng(11)
    nodes = []
    for j in range(RING_SENSORS):
        a = 2 * math.pi * j / RING_SENSORS
        key = nacl.signing.SigningKey(bytes([99, j]) * 16).verify_key
        nodes.append({"id": f"r{j}", "public_key": bytes(key).hex(),
                      "x": RING_RADIUS_M * math.cos(a), "y": RING_RADIUS_M * math.sin(a), "z": 10.0})
    tracker = IncidentTracker(registry_from_nodes(nodes).sensors, "fw", temperature_c=15.0)
    src_xy, level_db = (120.0, -40.0), 145.0
    pops_s = np.cumsum(rng.exponential(0.06, 30) + 0.01)
    t0 = 1_700_000_000 * NS_PER_S
    pulses = []
    for t in pops_s:
        for node in nodes:
            r_m = math.hypot(node["x"] - src_xy[0], node["y"] - src_xy[1])
            pulses.append({"id": len(pulses) + 1, "sensor": node["id"], "t_unc_ns": 20_000,
                           "t_ns": t0 + round((t + r_m / C_M_S) * NS_PER_S),
                           "spl_db": round(level_db - 20 * math.log10(r_m) + rng.normal(0.0, 2.0), 1)})
    pulses.sort(key=lambda p: p["t_ns"])
    tracker.add(pulses, received_ns=0)
    finals = tracker.flush()
    assert finals and all(f.incident["class"] == "fireworks" for f in finals)
    assert any("crackle" in f.incident["class_cues"]["cadence"] for f in finals)


# A city at the fleet benchmark's scale (1,024 sensors at 15 per square mile, 100 incidents a
# minute, fleet-model pulses with NLOS, echoes and false pulses), its first seconds.
CITY_SENSORS, CITY_PER_MINUTE, CITY_SECONDS = 1024, 100, 10.0
CITY_RANGE_M = 2500.0        # as the benchmark configures the server
SQ_MI_M = 1609.344
SOUND_CLEARS_S = 10.0        # the last shots are heard across the array within this
# Measured: 15 of 15 incidents, 37 of 38 shots, no false alert; the bounds leave a shot and an alert of margin.
MIN_CITY_SHOT_SHARE = 0.95
MAX_CITY_FALSE_ALERTS = 2


def test_city_scale_stream_locates_each_incident_once(tmp_path):
    """Fleet pulses of a thousand-sensor city fed as the server receives them: every incident
    located, each once (its window of neighbouring sensors, not a chain of the city's pulses)."""
    from simulator import fleet, live, scenario, score

    side_m = (CITY_SENSORS / 15.0) ** 0.5 * SQ_MI_M
    n = int(CITY_PER_MINUTE * CITY_SECONDS / 60.0)
    scn = scenario.from_dict({
        "name": "city-scale", "duration_s": CITY_SECONDS + SOUND_CLEARS_S, "seed": 21,
        "array": {"layout": "grid", "width_m": side_m, "height_m": side_m, "density_per_sq_mi": 15.0},
        "environment": {"zone": "residential", "nlos_probability": 0.3},
        "random_events": [
            {"kind": "handgun", "count": n // 2, "rounds": 1, "t1_s": CITY_SECONDS},
            {"kind": "handgun", "count": 3 * n // 10, "rounds": 3, "interval_s": 0.4, "t1_s": CITY_SECONDS},
            {"kind": "rifle", "count": n // 5, "rounds": 6, "rate_rpm": 600.0, "t1_s": CITY_SECONDS}]})
    pulses, _ = fleet.pulses(scn)
    pulses = [dict(p, id=i) for i, p in enumerate(pulses)]
    _, registry_path = live.provision(scn, tmp_path)
    tracker = IncidentTracker(load_registry(registry_path).sensors, "city", temperature_c=scn.atmosphere.temperature_c,
                              max_range_m=CITY_RANGE_M)
    s = score.score(stream(tracker, pulses, scn.start_ns), scn.truth(), scn.array.area_m2(), scn.duration_s)
    assert s["detection_rate"] == 1.0
    assert s["shots_located"] >= MIN_CITY_SHOT_SHARE * s["shots"]
    assert s["false_alerts"] <= MAX_CITY_FALSE_ALERTS
    assert tracker.open_windows == 0


# The library's fireworks night through the live tracker (fleet pulses, a deterministic run).
# Measured: 11 gunfire alerts (one is the second celebratory handgun burst, which the truth
# counts as one incident), class accuracy 0.80; before the classifier read the pulses around a
# window and the incidents before it: 18 and 0.71. The bounds leave two alerts and a few calls.
MAX_FIREWORKS_STREAM_ALERTS = 13
MIN_FIREWORKS_STREAM_ACCURACY = 0.75
# The whole night through the live tracker takes 170-500 s here (2 cores, with other tests beside it):
# past the suite's 600 s hang guard under load. Its speed is bench_fusion's; this guards only a hang.
FIREWORKS_STREAM_TIMEOUT_S = 1200


@pytest.mark.timeout(FIREWORKS_STREAM_TIMEOUT_S)
def test_fireworks_night_stream_classes_bursts_and_strings_not_gunfire(tmp_path):
    """Each window of the live tracker holds only its neighbourhood's sensors: the classifier
    still reads the burst's arrivals across the city (its height), the string's pops before and
    after the located ones (its crackle) and the launch located before (the mortar pair)."""
    from simulator import fleet, live, scenario, score

    scn = scenario.load("fireworks_night")
    pulses, _ = fleet.pulses(scn)
    pulses = [dict(p, id=i) for i, p in enumerate(pulses)]
    _, registry_path = live.provision(scn, tmp_path)
    tracker = IncidentTracker(load_registry(registry_path).sensors, "night", temperature_c=scn.atmosphere.temperature_c)
    s = score.score(stream(tracker, pulses, scn.start_ns), scn.truth(), scn.array.area_m2(), scn.duration_s)
    by_kind = s["class_by_kind"]
    assert s["false_alerts"] <= MAX_FIREWORKS_STREAM_ALERTS, by_kind
    assert s["class_accuracy"] >= MIN_FIREWORKS_STREAM_ACCURACY, by_kind
    assert set(by_kind["handgun"]) == {"gunfire"}, by_kind
