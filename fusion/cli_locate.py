"""``earwitness locate``: unassociated pulses JSONL in, incidents JSONL out, classified.

As in the fusion server, each located incident is classified
(:func:`fusion.locator.classify.classify`) from the pulses its shots used
(:func:`fusion.locator.attribution.shot_arrivals`), the pulses around it (the crackle of a
firecracker string, the arrivals of an aerial burst) and the incidents just before it (a
mortar's launch).

The input is read as a stream and located a stretch at a time
(:mod:`fusion.locator.stream`): each incident is printed as soon as no later pulse can
change it, and memory holds the open stretch and ``--max-disorder-s`` of input, not the
file; the incidents are those of locating the whole file at once. Pulses must come in time
order, or at most ``--max-disorder-s`` (default 600 s) out of it; ``--max-disorder-s inf``
reads the whole input before locating. Progress goes to stderr when it is a terminal (or
with ``--progress``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time

import numpy as np

from earwitness.cli import UserError
from earwitness.units import NS_PER_S
from fusion.locator.attribution import shot_arrivals
from fusion.locator.classify import MAX_HEARD_M, MORTAR_FLIGHT_S, classify
from fusion.locator.locate import COMPLETE_BURSTS_DEFAULT, locate_pulses, min_burst_sensors, shock_waves
from fusion.locator.multilaterate import C_MAX, C_MIN, MODES, speed_of_sound
from fusion.locator.pulses import Pulses, decode, from_rows, pulse_row
from fusion.locator.sensors import SensorsError, read_sensors
from fusion.locator.stream import DEFAULT_MAX_DISORDER_S, OutOfOrder, Stretcher, quiet_gap_s
from fusion.locator.uncertainty import FRAME_TYPICAL_M, frame_problem
from fusion.locator.wind import wind_east_north, wind_problem
from fusion.tracking.reach import incident_c_m_s

# Exit status when some input pulses (or incidents) were left out but the rest was located.
EXIT_SOME_PULSES_LEFT_OUT = 1
# Progress on stderr: redrawn this often on a terminal, a line this often otherwise.
PROGRESS_REDRAW_S = 0.5
PROGRESS_LINE_S = 10.0
MB = 1e6


def add_arguments(parser) -> None:
    parser.add_argument("pulses", metavar="PULSES.jsonl", help="pulses JSONL ('-' for stdin), in time order "
                        "(or at most --max-disorder-s out of it)")
    parser.add_argument("--sensors", required=True, metavar="SENSORS.csv",
                        help="sensor positions: header sensor,x,y,z or sensor,lat,lon,alt; one position per "
                             "sensor (two microphones on one mast are one sensor)")
    parser.add_argument("--temperature-c", type=float, metavar="T",
                        help="air temperature in degC (default: speed of sound estimated per incident)")
    parser.add_argument("--wind", nargs=2, type=float, metavar=("SPEED_MPS", "FROM_DEG"),
                        help="the wind as a weather reading gives it: speed m/s and the compass bearing it blows "
                             "from; the fit models it along each path and err_m states it as told (default: still "
                             "air, the wind left to err_m)")
    parser.add_argument("--frame-m", type=float, default=FRAME_TYPICAL_M, metavar="M",
                        help="err_m's frame term: the typical distance between the sensors' surveyed frame and the "
                             "one places are compared in (a phone's GPS, a map); 0 where they are in the sensors' "
                             f"own frame (simulation) (default {FRAME_TYPICAL_M:g})")
    parser.add_argument("--mode", choices=MODES, default="2d",
                        help="geometry of the fit: 2d (default), 2.5d (source at --ground-z) or 3d")
    parser.add_argument("--ground-z", type=float, metavar="Z",
                        help="source height for --mode 2.5d, local z metres (default: lowest sensor used)")
    parser.add_argument("--max-disorder-s", type=float, default=DEFAULT_MAX_DISORDER_S, metavar="S",
                        help="how far before the latest pulse read another may come, seconds (default "
                             f"{DEFAULT_MAX_DISORDER_S:g}); 'inf' reads the whole input before locating")
    parser.add_argument("--complete-bursts", action=argparse.BooleanOptionalAction, default=COMPLETE_BURSTS_DEFAULT,
                        help="search each located shot's place for the rest of its burst (rounds few sensors "
                             "heard, arrivals that interleave), telling echo sets from rounds by their levels "
                             f"(default: {'on' if COMPLETE_BURSTS_DEFAULT else 'off'})")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress on stderr (default: when stderr is a terminal)")


def _check_args(args) -> None:
    t = args.temperature_c
    if t is not None and not (math.isfinite(t) and C_MIN <= speed_of_sound(t) <= C_MAX):
        raise UserError(f"--temperature-c must be a plausible air temperature in degC, not {t}")
    if args.ground_z is not None and not math.isfinite(args.ground_z):
        raise UserError(f"--ground-z must be a finite height in metres, not {args.ground_z}")
    if args.wind is not None and wind_problem(*args.wind):
        raise UserError(f"--wind: {wind_problem(*args.wind)}")
    if frame_problem(args.frame_m, "--frame-m"):
        raise UserError(frame_problem(args.frame_m, "--frame-m"))
    if math.isnan(args.max_disorder_s) or args.max_disorder_s < 0:
        raise UserError(f"--max-disorder-s must be a number of seconds >= 0 (or inf), not {args.max_disorder_s}")


def run(args) -> int:
    _check_args(args)
    try:
        sensors = read_sensors(args.sensors)
    except SensorsError as exc:
        raise UserError(str(exc)) from None
    heights_m = sensors.enu_m[:, 2]
    if args.ground_z is not None and not heights_m.min() - MAX_HEARD_M <= args.ground_z <= heights_m.max() + MAX_HEARD_M:
        raise UserError(f"--ground-z {args.ground_z:g} is more than {MAX_HEARD_M:g} m from every sensor's height "
                        "(local z metres): no sensor hears a source there")
    need = min_burst_sensors(args.mode)  # a burst's rounds share one place: d + 1 sensors fix it
    if len(sensors) < need:
        raise UserError(f"{args.sensors} lists {len(sensors)} sensors; {args.mode} location needs at least {need}")
    job = _Locating(args, sensors)
    with _locator_notes():
        if args.pulses == "-":
            job.read(sys.stdin.buffer, None)
        else:
            with open(args.pulses, "rb") as fh:
                job.read(fh, os.fstat(fh.fileno()).st_size if os.path.isfile(args.pulses) else None)
    return job.finish(need)


@contextlib.contextmanager
def _locator_notes():
    """The locator's reasons for what it could not locate, as notes on stderr while it runs."""
    logger = logging.getLogger("fusion.locator")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("earwitness locate: note: %(message)s"))
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _Locating:
    """One ``locate`` run: reads the stream, locates and prints stretch by stretch, keeps the tallies."""

    def __init__(self, args, sensors):
        self.args = args
        self.sensors = sensors
        self.stretcher = Stretcher(quiet_gap_s(sensors), args.max_disorder_s)
        self.recent: list[dict] = []   # incidents printed in the last MORTAR_FLIGHT_S[1], for the mortar cue
        self.pulses = self.incidents = self.cracks = self.left_out = 0
        self.problems = self.done = 0
        self.size: int | None = None
        self.reporting: set[int] = set()
        progress = args.progress if args.progress is not None else sys.stderr.isatty()
        self.progress = _Progress(sys.stderr) if progress else None

    def warn(self, message: str) -> None:
        if self.progress:
            self.progress.clear()
        print(f"earwitness locate: warning: {message}", file=sys.stderr)

    def read(self, fh, size: int | None) -> None:
        self.size = size
        for number, line in enumerate(fh, start=1):
            self.done += len(line)
            if self.progress:
                self.progress.show(self.done, size, self.pulses, self.incidents)
            if not line.strip():
                continue
            try:
                row = pulse_row(decode(line), self.sensors)
            except ValueError as exc:   # not JSON, not UTF-8, NaN or Infinity
                row = str(exc)
            if isinstance(row, str):
                self.problems += 1
                self.warn(f"{self.args.pulses} line {number}: {row}; left out")
                continue
            try:
                stretches = self.stretcher.add(row, f"line {number}")
            except OutOfOrder as exc:
                sys.stdout.flush()
                raise UserError(f"{self.args.pulses} {exc}: pulses must be in time order, at most --max-disorder-s "
                                f"{self.args.max_disorder_s:g} s out of it; sort them by t_ns (jq -c -s "
                                "'sort_by(.t_ns)[]', jq 1.7+ keeps t_ns exact) or raise --max-disorder-s") from None
            if stretches is None:
                self.warn(f"{self.args.pulses} line {number}: repeats sensor {self.sensors.ids[row[0]]!r} "
                          f"t_ns {row[1]}; dropped")
                continue
            self.pulses += 1
            self.reporting.add(row[0])
            self._locate(stretches)
        self._locate(self.stretcher.finish())

    def _locate(self, stretches: list[list[tuple]]) -> None:
        for note in self.stretcher.notes:
            self.warn(note)
        self.stretcher.notes.clear()
        for rows in stretches:
            pulses = from_rows(rows)
            # A degenerate fit's NaN is caught where its incident is written (_write), not warned of here.
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                incidents = locate_pulses(pulses, self.sensors, self.args.temperature_c, mode=self.args.mode,
                                          ground_z_m=self.args.ground_z, complete_bursts=self.args.complete_bursts,
                                          wind_m_s=wind_east_north(*self.args.wind) if self.args.wind else None,
                                          frame_m=self.args.frame_m)
            self.cracks += int(shock_waves(pulses, self.sensors).sum())
            records = _records(pulses, self.sensors)
            for incident in incidents:
                self._classify(incident, records)
                self._write(incident)
        sys.stdout.flush()

    def _classify(self, incident: dict, records: list[dict]) -> None:
        """The classifier's call on ``incident`` from its stretch's pulses and the incidents just before it."""
        lo_ns = incident["t_ns"] - int(MORTAR_FLIGHT_S[1] * NS_PER_S)
        self.recent = [r for r in self.recent if r["t_ns"] >= lo_ns]
        arrivals = shot_arrivals(incident, records, self.sensors, incident_c_m_s(incident))
        incident.update(classify(incident, arrivals, self.sensors, recent=self.recent, pulses=records))
        self.recent.append(incident)

    def _write(self, incident: dict) -> None:
        try:
            text = json.dumps(incident, allow_nan=False)
        except ValueError:
            self.left_out += 1
            self.warn(f"incident {incident.get('incident')}: {_non_finite(incident)} is not a finite number "
                      "(a degenerate geometry?); left out")
            return
        sys.stdout.write(text + "\n")
        self.incidents += 1

    def finish(self, need: int) -> int:
        if self.progress:
            self.progress.show(self.done, self.size, self.pulses, self.incidents, last=True)
        args = self.args
        if len(self.reporting) < need:
            raise UserError(f"{args.pulses}: {self.pulses} usable pulses from {len(self.reporting)} sensors; "
                            f"{args.mode} location needs at least {need} sensors")
        if self.cracks:
            print(f"earwitness locate: note: {self.cracks} pulses taken for supersonic bullet cracks, kept out of "
                  "location", file=sys.stderr)
        if not self.incidents:
            self.warn(f"no shot located among {self.pulses} pulses from {len(self.reporting)} sensors")
        return EXIT_SOME_PULSES_LEFT_OUT if self.problems or self.left_out else 0


