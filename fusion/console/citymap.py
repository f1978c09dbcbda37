"""The city's own map layers, from files it provides, read once when the server starts.

In fusion.toml (paths relative to it)::

    [console]
    layers = ["streets.geojson", "boundaries.geojson"]   # GeoJSON FeatureCollections, drawn in this order
    basemap = "city.pmtiles"                              # or city.mbtiles: raster tiles (fusion.console.basemap)

A layer's coordinates are in the site's frame, as every GeoJSON file of the project
(fusion.forensics.geojson): longitude, latitude for a site whose registry gives lat/lon, x
east, y north metres for a site in local metres.  A basemap is Web Mercator tiles, so it needs
a WGS84 site.  With neither given the map shows the sensor layout alone.  Every problem is a
:class:`CityMapError` naming the file, in one line.

Example::

    city = city_map(pathlib.Path("/etc/earwitness"), {"layers": ["streets.geojson"]})
    city.check_frame("wgs84")
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import shapely.errors
from shapely.geometry import shape

from fusion.console.basemap import Basemap, BasemapError, open_basemap

SETTINGS = ("layers", "basemap")
LON_LIMIT_DEG = 180.0
LAT_LIMIT_DEG = 90.0
FRAME_WGS84 = "wgs84"


class CityMapError(ValueError):
    """A layer or basemap that cannot be used, with a one-line reason."""


@dataclasses.dataclass
class Layer:
    """One GeoJSON layer: its name (the file's stem), the collection as served, its bounds in its frame."""

    name: str
    body: bytes
    features: int
    bounds: tuple[float, float, float, float]


@dataclasses.dataclass
class CityMap:
    layers: list[Layer] = dataclasses.field(default_factory=list)
    basemap: Basemap | None = None

    def check_frame(self, frame: str) -> None:
        """CityMapError if the files cannot be in the site's frame (``"local"`` or ``"wgs84"``)."""
        if self.basemap is not None and frame != FRAME_WGS84:
            raise CityMapError(f"basemap {self.basemap.path}: tiles are in longitude/latitude but the site's registry "
                               "gives local x/y metres; give the nodes lat/lon or leave the basemap out")
        if frame != FRAME_WGS84:
            return
        for layer in self.layers:
            west, south, east, north = layer.bounds
            if max(abs(west), abs(east)) > LON_LIMIT_DEG or max(abs(south), abs(north)) > LAT_LIMIT_DEG:
                raise CityMapError(f"layer {layer.name}: coordinates reach ({west:g}, {south:g})-({east:g}, {north:g}), "
                                   "not longitude, latitude as the site's lat/lon registry needs")

    def describe(self) -> dict:
        """What the page needs: each layer's name and URL, and the basemap's tiles (or None)."""
        return {"layers": [{"name": layer.name, "url": f"/map/layer/{i}"} for i, layer in enumerate(self.layers)],
                "basemap": self.basemap.describe() if self.basemap else None}


def city_map(base: pathlib.Path, settings: dict) -> CityMap:
    """The layers and basemap named in ``settings`` ([console]'s ``layers`` and ``basemap``), paths relative to ``base``."""
    names = settings.get("layers", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise CityMapError('[console] layers must be a list of file names, e.g. ["streets.geojson"]')
    basemap = settings.get("basemap")
    if basemap is not None and (not isinstance(basemap, str) or not basemap):
        raise CityMapError('[console] basemap must be a file name, e.g. "city.pmtiles"')
    layers = [read_layer(base / name) for name in names]
    if len({layer.name for layer in layers}) != len(layers):
        raise CityMapError("[console] layers: two files of one name")
    try:
        return CityMap(layers, open_basemap(base / basemap) if basemap else None)
    except BasemapError as exc:
        raise CityMapError(str(exc)) from None


def read_layer(path: pathlib.Path) -> Layer:
    """A GeoJSON FeatureCollection, each feature's geometry checked; CityMapError (one line) otherwise."""
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CityMapError(f"layer {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CityMapError(f"layer {path}: not GeoJSON (not UTF-8 JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise CityMapError(f"layer {path}: not a GeoJSON FeatureCollection")
    bounds = [math.inf, math.inf, -math.inf, -math.inf]
    for i, feature in enumerate(doc["features"], 1):
        geom = feature.get("geometry") if isinstance(feature, dict) else None
        try:
            box = shape(geom).bounds
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
            raise CityMapError(f"layer {path} feature {i}: not a GeoJSON geometry ({exc or type(exc).__name__})") from None
        if not all(math.isfinite(v) for v in box):
            raise CityMapError(f"layer {path} feature {i}: empty geometry or coordinates that are not finite numbers")
        bounds = [min(bounds[0], box[0]), min(bounds[1], box[1]), max(bounds[2], box[2]), max(bounds[3], box[3])]
    if not doc["features"]:
        raise CityMapError(f"layer {path}: no features")
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Layer(path.stem, body, len(doc["features"]), (bounds[0], bounds[1], bounds[2], bounds[3]))
