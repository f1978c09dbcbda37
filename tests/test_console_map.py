"""The console's map on its own: geometry in both frames, the city's layers and basemap files, their errors.

The browser side (Leaflet drawing these, live, with only the console's own requests) is in
tests/test_console.py.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from pmtiles.tile import TileType

from earwitness.cli import UserError
from fusion.cli_fusion import load_config
from fusion.console.basemap import BasemapError, open_basemap
from fusion.console.citymap import CityMapError, city_map
from fusion.console.mapdata import map_features, site_plane
from fusion.forensics.frame import Plane
from fusion.locator.sensors import Sensors
from map_files import tile_png, tiles_over, write_lines, write_mbtiles, write_pmtiles

ORIGIN = (40.45, -79.99, 250.0)
BOX = (-80.0, 40.44, -79.98, 40.46)


def _ellipse_offsets_m(feature: dict, plane: Plane, centre: dict) -> np.ndarray:
    """The ellipse ring's points as east, north metres from the shot."""
    ring = np.array(feature["geometry"]["coordinates"][0])
    return plane.xy_many(ring) - np.array(plane.xy(centre))


def _kind(doc: dict, kind: str) -> list[dict]:
    return [f for f in doc["features"] if f["properties"]["kind"] == kind]


@pytest.mark.parametrize("bearing_deg", [0.0, 30.0, 90.0, 135.0])
def test_ellipse_turns_clockwise_from_north_in_a_local_site(bearing_deg):
    sensors = Sensors.from_local({"a": (0.0, 0.0, 0.0), "b": (800.0, 600.0, 0.0)})
    positions = {"a": {"x": 0.0, "y": 0.0, "z": 0.0}, "b": {"x": 800.0, "y": 600.0, "z": 0.0}}
    shot = {"x": 400.0, "y": 300.0, "err_m": 9.0, "sensors": ["a", "b", "gone"],
            "ellipse": {"semi_major_m": 40.0, "semi_minor_m": 10.0, "orientation_deg": bearing_deg}}
    plane = site_plane(sensors)
    doc = map_features(positions, [{"incident": "i1", "class": "gunfire", "shots": [shot]}], plane)
    assert [f["geometry"]["coordinates"] for f in _kind(doc, "sensor")] == [[0.0, 0.0], [800.0, 600.0]]
    (point,) = _kind(doc, "shot")
    assert point["geometry"]["coordinates"] == [400.0, 300.0] and point["properties"]["incident"] == "i1"
    (ellipse,) = _kind(doc, "ellipse")
    offsets = _ellipse_offsets_m(ellipse, plane, shot)
    far = offsets[np.argmax(np.hypot(*offsets.T))]
    assert math.isclose(np.hypot(*far), 40.0, rel_tol=1e-3)
    assert math.isclose(math.degrees(math.atan2(far[0], far[1])) % 180.0, bearing_deg % 180.0, abs_tol=1.0)
    assert math.isclose(np.hypot(*offsets.T).min(), 10.0, rel_tol=1e-2)
    # One line per sensor that heard it and the registry knows, from the shot to the sensor.
    assert [f["geometry"]["coordinates"] for f in _kind(doc, "heard")] == [[[400.0, 300.0], [0.0, 0.0]],
                                                                          [[400.0, 300.0], [800.0, 600.0]]]


def test_wgs84_site_writes_lon_lat_and_metre_ellipses():
    sensors = Sensors.from_wgs84({"a": (40.45, -79.99, 250.0), "b": (40.46, -79.98, 250.0)})
    positions = {"a": {"lat": 40.45, "lon": -79.99, "alt": 250.0}, "b": {"lat": 40.46, "lon": -79.98, "alt": 250.0}}
    plane = site_plane(sensors)
    assert plane.frame == "wgs84"
    shot = {"lat": 40.455, "lon": -79.985, "err_m": 25.0, "sensors": ["a"]}   # no ellipse: the err_m circle
    located = {"incident": "i2", "shots": [shot]}
    unlocated = {"incident": "i3", "shots": [{"t_ns": 1}]}
    doc = map_features(positions, [located, unlocated], plane)
    assert _kind(doc, "sensor")[1]["geometry"]["coordinates"] == [-79.98, 40.46]   # GeoJSON order: lon, lat
    (ellipse,) = _kind(doc, "ellipse")
    assert ellipse["properties"]["circle"] is True
    radii = np.hypot(*_ellipse_offsets_m(ellipse, plane, shot).T)
    assert np.allclose(radii, 25.0, rtol=1e-3)
    assert {f["properties"]["incident"] for f in doc["features"] if "incident" in f["properties"]} == {"i2"}


def test_an_incident_without_shots_is_drawn_at_its_own_position():
    plane = Plane("local")
    doc = map_features({}, [{"incident": "i4", "x": 5.0, "y": 6.0, "err_m": 12.0, "sensors": []}], plane)
    assert [f["properties"]["kind"] for f in doc["features"]] == ["shot", "ellipse"]


