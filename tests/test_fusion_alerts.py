"""fusion.server.alerts: alert JSON, CAP 1.2 XML checked against the standard's structure, webhook retries."""
from __future__ import annotations

import http.server
import json
import re
import threading
import xml.etree.ElementTree as ET

import pytest

from fusion.server.alerts import CAP_NS, alert_cap, alert_json, post_webhook

NS = {"cap": CAP_NS}
# CAP 1.2 schema (OASIS, 2010): element order of each sequence; '?' optional, '*' repeatable.
ALERT_SEQ = ["identifier", "sender", "sent", "status", "msgType", "source?", "scope", "restriction?",
             "addresses?", "code*", "note?", "references?", "incidents?", "info*"]
INFO_SEQ = ["language?", "category+", "event", "responseType*", "urgency", "severity", "certainty",
            "audience?", "eventCode*", "effective?", "onset?", "expires?", "senderName?", "headline?",
            "description?", "instruction?", "web?", "contact?", "parameter*", "resource*", "area*"]
AREA_SEQ = ["areaDesc", "polygon*", "circle*", "geocode*", "altitude?", "ceiling?"]
ENUMS = {
    "status": {"Actual", "Exercise", "System", "Test", "Draft"},
    "msgType": {"Alert", "Update", "Cancel", "Ack", "Error"},
    "scope": {"Public", "Restricted", "Private"},
    "category": {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
                 "Infra", "CBRNE", "Other"},
    "urgency": {"Immediate", "Expected", "Future", "Past", "Unknown"},
    "severity": {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
    "certainty": {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}
CAP_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
CIRCLE = re.compile(r"^-?\d+(\.\d+)?,-?\d+(\.\d+)? \d+(\.\d+)?$")


def check_sequence(parent, seq):
    tags = [child.tag.replace(f"{{{CAP_NS}}}", "") for child in parent]
    i = 0
    for spec in seq:
        name, mult = spec.rstrip("?*+"), spec[-1] if spec[-1] in "?*+" else "1"
        n = 0
        while i < len(tags) and tags[i] == name:
            i, n = i + 1, n + 1
        assert n >= (1 if mult in "1+" else 0), f"{parent.tag}: missing required {name}"
        assert n <= (1 if mult in "1?" else 10**6), f"{parent.tag}: {name} repeated"
    assert i == len(tags), f"{parent.tag}: unexpected or out-of-order element {tags[i]}"


def check_cap(xml_text):
    root = ET.fromstring(xml_text)
    assert root.tag == f"{{{CAP_NS}}}alert"
    check_sequence(root, ALERT_SEQ)
    for info in root.findall("cap:info", NS):
        check_sequence(info, INFO_SEQ)
        for area in info.findall("cap:area", NS):
            check_sequence(area, AREA_SEQ)
    for el in root.iter():
        name = el.tag.replace(f"{{{CAP_NS}}}", "")
        if name in ENUMS:
            assert el.text in ENUMS[name], f"{name}={el.text}"
        if name in ("sent", "effective", "onset", "expires"):
            assert CAP_DATETIME.match(el.text), el.text
            assert not el.text.endswith("+00:00")  # CAP 1.2: UTC is written -00:00
        if name == "circle":
            assert CIRCLE.match(el.text), el.text
    if root.find("cap:scope", NS).text == "Restricted":
        assert root.find("cap:restriction", NS) is not None
    return root


LOCAL = {"incident": "abc", "t_ns": 1_545_180_567_123_456_789, "x": -11450.2, "y": 3653.5, "err_m": 4.2,
         "rounds": 3, "shooters": 1, "class": "gunshot", "confidence": 0.9,
         "shots": [{"t_ns": 1_545_180_567_123_456_789 + i * 300_000_000, "x": -11450.2, "y": 3653.5, "err_m": 4.2,
                    "shooter": 0, "sensors": ["s1", "s2", "s3"]} for i in range(3)],
         "sensors": ["s1", "s2", "s3"]}
ELLIPSE = {"semi_major_m": 14.5, "semi_minor_m": 6.2, "orientation_deg": 118.0}
WGS84 = dict(LOCAL, lat=40.4406, lon=-79.9959, err_m=12.0, confidence=0.5, ellipse=ELLIPSE,
             shots=[{"t_ns": LOCAL["t_ns"], "lat": 40.4406, "lon": -79.9959, "err_m": 12.0, "ellipse": ELLIPSE,
                     "shooter": 0, "sensors": []}])
del WGS84["x"], WGS84["y"]


def test_alert_json_is_the_incident_plus_revision_and_status():
    got = json.loads(alert_json(LOCAL, 2, "revised"))
    assert got == dict(LOCAL, revision=2, status="revised")
    with pytest.raises(ValueError):
        alert_json(LOCAL, 1, "guess")
    with pytest.raises(ValueError):
        alert_json(LOCAL, 0, "final")


def test_cap_local_frame_carries_coordinates_as_parameters():
    root = check_cap(alert_cap(LOCAL, 1, "preliminary", sender="ew@test.example", site="pgh", sent_ns=LOCAL["t_ns"]))
    assert root.find("cap:msgType", NS).text == "Alert"
    assert root.find("cap:sent", NS).text == "2018-12-19T00:49:27-00:00"
    assert root.find("cap:identifier", NS).text == "pgh-abc-r1"
    info = root.find("cap:info", NS)
    params = {p.find("cap:valueName", NS).text: p.find("cap:value", NS).text for p in info.findall("cap:parameter", NS)}
    assert params["frame"] == "local" and float(params["x_m"]) == -11450.2 and params["rounds"] == "3"
    assert info.find("cap:certainty", NS).text == "Observed"
    assert info.find("cap:area/cap:circle", NS) is None
    assert "Shot 3" in info.find("cap:description", NS).text


def test_cap_wgs84_update_has_circle_and_references():
    root = check_cap(alert_cap(WGS84, 3, "final", sender="ew@test.example", site="pgh",
                               sent_ns=WGS84["t_ns"] + 5 * 10**9, previous_sent_ns=WGS84["t_ns"] + 2 * 10**9))
    assert root.find("cap:msgType", NS).text == "Update"
    assert root.find("cap:references", NS).text == "ew@test.example,pgh-abc-r2,2018-12-19T00:49:29-00:00"
    assert root.find("cap:info/cap:area/cap:circle", NS).text == "40.440600,-79.995900 0.0120"
    assert root.find("cap:info/cap:certainty", NS).text == "Likely"


def test_cap_circle_is_the_95_percent_radius_in_km_and_the_ellipse_rides_along():
    """CAP 1.2 circle: "lat,lon radius" with the radius in km; the JSON alert and CAP parameters carry the ellipse."""
    assert json.loads(alert_json(WGS84, 1, "preliminary"))["ellipse"] == ELLIPSE
    for err_m, text in ((12.0, "0.0120"), (250.0, "0.2500"), (0.2, "0.0010")):
        root = check_cap(alert_cap(dict(WGS84, err_m=err_m), 1, "preliminary", sender="ew@test.example", site="pgh",
                                   sent_ns=WGS84["t_ns"]))
        lat_lon, radius_km = root.find("cap:info/cap:area/cap:circle", NS).text.split(" ")
        assert lat_lon == "40.440600,-79.995900" and radius_km == text
    info = root.find("cap:info", NS)
    params = {p.find("cap:valueName", NS).text: p.find("cap:value", NS).text for p in info.findall("cap:parameter", NS)}
    assert float(params["ellipse_semi_major_m"]) == 14.5 and float(params["ellipse_orientation_deg"]) == 118.0
    assert "(95%)" in info.find("cap:area/cap:areaDesc", NS).text
    assert "ellipse 14 x 6 m at 118 deg from north" in info.find("cap:description", NS).text


def test_cap_unknown_class_alerts_as_possible_gunfire():
    """No cue spoke: the operator is alerted now (urgency Immediate, certainty Possible), not told it is noise."""
    root = check_cap(alert_cap(dict(WGS84, **{"class": "unknown", "confidence": 0.5}), 1, "preliminary",
                               sender="ew@test.example", site="pgh", sent_ns=WGS84["t_ns"]))
    info = root.find("cap:info", NS)
    assert info.find("cap:event", NS).text == "Possible gunfire"
    assert info.find("cap:urgency", NS).text == "Immediate"
    assert info.find("cap:certainty", NS).text == "Possible"
    assert "round(s)" in info.find("cap:headline", NS).text
    other = check_cap(alert_cap(dict(WGS84, **{"class": "other", "confidence": 0.9}), 1, "preliminary",
                                sender="ew@test.example", site="pgh", sent_ns=WGS84["t_ns"]))
    assert other.find("cap:info/cap:urgency", NS).text == "Past"


def test_cap_withdrawn_incident_is_a_cancel_of_its_last_revision():
    merged = dict(LOCAL, merged_into="pgh-def")
    assert json.loads(alert_json(merged, 2, "withdrawn"))["merged_into"] == "pgh-def"
    root = check_cap(alert_cap(merged, 2, "withdrawn", sender="ew@test.example", site="pgh",
                               sent_ns=LOCAL["t_ns"] + 3 * 10**9, previous_sent_ns=LOCAL["t_ns"] + 10**9))
    assert root.find("cap:msgType", NS).text == "Cancel"
    assert root.find("cap:references", NS).text == "ew@test.example,pgh-abc-r1,2018-12-19T00:49:28-00:00"


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv.received.append((self.headers["Content-Type"], body))
        code = 503 if len(srv.received) <= srv.failures else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    srv.received, srv.failures = [], 0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_webhook_retries_until_accepted(hook):
    hook.failures = 2
    url = f"http://127.0.0.1:{hook.server_address[1]}/alert"
    body = alert_json(LOCAL, 1, "preliminary").encode()
    assert post_webhook(url, body, "application/json", retries=3, backoff_s=0.01)
    assert len(hook.received) == 3 and hook.received[-1] == ("application/json", body)


def test_webhook_gives_up_without_raising(hook):
    hook.failures = 100
    url = f"http://127.0.0.1:{hook.server_address[1]}/alert"
    assert not post_webhook(url, b"<alert/>", "application/cap+xml", retries=2, backoff_s=0.01)
    assert len(hook.received) == 3
    from simulator.broker import free_port
    assert not post_webhook(f"http://127.0.0.1:{free_port()}/", b"x", "text/plain", retries=1, backoff_s=0.01)
