"""Pulses in: read and validate pulses (JSONL or dicts) against the known sensors.

A pulse is ``{"sensor": str, "t_ns": int, ...}`` with optional ``t_unc_ns`` (timing
uncertainty, one standard deviation), levels (``snr_db``, ``peak_dbfs``, ``spl_db``: the
received peak in dB SPL, which the classifier's source-level cue reads) and other fields the
locator carries along unread.
The detector's shape features (``features``: rise, duration, band ratios) are read where
given, for shock-wave screening; a missing or non-numeric feature is NaN. A pulse that
cannot be used (malformed, not UTF-8, NaN or infinite, ``t_ns`` not an integer in the int64
range, unknown sensor) is left out with a one-line
problem naming it; an exact repeat of an accepted pulse (same sensor, same ``t_ns``, as
at-least-once delivery produces) is dropped with a note. Every other pulse is kept.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from fusion.locator.sensors import Sensors

# Optional level fields of a pulse, read into Pulses.snr_db, Pulses.peak_dbfs and Pulses.spl_db.
LEVEL_KEYS = ("snr_db", "peak_dbfs", "spl_db")
# Largest t_ns: arrival times are signed 64-bit integers (numpy int64), as on the wire.
T_NS_MAX = 2**63 - 1
# Shape features of a pulse's ``features`` object (earwitness.wire.FEATURES), read into Pulses.features.
SHAPE_KEYS = ("rise_ms", "duration_ms", "decay_ms", "crest_db", "low_ratio_db", "high_ratio_db")


@dataclass
class Pulses:
    """Accepted pulses as arrays, in input order.

    Attributes
    ----------
    sensor : numpy.ndarray of int
        Index of each pulse's sensor in :attr:`fusion.locator.sensors.Sensors.ids`.
    t_ns : numpy.ndarray of int64
        Arrival times, ns since the Unix epoch (UTC).
    t_unc_ns : numpy.ndarray of float
        Stated timing uncertainty (1 sigma) in ns, NaN where not given.
    snr_db : numpy.ndarray of float
        Stated signal-to-noise ratio in dB, NaN where not given.
    peak_dbfs : numpy.ndarray of float
        Stated peak level in dB full scale, NaN where not given.
    spl_db : numpy.ndarray of float
        Stated received peak level in dB SPL (re 20 uPa), NaN where not given (or, when
        constructed without it, everywhere).
    features : dict of str to numpy.ndarray of float
        Per SHAPE_KEYS name, the pulse's detector feature, NaN where not given.
    problems : list of str
        One line per pulse left out (malformed, NaN, unknown sensor).
    duplicates : list of str
        One line per exact repeat dropped.
    """

    sensor: np.ndarray
    t_ns: np.ndarray
    t_unc_ns: np.ndarray
    snr_db: np.ndarray
    peak_dbfs: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    spl_db: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.spl_db is None:
            self.spl_db = np.full(len(self.t_ns), np.nan)

    def __len__(self) -> int:
        return len(self.t_ns)


def _problem(record, sensors: Sensors) -> str | None:
    """Why a decoded pulse cannot be used, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    sid = record.get("sensor")
    if not isinstance(sid, str):
        return "missing or non-string 'sensor'"
    if sid not in sensors.index:
        return f"unknown sensor {sid!r} (not in the sensors file)"
    return _time_problem(record.get("t_ns"), record.get("t_unc_ns")) or _level_problem(record)


def _time_problem(t_ns, unc) -> str | None:
    """Why a pulse's ``t_ns`` and ``t_unc_ns`` cannot be used, or None."""
    if t_ns is None:
        return "missing 't_ns'"
    if isinstance(t_ns, bool) or not isinstance(t_ns, (int, float)):
        return f"'t_ns' is {json.dumps(t_ns)}, not an integer number of nanoseconds"
    if isinstance(t_ns, float) and not (math.isfinite(t_ns) and t_ns.is_integer()):
        return f"'t_ns' is {t_ns!r}, not an integer number of nanoseconds"
    if not 0 <= t_ns <= T_NS_MAX:
        return f"'t_ns' is {t_ns!r}, outside 0..{T_NS_MAX} (ns since 1970 as a signed 64-bit integer)"
    if unc is not None and (not _finite(unc) or unc < 0):
        return f"'t_unc_ns' is {unc!r}, not a finite non-negative number"
    return None


