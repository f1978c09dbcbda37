"""The transparency figures of a fusion store (:mod:`fusion.forensics.transparency`), as the dashboard
and ``earwitness stats`` both show them: one function, so the page and the command agree.

Example::

    table = transparency(store, ["area", "month"], areas_path="areas.geojson")
    table.columns, table.rows
"""
from __future__ import annotations

import dataclasses
import pathlib

from fusion.console.reviews import Reviews
from fusion.forensics.frame import Plane, frame_of
from fusion.forensics.geojson import read_polygons
from fusion.forensics.transparency import columns, tally


@dataclasses.dataclass
class Table:
    by: list[str]
    columns: list[str]
    rows: list[dict]
    alerts: int          # alerts in the store (each counted once, whatever the grouping)


def transparency(store, by: list[str], areas_path: str | pathlib.Path | None = None) -> Table:
    """The figures grouped ``by``; ValueError (GeoJSONError, FrameError) in one line on bad input."""
    incidents = store.incidents()
    actions = Reviews(store).all()
    located = [i for i in incidents if _located(i)]
    plane = Plane.around(located)
    areas = read_polygons(areas_path, plane) if areas_path else None
    rows = tally(incidents, actions, by, areas, plane)
    total = tally(incidents, actions, [])
    return Table(by, columns(by), rows, total[0]["alerts"] if total else 0)


def _located(incident: dict) -> bool:
    try:
        frame_of(incident)
    except ValueError:
        return False
    return True
