"""`earwitness locate` as a user runs it: WGS84 sensors, bad input, clear one-line errors."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pymap3d

import synthetic_shots as syn

ORIGIN = (40.4406, -79.9959, 250.0)  # lat, lon, alt of the local frame's origin


def run(*args):
    return subprocess.run([sys.executable, "-m", "earwitness", "locate", *map(str, args)],
                          capture_output=True, text=True)


def scene(rng_seed=5):
    rng = np.random.default_rng(rng_seed)
    sensors = syn.ring_array(rng, n=8)
    source = (40.0, -25.0, 1.5)
    return syn.render(sensors, [(*source, 1.0), (*source, 1.3)], rng), source


def test_wgs84_sensors_give_wgs84_shots(tmp_path):
    sc, source = scene()
    _, pulses = syn.write(sc, tmp_path)
    csv_path = tmp_path / "sensors-wgs84.csv"
    rows = ["sensor,lat,lon,alt"]
    for sid, (x, y, z) in sc.sensors.items():
        lat, lon, alt = pymap3d.enu2geodetic(x, y, z, *ORIGIN)
        rows.append(f"{sid},{float(lat)!r},{float(lon)!r},{float(alt)!r}")
    csv_path.write_text("\n".join(rows) + "\n")
    out = run("--sensors", csv_path, "--temperature-c", 15, pulses)
    assert out.returncode == 0, out.stderr
    (incident,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert incident["rounds"] == 2 and "lat" in incident and "x" not in incident
    for shot in incident["shots"]:
        e, n, _u = pymap3d.geodetic2enu(shot["lat"], shot["lon"], shot["alt"], *ORIGIN)
        assert math.hypot(e - source[0], n - source[1]) <= 3.0


def test_bad_pulses_are_named_and_the_rest_is_located(tmp_path):
    sc, source = scene()
    sensors, pulses = syn.write(sc, tmp_path)
    good = pulses.read_text()
    pulses.write_text(good
                      + '{"sensor": "NOPE", "t_ns": 1750000001000000000}\n'
                      + '{"sensor": "S00", "t_ns": NaN}\n'
                      + "not json\n"
                      + good.splitlines()[0] + "\n")
    n_good = len(good.splitlines())
    out = run("--sensors", sensors, "--temperature-c", 15, pulses)
    assert out.returncode == 1
    incidents = [json.loads(line) for line in out.stdout.splitlines()]
    assert [i["rounds"] for i in incidents] == [2]
    assert f"line {n_good + 1}: unknown sensor 'NOPE'" in out.stderr
    assert f"line {n_good + 2}: not valid JSON" in out.stderr and "NaN" in out.stderr
    assert f"line {n_good + 3}: not valid JSON" in out.stderr
    assert f"line {n_good + 4}: repeats sensor" in out.stderr


def test_too_few_sensors_is_a_one_line_error(tmp_path):
    sensors = tmp_path / "s.csv"
    sensors.write_text("sensor,x,y,z\nA,0,0,0\nB,100,0,0\n")
    pulses = tmp_path / "p.jsonl"
    pulses.write_text('{"sensor": "A", "t_ns": 1}\n')
    out = run("--sensors", sensors, pulses)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"earwitness locate: error: {sensors} lists 2 sensors; 2d location needs at least 3"]


def test_a_stretch_too_few_sensors_heard_gets_a_one_line_reason(tmp_path):
    sensors = tmp_path / "s.csv"
    sensors.write_text("sensor,x,y,z\nA,0,0,0\nB,100,0,0\nC,0,100,0\n")
    pulses = tmp_path / "p.jsonl"
    t_ns = 1_750_000_000_000_000_000
    pulses.write_text("".join(json.dumps({"sensor": s, "t_ns": t_ns + k * 1_000_000}) + "\n" for k, s in
                              enumerate("ABAB")) + json.dumps({"sensor": "C", "t_ns": t_ns + 60 * 10**9}) + "\n")
    out = run("--sensors", sensors, pulses)
    assert out.returncode == 0 and out.stdout == ""
    assert "2025-06-15T15:06:40.000Z: 2 sensors heard it, a position needs 3" in out.stderr


def test_three_sensors_locate_a_burst_jointly(tmp_path):
    """Three sensors, three rounds from one place: 9 arrivals, 5 unknowns (position and three discharge
    times); each shot says what it rests on. Two sensors are refused with the reason."""
    rng = np.random.default_rng(5)
    sensors_xyz = syn.ring_array(rng, n=8)
    source = (40.0, -25.0, 1.5)
    sc = syn.render(sensors_xyz, [(*source, 1.0), (*source, 1.5), (*source, 2.0)], rng, echoes_per_sensor=1,
                    noise_pulses=2)
    sensors, _ = syn.write(sc, tmp_path)
    pulses = tmp_path / "few.jsonl"
    pulses.write_text("".join(json.dumps(p) + "\n" for p in sc.pulses if p["sensor"] in ("S00", "S04", "S06")))
    out = run("--sensors", sensors, "--temperature-c", 15, pulses)
    assert out.returncode == 0, out.stderr
    (incident,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert incident["rounds"] == 3
    for shot in incident["shots"]:
        assert (shot["sensors_n"], shot["dof"]) == (3, 4)
        assert math.hypot(shot["x"] - source[0], shot["y"] - source[1]) <= 3.0
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps(p) + "\n" for p in sc.pulses if p["sensor"] in ("S00", "S04")))
    out = run("--sensors", sensors, two)
    assert out.returncode == 2
    *notes, error = out.stderr.strip().splitlines()
    assert error == (f"earwitness locate: error: {two}: {len(two.read_text().splitlines())} usable pulses from 2 sensors; "
                     "2d location needs at least 3 sensors")
    # Read as a stream, each stretch got its reason before the whole input's verdict.
    assert notes and all(n.startswith("earwitness locate: note: ") and n.endswith("2 sensors heard it, a position needs 3")
                         for n in notes), notes


def test_three_sensors_that_leave_two_places_give_the_reason_not_a_guess(tmp_path):
    """Three sensors on one side of the shooter: every round has the same two mirror solutions."""
    sc, _ = scene()
    sensors, _ = syn.write(sc, tmp_path)
    pulses = tmp_path / "few.jsonl"
    pulses.write_text("".join(json.dumps(p) + "\n" for p in sc.pulses if p["sensor"] in ("S00", "S01", "S02")))
    out = run("--sensors", sensors, "--temperature-c", 15, pulses)
    assert out.returncode == 0 and out.stdout == ""
    assert "fits two places equally" in out.stderr


def test_bad_sensors_file_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,east,north\nA,0,0\n")
    pulses = tmp_path / "p.jsonl"
    pulses.write_text("")
    out = run("--sensors", bad, pulses)
    assert out.returncode == 2 and "header is id,east,north" in out.stderr
    bad.write_text('"sensor,x,y,z\nA,0,0,0\n')   # a quote left open: the header runs on, shown on one line
    out = run("--sensors", bad, pulses)
    assert out.returncode == 2 and "header is sensor,x,y,z\\nA,0,0,0;" in out.stderr and out.stderr.count("\n") == 1
    bad.write_text("")
    out = run("--sensors", bad, pulses)
    assert out.returncode == 2 and "header is (empty); expected sensor,x,y,z" in out.stderr
    nan = tmp_path / "nan.csv"
    nan.write_text("sensor,x,y,z\nA,0,nan,0\n")
    out = run("--sensors", nan, pulses)
    assert out.returncode == 2 and "line 2: y is 'nan', not a finite number" in out.stderr
    out = run("--sensors", tmp_path / "absent.csv", pulses)
    assert out.returncode == 2 and "absent.csv" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def one_line_error(out) -> str:
    """The one line of a failed run (exit 2, no traceback, nothing on stdout)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and out.stdout == "", out.stderr
    assert lines[0].startswith("earwitness locate: error: ")
    return lines[0]


