"""The fusion server's alerts carry cameras, casing areas and call matches; cues go to the cameras.

A real mosquitto, the real service, a real Pittsburgh test's signed pulses (tests/fusion_site.py):
cameras placed about the surveyed firing position, one looking at it, one looking away, one
behind a building set between it and the position.
"""
from __future__ import annotations

import json

import pytest

from fusion.report import write_report
from fusion.server.service import FusionConfig
from fusion.server.store import Store
from fusion.transport import mqtt_service
from fusion_site import build_site
from simulator.broker import Collector, publish_all, wait_until

SITE = "pgh"
INCIDENT = f"ew/v1/{SITE}/incident"
CUES = f"ew/v1/{SITE}/camera/+/cue"
WAIT_S = 60.0
CAMERA_OFFSET_M = 80.0


@pytest.mark.integration
def test_alerts_list_cameras_casings_and_cue_the_camera(pittsburgh, mosquitto, tmp_path):
    site = build_site(pittsburgh[0], tmp_path / "site")
    x, y, _ = site.survey_xyz
    d = CAMERA_OFFSET_M
    (tmp_path / "cameras.csv").write_text(
        "camera,x,y,heading_deg,fov_deg,range_m\n"
        f"looking,{x - d},{y},90,60,200\n"          # west of the shot, looking east at it
        f"away,{x + d},{y},90,60,200\n"             # east of it, looking further east
        f"hidden,{x},{y - d},0,60,200\n")           # south of it, a building in between
    building = [[x - 10, y - 50], [x + 10, y - 50], [x + 10, y - 30], [x - 10, y - 30], [x - 10, y - 50]]
    (tmp_path / "buildings.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "house"}, "geometry": {"type": "Polygon", "coordinates": [building]}}]}))
    db = tmp_path / "fusion.db"
    config = FusionConfig(site=SITE, broker=mosquitto.url, registry=site.registry_path, database=str(db),
                          client_id="fusion-cam", temperature_c=site.temperature_c,
                          cameras=tmp_path / "cameras.csv", buildings=tmp_path / "buildings.geojson")
    heard = Collector(mosquitto.url, INCIDENT, CUES).start()
    service = mqtt_service(config).start()
    try:
        publish_all(mosquitto.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        assert wait_until(lambda: len(heard.json(INCIDENT)) > 0, WAIT_S)
    finally:
        service.stop(finalise=True)
    assert wait_until(lambda: any(a["status"] == "final" for a in heard.json(INCIDENT)), WAIT_S)
    final = [a for a in heard.json(INCIDENT) if a["status"] == "final"][-1]
    cue_messages = heard.received(CUES)
    heard.close()
    assert [c["camera"] for c in final["cameras"]] == ["looking"]
    assert abs(final["cameras"][0]["bearing_deg"] - 90.0) < 20.0
    assert all(s["casings"]["radius_m"] > s["err_m"] for s in final["shots"])
    assert final["casings_area"]["type"] in ("Polygon", "MultiPolygon") and final["called"] is False
    assert cue_messages and {m.topic for m in cue_messages} == {f"ew/v1/{SITE}/camera/looking/cue"}
    cue = json.loads(cue_messages[-1].payload)
    assert cue["incident"] == final["incident"] and cue["distance_m"] == final["cameras"][0]["distance_m"]
    with Store(db) as store:
        stored = store.incident(final["incident"])
        assert stored["cameras"] == final["cameras"]
        page = write_report(store, final["incident"], tmp_path / "report.html").read_text()
    assert "<td>looking</td>" in page and "Where to search for casings, per shot" in page and "911 calls matched: none" in page
