"""911 calls: reading CAD exports, matching calls to located gunfire, the unreported share per area.

Known truth by construction: a call 2 minutes after the shots and 300 m away matches; a call
from another part of the city, or 20 minutes later, does not. On a city of two neighbourhoods
whose incidents and calls are laid out so that exactly k of n incidents in each have a call,
``earwitness unreported`` must report those k and n and Wilson's interval, computed here from
its closed form (Wilson 1927) rather than by the library the product uses.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math

import matplotlib.image
import pymap3d
import pytest

from earwitness.cli import main
from fusion.forensics.calls import CallsError, MatchRule, match, parse_columns, read_calls, time_zone
from fusion.server.calls import CallLog
from fusion.server.casework import Casework
from fusion.server.store import Store
from fusion_db import database

T0_NS = 1_786_760_520 * 10**9          # 2026-08-15T02:22:00Z
MIN_NS = 60 * 10**9
Z95 = 1.959963984540054


def _incident(name, x, y, t_ns=T0_NS, cls="gunfire", rounds=3):
    shots = [{"t_ns": t_ns + k * 10**9 // 4, "x": x, "y": y, "err_m": 12.0} for k in range(rounds)]
    return {"incident": name, "t_ns": t_ns, "x": x, "y": y, "err_m": 12.0, "class": cls, "rounds": rounds, "shots": shots}


def test_call_two_minutes_later_300_m_away_matches_another_place_does_not():
    inc = _incident("house", 1210.0, 1630.0)
    near_xy = (1210.0 + 300.0 * math.cos(0.7), 1630.0 + 300.0 * math.sin(0.7))
    calls = [{"call_id": "near", "t_ns": T0_NS + 2 * MIN_NS, "x": near_xy[0], "y": near_xy[1]},
             {"call_id": "elsewhere", "t_ns": T0_NS + 2 * MIN_NS, "x": 2900.0, "y": 300.0},
             {"call_id": "much-later", "t_ns": T0_NS + 20 * MIN_NS, "x": 1250.0, "y": 1630.0},
             {"call_id": "just-out", "t_ns": T0_NS + MIN_NS, "x": 1210.0, "y": 1630.0 + 501.0}]
    found = match(inc, calls, MatchRule())
    assert [m["call_id"] for m in found] == ["near"]
    assert found[0]["dt_s"] == 120.0 and found[0]["dist_m"] == pytest.approx(300.0, abs=0.05)
    assert found[0]["rule"] == {"before_s": 120.0, "after_s": 900.0, "max_dist_m": 500.0}
    # A wider rule takes the late one; the window counts from the last round of a long burst.
    assert {m["call_id"] for m in match(inc, calls, MatchRule(after_s=1500.0))} == {"near", "much-later"}


def test_match_in_wgs84():
    lat0, lon0 = 40.4406, -79.9959
    lat, lon, _ = pymap3d.enu2geodetic(0.0, 300.0, 0.0, lat0, lon0, 0.0)
    inc = {"incident": "i", "t_ns": T0_NS, "lat": lat0, "lon": lon0, "class": "gunfire"}
    found = match(inc, [{"call_id": "c", "t_ns": T0_NS + 2 * MIN_NS, "lat": float(lat), "lon": float(lon)}], MatchRule())
    assert found[0]["dist_m"] == pytest.approx(300.0, abs=0.1)


def test_cad_export_with_its_own_columns_and_local_time(tmp_path):
    path = tmp_path / "cad.csv"
    path.write_text("IncidentNo,Received,Lat,Long,Nature\nP26-1,08/14/2026 22:22:00,40.44,-79.99,SHOTS FIRED\n")
    calls = read_calls(path, parse_columns("call_id=IncidentNo,t_utc=Received,lat=Lat,lon=Long,type=Nature"),
                       time_zone("America/New_York"), "%m/%d/%Y %H:%M:%S")
    # 22:22 EDT (UTC-4) on the 14th is 02:22 UTC on the 15th.
    assert calls == [{"call_id": "P26-1", "t_ns": T0_NS, "lat": 40.44, "lon": -79.99, "type": "SHOTS FIRED"}]
    iso = tmp_path / "iso.csv"
    iso.write_text("call_id,t_utc,x,y\nc1,2026-08-14T22:22:00-04:00,1,2\n"
                   "c2,2026-08-15T02:22:00Z,1,2\nc3,2026-08-15 02:22:00,1,2\n")
    assert {c["t_ns"] for c in read_calls(iso)} == {T0_NS}


@pytest.mark.parametrize("text, options, message", [
    ("call_id,t_utc,x\nc,2026-08-15T02:22:00Z,1\n", {}, "needs call_id, t_utc and lat,lon or x,y"),
    ('"call_id,t_utc,x,y\nc,2026-08-15T02:22:00Z,1,2\n', {}, "header is call_id,t_utc,x,y\\nc,"),   # quote left open
    ("call_id,t_utc,x,y\nc,yesterday,1,2\n", {}, "line 2: time 'yesterday' is not ISO 8601"),
    ("call_id,t_utc,x,y\nc,2026-08-15T02:22:00Z,1\n", {}, "line 2: expected 4 fields"),
    ("call_id,t_utc,x,y\nc,2026-08-15T02:22:00Z,one,2\n", {}, "line 2: x 'one' is not a number"),
    ("call_id,t_utc,x,y\nc,2026-08-15T02:22:00Z,1,2\nc,2026-08-15T02:23:00Z,1,2\n", {}, "line 3: call 'c' listed twice"),
    ("call_id,t_utc,x,y\nc,2026-08-15T02:22:00Z,1,2\n", {"columns": "t_utc=Received"}, "--columns names Received, not in"),
])
def test_bad_calls_csv_one_line(tmp_path, text, options, message):
    path = tmp_path / "calls.csv"
    path.write_text(text)
    with pytest.raises(CallsError) as err:
        read_calls(path, parse_columns(options.get("columns")))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_options_one_line():
    with pytest.raises(CallsError, match="unknown time zone 'Mars/Olympus'"):
        time_zone("Mars/Olympus")
    with pytest.raises(CallsError, match="unknown column 'when'"):
        parse_columns("when=Received")
    with pytest.raises(CallsError, match="max_dist_m must be a finite number >= 0"):
        MatchRule(max_dist_m=-1.0)


# The seed city (3.2 km square) as two neighbourhoods: west (x < 1600) and east.
WEST = [[0, 0], [1600, 0], [1600, 3200], [0, 3200], [0, 0]]
EAST = [[1600, 0], [3200, 0], [3200, 3200], [1600, 3200], [1600, 0]]
# (area, incidents, of which called in)
LAYOUT = {"west": (10, 1), "east": (8, 6)}


def _city(store):
    """Incidents of the two areas, stored; the calls: one per called incident 2 min later, 300 m off, and decoys."""
    calls = []
    for area, (n, k) in LAYOUT.items():
        x0 = 200.0 if area == "west" else 1800.0
        for i in range(n):
            name = f"{area}-{i}"
            t_ns = T0_NS + (i + (0 if area == "west" else 20)) * 60 * MIN_NS   # an hour apart: calls cannot cross
            x, y = x0 + 120.0 * (i % 5), 400.0 + 600.0 * (i // 5)
            store.save_incident(_incident(name, x, y, t_ns), "final")
            if i < k:
                calls.append((f"call-{name}", t_ns + 2 * MIN_NS, x + 180.0, y + 240.0))    # 300 m away
            else:   # somebody called, but from the other side of the city: not this incident's report
                calls.append((f"decoy-{name}", t_ns + 2 * MIN_NS, 3100.0 - x, 3100.0 - y))
    store.save_incident(_incident("fireworks", 800.0, 2500.0, T0_NS, cls="fireworks"), "final")
    return calls


def _wilson(k, n, z=Z95):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db(request, tmp_path):
    with database(request.param, tmp_path) as (url, schema):
        yield url, schema


def test_import_and_unreported_share_per_area(db, tmp_path, capsys):
    url, schema = db
    with Store(url, schema=schema) as store:
        calls = _city(store)
    path = tmp_path / "cad.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["CallNo", "When", "X", "Y"])
        for cid, t_ns, x, y in calls:
            stamp = dt.datetime.fromtimestamp(t_ns // 10**9, tz=dt.timezone.utc).astimezone(time_zone("America/Chicago"))
            w.writerow([cid, stamp.replace(tzinfo=None).isoformat(), x, y])
    areas = tmp_path / "areas.geojson"
    areas.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "west"}, "geometry": {"type": "Polygon", "coordinates": [WEST]}},
        {"type": "Feature", "properties": {"name": "east"}, "geometry": {"type": "Polygon", "coordinates": [EAST]}},
        {"type": "Feature", "properties": {"name": "empty"},
         "geometry": {"type": "Polygon", "coordinates": [[[5000, 0], [6000, 0], [6000, 900], [5000, 0]]]}}]}))
    base = ["--db", url] + (["--schema", schema] if schema else [])
    args = ["calls", "import", str(path), *base, "--columns", "call_id=CallNo,t_utc=When,x=X,y=Y", "--tz", "America/Chicago"]
    assert main(args) == 0
    assert "18 calls read, 18 new stored; 7 new matches" in capsys.readouterr().out
    assert main(args) == 0                                   # imported again: nothing new, nothing lost
    assert "0 new stored; 0 new matches" in capsys.readouterr().out
    with Store(url, schema=schema) as store:
        matches = CallLog(store).matches()
    assert sorted(m["incident"] for m in matches) == ["east-0", "east-1", "east-2", "east-3", "east-4", "east-5", "west-0"]
    assert all(m["rule"] == {"before_s": 120.0, "after_s": 900.0, "max_dist_m": 500.0} and m["dt_s"] == 120.0 for m in matches)
    out = tmp_path / "out"
    assert main(["unreported", *base, "--areas", str(areas), "--out", str(out)]) == 0
    with open(out / "unreported.csv", newline="") as fh:
        rows = {r["area"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"west", "east", "empty"}
    for area, (n, k) in LAYOUT.items():
        row = rows[area]
        assert (int(row["incidents"]), int(row["called"]), int(row["unreported"])) == (n, k, n - k)
        assert float(row["unreported_share"]) == pytest.approx((n - k) / n, abs=1e-4)
        lo, hi = _wilson(n - k, n)
        assert float(row["ci_low"]) == pytest.approx(lo, abs=1e-4) and float(row["ci_high"]) == pytest.approx(hi, abs=1e-4)
    assert rows["empty"]["incidents"] == "0" and rows["empty"]["unreported_share"] == ""
    geo = json.loads((out / "unreported.geojson").read_text())
    props = {f["properties"]["name"]: f["properties"] for f in geo["features"]}
    assert props["west"]["unreported"] == 9 and props["east"]["called"] == 6
    image = matplotlib.image.imread(out / "unreported.png")
    assert image.shape[0] > 500 and image.shape[1] > 500


def test_bad_areas_and_frames_one_line(tmp_path, capsys):
    db = tmp_path / "fusion.db"
    with Store(db) as store:
        store.save_incident(_incident("i1", 100.0, 100.0), "final")
    bad = tmp_path / "areas.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "LineString"}}]}')
    assert main(["unreported", "--db", str(db), "--areas", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "feature 1: geometry must be a Polygon" in capsys.readouterr().err
    wgs = tmp_path / "calls.csv"
    wgs.write_text("call_id,t_utc,lat,lon\nc1,2026-08-15T02:24:00Z,40.4,-79.9\n")
    assert main(["calls", "import", str(wgs), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "gives lat/lon (WGS84) but the site's positions are in x/y" in err and err.count("\n") == 1
    assert main(["calls", "import", str(wgs), "--db", str(db), "--tz", "Nowhere/Special"]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert main(["unreported", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "o")]) == 2
    assert "no database file" in capsys.readouterr().err


def test_live_incident_shows_a_matched_call(tmp_path):
    sensors = type("S", (), {"frame": "local", "origin": None})()
    with Store(tmp_path / "fusion.db") as store:
        work = Casework.for_site(sensors, store)
        inc = _incident("now", 500.0, 500.0)
        assert work.annotate(inc)["called"] is False
        CallLog(store).add_calls([{"call_id": "911-1", "t_ns": T0_NS + 2 * MIN_NS, "x": 500.0, "y": 800.0}])
        out = work.annotate(inc)
        assert out["called"] is True and out["calls"] == [{"call_id": "911-1", "dt_s": 120.0, "dist_m": 300.0}]
        assert CallLog(store).matches("now")[0]["rule"]["max_dist_m"] == 500.0


# A simulated night in the seed city: ten handgun incidents 1,000 s apart (so a call matches one
# incident only), six in the west half and four in the east; known callers for some of them.
SIM_EVENTS = [("west", 300, 300, True), ("west", 300, 1400, False), ("west", 300, 2600, False),
              ("west", 1250, 800, True), ("west", 1250, 2000, False), ("west", 1250, 3000, False),
              ("east", 2000, 400, True), ("east", 2000, 1700, True), ("east", 2900, 1100, True), ("east", 2900, 2700, False)]
SIM_GAP_S = 1000.0


@pytest.mark.slow
def test_unreported_on_a_simulated_night_with_known_calls(tmp_path, capsys):
    import tomllib

    from simulator import fleet
    from simulator.scenario import LIBRARY, from_dict

    doc = tomllib.loads((LIBRARY / "city_demo.toml").read_text())
    doc.update(name="unreported_night", duration_s=SIM_GAP_S * len(SIM_EVENTS) + 10.0, events=[
        {"t_s": 5.0 + SIM_GAP_S * i, "kind": "handgun", "x": float(x), "y": float(y), "rounds": 3, "rate_rpm": 240.0}
        for i, (_, x, y, _) in enumerate(SIM_EVENTS)])
    scn = from_dict(doc)
    pulses, _ = fleet.pulses(scn)
    with open(tmp_path / "pulses.jsonl", "w") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in pulses)
    scn.array.write_csv(tmp_path / "sensors.csv")
    # Located and classified as `earwitness locate` (and the server) do: a misclassified or
    # spurious incident is counted as the system reported it, so every class is counted here.
    assert main(["locate", "--sensors", str(tmp_path / "sensors.csv"), "--temperature-c",
                 str(scn.atmosphere.temperature_c), str(tmp_path / "pulses.jsonl")]) in (0, 1)
    incidents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    db = tmp_path / "fusion.db"
    with Store(db) as store:
        for inc in incidents:
            store.save_incident(inc, "final")
    # Every true incident located within 50 m; the others are the system's false alerts (nobody calls those).
    near = [any(math.hypot(i["x"] - x, i["y"] - y) < 50.0 for i in incidents) for _, x, y, _ in SIM_EVENTS]
    assert all(near)
    spurious = [i for i in incidents if all(math.hypot(i["x"] - x, i["y"] - y) >= 50.0 for _, x, y, _ in SIM_EVENTS)]
    rows = ["call_id,t_utc,x,y"]
    for i, (_, x, y, called) in enumerate(SIM_EVENTS):
        t_s = scn.start_ns / 1e9 + 5.0 + SIM_GAP_S * i + 120.0
        stamp = dt.datetime.fromtimestamp(t_s, tz=dt.timezone.utc).isoformat()
        # A caller 300 m away two minutes later, or somebody calling from across the city.
        cx, cy = (x + 180.0, y - 240.0) if called else (3200.0 - x, 3200.0 - y)
        rows.append(f"c{i},{stamp},{cx},{cy}")
    (tmp_path / "calls.csv").write_text("\n".join(rows) + "\n")
    areas = tmp_path / "areas.geojson"
    areas.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "west"}, "geometry": {"type": "Polygon", "coordinates": [WEST]}},
        {"type": "Feature", "properties": {"name": "east"}, "geometry": {"type": "Polygon", "coordinates": [EAST]}}]}))
    assert main(["calls", "import", str(tmp_path / "calls.csv"), "--db", str(db)]) == 0
    out = tmp_path / "out"
    assert main(["unreported", "--db", str(db), "--areas", str(areas), "--classes", "gunfire,unknown,fireworks,other",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "unreported.csv", newline="") as fh:
        got = {r["area"]: r for r in csv.DictReader(fh)}
    for area in ("west", "east"):
        truth = [e for e in SIM_EVENTS if e[0] == area]
        false_alerts = sum((i["x"] < 1600.0) == (area == "west") for i in spurious)
        n, k = len(truth) + false_alerts, sum(e[3] for e in truth)
        assert (int(got[area]["incidents"]), int(got[area]["called"])) == (n, k), printed
        lo, hi = _wilson(n - k, n)
        assert float(got[area]["ci_low"]) == pytest.approx(lo, abs=1e-4)
        assert float(got[area]["ci_high"]) == pytest.approx(hi, abs=1e-4)
    assert "(outside every area)" not in got


def test_unreported_in_wgs84(tmp_path, capsys):
    lat0, lon0 = 40.4406, -79.9959

    def geo(e, n):
        lat, lon, _ = pymap3d.enu2geodetic(e, n, 0.0, lat0, lon0, 0.0)
        return float(lat), float(lon)

    db = tmp_path / "fusion.db"
    with Store(db) as store:
        for i, (e, n) in enumerate([(100.0, 100.0), (300.0, 200.0), (-400.0, 100.0)]):
            lat, lon = geo(e, n)
            store.save_incident({"incident": f"g{i}", "t_ns": T0_NS + i * 3600 * 10**9, "lat": lat, "lon": lon,
                                 "err_m": 10.0, "class": "gunfire"}, "final")
    lat, lon = geo(100.0, 400.0)           # 300 m north of g0, two minutes later
    (tmp_path / "calls.csv").write_text(f"call_id,t_utc,lat,lon\nc1,2026-08-15T02:24:00Z,{lat},{lon}\n")
    assert main(["calls", "import", str(tmp_path / "calls.csv"), "--db", str(db)]) == 0
    ring = [list(reversed(geo(e, n))) for e, n in [(0, -500), (1000, -500), (1000, 500), (0, 500), (0, -500)]]
    (tmp_path / "areas.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "east side"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    out = tmp_path / "out"
    assert main(["unreported", "--db", str(db), "--areas", str(tmp_path / "areas.geojson"), "--out", str(out)]) == 0
    with open(out / "unreported.csv", newline="") as fh:
        rows = {r["area"]: r for r in csv.DictReader(fh)}
    assert (rows["east side"]["incidents"], rows["east side"]["called"]) == ("2", "1")
    assert rows["(outside every area)"]["incidents"] == "1"
    written = json.loads((out / "unreported.geojson").read_text())["features"][0]["geometry"]["coordinates"][0]
    assert written[0] == pytest.approx(ring[0], abs=1e-6)          # written back as longitude, latitude


def test_unreported_since_until_and_without_areas(tmp_path, capsys):
    db = tmp_path / "fusion.db"
    with Store(db) as store:
        _city(store)              # west incidents in the first 10 hours, east ones from hour 20
    out = tmp_path / "out"
    since = dt.datetime.fromtimestamp(T0_NS // 10**9 + 15 * 3600, tz=dt.timezone.utc).isoformat()
    assert main(["unreported", "--db", str(db), "--since", since, "--out", str(out)]) == 0
    with open(out / "unreported.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["area"], r["incidents"], r["called"]) for r in rows] == [("all", "8", "0")]   # no calls imported
    capsys.readouterr()
    assert main(["unreported", "--db", str(db), "--until", "yesterday", "--out", str(out)]) == 2
    assert "--since/--until must be ISO 8601" in capsys.readouterr().err