def test_bad_times_are_named_and_the_rest_is_located(tmp_path):
    """t_ns beyond int64, negative, fractional, boolean; NaN-like numbers the JSON parser lets through."""
    sc, _ = scene()
    sensors, pulses = syn.write(sc, tmp_path)
    good = pulses.read_text()
    bad = ['{"sensor": "S00", "t_ns": 9223372036854775808}', '{"sensor": "S00", "t_ns": -1}',
           '{"sensor": "S00", "t_ns": 1.5}', '{"sensor": "S00", "t_ns": true}',
           '{"sensor": "S00", "t_ns": 1750000001000000000, "snr_db": 1e999}',
           '{"sensor": "S00", "t_ns": 1750000001000000000, "spl_db": Infinity}',
           '{"sensor": "S00", "t_ns": 1750000001000000000, "features": {"rise_ms": -1e999}}']
    pulses.write_bytes(good.encode() + "\n".join(bad).encode() + b'\n{"sensor": "S\xff"}\n')
    out = run("--sensors", sensors, "--temperature-c", 15, pulses)
    assert out.returncode == 1
    assert [json.loads(line)["rounds"] for line in out.stdout.splitlines()] == [2]
    n = len(good.splitlines())
    for k, message in enumerate(["'t_ns' is 9223372036854775808, outside 0..9223372036854775807",
                                 "'t_ns' is -1, outside", "'t_ns' is 1.5, not an integer number of nanoseconds",
                                 "'t_ns' is true, not an integer", "'snr_db' is inf, not a finite number",
                                 "not valid JSON (Infinity is not a number JSON allows)",
                                 "'features.rise_ms' is -inf, not a finite number",
                                 "not UTF-8 text (byte 0xff at column 14)"], start=1):
        assert f"line {n + k}: {message}" in out.stderr, message
    assert "Traceback" not in out.stderr


