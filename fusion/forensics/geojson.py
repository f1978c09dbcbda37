"""Polygons in and out as GeoJSON (RFC 7946): areas (neighbourhoods), buildings, maps written out.

RFC 7946 coordinates are longitude, latitude (WGS84). A site located in a local frame (x east,
y north in metres, as the simulator's cities) uses GeoJSON with x, y metres in their place;
the file's coordinates are read in the frame of the :class:`~fusion.forensics.frame.Plane` given.
"""
from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass, field

import shapely
import shapely.errors
import shapely.validation
from shapely.geometry import mapping, shape

from fusion.forensics.frame import Plane

POLYGON_TYPES = ("Polygon", "MultiPolygon")


class GeoJSONError(ValueError):
    """A GeoJSON file that cannot be used, with a one-line reason."""


@dataclass
class Area:
    """A named polygon in plane metres, with the properties its feature carried."""

    name: str
    polygon: shapely.geometry.base.BaseGeometry
    properties: dict = field(default_factory=dict)


def read_polygons(path: str | pathlib.Path, plane: Plane, name_keys=("name", "id")) -> list[Area]:
    """Every Polygon or MultiPolygon feature of a FeatureCollection, in ``plane``'s metres.

    A feature's name is its first property among ``name_keys`` (else its ``id``, else its
    number). GeoJSONError on a file that is not JSON, not a FeatureCollection, a feature
    without polygon geometry, or an invalid polygon (self-intersecting ring).
    """
    path = pathlib.Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GeoJSONError(f"{path}: not GeoJSON (not valid UTF-8 JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise GeoJSONError(f"{path}: not a GeoJSON FeatureCollection")
    areas = []
    for i, feature in enumerate(doc["features"], 1):
        where = f"{path} feature {i}"
        geom = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geom, dict) or geom.get("type") not in POLYGON_TYPES:
            raise GeoJSONError(f"{where}: geometry must be a Polygon or MultiPolygon")
        try:
            polygon = shapely.transform(shape(geom), plane.xy_many)
        except (ValueError, TypeError, KeyError, IndexError, shapely.errors.ShapelyError) as exc:
            raise GeoJSONError(f"{where}: malformed coordinates ({exc})") from None
        if polygon.is_empty or not polygon.is_valid or not math.isfinite(polygon.area):
            raise GeoJSONError(f"{where}: not a valid polygon ({shapely.validation.explain_validity(polygon)})")
        props = feature.get("properties") or {}
        name = next((str(props[k]) for k in name_keys if props.get(k) not in (None, "")), None)
        areas.append(Area(name or str(feature.get("id", i)), polygon, dict(props)))
    if not areas:
        raise GeoJSONError(f"{path}: no features")
    return areas


def geometry_in_frame(geometry, plane: Plane) -> dict:
    """A plane-metre shapely geometry as a GeoJSON geometry in ``plane``'s frame (x, y or lon, lat)."""
    return mapping(shapely.transform(geometry, plane.coords))


def feature(geometry, plane: Plane, properties: dict) -> dict:
    """A GeoJSON Feature of a plane-metre geometry, written in ``plane``'s frame."""
    return {"type": "Feature", "geometry": geometry_in_frame(geometry, plane), "properties": properties}


def write_collection(path: str | pathlib.Path, features: list[dict]) -> pathlib.Path:
    path = pathlib.Path(path)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1), encoding="utf-8")
    return path
