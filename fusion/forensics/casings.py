"""Where to search for cartridge casings: a shot's 95 % region widened by how far casings fly.

A semi-automatic pistol or rifle throws its spent case to the right and rear of the shooter;
cases land mostly within a few metres (ejection-pattern studies for crime-scene
reconstruction, e.g. Garrison, "Reconstructing drive-by shootings from ejected cartridge case
location", AFTE Journal 27(1), 1995: 1-3 m for common pistols, up to ~5 m on hard ground where
they bounce). The search area is the Minkowski sum of the shot's 95 % error ellipse and a
disc of EJECTION_M: every point within EJECTION_M of a place the shooter may have stood, built
with shapely's buffer (an exact parallel offset, polygonised). The shooter's place is unknown
within the ellipse, so the search area holds the casings with at least the ellipse's 95 %
wherever they land within EJECTION_M of the shooter. A revolver keeps its cases: nothing is found
then, and the area says where not to bother twice.
"""
from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Point

from fusion.forensics.frame import Plane

# How far from the shooter casings land (module docstring): the bounce on pavement included.
EJECTION_M = 5.0
# Vertices per quarter circle of the polygonised ellipse and offset: 1 % of area at most.
QUAD_SEGMENTS = 8
AREA_DECIMALS = 0
RADIUS_DECIMALS = 1
# Shots without an ellipse: a circle of err_m.
MIN_AXIS_M = 0.01


def ellipse_polygon(xy, semi_major_m: float, semi_minor_m: float, orientation_deg: float):
    """The 95 % ellipse as a polygon in plane metres (major axis at a compass bearing ``orientation_deg``)."""
    disc = Point(0.0, 0.0).buffer(1.0, quad_segs=QUAD_SEGMENTS)
    # Scale x (east) by the minor axis and y (north) by the major, then turn the north axis to the bearing
    # (shapely rotates counter-clockwise, bearings go clockwise).
    shape = affinity.scale(disc, max(semi_minor_m, MIN_AXIS_M), max(semi_major_m, MIN_AXIS_M), origin=(0.0, 0.0))
    shape = affinity.rotate(shape, -orientation_deg, origin=(0.0, 0.0))
    return affinity.translate(shape, float(xy[0]), float(xy[1]))


def shot_region(shot: dict, plane: Plane):
    """A shot's 95 % region in plane metres: its ellipse, else the circle of its ``err_m``."""
    xy = plane.xy(shot)
    e = shot.get("ellipse") or {}
    if e and all(math.isfinite(float(e[k])) for k in ("semi_major_m", "semi_minor_m", "orientation_deg")):
        return ellipse_polygon(xy, float(e["semi_major_m"]), float(e["semi_minor_m"]), float(e["orientation_deg"]))
    radius = float(shot.get("err_m", 0.0))
    return Point(xy).buffer(max(radius, MIN_AXIS_M), quad_segs=QUAD_SEGMENTS)


def search_region(shot: dict, plane: Plane, ejection_m: float = EJECTION_M):
    """The casing search area of one shot in plane metres: its 95 % region buffered by ``ejection_m``."""
    return shot_region(shot, plane).buffer(ejection_m, quad_segs=QUAD_SEGMENTS)


def shot_casings(shot: dict, plane: Plane, ejection_m: float = EJECTION_M) -> dict:
    """What a shot's alert says of its search area: ``{"radius_m", "ejection_m", "area_m2"}``.

    ``radius_m`` is the circle about the located position that holds the whole area (err_m's
    95 % region grown by the ejection distance); ``area_m2`` the area itself.
    """
    region = search_region(shot, plane, ejection_m)
    centre = np.array(plane.xy(shot))
    far = float(np.max(np.hypot(*(np.asarray(region.exterior.coords) - centre).T)))
    return {"radius_m": round(far, RADIUS_DECIMALS), "ejection_m": ejection_m,
            "area_m2": round(region.area, AREA_DECIMALS)}


def incident_search_area(incident: dict, plane: Plane, ejection_m: float = EJECTION_M):
    """The union of the shots' search areas (plane metres); the incident's own region if it lists no shots."""
    shots = incident.get("shots") or [incident]
    return shapely.union_all([search_region(s, plane, ejection_m) for s in shots])