def test_non_utf8_and_infinite_sensors_files_are_one_line_errors(tmp_path):
    pulses = tmp_path / "p.jsonl"
    pulses.write_text('{"sensor": "A", "t_ns": 1}\n')
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("sensor,x,y,z\nA,0,0,0\nB,100,0,0\nC,0,100,0\nMüller,100,100,0\n".encode("latin-1"))
    assert one_line_error(run("--sensors", latin, pulses)).endswith(
        "latin1.csv line 5: not UTF-8 text (byte 0xfc); save the CSV as UTF-8")
    huge = tmp_path / "huge.csv"
    huge.write_text("sensor,x,y,z\nA,0,0,0\nB,1e999,0,0\n")
    assert "huge.csv line 3: x is '1e999', not a finite number" in one_line_error(run("--sensors", huge, pulses))


def test_co_located_sensors_are_a_one_line_error(tmp_path):
    """Two sensors at one position add no geometry but count towards a fix: refused, both named."""
    sc, _ = scene()
    sensors, pulses = syn.write(sc, tmp_path)
    rows = sensors.read_text().splitlines()
    sid, x, y, z = rows[3].split(",")
    sensors.write_text("\n".join([*rows, f"MAST2,{x},{y},{z}"]) + "\n")
    line = one_line_error(run("--sensors", sensors, pulses))
    assert line.endswith(f"line {len(rows) + 1}: sensor 'MAST2' is at the position of '{sid}' (line 4); "
                         "list one sensor per position (two microphones on one mast are one sensor)")


