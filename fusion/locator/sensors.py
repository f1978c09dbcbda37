"""Sensor positions: read the Sensors CSV and work in one local east-north-up frame.

The Sensors CSV has the header ``sensor,x,y,z`` (local metres, x east, y north, z up) or
``sensor,lat,lon,alt`` (WGS84 degrees and metres), one row per sensor, columns in any order.
Geodetic positions are converted to a local ENU frame with :mod:`pymap3d` (origin at the
sensors' mean position), so all geometry is done in metres; :meth:`Sensors.to_output`
turns a computed position back into the frame the input used.

Two sensors at one position (closer than MIN_SEPARATION_M) are refused: the locator counts
sensors to decide that a shot is fixed (d + 2 of them), and two at one spot add a second
time of one arrival but no geometry, so they would pass a degenerate set for a fixed one.
Two microphones on one mast are one sensor: list one of them (or their mean time).
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field

import numpy as np
import pymap3d
from scipy.spatial import cKDTree

from earwitness.shown import header_shown

LOCAL_COLUMNS = ("sensor", "x", "y", "z")
WGS84_COLUMNS = ("sensor", "lat", "lon", "alt")
FRAME_LOCAL = "local"
FRAME_WGS84 = "wgs84"
# Decimal places written back: 1 mm locally, ~1 mm of latitude/longitude.
LOCAL_DECIMALS = 3
DEGREE_DECIMALS = 8
# Sensors closer than this are at one position (1 cm: below any survey's precision, and
# 30 us of sound, under the timing of one sample at 48 kHz).
MIN_SEPARATION_M = 0.01


class SensorsError(ValueError):
    """The Sensors CSV is malformed: the message says where and why, in one line."""


@dataclass
class Sensors:
    """Sensor ids and positions in a local ENU frame (metres).

    Attributes
    ----------
    ids : list of str
        Sensor ids, in file order.
    enu_m : numpy.ndarray, shape (n, 3)
        East, north, up positions in metres.
    frame : str
        ``"local"`` if the input gave x/y/z, ``"wgs84"`` if it gave lat/lon/alt.
    origin : tuple of float or None
        (lat, lon, alt) of the ENU origin when ``frame == "wgs84"``.
    """

    ids: list[str]
    enu_m: np.ndarray
    frame: str = FRAME_LOCAL
    origin: tuple[float, float, float] | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.enu_m = np.asarray(self.enu_m, dtype=float).reshape(-1, 3)
        if len(self.ids) != len(self.enu_m):
            raise SensorsError("sensor ids and positions differ in number")
        self.index = {sid: i for i, sid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_local(cls, positions: dict[str, tuple[float, float, float]]) -> "Sensors":
        """Sensors from ``{id: (x, y, z)}`` in local metres."""
        return cls(list(positions), np.array(list(positions.values()), dtype=float), FRAME_LOCAL)

    @classmethod
    def from_wgs84(cls, positions: dict[str, tuple[float, float, float]]) -> "Sensors":
        """Sensors from ``{id: (lat, lon, alt)}``; the ENU origin is their mean position."""
        geo = np.array(list(positions.values()), dtype=float).reshape(-1, 3)
        origin = tuple(float(v) for v in geo.mean(axis=0))
        e, n, u = pymap3d.geodetic2enu(geo[:, 0], geo[:, 1], geo[:, 2], *origin)
        return cls(list(positions), np.column_stack([e, n, u]), FRAME_WGS84, origin)

    def to_output(self, enu_m) -> dict[str, float]:
        """A position in the input's frame: ``{"x","y","z"}`` or ``{"lat","lon","alt"}``."""
        e, n, u = (float(v) for v in enu_m)
        if self.frame == FRAME_LOCAL:
            return {"x": round(e, LOCAL_DECIMALS), "y": round(n, LOCAL_DECIMALS), "z": round(u, LOCAL_DECIMALS)}
        lat, lon, alt = pymap3d.enu2geodetic(e, n, u, *self.origin)
        return {"lat": round(float(lat), DEGREE_DECIMALS), "lon": round(float(lon), DEGREE_DECIMALS),
                "alt": round(float(alt), LOCAL_DECIMALS)}

    def to_enu(self, position: dict) -> np.ndarray:
        """The inverse of :meth:`to_output`: a position dict in the input's frame to ENU metres."""
        if self.frame == FRAME_LOCAL:
            return np.array([position["x"], position["y"], position.get("z", 0.0)], dtype=float)
        return np.array(pymap3d.geodetic2enu(position["lat"], position["lon"], position.get("alt", self.origin[2]),
                                             *self.origin), dtype=float)


