"""Virtual sensor arrays: where the sensors are, in a local frame or on the WGS84 ellipsoid.

Inside the simulator every position is local Cartesian metres (x east, y north, z up, z = 0
the ground). An array read from latitudes and longitudes keeps its geodetic origin so that
what the simulator writes (sensors CSV, truth) is in the frame the user gave (DESIGN.md).
Geodetic conversions use pymap3d's ENU transforms.
"""
from __future__ import annotations

import csv
import json
import math
import pathlib
from dataclasses import dataclass

import numpy as np
import pymap3d

from earwitness.units import SQ_MI_M2

SQ_KM_M2 = 1e6
ROOFTOP_M = 10.0                  # sensors go on roofs and poles
LOCAL_HEADER = ("sensor", "x", "y", "z")
WGS84_HEADER = ("sensor", "lat", "lon", "alt")


class ArrayError(ValueError):
    """A layout that cannot be built or a sensors file that cannot be read (one-line message)."""


@dataclass
class Array:
    """Sensor ids and true positions (N, 3) in local metres; ``origin`` (lat, lon, alt) if the frame is WGS84."""

    ids: list[str]
    xyz: np.ndarray
    origin: tuple[float, float, float] | None = None
    covered_m2: float | None = None     # the area a grid or random layout was laid over

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def frame(self) -> str:
        return "wgs84" if self.origin else "local"

    def position(self, xyz) -> dict:
        """A position as the output frame spells it: ``{"x","y","z"}`` or ``{"lat","lon","alt"}``."""
        return position_fields(xyz, self.origin)

    def area_m2(self) -> float:
        """Area the array covers, the denominator of per-area rates: the laid-out rectangle,
        or for a file the sensors' bounding box (at least 1 m²)."""
        if self.covered_m2:
            return self.covered_m2
        span = np.ptp(self.xyz[:, :2], axis=0) if len(self) else np.zeros(2)
        return float(max(span[0], 1.0) * max(span[1], 1.0))

    def write_csv(self, path, xyz=None) -> None:
        """Write a sensors CSV (DESIGN.md) of ``xyz`` (default: the true positions) in the array's frame."""
        xyz = self.xyz if xyz is None else xyz
        with open(path, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(WGS84_HEADER if self.origin else LOCAL_HEADER)
            for sid, p in zip(self.ids, xyz):
                pos = self.position(p)
                out.writerow([sid, *pos.values()])

    def subset(self, ids) -> "Array":
        index = {s: i for i, s in enumerate(self.ids)}
        missing = [s for s in ids if s not in index]
        if missing:
            raise ArrayError(f"unknown sensor {missing[0]!r}")
        rows = [index[s] for s in ids]
        return Array([self.ids[i] for i in rows], self.xyz[rows], self.origin, self.covered_m2)


def position_fields(xyz, origin=None) -> dict:
    """``{"x","y","z"}`` (rounded to mm) or, with a geodetic ``origin``, ``{"lat","lon","alt"}``."""
    x, y, z = (float(v) for v in xyz)
    if origin is None:
        return {"x": round(x, 3), "y": round(y, 3), "z": round(z, 3)}
    lat, lon, alt = pymap3d.enu2geodetic(x, y, z, *origin)
    return {"lat": round(float(lat), 8), "lon": round(float(lon), 8), "alt": round(float(alt), 3)}


def to_local(lat, lon, alt, origin) -> np.ndarray:
    """WGS84 (arrays) to local ENU metres about ``origin`` (lat, lon, alt); pymap3d.geodetic2enu."""
    e, n, u = pymap3d.geodetic2enu(np.asarray(lat, float), np.asarray(lon, float), np.asarray(alt, float), *origin)
    return np.column_stack([np.atleast_1d(e), np.atleast_1d(n), np.atleast_1d(u)])


def _density_m2(density_per_sq_mi=None, density_per_km2=None) -> float:
    if (density_per_sq_mi is None) == (density_per_km2 is None):
        raise ArrayError("give exactly one of density_per_sq_mi or density_per_km2")
    d = density_per_sq_mi / SQ_MI_M2 if density_per_sq_mi is not None else density_per_km2 / SQ_KM_M2
    if not d > 0:
        raise ArrayError("sensor density must be positive")
    return d


def grid(width_m: float, height_m: float, spacing_m: float | None = None, z_m: float = ROOFTOP_M,
         density_per_sq_mi: float | None = None, density_per_km2: float | None = None, prefix: str = "S") -> Array:
    """A square grid covering ``width_m`` × ``height_m`` (origin at the south-west corner).

    Either ``spacing_m`` or a density (sensors per square mile or per km²), from which the
    spacing is 1/sqrt(density); sensors sit at cell centres.
    """
    if spacing_m is None:
        spacing_m = 1.0 / math.sqrt(_density_m2(density_per_sq_mi, density_per_km2))
    if not (spacing_m > 0 and width_m > 0 and height_m > 0):
        raise ArrayError("grid width, height and spacing must be positive")
    nx = max(1, int(round(width_m / spacing_m)))
    ny = max(1, int(round(height_m / spacing_m)))
    xs = (np.arange(nx) + 0.5) * width_m / nx
    ys = (np.arange(ny) + 0.5) * height_m / ny
    gx, gy = np.meshgrid(xs, ys)
    xyz = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, float(z_m))])
    return Array([f"{prefix}{i:04d}" for i in range(len(xyz))], xyz, covered_m2=width_m * height_m)


