"""Cameras that can see a located shot: the registry CSV, line of sight, and the video to pull.

Cameras CSV (DESIGN.md): ``camera,lat,lon[,heading_deg,fov_deg,range_m,url]`` or
``camera,x,y[,...]``, columns in any order. A camera sees a position when it is

* within ``range_m`` of it (DEFAULT_RANGE_M where the row leaves it empty),
* inside the field of view when ``heading_deg`` (compass bearing of the view's centre) and
  ``fov_deg`` (its full width) are given: the bearing to the position lies within fov/2 of the
  heading (a pan-tilt camera, given no heading, can turn to any bearing),
* not behind a building when a buildings layer is given: the straight sight line from the
  camera to the position crosses no building's footprint (2D footprints: a camera on a mast
  above a low roof is taken as blocked all the same; it is a list of cameras to check, and a
  false "cannot see" costs more than one to look at).

Each camera that sees gets its distance, the bearing from it to the position (for a pan-tilt
integration's cue) and the time window of video to pull: from PULL_BEFORE_S before the first
discharge to PULL_AFTER_S after the last (the vehicle that arrived, the people who left).
"""
from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass

import shapely
from shapely.geometry import LineString, Point

from earwitness.shown import header_shown
from earwitness.units import NS_PER_S
from fusion.forensics.csvfile import csv_rows
from fusion.forensics.frame import FrameError, Plane, bearing_deg, distance_m

# A traffic or street camera resolves a vehicle and a person to some 100-200 m; beyond that
# the video shows the scene, not who was in it.
DEFAULT_RANGE_M = 200.0
PULL_BEFORE_S = 60.0
PULL_AFTER_S = 300.0
FULL_CIRCLE_DEG = 360.0
HALF_CIRCLE_DEG = 180.0
DISTANCE_DECIMALS = 1
BEARING_DECIMALS = 1
POSITION_COLUMNS = (("x", "y"), ("lat", "lon"))
OPTIONAL_COLUMNS = ("heading_deg", "fov_deg", "range_m", "url")


class CamerasError(ValueError):
    """The Cameras CSV is malformed: the message names the line, in one line."""


@dataclass(frozen=True)
class Camera:
    """One camera: its id, its place (plane metres and as given), where it looks, how far it sees."""

    camera: str
    x_m: float
    y_m: float
    position: dict
    heading_deg: float | None = None
    fov_deg: float | None = None
    range_m: float = DEFAULT_RANGE_M
    url: str = ""


def read_cameras(path: str | pathlib.Path, plane: Plane) -> list[Camera]:
    """Read a Cameras CSV into ``plane``; CamerasError on a bad header, value or frame, naming the line."""
    path = pathlib.Path(path)
    header, rows = csv_rows(path, CamerasError)
    pos_cols = next((cols for cols in POSITION_COLUMNS if set(cols) <= set(header)), None)
    unknown = set(header) - {"camera", "x", "y", "lat", "lon", *OPTIONAL_COLUMNS}
    if "camera" not in header or pos_cols is None or unknown:
        raise CamerasError(f"{path}: header is {header_shown(header)}; expected "
                           f"camera,lat,lon or camera,x,y, optionally {','.join(OPTIONAL_COLUMNS)}")
    cameras: list[Camera] = []
    for where, row in rows:
        cameras.append(_camera(row, pos_cols, plane, where))
    if len({c.camera for c in cameras}) < len(cameras):
        raise CamerasError(f"{path}: a camera id is listed twice")
    if not cameras:
        raise CamerasError(f"{path}: no cameras listed")
    return cameras


def _camera(row: dict, pos_cols: tuple[str, str], plane: Plane, where: str) -> Camera:
    name = row["camera"].strip()
    if not name or any(c in name for c in "/+#"):
        raise CamerasError(f"{where}: camera id must be non-empty, without / + # (it names an MQTT topic)")
    values = {k: _number(row[k], where, k) for k in pos_cols}
    if pos_cols == ("lat", "lon") and not (-90 <= values["lat"] <= 90 and -180 <= values["lon"] <= 180):
        raise CamerasError(f"{where}: lat/lon {values['lat']}, {values['lon']} out of range")
    try:
        plane.check(values, where)
    except FrameError as exc:
        raise CamerasError(str(exc)) from None
    heading = _optional(row, "heading_deg", where)
    fov = _optional(row, "fov_deg", where)
    range_m = _optional(row, "range_m", where)
    if fov is not None and not 0 < fov <= FULL_CIRCLE_DEG:
        raise CamerasError(f"{where}: fov_deg must be in (0, 360]")
    if range_m is not None and range_m <= 0:
        raise CamerasError(f"{where}: range_m must be positive")
    x_m, y_m = plane.xy(values)
    return Camera(name, x_m, y_m, values, None if heading is None else heading % FULL_CIRCLE_DEG, fov,
                  DEFAULT_RANGE_M if range_m is None else range_m, (row.get("url") or "").strip())


