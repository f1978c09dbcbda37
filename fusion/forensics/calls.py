"""911 / CAD calls: read a CAD export, and match calls to located gunfire by time and distance.

Calls CSV (DESIGN.md): ``call_id,t_utc,lat,lon[,type]`` or ``call_id,t_utc,x,y[,type]``. A CAD
export names its columns its own way and often writes local wall-clock time: ``columns`` maps
ours to its (``{"call_id": "IncidentNo", "t_utc": "CallReceived", ...}``) and ``tz`` (an IANA
zone, e.g. ``America/New_York``) says what zone its times without an offset are in; times with
an offset or ``Z`` are taken as written. Times: ISO 8601, or ``time_format`` (strptime).

Matching: a call matches an incident when it comes in from ``before_s`` before the first
discharge to ``after_s`` after the last, and its position lies within ``max_dist_m`` of the
located position. The defaults: a caller dials within minutes (some wait to be sure), clocks of
a CAD system and of the sensors agree to seconds, and a call's position is the caller's
address, often a block or more from where they heard the shots. The rule is kept with every
match, so a later change of rule never rewrites what an earlier match meant.
"""
from __future__ import annotations

import datetime as dt
import math
import pathlib
import zoneinfo
from dataclasses import asdict, dataclass

from earwitness.shown import header_shown
from earwitness.units import NS_PER_S
from fusion.forensics.csvfile import csv_rows
from fusion.forensics.frame import Plane, distance_m

COLUMNS = ("call_id", "t_utc", "lat", "lon", "x", "y", "type")
POSITION_COLUMNS = (("x", "y"), ("lat", "lon"))
DEFAULT_BEFORE_S = 120.0
DEFAULT_AFTER_S = 900.0
DEFAULT_MAX_DIST_M = 500.0
DT_DECIMALS = 1
DIST_DECIMALS = 1


class CallsError(ValueError):
    """A calls file or option that cannot be used, with a one-line reason naming the line."""


@dataclass(frozen=True)
class MatchRule:
    """When a call matches an incident (module docstring); stored with each match."""

    before_s: float = DEFAULT_BEFORE_S
    after_s: float = DEFAULT_AFTER_S
    max_dist_m: float = DEFAULT_MAX_DIST_M

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise CallsError(f"match rule: {name} must be a finite number >= 0, not {value}")

    def as_dict(self) -> dict:
        return asdict(self)