def test_city_layers_read_and_checked(tmp_path):
    write_lines(tmp_path / "streets.geojson", {"Main St": [[-79.99, 40.45], [-79.98, 40.46]]})
    city = city_map(tmp_path, {"layers": ["streets.geojson"]})
    (layer,) = city.layers
    assert layer.name == "streets" and layer.features == 1 and layer.bounds == (-79.99, 40.45, -79.98, 40.46)
    assert json.loads(layer.body)["features"][0]["properties"]["name"] == "Main St"
    city.check_frame("wgs84")
    city.check_frame("local")
    assert city.describe() == {"layers": [{"name": "streets", "url": "/map/layer/0"}], "basemap": None}
    assert city_map(tmp_path, {}).describe() == {"layers": [], "basemap": None}   # the sensor layout alone
    write_lines(tmp_path / "metres.geojson", {"grid": [[0.0, 0.0], [1500.0, 900.0]]})
    with pytest.raises(CityMapError, match="not longitude, latitude"):
        city_map(tmp_path, {"layers": ["metres.geojson"]}).check_frame("wgs84")
    bad = {"missing.geojson": "no such file", "text.geojson": "not GeoJSON", "list.geojson": "not a GeoJSON FeatureCollection",
           "point.geojson": "feature 1: not a GeoJSON geometry", "nan.geojson": "feature 1: not a GeoJSON geometry",
           "empty.geojson": "no features"}
    (tmp_path / "text.geojson").write_text("streets, but as text")
    (tmp_path / "list.geojson").write_text("[]")
    (tmp_path / "point.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": ["a", "b"]}}]}))
    (tmp_path / "nan.geojson").write_text('{"type": "FeatureCollection", "features": [{"geometry": {"type": "Spline"}}]}')
    (tmp_path / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    for name, reason in bad.items():
        with pytest.raises(CityMapError, match=reason) as caught:
            city_map(tmp_path, {"layers": [name]})
        assert name in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(CityMapError, match="layers must be a list"):
        city_map(tmp_path, {"layers": "streets.geojson"})


@pytest.mark.parametrize("suffix", ["mbtiles", "pmtiles"])
def test_basemap_tiles_read_by_xyz(tmp_path, suffix):
    keys = tiles_over(BOX, range(12, 15))
    tiles = {k: tile_png((k[0] * 10, k[1] % 256, k[2] % 256)) for k in keys}
    write = write_mbtiles if suffix == "mbtiles" else write_pmtiles
    basemap = open_basemap(write(tmp_path / f"city.{suffix}", tiles, BOX))
    assert (basemap.min_zoom, basemap.max_zoom, basemap.media_type) == (12, 14, "image/png")
    assert np.allclose(basemap.bounds, BOX)
    for key in keys:
        assert basemap.tile(*key) == tiles[key], key
    z, x, y = keys[0]
    assert basemap.tile(z, x + 100, y) is None and basemap.tile(z + 5, x, y) is None and basemap.tile(z, -1, y) is None
    city = city_map(tmp_path, {"basemap": f"city.{suffix}"})
    city.check_frame("wgs84")
    with pytest.raises(CityMapError, match="local x/y metres"):
        city.check_frame("local")


def test_unusable_basemaps_are_refused_in_one_line(tmp_path):
    (tmp_path / "junk.pmtiles").write_bytes(b"not tiles at all" * 20)
    (tmp_path / "junk.mbtiles").write_bytes(b"not a database" * 20)
    (tmp_path / "city.png").write_bytes(tile_png((1, 2, 3)))
    write_pmtiles(tmp_path / "vector.pmtiles", {(0, 0, 0): b"\x1a\x00"}, BOX, TileType.MVT)
    write_mbtiles(tmp_path / "vector.mbtiles", {(0, 0, 0): b"\x1a\x00"}, BOX, fmt="pbf")
    cases = {"missing.pmtiles": "no such file", "junk.pmtiles": "not a PMTiles", "junk.mbtiles": "not an MBTiles",
             "city.png": "must be a .mbtiles or .pmtiles", "vector.pmtiles": "raster tiles only",
             "vector.mbtiles": "raster tiles only"}
    for name, reason in cases.items():
        with pytest.raises(BasemapError, match=reason) as caught:
            open_basemap(tmp_path / name)
        assert "\n" not in str(caught.value)


def test_console_map_settings_in_fusion_toml(tmp_path):
    (tmp_path / "nodes.toml").write_text("")
    write_lines(tmp_path / "streets.geojson", {"Main St": [[0.0, 0.0], [100.0, 50.0]]})
    config = tmp_path / "fusion.toml"
    base = 'site = "pgh"\nbroker = "mqtt://127.0.0.1:1883"\nregistry = "nodes.toml"\n[console]\nlisten = "127.0.0.1:8080"\n'
    config.write_text(base + 'layers = ["streets.geojson"]\n')
    assert [layer.name for layer in load_config(config).console_city.layers] == ["streets"]
    config.write_text(base + 'layers = ["streets.geojson", "gone.geojson"]\n')
    with pytest.raises(UserError, match=r"fusion.toml: layer .*gone.geojson: no such file"):
        load_config(config)
    config.write_text(base + 'basemap = "gone.mbtiles"\n')
    with pytest.raises(UserError, match=r"basemap .*gone.mbtiles: no such file"):
        load_config(config)


@pytest.mark.slow
def test_fusion_command_names_a_missing_map_file_in_one_line(tmp_path):
    (tmp_path / "nodes.toml").write_text("")
    config = tmp_path / "fusion.toml"
    config.write_text('site = "pgh"\nbroker = "mqtt://127.0.0.1:1883"\nregistry = "nodes.toml"\n[console]\n'
                      'listen = "127.0.0.1:8080"\nbasemap = "gone.mbtiles"\n')
    # The command says it in one line and exits non-zero, before it starts anything.
    done = subprocess.run([sys.executable, "-m", "earwitness", "fusion", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "gone.mbtiles: no such file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
