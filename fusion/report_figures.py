"""The report's figures: the map of sensors and shots with their 95% ellipses, the waveforms, and close-ups of the picks.

Drawn with matplotlib (:class:`matplotlib.figure.Figure`, no pyplot state); the waveform panels
through :mod:`fusion.waveforms`, which labels their axes with units (ms, fraction of full scale).
"""
from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from earwitness.units import NS_PER_S
from fusion import waveforms
from fusion.report_content import DID_NOT_TRIGGER, is_wgs84

PAGE_SIZE_IN = (8.27, 11.69)          # A4 portrait
FIG_DPI = 110
# An error estimate err_m is drawn as a 95% circle when the locator gives no ellipse nor covariance.
CHI2_2D_95 = 5.991
# East of north, turned to matplotlib's angle (counter-clockwise from the x axis, east).
BEARING_TO_MPL_DEG = 90.0
WAVE_BEFORE_S, WAVE_AFTER_S = 0.2, 0.5
MAP_MARGIN_M = 50.0
MS_PER_S = 1000.0
PICK_COLUMNS = 4
PICK_ROWS_PER_PAGE = 6
PICK_PANEL_IN = 1.75                  # height of a row of pick close-ups


def _local_xy(points: list[dict], origin: dict | None) -> np.ndarray:
    """Positions as metres east/north: local frames as is, WGS84 through pymap3d around ``origin``."""
    if not points:
        return np.zeros((0, 2))
    if not is_wgs84(points[0]):
        return np.array([[float(p["x"]), float(p["y"])] for p in points])
    import pymap3d

    lat0, lon0 = float(origin["lat"]), float(origin["lon"])
    e, n, _ = pymap3d.geodetic2enu(np.array([p["lat"] for p in points], float), np.array([p["lon"] for p in points], float),
                                   0.0, lat0, lon0, 0.0)
    return np.column_stack([e, n])


def map_figure(data) -> Figure:
    """Left: every sensor (used / not used) and the shots; right: the shots close up with 95% error ellipses."""
    inc = data.incident
    fig = Figure(figsize=(PAGE_SIZE_IN[0], PAGE_SIZE_IN[0] * 0.55), dpi=FIG_DPI)
    overview, zoom = fig.subplots(1, 2)
    names = sorted(data.sensors)
    sensor_xy = _local_xy([data.sensors[n] for n in names], inc)
    shots = sorted(inc.get("shots", []), key=lambda s: s["t_ns"])
    shot_xy = _local_xy(shots, inc)
    used = set(inc.get("sensors", []))
    for ax in (overview, zoom):
        for (x, y), name in zip(sensor_xy, names):
            ax.plot(x, y, "^", color="tab:blue" if name in used else "0.6", markersize=7)
        # The close-up keeps its limits (box); the overview stretches its data limits.
        ax.set_aspect("equal", adjustable="box" if ax is zoom else "datalim")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for (x, y), name in zip(sensor_xy, names):
        overview.annotate(name[-4:], (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    colors = matplotlib.colormaps["tab10"]
    reach_m = MAP_MARGIN_M
    for i, (shot, (x, y)) in enumerate(zip(shots, shot_xy), 1):
        color = colors(int(shot.get("shooter", 0)) % 10)
        width, height, angle = _ellipse(shot)
        reach_m = max(reach_m, width, height)
        zoom.add_patch(Ellipse((x, y), width, height, angle=angle, fill=False, color=color))
        zoom.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4 + 8 * (i - 1)), fontsize=8, color=color)
        for ax in (overview, zoom):
            ax.plot(x, y, "x", color=color, markersize=8)
    _draw_casework(inc, overview, zoom)
    if len(shot_xy):
        centre = shot_xy.mean(axis=0)
        zoom.set_xlim(centre[0] - reach_m, centre[0] + reach_m)
        zoom.set_ylim(centre[1] - reach_m, centre[1] + reach_m)
    overview.plot([], [], "^", color="tab:blue", label="sensor used")
    overview.plot([], [], "^", color="0.6", label="sensor not used")
    overview.plot([], [], "x", color="k", label="shot")
    overview.legend(loc="best", fontsize=7)
    frame = "m east of the incident (WGS84 input)" if is_wgs84(inc) else "x, local frame (m)"
    overview.set_xlabel(frame, fontsize=8)
    overview.set_ylabel("y (m)", fontsize=8)
    overview.set_title("Sensors (last 4 characters of their id) and shots", fontsize=9)
    zoom.set_xlabel(frame, fontsize=8)
    zoom.set_title("Shots (numbered in discharge order), 95% error ellipses", fontsize=9)
    zoom.plot([], [], "-", color="k", lw=1, label="95% error ellipse")
    zoom.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def _draw_casework(inc: dict, overview, zoom) -> None:
    """The casing search area (dashed, on the close-up) and the cameras that see the shots (squares, on the overview)."""
    area = inc.get("casings_area")
    if area:
        polygons = area["coordinates"] if area["type"] == "MultiPolygon" else [area["coordinates"]]
        for k, poly in enumerate(polygons):
            ring = poly[0]
            keys = ("lon", "lat") if is_wgs84(inc) else ("x", "y")
            xy = _local_xy([dict(zip(keys, point)) for point in ring], inc)
            zoom.plot(xy[:, 0], xy[:, 1], "--", color="tab:orange", linewidth=1.2,
                      label="casing search area" if k == 0 else None)
        zoom.legend(loc="lower right", fontsize=7)
    cams = [c for c in inc.get("cameras", []) if "at" in c]
    if cams:
        xy = _local_xy([c["at"] for c in cams], inc)
        overview.plot(xy[:, 0], xy[:, 1], "s", color="tab:green", markersize=6, label="camera that sees it")
        for (x, y), cam in zip(xy, cams):
            overview.annotate(cam["camera"], (x, y), textcoords="offset points", xytext=(3, -8), fontsize=6, color="tab:green")


