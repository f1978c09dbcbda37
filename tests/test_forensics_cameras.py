"""Cameras that can see a located shot, the casing search area, and what the alert gets of both.

Known truth by construction: a camera looking east with a 60 degree field of view sees a shot
100 m east of it, not one 100 m north, not one 300 m east (beyond its range), not one behind a
building footprint set across the sight line; the casing search area of an ellipse widened by
e metres has Steiner's area pi a b + P e + pi e^2 (P the ellipse's perimeter).
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pymap3d
import pytest
from scipy import special

from earwitness.cli import main
from fusion.forensics import casings
from fusion.forensics.cameras import Buildings, CamerasError, cameras_seeing, read_cameras
from fusion.forensics.frame import FRAME_LOCAL, FRAME_WGS84, Plane
from fusion.forensics.geojson import GeoJSONError, read_polygons
from fusion.server.alerts import CAP_NS, alert_cap
from fusion.server.casework import Casework
from fusion.server.store import Store
from test_fusion_alerts import NS, check_cap  # the CAP 1.2 structure check

T0_NS = 1_786_000_000 * 10**9
LOCAL = Plane(FRAME_LOCAL)


def _csv(tmp_path, text, name="cameras.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _buildings(tmp_path, squares):
    features = [{"type": "Feature", "properties": {"name": f"b{i}"},
                 "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
                for i, (x0, y0, x1, y1) in enumerate(squares)]
    path = tmp_path / "buildings.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def _seen(cameras, xy, buildings=None):
    return {c["camera"]: c for c in cameras_seeing(cameras, xy, T0_NS, T0_NS + 2 * 10**9, buildings)}


def test_camera_sees_in_range_and_field_of_view_only(tmp_path):
    cams = read_cameras(_csv(tmp_path, "camera,x,y,heading_deg,fov_deg,range_m,url\n"
                                       "east,0,0,90,60,200,rtsp://cam/east\n"
                                       "pantilt,50,50,,,150,\n"
                                       "west,200,0,270,40,,\n"), LOCAL)
    seen = _seen(cams, (100.0, 0.0))
    assert set(seen) == {"east", "pantilt", "west"}
    assert seen["east"]["distance_m"] == 100.0 and seen["east"]["bearing_deg"] == 90.0
    assert seen["west"]["bearing_deg"] == 270.0
    assert seen["pantilt"]["bearing_deg"] == 135.0 and seen["pantilt"]["distance_m"] == pytest.approx(70.7, abs=0.05)
    # The pull window: one minute before the first discharge to five minutes after the last.
    assert seen["east"]["pull_from_ns"] == T0_NS - 60 * 10**9
    assert seen["east"]["pull_to_ns"] == T0_NS + 2 * 10**9 + 300 * 10**9
    assert seen["east"]["url"] == "rtsp://cam/east" and seen["east"]["at"] == {"x": 0.0, "y": 0.0}
    # North of the east-looking camera: outside its 60 degree view; the pan-tilt one turns there.
    assert set(_seen(cams, (0.0, 100.0))) == {"pantilt"}
    # Just inside and just outside the view's edge (30 degrees off the heading).
    edge = 100.0
    inside = (edge * math.sin(math.radians(90 - 29.5)), edge * math.cos(math.radians(90 - 29.5)))
    outside = (edge * math.sin(math.radians(90 - 30.5)), edge * math.cos(math.radians(90 - 30.5)))
    assert "east" in _seen(cams, inside) and "east" not in _seen(cams, outside)
    # Range: 300 m east is past east's 200 m (and behind west); west's default range is 200 m:
    # 190 m west of it is in, 210 m is out.
    assert set(_seen(cams, (300.0, 0.0))) == set()
    assert set(_seen(cams, (10.0, 0.0))) == {"east", "west", "pantilt"}
    assert set(_seen(cams, (-10.0, 0.0))) == {"pantilt"}


def test_building_blocks_the_sight_line(tmp_path):
    cams = read_cameras(_csv(tmp_path, "camera,x,y,heading_deg,fov_deg,range_m\n"
                                       "east,0,0,90,90,300\nnorth,100,-100,0,90,300\n"), LOCAL)
    # A house across east's sight line to (100, 0), beside north's line (x = 100 from y = -100 up).
    house = Buildings([a.polygon for a in read_polygons(_buildings(tmp_path, [(40, -10, 60, 10)]), LOCAL)])
    assert set(_seen(cams, (100.0, 0.0))) == {"east", "north"}
    assert set(_seen(cams, (100.0, 0.0), house)) == {"north"}
    # A line along a wall is not blocked; a shot located just inside a footprint (at its door) is seen.
    along = Buildings([a.polygon for a in read_polygons(_buildings(tmp_path, [(20, 0, 60, 20)]), LOCAL)])
    assert "east" in _seen(cams, (100.0, 0.0), along)
    door = Buildings([a.polygon for a in read_polygons(_buildings(tmp_path, [(98, -5, 110, 5)]), LOCAL)])
    assert set(_seen(cams, (100.0, 0.0), door)) == {"east", "north"}


def test_cameras_in_wgs84(tmp_path):
    lat0, lon0 = 40.44, -79.99
    lat, lon, _ = pymap3d.enu2geodetic(120.0, 0.0, 0.0, lat0, lon0, 0.0)
    cams = read_cameras(_csv(tmp_path, f"camera,lat,lon,heading_deg,fov_deg\nc1,{lat0},{lon0},90,40\n"),
                        Plane(FRAME_WGS84, (lat0, lon0)))
    plane = Plane(FRAME_WGS84, (lat0, lon0))
    seen = cameras_seeing(cams, plane.xy({"lat": float(lat), "lon": float(lon)}), T0_NS, T0_NS)
    assert seen[0]["distance_m"] == pytest.approx(120.0, abs=0.05) and seen[0]["bearing_deg"] == pytest.approx(90.0, abs=0.1)


@pytest.mark.parametrize("text, message", [
    ("cam,x,y\nc,0,0\n", "header is cam,x,y"),
    ("camera,x,y,zoom\nc,0,0,2\n", "header is camera,x,y,zoom"),
    ('"camera,x,y\nc,0,0\n', "header is camera,x,y\\nc,0,0"),   # a quote left open runs on: one line
    ("camera,x,y\nc,zero,0\n", "line 2: x 'zero' is not a number"),
    ("camera,x,y,fov_deg\nc,0,0,400\n", "line 2: fov_deg must be in (0, 360]"),
    ("camera,x,y,range_m\nc,0,0,-5\n", "line 2: range_m must be positive"),
    ("camera,x,y\nc/1,0,0\n", "line 2: camera id must be non-empty"),
    ("camera,x,y\nc,0,0\nc,1,1\n", "listed twice"),
    ("camera,lat,lon\nc,40.4,-79.9\n", "gives lat/lon (WGS84) but the site's positions are in x/y"),
    ("camera,x,y\n", "no cameras listed"),
])
def test_bad_cameras_csv_one_line(tmp_path, text, message):
    with pytest.raises(CamerasError, match=None) as err:
        read_cameras(_csv(tmp_path, text), LOCAL)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_buildings_geojson(tmp_path):
    for text, message in [("{", "not GeoJSON"), ('{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
                          ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
                           '{"type": "Point", "coordinates": [0, 0]}}]}', "feature 1: geometry must be a Polygon"),
                          ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Polygon", '
                           '"coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}]}', "not a valid polygon")]:
        path = _csv(tmp_path, text, "b.geojson")
        with pytest.raises(GeoJSONError) as err:
            read_polygons(path, LOCAL)
        assert message in str(err.value), (text, str(err.value))


def _steiner_area_m2(a, b, e):
    """Area of an ellipse's parallel body at distance e: pi a b + P e + pi e^2 (Steiner), P exact (elliptic integral)."""
    perimeter = 4.0 * a * special.ellipe(1.0 - (b / a) ** 2)
    return math.pi * a * b + perimeter * e + math.pi * e * e


