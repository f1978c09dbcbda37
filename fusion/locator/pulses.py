"""Pulses in: read and validate pulses (JSONL or dicts) against the known sensors.

A pulse is ``{"sensor": str, "t_ns": int, ...}`` with optional ``t_unc_ns`` (timing
uncertainty, one standard deviation) and other fields the locator carries along unread.
The detector's shape features (``features``: rise, duration, band ratios) are read where
given, for shock-wave screening; a missing or non-numeric feature is NaN. A pulse that cannot be used (malformed, NaN, unknown sensor) is left out with a one-line
problem naming it; an exact repeat of an accepted pulse (same sensor, same ``t_ns``, as
at-least-once delivery produces) is dropped with a note. Every other pulse is kept.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from fusion.locator.sensors import Sensors

# Optional level fields of a pulse, read into Pulses.snr_db and Pulses.peak_dbfs.
LEVEL_KEYS = ("snr_db", "peak_dbfs")
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
    t_ns = record.get("t_ns")
    if isinstance(t_ns, bool) or not isinstance(t_ns, (int, float)):
        return "missing or non-numeric 't_ns'"
    if isinstance(t_ns, float) and not (math.isfinite(t_ns) and t_ns.is_integer()):
        return f"'t_ns' is {t_ns!r}, not an integer number of nanoseconds"
    unc = record.get("t_unc_ns")
    if unc is not None and (isinstance(unc, bool) or not isinstance(unc, (int, float))
                            or not math.isfinite(unc) or unc < 0):
        return f"'t_unc_ns' is {unc!r}, not a finite non-negative number"
    for key in LEVEL_KEYS:
        level = record.get(key)
        if level is not None and (isinstance(level, bool) or not isinstance(level, (int, float))
                                  or not math.isfinite(level)):
            return f"'{key}' is {level!r}, not a finite number"
    return None


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
    sensor_idx: list[int] = []
    times: list[int] = []
    uncs: list[float] = []
    levels: list[list[float]] = []
    shapes: list[list[float]] = []
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
                record = json.loads(record, parse_constant=_reject_constant)
            except ValueError as exc:
                problems.append(f"{where}: not valid JSON ({exc})")
                continue
        why = _problem(record, sensors)
        if why:
            problems.append(f"{where}: {why}; left out")
            continue
        key = (sensors.index[record["sensor"]], int(record["t_ns"]))
        if key in seen:
            duplicates.append(f"{where}: repeats sensor {record['sensor']!r} t_ns {key[1]}; dropped")
            continue
        seen.add(key)
        sensor_idx.append(key[0])
        times.append(key[1])
        unc = record.get("t_unc_ns")
        uncs.append(float(unc) if unc is not None else math.nan)
        levels.append([float(record[k]) if record.get(k) is not None else math.nan for k in LEVEL_KEYS])
        shapes.append(_shape(record.get("features")))
    snr_db, peak_dbfs = np.array(levels, dtype=float).reshape(-1, len(LEVEL_KEYS)).T
    shape = np.array(shapes, dtype=float).reshape(-1, len(SHAPE_KEYS)).T
    return Pulses(np.array(sensor_idx, dtype=int), np.array(times, dtype=np.int64),
                  np.array(uncs, dtype=float), snr_db, peak_dbfs, dict(zip(SHAPE_KEYS, shape)),
                  problems, duplicates)


def _shape(features) -> list[float]:
    """The SHAPE_KEYS values of a pulse's optional ``features`` object, NaN where absent or not a number."""
    if not isinstance(features, dict):
        return [math.nan] * len(SHAPE_KEYS)
    values = [features.get(k) for k in SHAPE_KEYS]
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in values]


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_pulses(path, sensors: Sensors) -> Pulses:
    """Read a pulses JSONL file (see :func:`parse_pulses`); messages say "line N"."""
    with open(path, encoding="utf-8") as fh:
        pulses = parse_pulses(fh, sensors)
    pulses.problems = [p.replace("pulse ", "line ", 1) for p in pulses.problems]
    pulses.duplicates = [p.replace("pulse ", "line ", 1) for p in pulses.duplicates]
    return pulses
