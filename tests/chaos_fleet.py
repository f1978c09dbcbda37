"""Virtual nodes of a scenario as a process of their own, so a test can SIGKILL them: the real
edge.node.Node per sensor (C detector, PPS clock model, durable outbox, signed MQTT publisher)
reading the sensor's rendered audio at the scenario's pace from a shared origin.

    python tests/chaos_fleet.py SCENARIO --workdir W --broker URL --sensors a,b --origin-s S --origin-ns N [--from-ns T]

``--origin-s`` is a ``time.monotonic()`` reading (one clock for every process of the machine)
paired with the scenario's UTC ``--origin-ns``.  ``--from-ns``: a node started again after a
crash hears only what comes after that UTC (what fell while it was down is lost, as on a real
node).  Each node's folder (keys, outbox) is ``W/nodes/SENSOR`` (:func:`simulator.live.provision`).
Prints one JSON line per node at the end: ``node``, ``pulses_total``, ``published``, ``left``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import threading

from earwitness.units import NS_PER_S
from edge.audio import ArraySource
from edge.node import Node
from simulator import live, render, scenario


def later_segments(segments: list, start_ns: int, rate_hz: int, from_ns: int) -> tuple[int, list]:
    """The segments that begin at or after ``from_ns``, and the UTC of the first one's first sample."""
    base = segments[0][0]
    kept = [(at, frames) for at, frames in segments if start_ns + (at - base) * NS_PER_S // rate_hz >= from_ns]
    if not kept:
        return start_ns, []
    return start_ns + (kept[0][0] - base) * NS_PER_S // rate_hz, kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--sensors", required=True)
    parser.add_argument("--origin-s", required=True, type=float)
    parser.add_argument("--origin-ns", required=True, type=int)
    parser.add_argument("--from-ns", type=int, default=None)
    args = parser.parse_args(argv)
    scn = scenario.load(args.scenario)
    models = scn.sensor_models()
    wanted = args.sensors.split(",")
    indices = [scn.array.ids.index(sid) for sid in wanted]
    plan = render.plan(scn, sensor_indices=indices)
    nodes = []
    for sid, i in zip(wanted, indices):
        start_ns, segments = live.sensor_segments(scn, plan, i)
        if args.from_ns is not None and segments:
            start_ns, segments = later_segments(segments, start_ns, models[i].rate_hz, args.from_ns)
        if not segments:
            continue
        folder = args.workdir / "nodes" / sid
        cfg = live.node_config(sid, folder, args.broker, folder / "node.key")
        source = ArraySource(segments, models[i].rate_hz, start_ns, live.BLOCK_FRAMES, 1.0, (args.origin_s, args.origin_ns))
        nodes.append(Node(cfg, source=source))
    left: dict[str, int] = {}
    threads = [threading.Thread(target=lambda n=n: left.update({n.cfg.node.name: n.run()})) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for node in nodes:
        name = node.cfg.node.name
        print(json.dumps({"node": name, "pulses_total": node.pulses_total, "published": node.publisher.published,
                          "left": left.get(name)}), flush=True)
    return 0 if len(left) == len(nodes) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    sys.exit(main())