@pytest.mark.parametrize("orientation_deg", [0.0, 90.0, 30.0])
def test_casing_search_area_is_the_widened_95_region(orientation_deg):
    shot = {"x": 500.0, "y": 200.0, "err_m": 18.0, "t_ns": T0_NS,
            "ellipse": {"semi_major_m": 20.0, "semi_minor_m": 8.0, "orientation_deg": orientation_deg}}
    region = casings.search_region(shot, LOCAL)
    assert region.area == pytest.approx(_steiner_area_m2(20.0, 8.0, casings.EJECTION_M), rel=0.01)
    k = casings.shot_casings(shot, LOCAL)
    assert k["radius_m"] == pytest.approx(20.0 + casings.EJECTION_M, abs=0.2)
    assert k["area_m2"] == pytest.approx(region.area, abs=1.0)
    # Along the major axis the area reaches 20 + 5 m; across it 8 + 5 m.
    from shapely.geometry import Point
    th = math.radians(orientation_deg)
    along = lambda d: Point(500.0 + d * math.sin(th), 200.0 + d * math.cos(th))  # noqa: E731
    across = lambda d: Point(500.0 + d * math.cos(th), 200.0 - d * math.sin(th))  # noqa: E731
    assert region.contains(along(24.0)) and not region.contains(along(26.0))
    assert region.contains(across(12.5)) and not region.contains(across(14.0))


