"""Scenario files, layouts, the library, rendering and `earwitness sim` through the console script."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from simulator import arrays, render, scenario

LIBRARY = scenario.library_names()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "earwitness", "sim", *args], capture_output=True, text=True)


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_library_has_the_promised_scenarios():
    for name in ("city", "city_house", "city_park", "city_exchange", "fireworks_night", "small", "block_geojson"):
        assert name in LIBRARY


def test_seed_city_is_four_square_miles_at_10_to_20_per_square_mile():
    scn = scenario.load("city")
    area_sq_mi = 3218.7 ** 2 / arrays.SQ_MI_M2
    assert area_sq_mi == pytest.approx(4.0, rel=0.01)
    assert 10.0 <= len(scn.array) / area_sq_mi <= 20.0
    rounds = {}
    for row in scn.truth():
        if row["gunfire"]:
            rounds[row["incident"]] = rounds.get(row["incident"], 0) + 1
    assert rounds == {"house": 40, "park": 25, "exchange": 3}
    exchange = [r for r in scn.truth() if r["incident"] == "exchange"]
    assert [r["shooter"] for r in exchange] == ["A", "B", "A"]


@pytest.mark.parametrize("name", LIBRARY)
def test_every_library_scenario_loads_and_renders(name, tmp_path):
    scn = scenario.load(name)
    first = next((e for e in scn.events if e.gunfire), scn.events[0])
    near = np.argsort(np.linalg.norm(scn.array.xyz[:, :2] - first.pos[:2], axis=1))[:2]
    ids = [scn.array.ids[i] for i in near]
    res = render.render(scn, tmp_path, ids, t_range=(first.t_s - 0.5, first.t_s + 0.5), progress=False)
    assert res["clips"], "nothing rendered near the first event"
    clips = list(csv.DictReader(open(tmp_path / "clips.csv")))
    assert {c["sensor"] for c in clips} <= set(ids)
    for c in clips:
        info = sf.info(tmp_path / c["file"])
        assert info.samplerate == 48000 and info.channels == 2 and info.subtype == "PCM_16"
        assert info.frames == int(c["samples"])
    header = open(tmp_path / "sensors.csv").readline().strip()
    assert header == ("sensor,lat,lon,alt" if scn.array.origin else "sensor,x,y,z")
    truth = read_jsonl(tmp_path / "truth.jsonl")
    assert truth and all("t_ns" in t and "class" in t for t in truth)
    # Every loud first arrival is in the audio: a peak within 3 ms of it.
    arrivals = [a for a in read_jsonl(tmp_path / "arrivals.jsonl") if a["spl_db"] > 100.0]
    by_sensor = {c["sensor"]: c for c in clips}
    found = 0
    for a in arrivals:
        c = next(c for c in clips
                 if c["sensor"] == a["sensor"] and int(c["t0_ns"]) <= a["t_ns"] < int(c["t0_ns"]) + int(c["samples"]) * 20834)
        x, rate = sf.read(tmp_path / c["file"], dtype="float32")
        k = int((a["t_ns"] - int(c["t0_ns"])) * 1e-9 * rate)
        noise = np.std(x[: rate // 2, 0])
        found += np.max(np.abs(x[k - 10:k + 144, 0])) > 20 * noise
    assert by_sensor and found == len(arrivals)


def test_subset_render_is_the_same_audio(tmp_path):
    scn = scenario.load("small")
    render.render(scn, tmp_path / "all", progress=False)
    render.render(scenario.load("small"), tmp_path / "one", ["S0004"], progress=False)
    a, _ = sf.read(tmp_path / "all" / "audio" / "S0004-000.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "one" / "audio" / "S0004-000.wav", dtype="int16")
    assert np.array_equal(a, b)


def test_gps_error_in_sensors_csv(tmp_path):
    scn = scenario.load("city_exchange")
    render.render(scn, tmp_path, scn.array.ids, t_range=(0, 0), progress=False)
    told = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(open(tmp_path / "sensors.csv")))[1:]])
    true = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(open(tmp_path / "sensors_true.csv")))[1:]])
    horiz = np.linalg.norm(told[:, :2] - true[:, :2], axis=1)
    # 2 m scenario setting: the RMS horizontal error is about that.
    assert 1.4 < np.sqrt(np.mean(horiz ** 2)) < 2.6


def test_wgs84_arrays_write_wgs84(tmp_path):
    scn = scenario.load("block_geojson")
    assert scn.array.frame == "wgs84"
    render.render(scn, tmp_path, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "sensors_true.csv")))
    assert rows[0]["sensor"] == "PGH-01"
    assert float(rows[0]["lat"]) == pytest.approx(40.4410, abs=1e-7)
    assert float(rows[0]["lon"]) == pytest.approx(-79.9990, abs=1e-7)
    shot = read_jsonl(tmp_path / "truth.jsonl")[0]
    assert shot["lat"] == pytest.approx(40.4431, abs=1e-7) and shot["lon"] == pytest.approx(-79.9941, abs=1e-7)


def test_csv_layouts_round_trip(tmp_path):
    grid = arrays.grid(1000.0, 800.0, spacing_m=200.0)
    assert len(grid) == 20
    grid.write_csv(tmp_path / "g.csv")
    back = arrays.read_csv(tmp_path / "g.csv")
    assert back.ids == grid.ids and np.allclose(back.xyz, grid.xyz)
    (tmp_path / "w.csv").write_text("sensor,lat,lon,alt\nA,40.0,-80.0,300\nB,40.001,-80.0,300\n")
    wgs = arrays.read_csv(tmp_path / "w.csv")
    assert wgs.frame == "wgs84"
    assert np.linalg.norm(wgs.xyz[1] - wgs.xyz[0]) == pytest.approx(111.0, abs=0.5)   # 0.001° of latitude


def test_random_layout_density_and_spacing():
    arr = arrays.random_layout(3218.7, 3218.7, np.random.default_rng(5), density_per_sq_mi=15.0, min_spacing_m=150.0)
    assert len(arr) == 60
    d = np.linalg.norm(arr.xyz[:, None, :2] - arr.xyz[None, :, :2], axis=2)
    assert d[np.triu_indices(len(arr), 1)].min() >= 150.0


@pytest.mark.parametrize("text, message", [
    ("duration_s = 'x'", "duration_s must be a number"),
    ("duration_s = 10\n[[events]]\nt_s = 1\nkind = 'cannon'\nx = 0\ny = 0", "unknown kind 'cannon'"),
    ("duration_s = 10\n[[events]]\nt_s = 1\nkind = 'handgun'\nx = 0", "missing y"),
    ("duration_s = 10\n[[events]]\nt_s = 20\nkind = 'handgun'\nx = 0\ny = 0", "outside the scenario"),
    ("duration_s = 10\n[array]\nlayout = 'hex'", "unknown layout 'hex'"),
    ("duration_s = 10\n[array]\nlayout = 'csv'\nfile = 'nope.csv'", "No such file"),
    ("duration_s = 10\ncolour = 'red'", "unknown key 'colour'"),
    ("duration_s = 10\n[environment]\nzone = 'moon'", "unknown zone 'moon'"),
    ("duration_s = 10\n[sensors]\nflux = 3", "unknown sensor setting 'flux'"),
    ("duration_s = [", "not valid TOML"),
])
def test_bad_scenarios_get_one_line_errors(tmp_path, capsys, text, message):
    from earwitness.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(text + "\n[array]\nwidth_m = 100.0\nheight_m = 100.0\nspacing_m = 50.0\n" * ("[array]" not in text))
    assert main(["sim", str(path), "--render", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("earwitness sim: error:") and message in lines[0], err


def test_cli_render_and_pulses(tmp_path, capsys):
    from earwitness.cli import main

    assert main(["sim", "small", "--render", str(tmp_path / "r"), "--format", "float"]) == 0
    err = capsys.readouterr().err
    assert "rendered" in err and "real time" in err
    assert sf.info(tmp_path / "r" / "audio" / "S0004-000.wav").subtype == "FLOAT"
    assert main(["sim", "small", "--pulses", str(tmp_path / "p" / "pulses.jsonl")]) == 0
    pulses = read_jsonl(tmp_path / "p" / "pulses.jsonl")
    assert pulses and all({"sensor", "t_ns", "t_unc_ns", "snr_db"} <= set(p) for p in pulses)
    assert (tmp_path / "p" / "pulses.sensors.csv").exists() and (tmp_path / "p" / "pulses.truth.jsonl").exists()
    assert main(["sim", "no_such_scenario", "--render", str(tmp_path)]) == 2
    assert main(["sim", "small", "--render", str(tmp_path / "x"), "--sensors", "S9999"]) == 2
    assert "unknown sensor 'S9999'" in capsys.readouterr().err


def test_console_script_lists_the_library():
    listing = run_cli("--list")
    assert listing.returncode == 0 and "city_house" in listing.stdout


def test_overruns_and_dropouts_reach_the_files(tmp_path):
    path = tmp_path / "glitchy.toml"
    text = (scenario.LIBRARY / "small.toml").read_text().replace(
        "gps_error_m = 1.0", "gps_error_m = 1.0\noverruns_per_h = 2000.0\ndropouts_per_h = 2000.0")
    path.write_text(text)
    clean = scenario.load("small")
    glitchy = scenario.load(path)
    a = render.render(clean, tmp_path / "a", progress=False)["clips"]
    b = render.render(glitchy, tmp_path / "b", progress=False)["clips"]
    assert sum(c["overruns"] for c in b) > 5 and sum(c["dropouts"] for c in b) > 5
    for ca, cb in zip(a, b):
        # Each overrun loses a 1024-sample block (two may overlap); nothing else changes the length.
        lost = ca["samples"] - cb["samples"]
        assert (lost == 0) == (cb["overruns"] == 0)
        assert lost <= 1024 * cb["overruns"] and (cb["overruns"] == 0 or lost >= 1024)
        assert sf.info(tmp_path / "b" / cb["file"]).frames == cb["samples"]


def test_continuous_render_covers_the_whole_scenario(tmp_path):
    scn = scenario.load("small")
    clips = render.render(scn, tmp_path, ["S0000", "S0004"], continuous=True, progress=False)["clips"]
    assert [c["sensor"] for c in clips] == ["S0000", "S0004"]
    models = scn.sensor_models()
    for c in clips:
        model = models[scn.array.ids.index(c["sensor"])]
        assert c["t0_ns"] - scn.start_ns < 1e5                         # from the start ...
        assert abs(c["samples"] - model.sample_index(scn.duration_s)) <= 1.0   # ... to the end, on its own clock
