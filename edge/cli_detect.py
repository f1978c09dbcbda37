"""``earwitness detect``: impulses in a WAV file -> pulses JSONL on stdout.

One JSON object per pulse, in time order: ``sensor``, ``t_ns`` (the onset, the first
arrival), ``t_unc_ns``, ``snr_db``, ``peak_dbfs``, ``features`` and ``timing`` = ``file``
(the time comes from the sample index and --start-utc, nothing else), or, with
``--pps-channel``, ``pps-audio``: the GPS PPS pulse recorded on another channel times the
samples (``edge.clock.ClockModel``), --start-utc only names the seconds (right to +-0.4 s).
"""
from __future__ import annotations

import json
import pathlib
import sys

from earwitness.cli import UserError

FEATURE_DECIMALS = 3
INT16_FULL_SCALE = 32768.0
MIN_PPS_EDGES = 2


def add_arguments(parser) -> None:
    parser.add_argument("--sensor", metavar="ID", help="sensor name in the output (default: the file name without .wav)")
    parser.add_argument(
        "--start-utc",
        metavar="ISO8601",
        help="UTC of the file's first sample, e.g. 2018-12-19T00:49:26.000Z (no zone = UTC); "
        "without it t_ns counts from the first sample (t_ns = 0 there)",
    )
    parser.add_argument("--channel", metavar="N", type=int, default=0, help="channel to analyse, 0 = first (default 0)")
    parser.add_argument("--pps-channel", metavar="N", type=int, help="channel carrying the GPS PPS pulse, 0 = first")
    parser.add_argument("file", metavar="FILE.wav")


def pulse_record(pulse, sensor: str, start_ns: int, rate_hz: float) -> dict:
    """The pulses-JSONL object of one detector Pulse (DESIGN.md contract)."""
    return {
        "sensor": sensor,
        "t_ns": start_ns + round(pulse.sample * 1e9 / rate_hz),
        # file timing: --start-utc is taken as exact; what is left is the onset's sample period
        "t_unc_ns": round(1e9 / rate_hz),
        "snr_db": round(pulse.snr_db, FEATURE_DECIMALS),
        "peak_dbfs": round(pulse.peak_dbfs, FEATURE_DECIMALS),
        "features": {k: round(v, FEATURE_DECIMALS) for k, v in pulse.features.items()},
        "timing": "file",
    }


def run(args) -> int:
    from edge.detector import Detector
    from edge.utctime import parse_utc_ns
    from edge.wavio import iter_channel

    try:
        start_ns = parse_utc_ns(args.start_utc) if args.start_utc is not None else 0
    except ValueError as exc:
        raise UserError(f"--start-utc: {exc}") from None
    if args.channel < 0:
        raise UserError(f"--channel must be 0 or more, not {args.channel}")
    info, clock = _open(args, start_ns)
    try:
        detector = Detector(info.rate_hz)
    except ValueError as exc:
        raise UserError(f"{args.file}: {exc}") from None
    sensor = args.sensor if args.sensor is not None else pathlib.Path(args.file).stem
    out = sys.stdout
    def record(pulse) -> str:
        rec = pulse_record(pulse, sensor, start_ns, info.rate_hz)
        if clock is not None:
            stamp = clock.stamp(pulse.sample)
            rec.update(t_ns=stamp.t_ns, t_unc_ns=stamp.t_unc_ns, timing=stamp.timing)
        return json.dumps(rec) + "\n"

    for block in iter_channel(info, args.channel):
        for pulse in detector.process(block):
            out.write(record(pulse))
    for pulse in detector.flush():
        out.write(record(pulse))
    out.flush()
    return 0


def _open(args, start_ns: int):
    """The file's channel to read, and the clock of its PPS channel (None without one)."""
    from edge.wavio import WavError, wav_info

    try:
        info = wav_info(args.file, args.channel)
        clock = None
        if args.pps_channel is not None:
            if args.start_utc is None:
                raise UserError("--pps-channel needs --start-utc (right to +-0.4 s) to name the seconds")
            if args.pps_channel == args.channel:
                raise UserError("--pps-channel must differ from --channel")
            clock = pps_clock(wav_info(args.file, args.pps_channel), args.pps_channel, start_ns)
    except WavError as exc:
        raise UserError(str(exc)) from None
    return info, clock


def pps_clock(info, channel: int, start_ns: int):
    """A clock model fitted to every PPS edge on ``channel`` of the file (the whole file
    first, so each pulse is interpolated between edges), seconds named by ``start_ns``."""
    import numpy as np

    from edge.clock import ClockModel
    from edge.pps import AudioPps
    from edge.wavio import iter_channel

    finder = AudioPps(info.rate_hz)
    clock = ClockModel(info.rate_hz)
    clock.add_utc_hint(0, start_ns)
    for block in iter_channel(info, channel):
        if block.dtype == np.int16:
            block = block.astype(np.float32) / INT16_FULL_SCALE
        for edge in finder.process(block):
            clock.add_edge(edge)
    if clock.counts["edges"] < MIN_PPS_EDGES:
        raise UserError(f"{info.path}: no GPS PPS pulse found on channel {channel} "
                        f"({clock.counts['edges']} edges)")
    return clock
