"""The transparency figures: alerts, what reviewers made of them and what officers found, by group.

Every alert (an incident not withdrawn) counts once in each group it falls in: its area(s)
(the neighbourhood polygons covering its located position; OUTSIDE if none; a single ``all``
without areas), the UTC month of its time, its class as the machine located it, and its
confidence bin.  Its review outcome is the latest review of it (confirmed, dismissed,
reclassified) or ``unreviewed``; its disposition the latest an officer recorded, or none.
An alert has *evidence of a shooting* when that disposition is casings found, a victim or
damage.  The shares confirmed and with evidence carry 95 % Wilson score intervals
(:func:`fusion.forensics.unreported.wilson_interval`).

Example::

    rows = tally(incidents, actions, ["area", "month"], areas, plane)
"""
from __future__ import annotations

import datetime as dt
import itertools

from shapely.geometry import Point

from fusion.forensics.frame import FrameError, Plane
from fusion.forensics.geojson import Area
from fusion.forensics.unreported import OUTSIDE, SHARE_DECIMALS, wilson_interval

DIMENSIONS = ("area", "month", "class", "confidence")
OUTCOMES = ("confirmed", "dismissed", "reclassified", "unreviewed")
# fusion.console.reviews' actions -> outcome; and the dispositions it knows, in its order.
OUTCOME_OF = {"confirm": "confirmed", "dismiss": "dismissed", "reclassify": "reclassified"}
DISPOSITIONS = ("casings found", "victim", "damage", "nothing found", "not attended")
EVIDENCE = ("casings found", "victim", "damage")
NO_DISPOSITION = "no disposition"
WITHDRAWN = "withdrawn"
ALL = "all"
NO_POSITION = "(no position)"
# Confidence bins [lo, hi): the last holds 1.0.
CONFIDENCE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SHARES = ("confirmed", "evidence")   # shares of the alerts, with their intervals


def columns(by: list[str]) -> list[str]:
    """The row keys, in order (CSV header)."""
    shares = [f"{name}{suffix}" for name in SHARES for suffix in ("_share", "_ci_low", "_ci_high")]
    return [*by, "alerts", *OUTCOMES, *DISPOSITIONS, NO_DISPOSITION, "evidence", *shares]


def confidence_bin(confidence: float | None) -> str:
    """``"0.6-0.8"``: the bin of CONFIDENCE_EDGES holding a confidence (1.0 in the last), or ``"none"``."""
    if confidence is None:
        return "none"
    c = min(max(float(confidence), CONFIDENCE_EDGES[0]), CONFIDENCE_EDGES[-1])
    for lo, hi in zip(CONFIDENCE_EDGES, CONFIDENCE_EDGES[1:]):
        if c < hi or hi == CONFIDENCE_EDGES[-1]:
            return f"{lo:.1f}-{hi:.1f}"
    raise AssertionError("unreachable")


def month(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.timezone.utc).strftime("%Y-%m")


def outcomes(actions: list[dict]) -> tuple[dict[str, str], dict[str, str]]:
    """Per incident, the latest review's outcome and the latest disposition (``actions`` oldest first)."""
    reviewed, disposed = {}, {}
    for a in actions:
        if a["action"] in OUTCOME_OF:
            reviewed[a["incident"]] = OUTCOME_OF[a["action"]]
        elif a["action"] == "disposition":
            disposed[a["incident"]] = a["value"]
    return reviewed, disposed


def tally(incidents: list[dict], actions: list[dict], by: list[str], areas: list[Area] | None = None,
          plane: Plane | None = None) -> list[dict]:
    """One row per group of ``by`` (DIMENSIONS) holding at least one alert, in key order; with ``by``
    just ``["area"]``, every area even without alerts.  FrameError if positions and areas disagree."""
    bad = [d for d in by if d not in DIMENSIONS]
    if bad or len(set(by)) != len(by):
        raise ValueError(f"--by takes distinct names of {', '.join(DIMENSIONS)}, not {','.join(by)}")
    reviewed, disposed = outcomes(actions)
    groups: dict[tuple, list[dict]] = {}
    for inc in incidents:
        if inc.get("status") == WITHDRAWN:
            continue
        keys = {"area": _areas(inc, areas, plane), "month": [month(int(inc["t_ns"]))],
                "class": [str(inc.get("class", "unknown"))], "confidence": [confidence_bin(inc.get("confidence"))]}
        for key in itertools.product(*(keys[d] for d in by)):
            groups.setdefault(key, []).append(inc)
    if by == ["area"] and areas:
        for a in areas:
            groups.setdefault((a.name,), [])
    return [_row(dict(zip(by, key)), groups[key], reviewed, disposed) for key in sorted(groups)]


def _areas(inc: dict, areas: list[Area] | None, plane: Plane | None) -> list[str]:
    if not areas or plane is None:
        return [ALL]
    try:
        plane.check(inc, f"incident {inc['incident']}")
    except FrameError:
        if "x" not in inc and "lat" not in inc:
            return [NO_POSITION]
        raise
    point = Point(plane.xy(inc))
    return [a.name for a in areas if a.polygon.covers(point)] or [OUTSIDE]


def _row(keys: dict, group: list[dict], reviewed: dict[str, str], disposed: dict[str, str]) -> dict:
    row = dict(keys, alerts=len(group))
    ids = [i["incident"] for i in group]
    for outcome in OUTCOMES:
        row[outcome] = sum(reviewed.get(i, "unreviewed") == outcome for i in ids)
    for d in DISPOSITIONS:
        row[d] = sum(disposed.get(i) == d for i in ids)
    row[NO_DISPOSITION] = sum(i not in disposed for i in ids)
    row["evidence"] = sum(disposed.get(i) in EVIDENCE for i in ids)
    for name in SHARES:
        k = row[name]
        share = lo = hi = None
        if group:
            share = round(k / len(group), SHARE_DECIMALS)
            lo, hi = wilson_interval(k, len(group))
        row.update({f"{name}_share": share, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    return row