def test_non_finite_options_are_one_line_errors(tmp_path):
    sc, _ = scene()
    sensors, pulses = syn.write(sc, tmp_path)
    for option, value, message in (("--ground-z", "inf", "--ground-z must be a finite height in metres, not inf"),
                                   ("--ground-z", "nan", "--ground-z must be a finite height in metres, not nan"),
                                   ("--ground-z", "1e300", "--ground-z 1e+300 is more than 4000 m from every"),
                                   ("--temperature-c", "inf", "--temperature-c must be a plausible air temperature"),
                                   ("--temperature-c", "nan", "--temperature-c must be a plausible air temperature"),
                                   ("--max-disorder-s", "nan", "--max-disorder-s must be a number of seconds")):
        line = one_line_error(run("--sensors", sensors, "--mode", "2.5d", option, value, pulses))
        assert line.startswith(f"earwitness locate: error: {message}"), line


def test_an_incident_that_is_not_finite_is_left_out_with_a_warning(tmp_path, capsys):
    """No NaN or Infinity ever reaches the output: such an incident is named and left out (exit 1)."""
    import argparse

    from fusion.cli_locate import _Locating
    from fusion.locator.sensors import read_sensors

    sc, _ = scene()
    sensors, _ = syn.write(sc, tmp_path)
    args = argparse.Namespace(pulses="p.jsonl", max_disorder_s=600.0, progress=False, temperature_c=None,
                              mode="2d", ground_z=None)
    job = _Locating(args, read_sensors(sensors))
    job._write({"incident": "A", "t_ns": 1, "err_m": 1.0, "shots": [{"t_ns": 1, "err_m": 2.0}]})
    job._write({"incident": "B", "t_ns": 2, "err_m": 1.0, "shots": [{"t_ns": 2, "err_m": math.inf}]})
    job.reporting = set(range(4))
    assert job.finish(4) == 1
    out = capsys.readouterr()
    assert [json.loads(line)["incident"] for line in out.out.splitlines()] == ["A"]
    assert "incident B: shots[0].err_m is not a finite number" in out.err


def test_one_shot_three_sensors_one_pulse_each_is_an_exact_2p5d_fix(tmp_path):
    """Nothing to associate and no degree of freedom to spare: located in 2.5D at the given ground
    height, saying it rests on 3 sensors and 0 degrees of freedom."""
    sensors = tmp_path / "s.csv"
    positions = {"A": (0.0, 0.0, 10.0), "B": (400.0, 30.0, 12.0), "C": (150.0, 380.0, 8.0)}
    sensors.write_text("sensor,x,y,z\n" + "".join(f"{s},{x},{y},{z}\n" for s, (x, y, z) in positions.items()))
    source, t0_ns = (170.0, 120.0, 2.0), 1_750_000_000_000_000_000
    c = syn.speed_of_sound(15.0)
    pulses = tmp_path / "p.jsonl"
    pulses.write_text("".join(json.dumps({"sensor": s, "t_ns": t0_ns + round(math.dist(source, p) / c * 1e9)}) + "\n"
                              for s, p in positions.items()))
    out = run("--sensors", sensors, "--temperature-c", 15, "--mode", "2.5d", "--ground-z", 2, pulses)
    assert out.returncode == 0, out.stderr
    (incident,) = [json.loads(line) for line in out.stdout.splitlines()]
    (shot,) = incident["shots"]
    assert (shot["sensors_n"], shot["dof"]) == (3, 0)
    assert math.hypot(shot["x"] - source[0], shot["y"] - source[1]) <= 0.05 and shot["z"] == 2.0
    assert abs(shot["t_ns"] - t0_ns) <= 1_000