def _ellipse(shot: dict) -> tuple[float, float, float]:
    """Width, height (m) and angle (deg, counter-clockwise from east) of the 95% ellipse.

    From the locator's ``ellipse`` (semi-axes, bearing clockwise from north) if given, else from
    ``cov_m2``, else a circle of err_m.
    """
    e = shot.get("ellipse")
    if e:
        return (2 * float(e["semi_major_m"]), 2 * float(e["semi_minor_m"]),
                BEARING_TO_MPL_DEG - float(e["orientation_deg"]))
    cov = shot.get("cov_m2")
    if cov is not None:
        vals, vecs = np.linalg.eigh(np.asarray(cov, float)[:2, :2])
        vals = np.clip(vals, 0.0, None)
        width, height = 2 * np.sqrt(CHI2_2D_95 * vals[::-1])
        angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
        return float(width), float(height), angle
    diameter = 2 * float(shot.get("err_m", 0.0))
    return diameter, diameter, 0.0


def waveform_figure(data) -> Figure | None:
    """One panel per sensor clip: the waveform and its pulses (used: solid, rejected: dashed); clips of
    sensors that heard nothing of the incident are marked "did not trigger"."""
    if not data.clips:
        return None
    t0_ns = data.incident["t_ns"]
    lo_s, hi_s = _arrival_span_s(data)
    lo_ms, hi_ms = (lo_s - WAVE_BEFORE_S) * MS_PER_S, (hi_s + WAVE_AFTER_S) * MS_PER_S
    fig = Figure(figsize=(PAGE_SIZE_IN[0], max(2.5, 1.5 * len(data.clips))), dpi=FIG_DPI)
    axes = fig.subplots(len(data.clips), 1, sharex=True, squeeze=False)[:, 0]
    heard = {p.get("sensor", p["node"]) for p in data.pulses}
    for ax, clip in zip(axes, data.clips):
        trace = waveforms.clip_trace(clip, t0_ns)
        waveforms.draw_trace(ax, trace, lo_ms, hi_ms, color="k" if clip["node"] in heard else "0.45")
        for p in data.pulses:
            if p.get("sensor", p["node"]) == clip["node"]:
                ax.axvline((p["t_ns"] - t0_ns) / NS_PER_S * MS_PER_S, color="tab:green" if p["used"] else "tab:red",
                           ls="-" if p["used"] else "--", lw=1.0)
        label = clip["node"] if clip["node"] in heard else f"{clip['node']} ({DID_NOT_TRIGGER})"
        ax.set_title(label, fontsize=7, loc="left", pad=2)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("")
    axes[-1].set_xlabel(waveforms.TIME_LABEL, fontsize=8)
    fig.suptitle("Waveforms, amplitude in fraction of full scale (FS); picked arrivals: green used, red dashed rejected",
                 fontsize=9)
    fig.tight_layout()
    return fig


def pick_picks(data) -> list[tuple[dict, dict, float]]:
    """(pulse, clip, pick ms after the first discharge) for every pulse a clip holds audio of, in time order."""
    t0_ns = data.incident["t_ns"]
    out = []
    for clip in data.clips:
        trace = waveforms.clip_trace(clip, t0_ns)
        for p in data.pulses:
            at_ms = (p["t_ns"] - t0_ns) / NS_PER_S * MS_PER_S
            if p.get("sensor", p["node"]) == clip["node"] and waveforms.covers(trace, at_ms):
                out.append((p, clip, at_ms))
    return sorted(out, key=lambda item: item[0]["t_ns"])


def pick_figures(data) -> list[Figure]:
    """Close-ups of +-20 ms around each pick, PICK_COLUMNS x PICK_ROWS_PER_PAGE per figure (a PDF page each)."""
    picks = pick_picks(data)
    per_page = PICK_COLUMNS * PICK_ROWS_PER_PAGE
    traces = {c["node"]: waveforms.clip_trace(c, data.incident["t_ns"]) for c in data.clips}
    figs = []
    for start in range(0, len(picks), per_page):
        chunk = picks[start:start + per_page]
        rows = -(-len(chunk) // PICK_COLUMNS)
        fig = Figure(figsize=(PAGE_SIZE_IN[0], 0.6 + PICK_PANEL_IN * rows), dpi=FIG_DPI)
        axes = fig.subplots(rows, PICK_COLUMNS, squeeze=False).ravel()
        for ax, (p, clip, at_ms) in zip(axes, chunk):
            waveforms.draw_pick_zoom(ax, traces[clip["node"]], at_ms, color="tab:green" if p["used"] else "tab:red",
                                     dashed=not p["used"])
            ax.set_title(f"{clip['node']} {at_ms:.1f} ms{'' if p['used'] else ' (not used)'}", fontsize=6, pad=2)
        for ax in axes[len(chunk):]:
            ax.set_axis_off()
        fig.suptitle(f"Picks close up: {waveforms.PICK_HALF_WIDTH_S * MS_PER_S:.0f} ms either side of each pick "
                     f"(ms from the pick; amplitude in fraction of full scale)", fontsize=9)
        fig.tight_layout()
        figs.append(fig)
    return figs


def _arrival_span_s(data) -> tuple[float, float]:
    """First and last used arrival (all pulses if none was used), seconds after the first discharge."""
    times = [p["t_ns"] for p in data.pulses if p["used"]] or [p["t_ns"] for p in data.pulses] or [data.incident["t_ns"]]
    return (min(times) - data.incident["t_ns"]) / NS_PER_S, (max(times) - data.incident["t_ns"]) / NS_PER_S
