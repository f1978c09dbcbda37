"""Small map files for the console's tests: raster tiles in MBTiles and PMTiles, GeoJSON layers.

Tiles are made here (a plain colour with a darker border, PNG by Pillow) over the slippy-map
tiles that cover a box, so a test knows exactly which tiles exist.
"""
from __future__ import annotations

import io
import json
import math
import pathlib
import sqlite3

from PIL import Image, ImageDraw
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

TILE_PX = 256
BORDER_PX = 4
E7 = 10_000_000


def tile_png(rgb: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (TILE_PX, TILE_PX), rgb)
    ImageDraw.Draw(image).rectangle([0, 0, TILE_PX - 1, TILE_PX - 1], outline=tuple(c // 2 for c in rgb), width=BORDER_PX)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def tile_xy(lat: float, lon: float, z: int) -> tuple[int, int]:
    """The XYZ (Web Mercator, y from the north) tile holding a point."""
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def tiles_over(bounds: tuple[float, float, float, float], zooms: range) -> list[tuple[int, int, int]]:
    """Every (z, x, y) tile over ``bounds`` (west, south, east, north) at each zoom."""
    west, south, east, north = bounds
    out = []
    for z in zooms:
        x0, y0 = tile_xy(north, west, z)
        x1, y1 = tile_xy(south, east, z)
        out += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    return out


def write_mbtiles(path: pathlib.Path, tiles: dict[tuple[int, int, int], bytes], bounds, fmt: str = "png") -> pathlib.Path:
    """An MBTiles file (tile rows in TMS order, counted from the south)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "test"), ("format", fmt),
                                                              ("bounds", ",".join(map(str, bounds))),
                                                              ("attribution", "<b>test tiles</b>")])
        rows = [(z, x, 2 ** z - 1 - y, data) for (z, x, y), data in tiles.items()]
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
    db.close()
    return path


def write_pmtiles(path: pathlib.Path, tiles: dict[tuple[int, int, int], bytes], bounds,
                  tile_type: TileType = TileType.PNG) -> pathlib.Path:
    west, south, east, north = bounds
    with path.open("wb") as fh:
        writer = Writer(fh)
        for tile_id, data in sorted((zxy_to_tileid(*k), v) for k, v in tiles.items()):
            writer.write_tile(tile_id, data)
        writer.finalize({"tile_type": tile_type, "tile_compression": Compression.NONE,
                         "min_lon_e7": int(west * E7), "min_lat_e7": int(south * E7), "max_lon_e7": int(east * E7),
                         "max_lat_e7": int(north * E7), "center_zoom": 0, "center_lon_e7": int((west + east) / 2 * E7),
                         "center_lat_e7": int((south + north) / 2 * E7)}, {"attribution": "test tiles"})
    return path


def write_lines(path: pathlib.Path, lines: dict[str, list[list[float]]]) -> pathlib.Path:
    """A GeoJSON FeatureCollection of named LineStrings."""
    features = [{"type": "Feature", "properties": {"name": name}, "geometry": {"type": "LineString", "coordinates": coords}}
                for name, coords in lines.items()]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path
