"""``earwitness sim``: run a scenario: render per-sensor audio, or simulate the pulses of a fleet."""
from __future__ import annotations

import pathlib
import sys

from earwitness.cli import UserError


def add_arguments(parser) -> None:
    from simulator.scenario import library_names

    parser.add_argument("scenario", metavar="SCENARIO", nargs="?",
                        help=f"scenario TOML file, or a library name ({', '.join(library_names())})")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--render", metavar="OUTDIR",
                      help="write per-sensor WAV clips (48 kHz, channel 0 mic, channel 1 PPS), clips.csv, sensors.csv, "
                           "truth.jsonl")
    what.add_argument("--pulses", metavar="OUT.jsonl",
                      help="fleet mode: write the pulses every sensor would report (no audio); "
                           "also OUT.sensors.csv, OUT.truth.jsonl and OUT.labels.jsonl")
    what.add_argument("--score", metavar="INCIDENTS.jsonl",
                      help="score located incidents (e.g. from earwitness locate) against the scenario's truth")
    what.add_argument("--live", action="store_true",
                      help="the default: one real node per sensor fed its rendered audio, a broker, the fusion "
                           "server; prints the alerts and a score table")
    what.add_argument("--list", action="store_true", help="list the library's scenarios and exit")
    parser.add_argument("--sensors", metavar="ID,ID", help="render only these sensors")
    parser.add_argument("--time", metavar="T0:T1", help="only events starting between T0 and T1 s after the start")
    parser.add_argument("--continuous", action="store_true", help="one file per sensor for the whole scenario")
    parser.add_argument("--format", choices=("int16", "float"), default="int16", help="WAV sample format")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    live = parser.add_argument_group("live run")
    live.add_argument("--broker", metavar="URL", help="use this broker (mqtt://host:port) instead of an embedded mosquitto")
    pace = live.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true",
                      help="feed the audio at its recorded pace (default: as fast as possible)")
    pace.add_argument("--speed", type=float, metavar="X", help="feed the audio at X times real time")
    live.add_argument("--out", metavar="DIR", help="keep the run's files here (fusion.db, alerts.jsonl, nodes)")


def _time_range(text):
    if text is None:
        return None
    try:
        a, b = (float(v) for v in text.split(":"))
    except ValueError:
        raise UserError(f"--time must be T0:T1 in seconds, got {text!r}") from None
    if b < a:
        raise UserError(f"--time {text}: T1 is before T0")
    return a, b


def run(args) -> int:
    from simulator import fleet, render, scenario
    from simulator.render import Progress, write_jsonl

    if args.list:
        for name in scenario.library_names():
            scn = scenario.load(name)
            print(f"{name}: {len(scn.array)} sensors, {len(scn.events)} events, {scn.duration_s:g} s")
        return 0
    if args.scenario is None:
        raise UserError("a SCENARIO is needed (--list shows the library)")
    try:
        scn = scenario.load(args.scenario)
    except scenario.ScenarioError as exc:
        raise UserError(str(exc)) from None
    t_range = _time_range(args.time)
    if args.render:
        ids = args.sensors.split(",") if args.sensors else None
        try:
            res = render.render(scn, args.render, ids, args.continuous, t_range, args.format, not args.quiet)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        rate = res["sensor_seconds"] / max(res["wall_s"], 1e-9)
        print(f"rendered {len(res['clips'])} clips from {len(res['sensors'])} sensors into {res['outdir']}: "
              f"{res['sensor_seconds']:.0f} sensor-s of audio in {res['wall_s']:.1f} s ({rate:.0f}x real time)",
              file=sys.stderr)
        return 0
    if args.pulses:
        if args.sensors or args.continuous or t_range:
            raise UserError("--sensors, --time and --continuous apply to --render only")
        bar = None if args.quiet else Progress("fleet", len(scn.events))

        def report(done, total):
            bar.total = total
            bar.update(done, "source groups")

        pulses, labels = fleet.pulses(scn, progress=report if bar else None)
        out = pathlib.Path(args.pulses)
        out.parent.mkdir(parents=True, exist_ok=True)
        stem = out.with_suffix("") if out.suffix == ".jsonl" else out
        write_jsonl(out, pulses)
        write_jsonl(f"{stem}.labels.jsonl", labels)
        write_jsonl(f"{stem}.truth.jsonl", scn.truth())
        models = scn.sensor_models()
        scn.array.write_csv(f"{stem}.sensors.csv", scn.array.xyz + [m.gps_offset_m for m in models])
        if bar:
            bar.update(bar.total, "source groups", final=True)
        print(f"{len(pulses)} pulses from {len(scn.array)} sensors, {len(scn.events)} events -> {out}", file=sys.stderr)
        return 0
    if args.score:
        return _score(scn, args.score)
    return _live(scn, args, t_range)


def _live(scn, args, t_range) -> int:
    from simulator import live
    from simulator.broker import BrokerError

    if args.sensors or args.continuous or t_range:
        raise UserError("--sensors, --time and --continuous apply to --render only")
    speed = 1.0 if args.realtime else args.speed
    if speed is not None and not speed > 0:
        raise UserError(f"--speed must be positive, not {speed}")
    if args.broker:
        from fusion.transport.mqttlink import parse_mqtt_url

        try:
            parse_mqtt_url(args.broker)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    try:
        result = live.run(scn, broker=args.broker, speed=speed, out=args.out, progress=not args.quiet)
    except BrokerError as exc:
        raise UserError(str(exc)) from None
    except ConnectionError as exc:
        raise UserError(f"broker {args.broker or '(embedded)'}: {exc}") from None
    print(live.format_alerts(result.incidents))
    print()
    print(live.format_score(result.score))
    return 0


def _score(scn, path) -> int:
    import json

    from simulator import score

    incidents = []
    with open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                inc = json.loads(line)
                if not isinstance(inc, dict) or "t_ns" not in inc:
                    raise ValueError("not an incident object")
            except ValueError as exc:
                raise UserError(f"{path}:{line_no}: not an incident ({exc})") from None
            incidents.append(inc)
    try:
        result = score.score(incidents, scn.truth(), scn.array.area_m2(), scn.duration_s, scn.array.origin)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: cannot score: {exc}") from None
    print(score.format_table(result))
    return 0
