"""What the console's map draws, as GeoJSON in the site's own frame: sensors, shots, 95 % ellipses, who heard what.

Coordinates are written as the registry gives positions (DESIGN.md: output uses the frame the
input used): longitude, latitude for a WGS84 site, x east, y north metres for a local one (the
page then draws on a plain metre grid, north up).  A shot's 95 % ellipse (``ellipse``:
semi-axes in metres, the major axis' bearing clockwise from north) is turned into a polygon in
east-north metres about the shot and written back into the frame; a shot with only ``err_m``
gets the circle of that radius.  Each shot also has one line to every sensor it lists as
having heard it, so the page can show which sensors heard what.

Features carry ``kind`` (``sensor``, ``shot``, ``ellipse``, ``heard``), and the shot's
``incident``; the page styles and filters by them.

Example::

    plane = site_plane(registry.sensors)
    doc = map_features(registry.positions, store.incidents(), plane)
"""
from __future__ import annotations

import math

import numpy as np

from fusion.forensics.frame import FRAME_WGS84, Plane

# Vertices of an ellipse's polygon: smooth at any zoom a console shows.
ELLIPSE_VERTICES = 72
INCIDENT_KEYS = ("class", "status", "revision", "rounds", "confidence")


def site_plane(sensors) -> Plane:
    """The plane of the site's registry (fusion.locator.sensors.Sensors): identity, or ENU about its origin."""
    if sensors.frame == FRAME_WGS84:
        return Plane(FRAME_WGS84, (float(sensors.origin[0]), float(sensors.origin[1])))
    return Plane(sensors.frame)


def map_features(positions: dict[str, dict], incidents: list[dict], plane: Plane) -> dict:
    """A FeatureCollection of the sensors (``positions`` as in the registry) and the incidents' located shots."""
    features = [_point("sensor", _coords(pos, plane), {"sensor": name}) for name, pos in positions.items()]
    for inc in incidents:
        features += incident_features(inc, positions, plane)
    return {"type": "FeatureCollection", "features": features}


def incident_features(incident: dict, positions: dict[str, dict], plane: Plane) -> list[dict]:
    """Per located shot (the incident itself if it lists none): its point, 95 % ellipse and lines to its sensors."""
    shots = [s for s in incident.get("shots", []) if _located(s, plane)]
    if not shots and _located(incident, plane):
        shots = [dict(incident, shooter=incident.get("shooter", 0))]
    about = {"incident": incident["incident"], **{k: incident.get(k) for k in INCIDENT_KEYS}}
    out = []
    for number, shot in enumerate(shots, 1):
        props = {**about, "shot": number, "shooter": shot.get("shooter"), "err_m": shot.get("err_m")}
        at = _coords(shot, plane)
        out.append(_point("shot", at, dict(props, sensors=list(shot.get("sensors", [])))))
        ring = ellipse_ring(shot, plane)
        if ring is not None:
            out.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                        "properties": dict(props, kind="ellipse", **_axes(shot))})
        for sensor in shot.get("sensors", []):
            if sensor in positions:
                out.append({"type": "Feature", "properties": dict(props, kind="heard", sensor=sensor),
                            "geometry": {"type": "LineString", "coordinates": [at, _coords(positions[sensor], plane)]}})
    return out


def ellipse_ring(shot: dict, plane: Plane) -> list[list[float]] | None:
    """The shot's 95 % ellipse (else its ``err_m`` circle) as a closed ring in the frame; None without either."""
    axes = _axes(shot)
    if not axes:
        return None
    east, north = plane.xy(shot)
    bearing = math.radians(axes["orientation_deg"])
    major = np.array([math.sin(bearing), math.cos(bearing)])    # unit vector east, north along the bearing
    minor = np.array([math.cos(bearing), -math.sin(bearing)])   # a right angle clockwise of it
    t = np.linspace(0.0, 2.0 * math.pi, ELLIPSE_VERTICES + 1)
    xy = (np.array([east, north]) + np.outer(axes["semi_major_m"] * np.cos(t), major)
          + np.outer(axes["semi_minor_m"] * np.sin(t), minor))
    ring = plane.coords(xy).tolist()
    ring[-1] = ring[0]   # closed exactly
    return ring


def _axes(shot: dict) -> dict:
    ellipse = shot.get("ellipse") or {}
    if {"semi_major_m", "semi_minor_m"} <= set(ellipse):
        return {"semi_major_m": float(ellipse["semi_major_m"]), "semi_minor_m": float(ellipse["semi_minor_m"]),
                "orientation_deg": float(ellipse.get("orientation_deg", 0.0)), "circle": False}
    err_m = shot.get("err_m")
    if err_m is None or not math.isfinite(float(err_m)) or float(err_m) <= 0:
        return {}
    return {"semi_major_m": float(err_m), "semi_minor_m": float(err_m), "orientation_deg": 0.0, "circle": True}


def _located(position: dict, plane: Plane) -> bool:
    keys = ("lon", "lat") if plane.frame == FRAME_WGS84 else ("x", "y")
    return all(isinstance(position.get(k), (int, float)) and math.isfinite(position[k]) for k in keys)


def _coords(position: dict, plane: Plane) -> list[float]:
    """GeoJSON coordinates of a position dict in the frame: [lon, lat] or [x, y]."""
    keys = ("lon", "lat") if plane.frame == FRAME_WGS84 else ("x", "y")
    return [float(position[keys[0]]), float(position[keys[1]])]


def _point(kind: str, coords: list[float], props: dict) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": coords}, "properties": dict(props, kind=kind)}