def parse_columns(text: str | None) -> dict[str, str]:
    """``"call_id=IncidentNo,t_utc=Received"`` to a mapping of our column names to the file's."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not theirs:
            raise CallsError(f"--columns: {part!r} is not OURS=THEIRS (e.g. t_utc=CallReceived)")
        if ours not in COLUMNS:
            raise CallsError(f"--columns: unknown column {ours!r}; ours are {', '.join(COLUMNS)}")
        mapping[ours] = theirs
    return mapping


def time_zone(name: str | None) -> dt.tzinfo:
    """The IANA zone ``name`` (UTC if None); CallsError if unknown."""
    if not name:
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CallsError(f"unknown time zone {name!r} (an IANA name such as America/Chicago)") from None


def parse_time_ns(text: str, tz: dt.tzinfo, time_format: str | None = None) -> int:
    """A CAD time stamp to UTC nanoseconds: ISO 8601 (or ``time_format``); naive times are in ``tz``."""
    text = text.strip()
    if time_format:
        stamp = dt.datetime.strptime(text, time_format)
    else:
        stamp = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=tz)
    whole = int(stamp.timestamp())
    return whole * NS_PER_S + stamp.microsecond * 1000


def read_calls(path: str | pathlib.Path, columns: dict[str, str] | None = None, tz: dt.tzinfo = dt.timezone.utc,
               time_format: str | None = None) -> list[dict]:
    """The calls of a CSV: ``{"call_id", "t_ns", "x"/"y" or "lat"/"lon", "type"}`` each, in file order.

    CallsError on a header that lacks a needed column (after ``columns``' renaming), a bad time or
    number, a repeated call id; the message names the line.
    """
    path = pathlib.Path(path)
    header, rows = csv_rows(path, CallsError)
    names = {c: (columns or {}).get(c, c) for c in COLUMNS}
    absent = sorted(n for n in (columns or {}).values() if n not in header)
    if absent:
        raise CallsError(f"{path}: --columns names {', '.join(absent)}, not in the header {','.join(header)}")
    missing = [names[c] for c in ("call_id", "t_utc") if names[c] not in header]
    pos = next((cols for cols in POSITION_COLUMNS if all(names[c] in header for c in cols)), None)
    if missing or pos is None:
        raise CallsError(f"{path}: header is {header_shown(header)}; needs call_id, t_utc and lat,lon or x,y "
                         "(map a CAD export's own names with --columns)")
    calls, seen = [], set()
    for where, row in rows:
        call = _call(row, names, pos, tz, time_format, where)
        if call["call_id"] in seen:
            raise CallsError(f"{where}: call {call['call_id']!r} listed twice")
        seen.add(call["call_id"])
        calls.append(call)
    if not calls:
        raise CallsError(f"{path}: no calls listed")
    return calls


def _call(row: dict, names: dict, pos: tuple[str, str], tz, time_format, where: str) -> dict:
    call_id = row[names["call_id"]].strip()
    if not call_id:
        raise CallsError(f"{where}: empty call id")
    try:
        t_ns = parse_time_ns(row[names["t_utc"]], tz, time_format)
    except (ValueError, OverflowError) as exc:
        raise CallsError(f"{where}: time {row[names['t_utc']]!r} is not ISO 8601"
                         f"{' or ' + time_format if time_format else ''} ({exc})") from None
    call = {"call_id": call_id, "t_ns": t_ns}
    for c in pos:
        try:
            value = float(row[names[c]])
        except ValueError:
            raise CallsError(f"{where}: {names[c]} {row[names[c]]!r} is not a number") from None
        if not math.isfinite(value):
            raise CallsError(f"{where}: {names[c]} {row[names[c]]!r} is not a finite number")
        call[c] = value
    if pos == ("lat", "lon") and not (-90 <= call["lat"] <= 90 and -180 <= call["lon"] <= 180):
        raise CallsError(f"{where}: lat/lon {call['lat']}, {call['lon']} out of range")
    if names["type"] in row:
        call["type"] = row[names["type"]].strip()
    return call


def incident_span_ns(incident: dict) -> tuple[int, int]:
    """First and last discharge of an incident (its shots', else its own ``t_ns``)."""
    times = [int(s["t_ns"]) for s in incident.get("shots") or []] or [int(incident["t_ns"])]
    return min(times), max(times)


def call_window_ns(incident: dict, rule: MatchRule) -> tuple[int, int]:
    """The times a matching call may have: [first - before_s, last + after_s]."""
    first, last = incident_span_ns(incident)
    return int(first - rule.before_s * NS_PER_S), int(last + rule.after_s * NS_PER_S)


def match(incident: dict, calls: list[dict], rule: MatchRule) -> list[dict]:
    """The calls matching ``incident`` under ``rule``, nearest in time first.

    Each ``{"call_id", "incident", "dt_s" (call after the first discharge), "dist_m", "rule"}``.
    Positions in another frame than the incident's raise :class:`fusion.forensics.frame.FrameError`.
    """
    plane = Plane.around([incident])
    at = plane.xy(incident)
    first, _ = incident_span_ns(incident)
    lo, hi = call_window_ns(incident, rule)
    out = []
    for call in calls:
        if not lo <= int(call["t_ns"]) <= hi:
            continue
        plane.check(call, f"call {call['call_id']}")
        dist = distance_m(at, plane.xy(call))
        if dist <= rule.max_dist_m:
            out.append({"call_id": call["call_id"], "incident": incident["incident"],
                        "dt_s": round((int(call["t_ns"]) - first) / NS_PER_S, DT_DECIMALS),
                        "dist_m": round(dist, DIST_DECIMALS), "rule": rule.as_dict()})
    out.sort(key=lambda m: (abs(m["dt_s"]), m["call_id"]))
    return out
