"""One plane in metres for positions given either way: local ``x``/``y`` or WGS84 ``lat``/``lon``.

Incidents, cameras, calls and areas each come in the frame their source used (DESIGN.md:
output uses the frame the input used). Geometry (distances, bearings, polygons) is done in a
local east-north plane: a local frame as it is, WGS84 through :mod:`pymap3d`'s ENU about an
origin near the positions (a few km from it, the plane errs by millimetres).
"""
from __future__ import annotations

import math

import numpy as np
import pymap3d

FRAME_LOCAL = "local"
FRAME_WGS84 = "wgs84"
LOCAL_DECIMALS = 2
DEGREE_DECIMALS = 7


class FrameError(ValueError):
    """Positions in a frame the others are not in (lat/lon against local x/y): one line."""


def frame_of(position: dict) -> str:
    """``"wgs84"`` if the dict has ``lat`` and ``lon``, ``"local"`` if ``x`` and ``y``."""
    if "lat" in position and "lon" in position:
        return FRAME_WGS84
    if "x" in position and "y" in position:
        return FRAME_LOCAL
    raise FrameError(f"position {position!r} has neither x/y nor lat/lon")


class Plane:
    """East-north metres for one frame: identity for local positions, ENU about ``origin`` for WGS84.

    ``origin`` is (lat, lon) of the plane's origin; None for a local frame.
    """

    def __init__(self, frame: str, origin: tuple[float, float] | None = None):
        if frame == FRAME_WGS84 and origin is None:
            raise ValueError("a WGS84 plane needs an origin")
        self.frame = frame
        self.origin = origin if frame == FRAME_WGS84 else None

    @classmethod
    def around(cls, positions: list[dict]) -> "Plane":
        """The plane of these positions' frame, its origin (WGS84) at their mean; local if none given."""
        if not positions:
            return cls(FRAME_LOCAL)
        frame = frame_of(positions[0])
        if frame == FRAME_LOCAL:
            return cls(FRAME_LOCAL)
        lat = float(np.mean([float(p["lat"]) for p in positions]))
        lon = float(np.mean([float(p["lon"]) for p in positions]))
        return cls(FRAME_WGS84, (lat, lon))

    def check(self, position: dict, what: str) -> None:
        """FrameError unless ``position`` is in this plane's frame (``what`` names it in the message)."""
        frame = frame_of(position)
        if frame != self.frame:
            given = "lat/lon (WGS84)" if frame == FRAME_WGS84 else "x/y (local metres)"
            wanted = "lat/lon (WGS84)" if self.frame == FRAME_WGS84 else "x/y (local metres)"
            raise FrameError(f"{what} gives {given} but the site's positions are in {wanted}")

    def xy(self, position: dict) -> tuple[float, float]:
        """East, north metres of a position dict in this frame."""
        if self.frame == FRAME_LOCAL:
            return float(position["x"]), float(position["y"])
        e, n, _ = pymap3d.geodetic2enu(float(position["lat"]), float(position["lon"]), 0.0,
                                       self.origin[0], self.origin[1], 0.0)
        return float(e), float(n)

    def xy_many(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) coordinates as the frame writes them in GeoJSON (x, y or lon, lat) to east, north metres."""
        coords = np.asarray(coords, dtype=float).reshape(-1, 2)
        if self.frame == FRAME_LOCAL:
            return coords
        e, n, _ = pymap3d.geodetic2enu(coords[:, 1], coords[:, 0], 0.0, self.origin[0], self.origin[1], 0.0)
        return np.column_stack([e, n])

    def coords(self, xy: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`xy_many`: east, north metres (N, 2) to GeoJSON order (x, y or lon, lat)."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        if self.frame == FRAME_LOCAL:
            return np.round(xy, LOCAL_DECIMALS)
        lat, lon, _ = pymap3d.enu2geodetic(xy[:, 0], xy[:, 1], 0.0, self.origin[0], self.origin[1], 0.0)
        return np.round(np.column_stack([lon, lat]), DEGREE_DECIMALS)

    def position(self, x_m: float, y_m: float) -> dict:
        """A position dict in this frame (``x``/``y`` or ``lat``/``lon``) for east, north metres."""
        a, b = self.coords(np.array([[x_m, y_m]]))[0]
        return {"x": float(a), "y": float(b)} if self.frame == FRAME_LOCAL else {"lat": float(b), "lon": float(a)}


def bearing_deg(from_xy, to_xy) -> float:
    """Compass bearing (degrees clockwise from north, 0-360) from one plane point to another."""
    return math.degrees(math.atan2(to_xy[0] - from_xy[0], to_xy[1] - from_xy[1])) % 360.0


def distance_m(a_xy, b_xy) -> float:
    return math.hypot(b_xy[0] - a_xy[0], b_xy[1] - a_xy[1])
