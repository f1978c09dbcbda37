"""A map of a simulated run: the sensors, where the shots really were, and where they were located.

Drawn with matplotlib (Agg, no display needed) in the array's local metres; incidents given in
WGS84 are brought into it with the array's origin (:func:`simulator.arrays.to_local`).

Example::

    write_map(scn, result.incidents, "out/map.png", title="city_demo")
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.figure import Figure

from simulator.arrays import to_local
from simulator.scenario import Scenario

FIG_SIZE_IN = (9.0, 9.0)
FIG_DPI = 110
MARGIN_M = 150.0
LABEL_OFFSET_PT = (6, 6)


def _xy(obj: dict, origin) -> tuple[float, float]:
    if "x" in obj:
        return float(obj["x"]), float(obj["y"])
    e, n, _ = to_local(obj["lat"], obj["lon"], obj.get("alt", origin[2]), origin)[0]
    return float(e), float(n)


def map_figure(scn: Scenario, incidents: list[dict], title: str | None = None) -> Figure:
    """Sensors (triangles; filled if an incident used them), true discharges (circles, one
    colour per true incident), true confounders (grey diamonds), located shots (crosses) with
    their error radius, and each located incident's rounds and shooters."""
    fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI)
    ax = fig.subplots()
    used = {s for inc in incidents for s in inc.get("sensors", [])}
    xy = scn.array.xyz[:, :2]
    is_used = np.array([sid in used for sid in scn.array.ids], bool)
    ax.plot(xy[~is_used, 0], xy[~is_used, 1], "^", mfc="none", mec="0.55", ms=6, label="sensor")
    ax.plot(xy[is_used, 0], xy[is_used, 1], "^", color="tab:blue", ms=6, label="sensor used by an alert")
    truth = scn.truth()
    names = sorted({r["incident"] or f"event {r['event']}" for r in truth if r["gunfire"]})
    colours = {name: f"C{k + 1}" for k, name in enumerate(names)}
    for name in names:
        rows = [r for r in truth if r["gunfire"] and (r["incident"] or f"event {r['event']}") == name]
        pts = np.array([_xy(r, scn.array.origin) for r in rows])
        ax.plot(pts[:, 0], pts[:, 1], "o", mfc="none", mec=colours[name], ms=11, mew=1.5,
                label=f"true: {name} ({len(rows)} rounds, {len({r['shooter'] for r in rows})} shooter(s))")
    other = [r for r in truth if not r["gunfire"]]
    if other:
        pts = np.array([_xy(r, scn.array.origin) for r in other])
        ax.plot(pts[:, 0], pts[:, 1], "D", color="0.4", ms=7, label="true: not gunfire (" +
                ", ".join(sorted({r["kind"] for r in other})) + ")")
    first = True
    for inc in incidents:
        shots = inc.get("shots") or [inc]
        pts = np.array([_xy(s, scn.array.origin) for s in shots])
        ax.plot(pts[:, 0], pts[:, 1], "x", color="k", ms=9, mew=1.8, label="located shot" if first else None)
        first = False
        x, y = pts.mean(axis=0)
        ax.annotate(f"{inc.get('rounds', len(shots))} rd, {inc.get('shooters', 1)} sh, ±{float(inc.get('err_m', 0)):.0f} m",
                    (x, y), textcoords="offset points", xytext=LABEL_OFFSET_PT, fontsize=8)
    lo, hi = xy.min(axis=0) - MARGIN_M, xy.max(axis=0) + MARGIN_M
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("x east (m)")
    ax.set_ylabel("y north (m)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title or scn.name)
    fig.tight_layout()
    return fig


def write_map(scn: Scenario, incidents: list[dict], path, title: str | None = None) -> pathlib.Path:
    """Write :func:`map_figure` as a PNG to ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    map_figure(scn, incidents, title).savefig(path, format="png")
    return path
