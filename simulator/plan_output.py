"""The plan's grid over an area and its files: CSV, GeoJSON of the cells, heat maps (PNG), suggested sensors.

The heat maps are drawn with matplotlib (Agg) in the plane's metres: P(located) on a 0-1
scale, the expected 95 % error on a logarithmic one; sensors as triangles, removed ones as
crosses, suggested ones as stars.
"""
from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
import shapely
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from fusion.forensics.frame import FRAME_WGS84, Plane
from fusion.forensics.geojson import feature, write_collection
from simulator.plan import Coverage

PLAN_MARGIN_M = 500.0        # without an area: the sensors' bounding box grown by this
FIG_DPI = 110
PANEL_IN = 5.0
ERR_RANGE_M = (2.0, 500.0)   # the error colour scale's ends
PROB_DECIMALS = 4
ERR_DECIMALS = 1


def grid_cells(area, grid_m: float) -> np.ndarray:
    """Centres (C, 2) of the grid_m squares whose centre lies in ``area`` (a shapely geometry in plane metres)."""
    x0, y0, x1, y1 = area.bounds
    xs = np.arange(x0 + grid_m / 2.0, x1, grid_m)
    ys = np.arange(y0 + grid_m / 2.0, y1, grid_m)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    return pts[shapely.contains_xy(area, pts[:, 0], pts[:, 1])]


def default_area(sensors_xy: np.ndarray):
    """The sensors' bounding box grown by PLAN_MARGIN_M."""
    lo, hi = sensors_xy.min(axis=0) - PLAN_MARGIN_M, sensors_xy.max(axis=0) + PLAN_MARGIN_M
    return shapely.box(lo[0], lo[1], hi[0], hi[1])


def write_cells(out_dir: pathlib.Path, plane: Plane, grid_m: float, runs: dict[str, Coverage]) -> list[pathlib.Path]:
    """``plan.csv`` and ``plan.geojson``: per cell each run's P(located) and expected 95 % error."""
    first = next(iter(runs.values()))
    pos = [plane.position(x, y) for x, y in first.cells_xy]
    columns = list(pos[0]) + [f"{k}_{name}" for name in runs for k in ("p_locate", "err95_m")]
    values = []
    for i in range(len(pos)):
        row = dict(pos[i])
        for name, cov in runs.items():
            err = cov.err95_m[i]
            row[f"p_locate_{name}"] = round(float(cov.p_locate[i]), PROB_DECIMALS)
            row[f"err95_m_{name}"] = None if not np.isfinite(err) else round(float(err), ERR_DECIMALS)
        values.append(row)
    csv_path, geo_path = out_dir / "plan.csv", out_dir / "plan.geojson"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in values)
    half = grid_m / 2.0
    write_collection(geo_path, [feature(shapely.box(x - half, y - half, x + half, y + half), plane, row)
                                for (x, y), row in zip(first.cells_xy, values)])
    return [csv_path, geo_path]


def write_sensors_csv(path: pathlib.Path, plane: Plane, names: list[str], xyz: list[np.ndarray]) -> pathlib.Path:
    """New sensors in the Sensors CSV format of the input's frame (local z or WGS84 alt as given)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["sensor", "lat", "lon", "alt"] if plane.frame == FRAME_WGS84 else ["sensor", "x", "y", "z"])
        for name, p in zip(names, xyz):
            where = plane.position(float(p[0]), float(p[1]))
            out.writerow([name, *where.values(), round(float(p[2]), 2)])
    return path


def heat_maps(runs: dict[str, Coverage], grid_m: float, removed_xy: np.ndarray, added_xy: np.ndarray,
              title: str) -> Figure:
    """P(located) and expected 95 % error, one row of two panels per run (before, after)."""
    fig = Figure(figsize=(2 * PANEL_IN + 1.5, PANEL_IN * len(runs) + 0.6), dpi=FIG_DPI)
    axes = np.atleast_2d(fig.subplots(len(runs), 2))
    for row, (name, cov) in zip(axes, runs.items()):
        s = cov.summary()
        for ax, values, norm, cmap, label in (
                (row[0], cov.p_locate, Normalize(0.0, 1.0), "viridis", "P(located)"),
                (row[1], np.clip(cov.err95_m, *ERR_RANGE_M), LogNorm(*ERR_RANGE_M), "magma_r", "expected 95% error (m)")):
            gx, gy, image = _raster(cov.cells_xy, values, grid_m)
            art = ax.pcolormesh(gx, gy, image, norm=norm, cmap=cmap, shading="nearest")
            fig.colorbar(art, ax=ax, shrink=0.8, label=label)
            ax.plot(cov.sensors_xyz[:, 0], cov.sensors_xyz[:, 1], "^", mfc="white", mec="k", ms=5)
            if len(removed_xy):
                ax.plot(removed_xy[:, 0], removed_xy[:, 1], "x", color="red", ms=8, mew=2)
            if name == "after" and len(added_xy):
                ax.plot(added_xy[:, 0], added_xy[:, 1], "*", color="cyan", mec="k", ms=14)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
        row[0].set_title(f"{name}: P(located) mean {s['mean_p_locate']:.3f}, >= 0.9 on {s['covered_share']:.0%}", fontsize=9)
        row[1].set_title(f"{name}: median expected 95% error {s['median_err95_m']} m", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _raster(cells_xy: np.ndarray, values: np.ndarray, grid_m: float):
    """The cells' values on their regular grid (NaN outside the area), for pcolormesh: x, y, image."""
    lo = cells_xy.min(axis=0)
    ij = np.rint((cells_xy - lo) / grid_m).astype(int)
    image = np.full((ij[:, 1].max() + 1, ij[:, 0].max() + 1), np.nan)
    image[ij[:, 1], ij[:, 0]] = values
    return lo[0] + grid_m * np.arange(image.shape[1]), lo[1] + grid_m * np.arange(image.shape[0]), image


def write_summary(path: pathlib.Path, summary: dict) -> pathlib.Path:
    path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return path