def random_layout(width_m: float, height_m: float, rng: np.random.Generator, z_m: float = ROOFTOP_M,
                  density_per_sq_mi: float | None = None, density_per_km2: float | None = None,
                  min_spacing_m: float = 0.0, prefix: str = "S") -> Array:
    """Sensors scattered uniformly at a density over a rectangle, no two closer than ``min_spacing_m``.

    Dart throwing (rejection of too-close candidates), the simple Poisson-disc sampler; a
    city puts sensors where it gets roof rights, not on a grid.
    """
    count = max(1, int(round(_density_m2(density_per_sq_mi, density_per_km2) * width_m * height_m)))
    pts: list[np.ndarray] = []
    tries = 0
    while len(pts) < count:
        tries += 1
        if tries > 100 * count:
            raise ArrayError(f"cannot place {count} sensors {min_spacing_m} m apart in {width_m} × {height_m} m")
        p = rng.uniform([0.0, 0.0], [width_m, height_m])
        if min_spacing_m and pts and np.min(np.linalg.norm(np.array(pts) - p, axis=1)) < min_spacing_m:
            continue
        pts.append(p)
    xy = np.array(pts)
    xyz = np.column_stack([xy, np.full(len(xy), float(z_m))])
    return Array([f"{prefix}{i:04d}" for i in range(len(xyz))], xyz, covered_m2=width_m * height_m)


def read_csv(path, origin=None) -> Array:
    """Read a sensors CSV: header ``sensor,x,y,z`` or ``sensor,lat,lon,alt`` (DESIGN.md).

    A WGS84 file is converted to local metres about ``origin`` (default: its first sensor
    at ground level, alt of the lowest sensor).
    """
    path = pathlib.Path(path)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ArrayError(f"{path}: empty sensors file")
    header = tuple(h.strip().lower() for h in rows[0])
    if header not in (LOCAL_HEADER, WGS84_HEADER):
        raise ArrayError(f"{path}: header must be sensor,x,y,z or sensor,lat,lon,alt (got {','.join(rows[0])})")
    ids, vals = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 4:
            raise ArrayError(f"{path}:{line}: expected 4 fields, got {len(row)}")
        try:
            v = [float(x) for x in row[1:]]
        except ValueError:
            raise ArrayError(f"{path}:{line}: not a number in {','.join(row[1:])}") from None
        if not all(math.isfinite(x) for x in v):
            raise ArrayError(f"{path}:{line}: non-finite coordinate")
        ids.append(row[0].strip())
        vals.append(v)
    return _build(path, ids, np.array(vals, float).reshape(-1, 3), header == WGS84_HEADER, origin)


def read_geojson(path, origin=None, default_alt_m: float = ROOFTOP_M) -> Array:
    """Read sensors from a GeoJSON FeatureCollection of Points ([lon, lat] or [lon, lat, alt], RFC 7946).

    The id is the feature's ``id`` or its ``sensor``/``name`` property; positions become
    local metres about ``origin`` (default: first sensor) and the frame stays WGS84.
    """
    path = pathlib.Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArrayError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list):
        raise ArrayError(f"{path}: not a GeoJSON FeatureCollection")
    ids, vals = [], []
    for i, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        coords = geom.get("coordinates")
        if geom.get("type") != "Point" or not isinstance(coords, list) or len(coords) < 2:
            raise ArrayError(f"{path}: feature {i} is not a Point")
        props = f.get("properties") or {}
        sid = f.get("id") or props.get("sensor") or props.get("name") or f"S{i:04d}"
        lon, lat = float(coords[0]), float(coords[1])
        alt = float(coords[2]) if len(coords) > 2 else default_alt_m
        ids.append(str(sid))
        vals.append([lat, lon, alt])
    return _build(path, ids, np.array(vals, float).reshape(-1, 3), True, origin)


def _build(path, ids, vals, geodetic, origin) -> Array:
    if not ids:
        raise ArrayError(f"{path}: no sensors")
    dup = {s for s in ids if ids.count(s) > 1}
    if dup:
        raise ArrayError(f"{path}: duplicate sensor {sorted(dup)[0]!r}")
    if not geodetic:
        return Array(ids, vals)
    if np.any(np.abs(vals[:, 0]) > 90) or np.any(np.abs(vals[:, 1]) > 180):
        raise ArrayError(f"{path}: latitude or longitude out of range")
    if origin is None:
        origin = (float(vals[0, 0]), float(vals[0, 1]), float(vals[:, 2].min()) - ROOFTOP_M)
    return Array(ids, to_local(vals[:, 0], vals[:, 1], vals[:, 2], origin), tuple(origin))
