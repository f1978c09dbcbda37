"""What changed from one revision of an incident to the next: rounds, position, class, status, error.

The court records the issue cites describe shot counts that went from 3 to 4 to 5 and locations
moved months later; the incident page lists every revision with these changes spelled out, so a
reader sees each one without comparing rows.  Positions are compared in the incident's own frame
(:class:`fusion.forensics.frame.Plane`: local metres, or WGS84 through a local east-north plane).

Example::

    for row in revision_changes(store.revisions(incident_id)):
        print(row["revision"], row["changes"])
"""
from __future__ import annotations

from fusion.forensics.frame import FrameError, Plane, distance_m

# A position that moved less than this is the same place to a reader (the fits round to cm).
MOVED_MIN_M = 0.5


def revision_changes(revisions: list[dict]) -> list[dict]:
    """Each revision (oldest first) with ``changes``: a list of sentences, "first revision" for the first."""
    out = []
    previous: dict | None = None
    for rev in revisions:
        changes = ["first revision"] if previous is None else _changes(previous, rev)
        out.append(dict(rev, changes=changes or ["no change of rounds, position, class or status"]))
        previous = rev
    return out


def _changes(before: dict, after: dict) -> list[str]:
    changes = []
    for key, what in (("status", "status"), ("class", "class"), ("rounds", "rounds"), ("shooters", "shooters")):
        if before.get(key) != after.get(key):
            changes.append(f"{what} {_text(before.get(key))} → {_text(after.get(key))}")
    moved = _moved_m(before, after)
    if moved is not None and moved >= MOVED_MIN_M:
        changes.append(f"position moved {moved:.1f} m")
    err_before, err_after = before.get("err_m"), after.get("err_m")
    if err_before is not None and err_after is not None and round(err_before, 1) != round(err_after, 1):
        changes.append(f"95% radius {err_before:.1f} → {err_after:.1f} m")
    sensors_before, sensors_after = set(before.get("sensors") or []), set(after.get("sensors") or [])
    if sensors_before != sensors_after:
        changes.append(f"sensors {len(sensors_before)} → {len(sensors_after)}")
    return changes


def _moved_m(before: dict, after: dict) -> float | None:
    """Distance between the two revisions' located positions; None when one has none or frames differ."""
    try:
        plane = Plane.around([before])
        plane.check(after, "revision")
        return distance_m(plane.xy(before), plane.xy(after))
    except (FrameError, KeyError, TypeError, ValueError):
        return None


def _text(value) -> str:
    return "(none)" if value is None else str(value)