class _Progress:
    """Bytes read (of how many), pulses and incidents so far on stderr: redrawn on a terminal, else a line now and then."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()
        self.drawn = False

    def show(self, done: int, size: int | None, pulses: int, incidents: int, *, last: bool = False) -> None:
        """Bytes ``done`` of ``size`` (None: unknown, a pipe); ``last``: the final tally, on a line of its own."""
        now = time.monotonic()
        if not last and now - self.last < (PROGRESS_REDRAW_S if self.tty else PROGRESS_LINE_S):
            return
        self.last = now
        share = f"{100.0 * done / size:.0f}% of {size / MB:.1f} MB" if size else f"{done / MB:.1f} MB"
        text = f"earwitness locate: {share}, {pulses} pulses, {incidents} incidents, {now - self.start:.0f} s"
        if self.tty:
            self.stream.write("\r" + text + "\033[K" + ("\n" if last else ""))
            self.drawn = not last
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


def _non_finite(value, path: str = "") -> str:
    """Where in a JSON-like value the first NaN or infinity is (``shots[2].err_m``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "a value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        if found:
            return found
    return ""


def _records(pulses: Pulses, sensors) -> list[dict]:
    """The accepted pulses as the dicts (with ``id``) the attribution and classifier read."""
    out = []
    for i in range(len(pulses)):
        p = {"id": i, "sensor": sensors.ids[pulses.sensor[i]], "t_ns": int(pulses.t_ns[i])}
        for key, value in (("t_unc_ns", pulses.t_unc_ns[i]), ("snr_db", pulses.snr_db[i]),
                           ("peak_dbfs", pulses.peak_dbfs[i]), ("spl_db", pulses.spl_db[i])):
            if np.isfinite(value):
                p[key] = float(value)
        features = {k: float(v[i]) for k, v in pulses.features.items() if np.isfinite(v[i])}
        if features:
            p["features"] = features
        out.append(p)
    return out