def test_casework_annotates_alert_and_cues(tmp_path):
    cams = _csv(tmp_path, "camera,x,y,heading_deg,fov_deg,range_m\nnear,0,0,90,60,200\naway,0,0,270,60,200\n")
    plane_sensors = type("S", (), {"frame": "local", "origin": None})()
    with Store(tmp_path / "fusion.db") as store:
        work = Casework.for_site(plane_sensors, store, cams, _buildings(tmp_path, [(-500, 500, -400, 600)]))
        incident = {"incident": "i1", "t_ns": T0_NS, "x": 100.0, "y": 0.0, "err_m": 10.0, "class": "gunfire",
                    "shots": [{"t_ns": T0_NS, "x": 100.0, "y": 0.0, "err_m": 10.0,
                               "ellipse": {"semi_major_m": 8.0, "semi_minor_m": 5.0, "orientation_deg": 0.0}}]}
        out = work.annotate(incident)
        assert "cameras" not in incident            # the tracker's incident is not changed in place
        assert [c["camera"] for c in out["cameras"]] == ["near"]
        assert out["shots"][0]["casings"]["radius_m"] == pytest.approx(13.0, abs=0.2)
        assert out["casings_area"]["type"] == "Polygon"
        assert out["called"] is False and out["calls"] == []
        cues = work.cues("city", dict(out, revision=1, status="preliminary"))
        assert [t for t, _ in cues] == ["ew/v1/city/camera/near/cue"]
        body = json.loads(cues[0][1])
        assert body["bearing_deg"] == 90.0 and body["distance_m"] == 100.0 and body["incident"] == "i1"
        assert work.cues("city", dict(out, revision=2, status="withdrawn")) == []
        # The CAP alert carries them as parameters, and stays valid CAP 1.2.
        xml = alert_cap(out, 1, "preliminary", sender="ew@test", site="city", sent_ns=T0_NS)
        check_cap(xml)
        params = {p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
                  for p in ET.fromstring(xml).iter(f"{{{CAP_NS}}}parameter")}
        assert params["cameras"] == "near:100m@90deg" and params["called"] == "false"
        assert float(params["casings_radius_m"]) == pytest.approx(13.0, abs=0.2)


def test_fusion_refuses_a_bad_cameras_file_in_one_line(tmp_path, capsys):
    (tmp_path / "nodes.toml").write_text("[[node]]\nid = \"n1\"\npublic_key = \"" + "ab" * 32 + "\"\nx = 0.0\ny = 0.0\n")
    (tmp_path / "cameras.csv").write_text("camera,lat,lon\nc1,40.0,-79.0\n")
    (tmp_path / "fusion.toml").write_text('site = "t"\nbroker = "mqtt://127.0.0.1:1"\nregistry = "nodes.toml"\n'
                                          'cameras = "cameras.csv"\n')
    assert main(["fusion", "--config", str(tmp_path / "fusion.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cameras.csv line 2" in err and "lat/lon" in err
