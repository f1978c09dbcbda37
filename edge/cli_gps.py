"""``earwitness gps``: GPS diagnostic, one line per fix, from a serial port or a captured log.

On a port it also says whether PPS is locked (``--pps /dev/ppsN``, the kernel PPS API) and
how far the system clock is from GPS time; without a PPS device the node would fall back
to the system clock, and the line says so (``clock=system``, degraded).
"""
from __future__ import annotations

import errno
import json
import sys
import threading
import time

from earwitness.cli import UserError
from earwitness.units import NS_PER_S

PPS_LOCK_MAX_AGE_S = 1.5
PPS_FETCH_TIMEOUT_S = 1.5
SILENCE_WARN_S = 5.0
MODE_NAMES = {1: "no fix", 2: "2D", 3: "3D"}


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--port", metavar="DEV", help="serial device of the receiver, e.g. /dev/ttyAMA0")
    src.add_argument("--replay", metavar="FILE", help="captured NMEA log to read instead of a port")
    parser.add_argument("--baud", type=int, default=9600, help="serial speed, 4800-115200 (default 9600)")
    parser.add_argument("--pps", metavar="DEV", help="kernel PPS device to check, e.g. /dev/pps0 (with --port)")
    parser.add_argument("--json", action="store_true",
                        help='JSON lines: {"t_ns","lat","lon","alt","mode","sats"} (+ PPS and clock on a port)')
    parser.add_argument("--count", type=int, metavar="N", help="stop after N fixes")


class _PpsWatch(threading.Thread):
    """Reads kernel PPS events in the background; keeps the latest."""

    def __init__(self, device):
        super().__init__(daemon=True)
        self.device = device
        self.last = None            # (assert_ns, monotonic seconds when read)
        self.error = None

    def run(self):
        from edge.pps import PpsError

        while True:
            try:
                ev = self.device.fetch(PPS_FETCH_TIMEOUT_S)
            except PpsError as exc:
                self.error = str(exc.strerror or exc)
                if exc.errno == errno.ETIMEDOUT:
                    continue
                return
            except OSError as exc:
                self.error = str(exc)
                return
            self.last, self.error = (ev.assert_ns, time.monotonic()), None

    def status(self) -> dict:
        if self.last is None or time.monotonic() - self.last[1] > PPS_LOCK_MAX_AGE_S:
            return {"pps_locked": False, "pps_error": self.error,
                    "clock": {"timing": "system", "system_offset_ns": None}}
        assert_ns = self.last[0]
        # the pulse marks a whole UTC second: what the system clock adds to it is its offset
        offset = assert_ns - round(assert_ns / NS_PER_S) * NS_PER_S
        return {"pps_locked": True, "clock": {"timing": "pps-kernel", "system_offset_ns": offset}}


def _no_pps_status(fix) -> dict:
    # Without PPS only the sentence's arrival dates the second: a coarse, latency-laden offset.
    offset = None
    if fix.received_ns is not None and fix.t_ns is not None:
        offset = fix.received_ns - fix.t_ns
    return {"pps_locked": False,
            "clock": {"timing": "system", "system_offset_ns": None, "nmea_latency_ns": offset}}


def _text(fix, status: dict | None) -> str:
    from edge.utctime import format_utc_ns

    when = format_utc_ns(fix.t_ns) if fix.t_ns is not None else "no-date"
    parts = [when, MODE_NAMES.get(fix.mode, str(fix.mode)), f"sats={fix.sats}"]
    if fix.lat is not None:
        parts += [f"lat={fix.lat:.7f}", f"lon={fix.lon:.7f}"]
    if fix.alt is not None:
        parts.append(f"alt={fix.alt:.1f}")
    if status is not None:
        clock = status["clock"]
        if status["pps_locked"]:
            parts.append(f"pps=locked clock={clock['timing']} offset={clock['system_offset_ns'] / 1e3:+.1f}us")
        else:
            why = f" ({status['pps_error']})" if status.get("pps_error") else ""
            parts.append(f"pps=none{why} clock={clock['timing']} (degraded)")
    return " ".join(parts)


def _emit(fix, status, as_json: bool, out) -> None:
    if as_json:
        rec = fix.to_json()
        if status is not None:
            rec.update(status)
        out.write(json.dumps(rec) + "\n")
    else:
        out.write(_text(fix, status) + "\n")
    out.flush()


def _replay(args, out) -> int:
    from edge.nmea import NmeaStream, replay

    if args.pps:
        raise UserError("--pps goes with --port, not --replay")
    shown = positioned = 0
    stream = NmeaStream()
    for fix in replay(args.replay, stream=stream):
        _emit(fix, None, args.json, out)
        shown += 1
        positioned += fix.mode > 1
        if args.count and shown >= args.count:
            break
    c = stream.counts
    if not shown:
        raise UserError(f"no fixes in {args.replay}: no timed RMC or GGA sentence among its {c['sentences']} valid "
                        f"sentences ({c['bad_checksum']} bad checksums, {c['garbage']} lines that are not NMEA)")
    if not positioned:
        print(f"earwitness gps: no position fix in {args.replay}: {shown} epochs, none with a fix "
              "(the receiver never saw enough satellites)", file=sys.stderr, flush=True)
    return 0


def _watch_pps(device: str) -> _PpsWatch:
    from edge.pps import KernelPps, PpsError

    try:
        watch = _PpsWatch(KernelPps(device))
    except PpsError as exc:
        raise UserError(exc.strerror) from None
    watch.start()
    return watch


def run(args) -> int:
    from edge.nmea import BAUD_RATES, GpsError, GpsReader

    if args.count is not None and args.count < 1:
        raise UserError("--count must be 1 or more")
    out = sys.stdout
    shown = 0
    if args.replay:
        return _replay(args, out)
    if args.baud not in BAUD_RATES:
        raise UserError(f"--baud must be one of {', '.join(map(str, BAUD_RATES))}")
    watch = _watch_pps(args.pps) if args.pps else None
    try:
        gps = GpsReader(args.port, args.baud)
    except GpsError as exc:
        raise UserError(str(exc)) from None
    with gps:
        heard = time.monotonic()
        try:
            while not (args.count and shown >= args.count):
                fixes = gps.read()
                now = time.monotonic()
                if fixes:
                    heard = now
                elif now - heard > SILENCE_WARN_S:
                    heard = now
                    c = gps.stream.counts
                    print(f"earwitness gps: no fix from {args.port} in {SILENCE_WARN_S:.0f} s "
                          f"({c['sentences']} sentences, {c['bad_checksum']} bad checksums, "
                          f"{c['garbage']} garbage lines: wrong --baud?)", file=sys.stderr, flush=True)
                for fix in fixes[:args.count - shown if args.count else None]:
                    _emit(fix, watch.status() if watch else _no_pps_status(fix), args.json, out)
                    shown += 1
        except GpsError as exc:
            raise UserError(str(exc)) from None
    return 0
