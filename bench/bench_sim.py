"""Simulator: audio rendering speed, and a fleet pulse-level run (1,000 sensors, 100 incidents/min)."""
import tempfile
import time

from simulator import fleet, render, scenario

REAL_TIME = 1.0                  # sensor-seconds of audio per wall second that keeps up with the clock
FLEET_SENSORS = 1000
FLEET_MINUTES = 10
FLEET_PER_MINUTE = 100
SQ_MI_M = 1609.344


def _render_speed(name: str) -> None:
    scn = scenario.load(name)
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as out:
        cpu = time.process_time()
        res = render.render(scn, out, progress=False)
        cpu = time.process_time() - cpu
    rate = res["sensor_seconds"] / res["wall_s"]
    print(f"render {name}: {len(res['sensors'])} sensors, {len(res['clips'])} clips, "
          f"{res['sensor_seconds']:.0f} sensor-s of 48 kHz stereo in {res['wall_s']:.1f} s = "
          f"{rate:.0f} sensor-s per wall second, {res['sensor_seconds'] / cpu:.0f} per CPU second "
          f"(real time = {REAL_TIME:.1f}; WAV writing included)")


def fleet_scenario():
    """1,000 sensors on a grid at 15 per square mile, 100 incidents a minute for 10 minutes."""
    side_m = (FLEET_SENSORS / 15.0) ** 0.5 * SQ_MI_M
    n = FLEET_PER_MINUTE * FLEET_MINUTES
    doc = {
        "name": "fleet-bench", "duration_s": FLEET_MINUTES * 60.0 + 10.0, "seed": 21,
        "array": {"layout": "grid", "width_m": side_m, "height_m": side_m, "density_per_sq_mi": 15.0},
        "environment": {"zone": "residential", "nlos_probability": 0.3},
        "random_events": [
            {"kind": "handgun", "count": n // 2, "rounds": 1, "t1_s": FLEET_MINUTES * 60.0},
            {"kind": "handgun", "count": 3 * n // 10, "rounds": 3, "interval_s": 0.4, "t1_s": FLEET_MINUTES * 60.0},
            {"kind": "rifle", "count": n // 5, "rounds": 6, "rate_rpm": 600.0, "t1_s": FLEET_MINUTES * 60.0},
        ],
    }
    return scenario.from_dict(doc)


def main() -> None:
    _render_speed("city_house")
    t = time.perf_counter()
    scn = fleet_scenario()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    cpu = time.process_time()
    pulses, labels = fleet.pulses(scn)
    gen_s = time.perf_counter() - t
    cpu = time.process_time() - cpu
    sim_s = FLEET_MINUTES * 60.0
    rounds = sum(len(scn.emissions(e)) for e in scn.events)
    first = sum(1 for lab in labels if lab["path"] in ("direct", "nlos"))
    print(f"fleet: {len(scn.array)} sensors, {len(scn.events)} incidents ({rounds} rounds) in "
          f"{FLEET_MINUTES} simulated minutes: {len(pulses):,} pulses ({first:,} first arrivals, "
          f"{len(pulses) / len(scn.events):.0f} per incident) generated in {gen_s:.1f} s "
          f"({cpu:.1f} s CPU; +{build_s:.1f} s scenario) = {len(pulses) / gen_s:,.0f} pulses/s, "
          f"{sim_s / gen_s:.0f}x real time (real time = {REAL_TIME:.1f})")
    print("fleet through broker and fusion (pulses lost, fusion throughput, alert latency): see bench_live")
