"""Coverage planning (simulator.plan, ``earwitness plan``) checked against the simulator and the locator.

Known truth: the Poisson-binomial count distribution against brute-force enumeration; on the
seed city (city_demo's 8 x 8 grid of 64 rooftop sensors), the predicted number of sensors that
hear a 155 dB handgun, the probability that at least 4 do, whether the locator locates it and
its 95 % error, at a dozen points inside, at the edge of and outside the array, against fleet
simulations of single shots there located by the real locator; and a hole cut in the array is
where ``--add`` puts new sensors, raising coverage.
"""
from __future__ import annotations

import itertools
import json

import matplotlib.image
import numpy as np
import pytest
import tomllib

from earwitness.cli import main
from fusion.locator.locate import locate
from simulator import fleet, plan
from simulator.scenario import LIBRARY, from_dict

SHOTS_PER_POINT = 12
GAP_S = 12.0
LEVEL_DB = 155.0
# Inside, at the edge of (sensors 200 m in from it) and outside the seed city's array.
POINTS = [(1610, 1610), (1210, 1630), (400, 2800), (2900, 300), (0, 1600), (3218, 2000), (-300, 1000), (3500, 3500),
          (-700, 1600), (1600, -900), (-1100, 2500), (4400, 1600)]
LOCATE_RADIUS_M = 100.0


def test_count_distribution_is_exact():
    p = np.array([[0.1, 0.5, 0.9, 0.3], [1.0, 0.0, 0.5, 0.5]])
    dist = plan.count_distribution(p)
    for row, probs in zip(dist, p):
        brute = np.zeros(len(probs) + 1)
        for heard in itertools.product([0, 1], repeat=len(probs)):
            brute[sum(heard)] += np.prod([q if h else 1 - q for q, h in zip(probs, heard)])
        assert row == pytest.approx(brute, abs=1e-12)


def _seed_city(shots_per_point):
    doc = tomllib.loads((LIBRARY / "city_demo.toml").read_text())
    events = [{"t_s": 2.0 + GAP_S * (k * len(POINTS) + i), "kind": "handgun", "x": float(x), "y": float(y), "level_db": LEVEL_DB}
              for k in range(shots_per_point) for i, (x, y) in enumerate(POINTS)]
    doc.update(events=events, duration_s=GAP_S * shots_per_point * len(POINTS) + 5.0, name="plan_check")
    return from_dict(doc)