def test_one_shot_three_sensors_with_its_echoes_is_fixed_from_the_first_arrivals(tmp_path):
    """The same shot with 2-3 echoes reported at each sensor (later and quieter) and a noise pulse 0.4 s before
    it at one, 20 dB quieter: the earliest loud pulse of each sensor is its direct sound, and the three fix the
    shot (before, only three sensors of one pulse each were fixed: this came out as nothing located)."""
    sensors = tmp_path / "s.csv"
    positions = {"A": (0.0, 0.0, 10.0), "B": (400.0, 30.0, 12.0), "C": (150.0, 380.0, 8.0)}
    sensors.write_text("sensor,x,y,z\n" + "".join(f"{s},{x},{y},{z}\n" for s, (x, y, z) in positions.items()))
    source, t0_ns = (170.0, 120.0, 2.0), 1_750_000_000_000_000_000
    c = syn.speed_of_sound(15.0)
    echoes_s = {"A": (0.061, 0.183), "B": (0.035, 0.12, 0.29), "C": (0.09, 0.21)}
    rows = [{"sensor": "A", "t_ns": t0_ns - 400_000_000, "snr_db": 11.0}]
    for s, p in positions.items():
        arrival_ns = t0_ns + round(math.dist(source, p) / c * 1e9)
        rows.append({"sensor": s, "t_ns": arrival_ns, "snr_db": 31.0})
        rows += [{"sensor": s, "t_ns": arrival_ns + round(e * 1e9), "snr_db": 28.0 - 3.0 * k}
                 for k, e in enumerate(echoes_s[s])]
    pulses = tmp_path / "p.jsonl"
    pulses.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["t_ns"])))
    out = run("--sensors", sensors, "--temperature-c", 15, "--mode", "2.5d", "--ground-z", 2, pulses)
    assert out.returncode == 0, out.stderr
    (incident,) = [json.loads(line) for line in out.stdout.splitlines()]
    (shot,) = incident["shots"]
    assert (shot["sensors_n"], shot["dof"]) == (3, 0)
    assert math.hypot(shot["x"] - source[0], shot["y"] - source[1]) <= 0.05


def test_one_shot_three_sensors_fit_at_two_places_is_placed_by_who_did_not_hear_it(pittsburgh, tmp_path):
    """Seed 601 scene 31 of tests/pittsburgh_like.py in the audio-like regime: one shot, 3 of the array's 34 sensors
    heard it (2 of them late by NLOS paths), each with 4-5 echoes. Their first arrivals fit two places alike, one
    beside sensors that reported nothing: the other is taken (fewburst.place_by_hearing), 4 m off, on 3 sensors and
    0 degrees of freedom. Before, the two places left nothing located."""
    import pittsburgh_like as pl
    from locator_scoring import dist_m

    sc, shots = pl.scene_shots(pittsburgh, 601, 31, tmp_path, pl.Conditions().audio_like())
    assert sc.rounds == 1 and sc.tags["hearing"] == 3 and len(sc.sensors) > 3
    (shot,) = shots
    assert (shot["sensors_n"], shot["dof"]) == (3, 0) and dist_m(shot, sc.source_m) < 10.0


def test_one_shot_three_sensors_fix_outside_the_area_searched_is_not_given(tmp_path):
    """Three sensors' exact fix 900 m west of them, where association searches no place (the sensors' box and
    its margin): nothing has checked it, and no shot is given, with the reason in one line."""
    sensors = tmp_path / "s.csv"
    positions = {"A": (0.0, 0.0, 10.0), "B": (400.0, 30.0, 12.0), "C": (150.0, 380.0, 8.0)}
    sensors.write_text("sensor,x,y,z\n" + "".join(f"{s},{x},{y},{z}\n" for s, (x, y, z) in positions.items()))
    source, t0_ns = (-900.0, 150.0, 2.0), 1_750_000_000_000_000_000
    c = syn.speed_of_sound(15.0)
    pulses = tmp_path / "p.jsonl"
    pulses.write_text("".join(json.dumps({"sensor": s, "t_ns": t0_ns + round(math.dist(source, p) / c * 1e9)}) + "\n"
                              for s, p in positions.items()))
    out = run("--sensors", sensors, "--temperature-c", 15, "--mode", "2.5d", "--ground-z", 2, pulses)
    assert out.returncode == 0 and out.stdout == ""
    assert "fits a place (-900, 150) m outside the area searched: not located" in out.stderr
