"""The unreported-gunfire report's files: a CSV, a GeoJSON of the areas with their figures, a choropleth PNG.

Areas are shaded by their unreported share (0: every incident was called in; 1: none was); an
area without incidents is hatched grey; each incident is a dot, filled where a call matched it
and hollow where nobody called. Drawn with matplotlib (Agg) in the plane's metres.
"""
from __future__ import annotations

import csv
import pathlib

import matplotlib
import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Polygon as PolygonPatch

from fusion.forensics.frame import FRAME_WGS84, Plane
from fusion.forensics.geojson import Area, feature, write_collection
from fusion.forensics.unreported import CONFIDENCE, AreaCount

FIG_SIZE_IN = (9.0, 8.0)
FIG_DPI = 110
COLORMAP = "RdYlGn_r"
NO_DATA_GREY = "0.85"
CSV_COLUMNS = ("area", "incidents", "called", "unreported", "unreported_share", "ci_low", "ci_high")
PERCENT = 100.0


def write_outputs(out_dir: pathlib.Path, areas: list[Area], counts: list[AreaCount], incidents: list[dict],
                  called: set[str], plane: Plane, title: str) -> dict[str, pathlib.Path]:
    """Write ``unreported.csv``, ``unreported.geojson`` and ``unreported.png`` into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [c.row(CONFIDENCE) for c in counts]
    paths = {"csv": out_dir / "unreported.csv", "geojson": out_dir / "unreported.geojson", "png": out_dir / "unreported.png"}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if r[k] is None else r[k]) for k in CSV_COLUMNS} for r in rows)
    by_name = {r["area"]: r for r in rows}
    write_collection(paths["geojson"], [feature(a.polygon, plane, {**a.properties, **by_name[a.name]}) for a in areas])
    choropleth(areas, by_name, incidents, called, plane, title).savefig(paths["png"], format="png")
    return paths


def choropleth(areas: list[Area], rows: dict[str, dict], incidents: list[dict], called: set[str], plane: Plane,
               title: str) -> Figure:
    """The areas shaded by unreported share, labelled "k/n (lo-hi %)", and the incidents as dots."""
    fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI)
    ax = fig.subplots()
    cmap = matplotlib.colormaps[COLORMAP]
    for area in areas:
        row = rows[area.name]
        share = row["unreported_share"]
        polys = getattr(area.polygon, "geoms", [area.polygon])
        patches = [PolygonPatch(np.asarray(p.exterior.coords), closed=True) for p in polys]
        colour = cmap(share) if share is not None else NO_DATA_GREY
        ax.add_collection(PatchCollection(patches, facecolor=colour, edgecolor="k", linewidth=0.8,
                                          hatch=None if share is not None else "//", alpha=0.85))
        at = area.polygon.representative_point()
        label = f"{area.name}\n" + (f"{row['unreported']}/{row['incidents']} not called\n"
                                    f"{share * PERCENT:.0f}% ({row['ci_low'] * PERCENT:.0f}-{row['ci_high'] * PERCENT:.0f}%)"
                                    if share is not None else "no gunfire")
        ax.annotate(label, (at.x, at.y), ha="center", va="center", fontsize=8)
    if incidents:
        xy = np.array([plane.xy(i) for i in incidents])
        was_called = np.array([i["incident"] in called for i in incidents])
        ax.plot(xy[was_called, 0], xy[was_called, 1], "o", color="k", ms=5, label="incident a 911 call matched")
        ax.plot(xy[~was_called, 0], xy[~was_called, 1], "o", mfc="white", mec="k", ms=5, label="incident nobody called in")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.7, label=f"unreported share (labels: {CONFIDENCE:.0%} Wilson interval)")
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    unit = "m east of the areas' centre" if plane.frame == FRAME_WGS84 else "x east (m)"
    ax.set_xlabel(unit)
    ax.set_ylabel("m north" if plane.frame == FRAME_WGS84 else "y north (m)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