def _number(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SensorsError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SensorsError(f"{where}: {column} is {text!r}, not a finite number")
    return value


def read_sensors(source, name: str | None = None) -> Sensors:
    """Read a Sensors CSV.

    Parameters
    ----------
    source : str, os.PathLike or file-like
        The CSV file (a path, or an open text file).
    name : str, optional
        How to call the file in messages (default: its path).

    Returns
    -------
    Sensors

    Raises
    ------
    SensorsError
        On a wrong header, a missing or non-finite number, an out-of-range latitude or
        longitude, a duplicate or empty sensor id, or no rows; the message names the line.
    """
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        with open(source, "rb") as fh:
            data = fh.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise SensorsError(f"{name} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                               "save the CSV as UTF-8") from None
        return read_sensors(io.StringIO(text, newline=""), name)
    name = name or "sensors CSV"
    reader = csv.DictReader(source)
    header = tuple(h.strip() for h in (reader.fieldnames or ()))
    if sorted(header) == sorted(LOCAL_COLUMNS):
        frame, columns = FRAME_LOCAL, LOCAL_COLUMNS[1:]
    elif sorted(header) == sorted(WGS84_COLUMNS):
        frame, columns = FRAME_WGS84, WGS84_COLUMNS[1:]
    else:
        raise SensorsError(f"{name}: header is {header_shown(header)}; "
                           f"expected {','.join(LOCAL_COLUMNS)} or {','.join(WGS84_COLUMNS)}")
    reader.fieldnames = list(header)
    positions: dict[str, tuple[float, float, float]] = {}
    lines: list[int] = []
    for row in reader:
        where = f"{name} line {reader.line_num}"
        if None in row or any(v is None for v in row.values()):
            raise SensorsError(f"{where}: expected {len(header)} fields")
        sid = row["sensor"].strip()
        if not sid:
            raise SensorsError(f"{where}: empty sensor id")
        if sid in positions:
            raise SensorsError(f"{where}: sensor {sid!r} listed twice")
        values = tuple(_number(row[c], where, c) for c in columns)
        if frame == FRAME_WGS84 and not (-90 <= values[0] <= 90 and -180 <= values[1] <= 180):
            raise SensorsError(f"{where}: lat/lon {values[0]}, {values[1]} out of range")
        positions[sid] = values
        lines.append(reader.line_num)
    if not positions:
        raise SensorsError(f"{name}: no sensors listed")
    sensors = Sensors.from_local(positions) if frame == FRAME_LOCAL else Sensors.from_wgs84(positions)
    _check_apart(sensors, name, lines)
    return sensors


def _check_apart(sensors: Sensors, name: str, lines: list[int]) -> None:
    """Raise SensorsError naming the first two sensors closer than MIN_SEPARATION_M (a k-d tree's pair query)."""
    pairs = cKDTree(sensors.enu_m).query_pairs(MIN_SEPARATION_M, output_type="ndarray")
    if len(pairs):
        i, j = sorted(sorted(int(v) for v in pair) for pair in pairs)[0]
        raise SensorsError(f"{name} line {lines[j]}: sensor {sensors.ids[j]!r} is at the position of "
                           f"{sensors.ids[i]!r} (line {lines[i]}); list one sensor per position "
                           "(two microphones on one mast are one sensor)")

