"""The city's basemap: raster tiles read from its own MBTiles or PMTiles file, served by the console.

Tiles are read here, on the server, so the browser asks only the console for them
(``/map/tiles/{z}/{x}/{y}``, XYZ numbering as Leaflet asks for it) and no tile URL outside it
is ever needed.  MBTiles is SQLite (tiles in TMS rows, y counted from the south); PMTiles is
read with the ``pmtiles`` package.  Only raster tiles (PNG, JPEG, WebP) are drawn: vector
tiles need a style and fonts the console does not have, so such a file is refused in one line.

Example::

    basemap = open_basemap("city.pmtiles")     # BasemapError on a missing or unusable file
    basemap.tile(14, 4551, 6200)               # bytes or None
"""
from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
import threading

from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import Compression, MagicNumberNotFound, SpecVersionUnsupported, TileType

RASTER_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
PMTILES_RASTER = {TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}
PMTILES_E7 = 1e7
MAX_ZOOM = 24
WORLD = (-180.0, -85.0511, 180.0, 85.0511)   # Web Mercator's square


class BasemapError(ValueError):
    """A basemap file that cannot be used, with a one-line reason."""


@dataclasses.dataclass
class Basemap:
    """An open basemap: its tiles' media type, zoom range and bounds (west, south, east, north)."""

    path: pathlib.Path
    media_type: str
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float]
    attribution: str
    _read: object = dataclasses.field(repr=False, default=None)

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at XYZ ``z/x/y``, or None where the file has none."""
        if not self.min_zoom <= z <= self.max_zoom or not (0 <= x < 2 ** z and 0 <= y < 2 ** z):
            return None
        return self._read(z, x, y)   # type: ignore[operator]

    def describe(self) -> dict:
        """What the page needs to draw it."""
        return {"url": "/map/tiles/{z}/{x}/{y}", "min_zoom": self.min_zoom, "max_zoom": self.max_zoom,
                "bounds": list(self.bounds), "attribution": self.attribution}


def open_basemap(path: str | pathlib.Path) -> Basemap:
    """Open an ``.mbtiles`` or ``.pmtiles`` file of raster tiles; BasemapError (one line) otherwise."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise BasemapError(f"basemap {path}: no such file")
    if path.suffix == ".mbtiles":
        return _mbtiles(path)
    if path.suffix == ".pmtiles":
        return _pmtiles(path)
    raise BasemapError(f"basemap {path}: must be a .mbtiles or .pmtiles file")


def _mbtiles(path: pathlib.Path) -> Basemap:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        meta = dict(db.execute("SELECT name, value FROM metadata").fetchall())
        zooms = db.execute("SELECT min(zoom_level), max(zoom_level) FROM tiles").fetchone()
    except sqlite3.Error as exc:
        raise BasemapError(f"basemap {path}: not an MBTiles file ({exc})") from None
    fmt = str(meta.get("format", "")).lower()
    if fmt not in RASTER_TYPES:
        raise BasemapError(f"basemap {path}: tiles are {fmt or 'of no stated format'}; the console draws raster "
                           f"tiles only ({', '.join(RASTER_TYPES)})")
    if zooms[0] is None:
        raise BasemapError(f"basemap {path}: holds no tiles")
    lock = threading.Lock()   # one connection, shared by the server's threads

    def read(z: int, x: int, y: int) -> bytes | None:
        with lock:
            row = db.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                             (z, x, 2 ** z - 1 - y)).fetchone()
        return bytes(row[0]) if row else None

    return Basemap(path, RASTER_TYPES[fmt], int(zooms[0]), int(zooms[1]), _mbtiles_bounds(path, meta.get("bounds")),
                   str(meta.get("attribution", "")), read)


def _mbtiles_bounds(path: pathlib.Path, text) -> tuple[float, float, float, float]:
    if not text:
        return WORLD
    try:
        west, south, east, north = (float(v) for v in str(text).split(","))
    except ValueError:
        raise BasemapError(f"basemap {path}: metadata bounds {text!r} is not west,south,east,north") from None
    return west, south, east, north


def _pmtiles(path: pathlib.Path) -> Basemap:
    fh = path.open("rb")
    try:
        reader = Reader(MmapSource(fh))
        header = reader.header()
        metadata = reader.metadata()
    except (MagicNumberNotFound, SpecVersionUnsupported, ValueError, OSError) as exc:
        fh.close()
        raise BasemapError(f"basemap {path}: not a PMTiles version 3 file ({type(exc).__name__})") from None
    kind = PMTILES_RASTER.get(header["tile_type"])
    if kind is None:
        fh.close()
        raise BasemapError(f"basemap {path}: tiles are {header['tile_type'].name}; the console draws raster tiles only "
                           f"(PNG, JPEG, WebP)")
    if header["tile_compression"] not in (Compression.NONE, Compression.UNKNOWN):
        fh.close()
        raise BasemapError(f"basemap {path}: raster tiles compressed as {header['tile_compression'].name}")
    bounds = tuple(header[k] / PMTILES_E7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7"))
    attribution = metadata.get("attribution", "") if isinstance(metadata, dict) else ""
    return Basemap(path, RASTER_TYPES[kind], header["min_zoom"], min(header["max_zoom"], MAX_ZOOM),
                   bounds, str(attribution), reader.get)  # type: ignore[arg-type]
