"""The console's map: sensors, located shots and their 95 % ellipses as SVG in local metres.

Positions are east/north metres in the registry's frame (``Sensors.to_enu``; WGS84 registries
are projected about their origin).  SVG's y axis points down, so north is ``-y``; an ellipse's
major axis, given as a bearing clockwise from north, is SVG's x axis rotated by
``bearing - 90`` degrees (SVG rotations are clockwise on screen).
"""
from __future__ import annotations

import dataclasses

# Room around the sensors and shots, as a fraction of the map's extent.
PAD_FRACTION = 0.08
# Marker size as a fraction of the extent: visible at any scale.
MARKER_FRACTION = 0.012
MIN_EXTENT_M = 100.0
BEARING_TO_SVG_DEG = -90.0


@dataclasses.dataclass
class MapView:
    view_box: str
    width_m: float             # the map's width on the ground (its scale)
    marker_m: float
    sensors: list[dict]        # {"id", "x", "y"} in SVG units (metres)
    shots: list[dict]          # {"incident", "x", "y", "rx", "ry", "rotate_deg", "class"}


def map_view(sensors, incidents: list[dict], around_shots_m: float | None = None) -> MapView:
    """The SVG geometry of ``sensors`` (fusion.locator.sensors.Sensors) and the incidents' shots;
    with ``around_shots_m``, only the square that far round the shots (and the sensors in it)."""
    points = [(sid, float(e), float(n)) for sid, (e, n, _) in zip(sensors.ids, sensors.enu_m)]
    shots = _located_shots(sensors, incidents)
    if around_shots_m is not None and shots:
        east, north = [s[2] for s in shots], [s[3] for s in shots]
        points = [(sid, e, n) for sid, e, n in points if min(east) - around_shots_m <= e <= max(east) + around_shots_m
                  and min(north) - around_shots_m <= n <= max(north) + around_shots_m]
        corners = [("", min(east) - around_shots_m, min(north) - around_shots_m),
                   ("", max(east) + around_shots_m, max(north) + around_shots_m)]
        return _view(points, shots, corners)
    return _view(points, shots, [])


def _located_shots(sensors, incidents: list[dict]) -> list[tuple[dict, dict, float, float]]:
    shots = []
    for inc in incidents:
        for shot in inc.get("shots", []):
            try:
                e, n, _ = sensors.to_enu(shot)
            except (KeyError, TypeError):
                continue   # a shot without a position has nothing to draw
            shots.append((inc, shot, float(e), float(n)))
    return shots


def _view(points: list, shots: list, corners: list) -> MapView:
    """The view holding ``points`` (sensors), ``shots`` and ``corners`` (bounds only)."""
    xs = [p[1] for p in points + corners] + [s[2] for s in shots]
    ys = [p[2] for p in points + corners] + [s[3] for s in shots]
    if not xs:
        xs, ys = [0.0], [0.0]
    extent = max(max(xs) - min(xs), max(ys) - min(ys), MIN_EXTENT_M)
    pad = extent * PAD_FRACTION
    x0, top = min(xs) - pad, max(ys) + pad
    width, height = max(xs) - min(xs) + 2 * pad, max(ys) - min(ys) + 2 * pad
    svg_sensors = [{"id": sid, "x": e - x0, "y": top - n} for sid, e, n in points]
    svg_shots = [_shot(inc, shot, e - x0, top - n) for inc, shot, e, n in shots]
    return MapView(f"0 0 {width:.1f} {height:.1f}", width, extent * MARKER_FRACTION, svg_sensors, svg_shots)


def _shot(incident: dict, shot: dict, x: float, y: float) -> dict:
    ellipse = shot.get("ellipse") or {}
    err_m = float(shot.get("err_m") or 0.0)
    rx = float(ellipse.get("semi_major_m", err_m))
    ry = float(ellipse.get("semi_minor_m", err_m))
    rotate = float(ellipse.get("orientation_deg", 0.0)) + BEARING_TO_SVG_DEG
    return {"incident": incident["incident"], "x": x, "y": y, "rx": rx, "ry": ry, "rotate_deg": rotate,
            "class": incident.get("class", "unknown")}