@pytest.mark.slow
def test_plan_predicts_simulated_detection_and_error_at_a_dozen_points():
    scn = _seed_city(SHOTS_PER_POINT)
    pulses, labels = fleet.pulses(scn)
    sensors = {sid: tuple(p) for sid, p in zip(scn.array.ids, scn.array.xyz)}
    shots = [s for inc in locate(pulses, sensors, temperature_c=scn.atmosphere.temperature_c) for s in inc["shots"]]
    cond = plan.Conditions(level_db=LEVEL_DB, atmosphere=scn.atmosphere, environment=scn.environment, zone=scn.zone,
                           hour=scn.local_hour)
    cov = plan.coverage(np.array(POINTS, float), scn.array.xyz, cond)
    p_four = cov.count_dist[:, 4:].sum(axis=1)
    heard = {ev.index: 0 for ev in scn.events}
    for label in labels:
        if label["event"] >= 0 and label["path"] in ("direct", "nlos"):
            heard[label["event"]] += 1
    rows = []
    for i, (x, y) in enumerate(POINTS):
        events = [ev for ev in scn.events if tuple(ev.pos[:2]) == (x, y)]
        counts = np.array([heard[ev.index] for ev in events])
        errors, reported = [], []
        for ev in events:
            t_ns = scn.start_ns + round(ev.t_s * 1e9)
            near = [s for s in shots if abs(s["t_ns"] - t_ns) < 5e8 and np.hypot(s["x"] - x, s["y"] - y) < LOCATE_RADIUS_M]
            if near:
                best = min(near, key=lambda s: np.hypot(s["x"] - x, s["y"] - y))
                errors.append(float(np.hypot(best["x"] - x, best["y"] - y)))
                reported.append(best["err_m"])
        rows.append({"point": (x, y), "pred_heard": cov.p_hear[i].sum(), "sim_heard": counts.mean(),
                     "pred_p4": p_four[i], "sim_p4": float(np.mean(counts >= 4)), "located": len(errors) / len(events),
                     "pred_err95": cov.err95_m[i], "median_err": np.median(errors) if errors else np.nan,
                     "locator_err_m": np.median(reported) if reported else np.nan})
    table = "\n".join(str({k: (np.round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}) for r in rows)
    for r in rows:
        assert abs(r["pred_heard"] - r["sim_heard"]) <= max(2.0, 0.2 * r["pred_heard"]), table
        assert abs(r["pred_p4"] - r["sim_p4"]) <= 0.3, table
        if r["pred_p4"] >= 0.99 and 0 <= r["point"][0] <= 3218.7 and 0 <= r["point"][1] <= 3218.7:
            assert r["located"] >= 0.85, table                       # inside the array: located
            assert r["median_err"] <= r["pred_err95"], table         # the typical error well inside the 95 % radius
            assert 0.5 <= r["pred_err95"] / r["locator_err_m"] <= 2.0, table   # as sharp as the locator's own
        if r["pred_p4"] <= 0.05:
            assert r["located"] == 0.0, table
    print(table)


def _write_sensors(path, scn, drop):
    with open(path, "w") as fh:
        fh.write("sensor,x,y,z\n")
        for sid, (x, y, z) in zip(scn.array.ids, scn.array.xyz):
            fh.write(f"{sid},{x},{y},{z}\n")
    return [sid for sid, (x, y, _) in zip(scn.array.ids, scn.array.xyz) if drop(x, y)]


@pytest.mark.slow
def test_plan_command_fills_a_hole_in_the_seed_city(tmp_path, capsys):
    scn = _seed_city(1)
    # A hole: the 3 x 3 sensors of the array's south-west corner taken away (what if they move).
    hole = _write_sensors(tmp_path / "sensors.csv", scn, lambda x, y: x < 1100 and y < 1100)
    area = tmp_path / "area.geojson"
    square = [[0, 0], [3218.7, 0], [3218.7, 3218.7], [0, 3218.7], [0, 0]]
    area.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "city"}, "geometry": {"type": "Polygon", "coordinates": [square]}}]}))
    out = tmp_path / "out"
    assert main(["plan", "--sensors", str(tmp_path / "sensors.csv"), "--area", str(area), "--grid-m", "200",
                 "--remove", ",".join(hole), "--add", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    before, after = summary["before"], summary["after"]
    assert len(hole) == 9 and summary["sensors"] == 55
    assert before["covered_share"] < 0.97 and after["covered_share"] > before["covered_share"]
    assert after["mean_p_locate"] > before["mean_p_locate"]
    # The suggestions go into the hole (within its 1.1 km square, give or take a cell).
    for s in summary["suggested"]:
        assert s["x"] < 1300 and s["y"] < 1300, summary["suggested"]
    with open(out / "plan.csv") as fh:
        header = fh.readline().strip().split(",")
    assert header == ["x", "y", "p_locate_before", "err95_m_before", "p_locate_after", "err95_m_after"]
    cells = json.loads((out / "plan.geojson").read_text())["features"]
    assert len(cells) == before["cells"] and cells[0]["geometry"]["type"] == "Polygon"
    assert matplotlib.image.imread(out / "coverage.png").shape[0] > 800
    assert "before: P(located) mean" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--remove", "nobody"], "--remove: no sensor 'nobody'"),
    (["--grid-m", "-5"], "--grid-m must be a positive"),
    (["--area", "AREA"], "not GeoJSON"),
    (["--hour", "25"], "--hour must be in 0-24"),
])
def test_plan_bad_input_one_line(tmp_path, capsys, extra, message):
    (tmp_path / "s.csv").write_text("sensor,x,y,z\na,0,0,10\nb,400,0,10\nc,0,400,10\nd,400,400,10\n")
    (tmp_path / "a.geojson").write_text("not json")
    extra = [str(tmp_path / "a.geojson") if e == "AREA" else e for e in extra]
    assert main(["plan", "--sensors", str(tmp_path / "s.csv"), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_plan_bad_sensors_csv(tmp_path, capsys):
    (tmp_path / "s.csv").write_text("id,x,y\na,0,0\n")
    assert main(["plan", "--sensors", str(tmp_path / "s.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "header is id,x,y" in capsys.readouterr().err


def test_plan_in_wgs84(tmp_path, capsys):
    import pymap3d

    lat0, lon0 = 40.4406, -79.9959
    rows = ["sensor,lat,lon,alt"]
    for i, (e, n) in enumerate([(0, 0), (400, 0), (0, 400), (400, 400), (800, 0), (800, 400)]):
        lat, lon, alt = pymap3d.enu2geodetic(e, n, 0.0, lat0, lon0, 260.0)
        rows.append(f"n{i},{lat},{lon},{alt}")
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    ring = []
    for e, n in [(-400, -400), (1200, -400), (1200, 800), (-400, 800), (-400, -400)]:
        lat, lon, _ = pymap3d.enu2geodetic(e, n, 0.0, lat0, lon0, 0.0)
        ring.append([float(lon), float(lat)])
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    out = tmp_path / "o"
    assert main(["plan", "--sensors", str(tmp_path / "s.csv"), "--area", str(tmp_path / "a.geojson"), "--grid-m", "400",
                 "--add", "1", "--out", str(out)]) == 0
    with open(out / "plan.csv") as fh:
        assert fh.readline().startswith("lat,lon,p_locate_before")
        lat, lon = (float(v) for v in fh.readline().split(",")[:2])
    assert abs(lat - lat0) < 0.02 and abs(lon - lon0) < 0.02
    with open(out / "suggested.csv") as fh:
        assert fh.readline().strip() == "sensor,lat,lon,alt"
    assert json.loads((out / "summary.json").read_text())["after"]["cells"] == 12