def _number(text: str | None, where: str, column: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise CamerasError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CamerasError(f"{where}: {column} {text!r} is not a finite number")
    return value


def _optional(row: dict, column: str, where: str) -> float | None:
    text = (row.get(column) or "").strip()
    return None if not text else _number(text, where, column)


def in_view(camera: Camera, bearing: float) -> bool:
    """Whether a compass bearing from the camera lies inside its field of view (always, without one)."""
    if camera.heading_deg is None or camera.fov_deg is None:
        return True
    off = abs((bearing - camera.heading_deg + HALF_CIRCLE_DEG) % FULL_CIRCLE_DEG - HALF_CIRCLE_DEG)
    return off <= camera.fov_deg / 2.0


class Buildings:
    """Building footprints (plane metres) that block a camera's sight line, indexed by an STR-tree."""

    def __init__(self, polygons: list):
        self.polygons = list(polygons)
        self.tree = shapely.STRtree(self.polygons)

    def blocks(self, a_xy, b_xy) -> bool:
        """Whether the segment a-b passes through a footprint's inside (running along an edge does not block).

        A footprint holding an end point does not count: a camera on a building's wall, or a
        located position that falls inside a footprint (a shot at a house's front door, placed
        a few metres in by the location's error) would otherwise be hidden by the one building
        that cannot stand between them.
        """
        line = LineString([a_xy, b_xy])
        ends = (Point(a_xy), Point(b_xy))
        for k in self.tree.query(line, predicate="intersects"):
            poly = self.polygons[int(k)]
            if line.crosses(poly) and not any(poly.covers(p) for p in ends):
                return True
        return False


def cameras_seeing(cameras: list[Camera], xy: tuple[float, float], t_first_ns: int, t_last_ns: int,
                   buildings: Buildings | None = None, before_s: float = PULL_BEFORE_S,
                   after_s: float = PULL_AFTER_S) -> list[dict]:
    """The cameras that see ``xy`` (plane metres), nearest first.

    Each ``{"camera", "distance_m", "bearing_deg", "pull_from_ns", "pull_to_ns", "url", "at"}`` (``at``:
    the camera's position as the Cameras CSV gave it):
    ``bearing_deg`` from the camera to the position, clockwise from north; the pull window from
    ``before_s`` before the first discharge to ``after_s`` after the last.
    """
    out = []
    for cam in cameras:
        cam_xy = (cam.x_m, cam.y_m)
        dist = distance_m(cam_xy, xy)
        if dist > cam.range_m:
            continue
        bearing = bearing_deg(cam_xy, xy)
        if not in_view(cam, bearing):
            continue
        if buildings is not None and buildings.blocks(cam_xy, xy):
            continue
        out.append({"camera": cam.camera, "distance_m": round(dist, DISTANCE_DECIMALS),
                    "bearing_deg": round(bearing, BEARING_DECIMALS),
                    "pull_from_ns": int(t_first_ns - before_s * NS_PER_S), "pull_to_ns": int(t_last_ns + after_s * NS_PER_S),
                    "url": cam.url, "at": dict(cam.position)})
    out.sort(key=lambda c: (c["distance_m"], c["camera"]))
    return out


def cue(seen: dict, incident: dict) -> dict:
    """The cue message for a pan-tilt camera (``ew/v1/{site}/camera/{camera}/cue``): where to look and when."""
    return {"camera": seen["camera"], "incident": incident["incident"], "revision": incident.get("revision"),
            "status": incident.get("status"), "t_ns": int(incident["t_ns"]), "bearing_deg": seen["bearing_deg"],
            "distance_m": seen["distance_m"], "pull_from_ns": seen["pull_from_ns"], "pull_to_ns": seen["pull_to_ns"]}