def _level_problem(record: dict) -> str | None:
    """Why a pulse's levels or shape features cannot be used, or None."""
    for key in LEVEL_KEYS:
        level = record.get(key)
        if level is not None and not _finite(level):
            return f"'{key}' is {level!r}, not a finite number"
    features = record.get("features")
    if isinstance(features, dict):
        for key in SHAPE_KEYS:
            value = features.get(key)
            # Features are optional and read leniently (a non-number is NaN), but a number the
            # JSON parser made infinite (1e999) would reach the shock-wave screen as one.
            if isinstance(value, float) and not math.isfinite(value):
                return f"'features.{key}' is {value!r}, not a finite number"
    return None


def _finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def decode(line: str | bytes):
    """A JSONL line as a record; ValueError saying why not in one line (not UTF-8, not JSON, or
    NaN and Infinity, which JSON does not allow)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from None
    try:
        return json.loads(line, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def pulse_row(record, sensors: Sensors) -> tuple | str:
    """One decoded pulse as a row ``(sensor index, t_ns, t_unc_ns, *LEVEL_KEYS, *SHAPE_KEYS)``
    (NaN where not given), or the one-line reason it cannot be used."""
    why = _problem(record, sensors)
    if why:
        return why
    unc = record.get("t_unc_ns")
    return (sensors.index[record["sensor"]], int(record["t_ns"]), float(unc) if unc is not None else math.nan,
            *(float(record[k]) if record.get(k) is not None else math.nan for k in LEVEL_KEYS),
            *_shape(record.get("features")))


def from_rows(rows: list[tuple], problems: list[str] | None = None, duplicates: list[str] | None = None) -> Pulses:
    """:class:`Pulses` from rows of :func:`pulse_row`, in their order."""
    n_levels = len(LEVEL_KEYS)
    values = np.array([r[2:] for r in rows], dtype=float).reshape(-1, 1 + n_levels + len(SHAPE_KEYS)).T
    snr_db, peak_dbfs, spl_db = values[1:1 + n_levels]
    return Pulses(np.array([r[0] for r in rows], dtype=int), np.array([r[1] for r in rows], dtype=np.int64),
                  values[0], snr_db, peak_dbfs, dict(zip(SHAPE_KEYS, values[1 + n_levels:])),
                  problems if problems is not None else [], duplicates if duplicates is not None else [],
                  spl_db=spl_db)


def parse_pulses(records, sensors: Sensors) -> Pulses:
    """Validate pulses given as dicts (or JSONL text lines) and keep the usable ones.

    Parameters
    ----------
    records : iterable of dict or str
        Pulses as decoded objects, or as JSONL lines (blank lines are skipped).
    sensors : Sensors
        The known sensors; a pulse from any other sensor is left out.

    Returns
    -------
    Pulses
        The accepted pulses plus one message per pulse left out; nothing is raised
        for a bad pulse, so what can be located still is.
    """
    rows: list[tuple] = []
    problems: list[str] = []
    duplicates: list[str] = []
    seen: set[tuple[int, int]] = set()
    for number, record in enumerate(records, start=1):
        where = f"pulse {number}"
        if isinstance(record, (str, bytes)):
            if not record.strip():
                continue
            try:
                # NaN/Infinity are not JSON; refuse them at the parser rather than later.
                record = decode(record)
            except ValueError as exc:
                problems.append(f"{where}: {exc}; left out")
                continue
        row = pulse_row(record, sensors)
        if isinstance(row, str):
            problems.append(f"{where}: {row}; left out")
            continue
        if row[:2] in seen:
            duplicates.append(f"{where}: repeats sensor {record['sensor']!r} t_ns {row[1]}; dropped")
            continue
        seen.add(row[:2])
        rows.append(row)
    return from_rows(rows, problems, duplicates)


def _shape(features) -> list[float]:
    """The SHAPE_KEYS values of a pulse's optional ``features`` object, NaN where absent or not a number."""
    if not isinstance(features, dict):
        return [math.nan] * len(SHAPE_KEYS)
    values = [features.get(k) for k in SHAPE_KEYS]
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in values]


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_pulses(path, sensors: Sensors) -> Pulses:
    """Read a pulses JSONL file (see :func:`parse_pulses`); messages say "line N".

    Lines are decoded one by one, so a line that is not UTF-8 is one problem, not the file's end.
    """
    with open(path, "rb") as fh:
        pulses = parse_pulses(fh, sensors)
    pulses.problems = [p.replace("pulse ", "line ", 1) for p in pulses.problems]
    pulses.duplicates = [p.replace("pulse ", "line ", 1) for p in pulses.duplicates]
    return pulses
