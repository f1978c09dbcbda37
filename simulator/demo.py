"""``make demo``: the seed city live, end to end, in about a minute.

Renders the audio of every sensor of ``simulator/scenarios/city_demo.toml`` (64 rooftop
sensors over 4 square miles; five rounds at a house, a three-round exchange in which shooter
A fires first, four rifle rounds in a park, a firecracker string and a car backfire), feeds
each to a real node (detector, PPS clock, outbox, signed MQTT), runs the fusion server against
an embedded mosquitto, prints the alerts and the score, and writes into ``./out/``: the map
(``map.png``), a forensic report of the exchange (``report-*.html``, with the waveforms the
fusion server asked the nodes for),
the alerts (``alerts.jsonl``), the score (``score.json``), the fusion database, and the nodes'
and the server's log lines (``demo.log``: 64 nodes each say when their outbox starts and when
their PPS comes and goes, which would bury the alerts on the terminal).
The fusion server has a camera registry (``cameras.csv``, written from DEMO_CAMERAS): street
cameras near the house, the exchange and the park, so the alerts list the cameras to pull.

The clip generator below (a few Friedlander blasts over noise) is what the detector tests
and benchmark feed in.
"""
from __future__ import annotations

import csv
import json
import logging
import pathlib
import sys
import time

import numpy as np

NOISE_DBFS = -50.0
BLAST_AMPLITUDE = 0.5
BLAST_POSITIVE_MS = 1.5
ECHO_DELAY_MS = 23.0
ECHO_GAIN = 0.35
TAIL_DECAY_S = 0.15
TAIL_GAIN = 0.04


def friedlander(rate_hz: float, positive_ms: float = BLAST_POSITIVE_MS, amplitude: float = BLAST_AMPLITUDE) -> np.ndarray:
    """Friedlander waveform p(t) = A (1 - t/T) exp(-t/T) (Friedlander 1946), four T long."""
    t = np.arange(int(round(4 * positive_ms * 1e-3 * rate_hz))) / rate_hz
    tau = positive_ms * 1e-3
    return amplitude * (1 - t / tau) * np.exp(-t / tau)


def gunshot_clip(rate_hz: float, seconds: float, shots_s, seed: int = 0, noise_dbfs: float = NOISE_DBFS) -> np.ndarray:
    """float32 clip: white background noise, and at each time in ``shots_s`` a blast, one
    discrete echo ``ECHO_DELAY_MS`` later and a decaying diffuse reverberation tail."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate_hz))
    x = rng.standard_normal(n) * 10 ** (noise_dbfs / 20)
    blast = friedlander(rate_hz)
    tail_n = int(4 * TAIL_DECAY_S * rate_hz)
    tail_env = TAIL_GAIN * np.exp(-np.arange(tail_n) / (TAIL_DECAY_S * rate_hz))
    echo = int(round(ECHO_DELAY_MS * 1e-3 * rate_hz))
    for t_s in shots_s:
        for start, part in (
            (int(round(t_s * rate_hz)), blast),
            (int(round(t_s * rate_hz)) + echo, ECHO_GAIN * blast),
            (int(round(t_s * rate_hz)) + len(blast), tail_env * rng.standard_normal(tail_n)),
        ):
            stop = min(n, start + len(part))
            if start < n:
                x[start:stop] += part[: stop - start]
    return np.clip(x, -1.0, 1.0).astype(np.float32)


DEMO_SCENARIO = "city_demo"
# The demo's camera registry (Cameras CSV, the scenario's local metres): camera, x, y, heading_deg,
# fov_deg, range_m. A pan-tilt camera at the house's corner, a fixed one up the street facing it,
# one at the school looking at the exchange, one at the park's gate, and a depot camera nowhere near.
DEMO_CAMERAS = [("main-st-ptz", 1250.0, 1600.0, "", "", "200"), ("elm-ave", 1100.0, 1700.0, "120", "90", "200"),
                ("school-north", 760.0, 2420.0, "315", "70", "150"), ("park-gate", 2450.0, 900.0, "210", "100", "200"),
                ("bus-depot", 3000.0, 300.0, "0", "90", "150")]
REPORT_MATCH_S = 2.0   # the report's incident: located within this of the true incident's first shot
OUT_DIR = "out"


def _most_shooters(scn, incidents: list[dict]) -> dict | None:
    """The alert of the true incident with the most shooters (the exchange): the one nearest
    in time to its first shot."""
    from simulator.score import truth_incidents

    true = truth_incidents(scn.truth(), scn.array.origin)
    if not true or not incidents:
        return None
    target = max(true, key=lambda t: len({s.shooter for s in t["shots"]}))["shots"][0].t_ns
    near = min(incidents, key=lambda i: abs(i["t_ns"] - target))
    return near if abs(near["t_ns"] - target) <= REPORT_MATCH_S * 1e9 else None


def write_cameras(path: pathlib.Path) -> pathlib.Path:
    """The demo's camera registry as a Cameras CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["camera", "x", "y", "heading_deg", "fov_deg", "range_m"])
        out.writerows(DEMO_CAMERAS)
    return path


def main() -> int:
    from fusion.report import write_report
    from fusion.server.store import Store
    from simulator import live, plot, scenario
    from simulator.arrays import SQ_MI_M2
    from simulator.broker import BrokerError

    t0 = time.monotonic()
    out = pathlib.Path(OUT_DIR).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "demo.log"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(log_path, mode="w")], force=True)
    scn = scenario.load(DEMO_SCENARIO)
    print(f"earwitness demo: {scn.name}: {scn.array.area_m2() / SQ_MI_M2:.1f} sq mi, {len(scn.array)} sensors, "
          f"{len(scn.events)} events over {scn.duration_s:g} s; files in {out}/")
    try:
        result = live.run(scn, out=out, progress=True, evidence=True, cameras=write_cameras(out / "cameras.csv"))
    except BrokerError as exc:
        print(f"earwitness demo: error: {exc}", file=sys.stderr)
        return 2
    print("\nAlerts (last revision of each incident):")
    print(live.format_alerts(result.incidents))
    print("\nScore against the truth:")
    print(live.format_score(result.score))
    (out / "score.json").write_text(json.dumps({k: v for k, v in result.score.items() if not isinstance(v, list)},
                                               indent=1, sort_keys=True) + "\n")
    png = plot.write_map(scn, result.incidents, out / "map.png",
                         title=f"{scn.name}: true and located shots ({len(scn.array)} sensors)")
    written = [png, out / "alerts.jsonl", out / "score.json", out / "cameras.csv", result.database, log_path]
    for old in out.glob("report-*.html"):   # an earlier run's
        old.unlink()
    pick = _most_shooters(scn, result.incidents)
    if pick is not None:
        with Store(str(result.database)) as store:
            written.insert(1, write_report(store, pick["incident"], out / f"report-{pick['incident']}.html"))
    print("\nWrote " + ", ".join(str(p.relative_to(out.parent)) for p in written))
    print(f"earwitness demo: done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
