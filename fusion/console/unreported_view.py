"""The console's calls and unreported pages: 911 calls with their matches, and gunfire nobody called in.

The figures are those of `earwitness unreported`: the same selection of incidents and matched calls
(:func:`fusion.server.calls.counted_incidents`), the same per-area counts and 95 % Wilson
intervals (:func:`fusion.forensics.unreported.tally`).  The choropleth is drawn as SVG in the
areas' plane metres with the command's colour map (matplotlib's ``RdYlGn_r``: green where every
incident was called in, red where none was), an area without gunfire hatched grey, an incident a
call matched as a filled dot and one nobody called in as a hollow one.

Example::

    page = unreported_page(store, areas_path, {"gunfire"})
"""
from __future__ import annotations

import dataclasses
import pathlib

import matplotlib
import matplotlib.colors

from fusion.forensics.frame import Plane
from fusion.forensics.geojson import Area, read_polygons
from fusion.forensics.unreported import CONFIDENCE, tally
from fusion.server.calls import CallLog, counted_incidents

COLORMAP = "RdYlGn_r"   # as fusion.unreported's PNG
NO_DATA_FILL = "url(#no-data)"
PAD_FRACTION = 0.06
MIN_EXTENT_M = 100.0
DOT_FRACTION = 0.008
LABEL_FRACTION = 0.022
DEFAULT_CLASSES = frozenset({"gunfire"})


@dataclasses.dataclass
class Choropleth:
    view_box: str
    width_m: float
    dot_m: float
    font_m: float
    areas: list[dict]      # {"name", "d" (SVG path), "fill", "label_x", "label_y", "row"}
    dots: list[dict]       # {"incident", "x", "y", "called"}


def calls_page(store) -> dict:
    """Every stored call, in time order, each with the incidents it matched (and the rule of each match)."""
    log = CallLog(store)
    by_call: dict[str, list[dict]] = {}
    for m in log.matches():
        by_call.setdefault(m["call_id"], []).append(m)
    calls = [dict(c, matches=by_call.get(c["call_id"], [])) for c in log.calls()]
    return {"calls": calls, "matched": sum(bool(c["matches"]) for c in calls)}


def unreported_page(store, areas_path: str | pathlib.Path | None, classes=DEFAULT_CLASSES) -> dict:
    """The table rows (as the command's CSV) and the choropleth of the store's incidents."""
    incidents, called = counted_incidents(store, set(classes))
    plane = Plane.around(incidents)
    areas = read_polygons(areas_path, plane) if areas_path else []
    counts = tally(areas, incidents, called, plane)
    rows = [c.row(CONFIDENCE) for c in counts]
    return {"rows": rows, "classes": sorted(classes), "confidence": CONFIDENCE, "areas_file": bool(areas),
            "map": choropleth(areas, {r["area"]: r for r in rows}, incidents, called, plane)}


def choropleth(areas: list[Area], rows: dict[str, dict], incidents: list[dict], called: set[str],
               plane: Plane) -> Choropleth | None:
    """SVG geometry of the areas shaded by unreported share and the incidents as dots (None if nothing to draw)."""
    xy = [plane.xy(i) for i in incidents]
    xs = [x for a in areas for x in (a.polygon.bounds[0], a.polygon.bounds[2])] + [p[0] for p in xy]
    ys = [y for a in areas for y in (a.polygon.bounds[1], a.polygon.bounds[3])] + [p[1] for p in xy]
    if not xs:
        return None
    extent = max(max(xs) - min(xs), max(ys) - min(ys), MIN_EXTENT_M)
    pad = extent * PAD_FRACTION
    width, height = (max(max(v) - min(v), MIN_EXTENT_M) + 2 * pad for v in (xs, ys))
    x0 = (max(xs) + min(xs) - width) / 2
    y0 = -(max(ys) + min(ys) + height) / 2    # SVG's y points down: north is -y
    cmap = matplotlib.colormaps[COLORMAP]
    drawn = []
    for area in areas:
        row = rows[area.name]
        share = row["unreported_share"]
        at = area.polygon.representative_point()
        drawn.append({"name": area.name, "d": _path(area.polygon), "row": row, "label_x": at.x, "label_y": -at.y,
                      "fill": NO_DATA_FILL if share is None else matplotlib.colors.to_hex(cmap(share))})
    dots = [{"incident": i["incident"], "x": p[0], "y": -p[1], "called": i["incident"] in called}
            for i, p in zip(incidents, xy)]
    return Choropleth(f"{x0:.1f} {y0:.1f} {width:.1f} {height:.1f}", width, extent * DOT_FRACTION,
                      extent * LABEL_FRACTION, drawn, dots)


def _path(polygon) -> str:
    """An SVG path (y flipped) of a Polygon or MultiPolygon with its holes (even-odd fill)."""
    parts = []
    for poly in getattr(polygon, "geoms", [polygon]):
        for ring in [poly.exterior, *poly.interiors]:
            coords = list(ring.coords)
            parts.append("M " + " L ".join(f"{x:.1f} {-y:.1f}" for x, y in coords) + " Z")
    return " ".join(parts)
