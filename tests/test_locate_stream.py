"""`earwitness locate` on what the simulator's fleet mode writes, and on long inputs read as a stream.

The fleet's pulses carry ``spl_db``: through `sim --pulses` then `locate`, a car backfire and a
firecracker string are told from gunfire. A long input is located a stretch at a time: the
same incidents as the whole input at once, printed as their stretches close.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from earwitness.units import NS_PER_S
from fusion.cli_locate import _records
from fusion.locator.attribution import shot_arrivals
from fusion.locator.classify import classify
from fusion.locator.locate import locate_pulses
from fusion.locator.pulses import read_pulses
from fusion.locator.sensors import read_sensors
from fusion.locator.stream import Stretcher, quiet_gap_s
from fusion.tracking.reach import incident_c_m_s

# The seed city's array (64 sensors, 2 x 2 miles) with a handgun, a firecracker string and a
# car backfire, 30 s apart: each its own incident.
CONFOUNDERS_TOML = """
name = "confounders"
description = "a handgun, a firecracker string and a car backfire over the seed city's array"
start_utc = "2026-07-04T23:00:00Z"
utc_offset_h = -4
duration_s = 90
seed = 3

[atmosphere]
temperature_c = 20.0
humidity_pct = 60.0
wind_mps = 2.0
wind_from_deg = 250.0

[array]
layout = "grid"
width_m = 3218.7
height_m = 3218.7
density_per_sq_mi = 15.0
z_m = 10.0

[sensors]
ppm_sd = 20.0
gps_error_m = 1.0
sensitivity_dbfs_per_pa = -36.0

[environment]
zone = "residential"
nlos_probability = 0.2

[[events]]
t_s = 5.0
kind = "handgun"
x = 1210.0
y = 1630.0
rounds = 3
rate_rpm = 240.0
shooter = "A"
incident = "shooting"

[[events]]
t_s = 35.0
kind = "firecrackers"
x = 1900.0
y = 1300.0
count = 40

[[events]]
t_s = 65.0
kind = "backfire"
x = 700.0
y = 2500.0
"""
START_NS = 1_783_206_000 * NS_PER_S   # 2026-07-04T23:00:00Z
EVENTS_S = {5.0: "gunfire", 35.0: "fireworks", 65.0: "other"}
# How far after its event an incident's first shot may be (the firecracker string's first pops may go unlocated).
EVENT_SLACK_S = 5.0
# Copies of a short scenario laid end to end for a multi-stretch input, this far apart.
COPY_SHIFT_S = 60.0
COPIES = 4


def earwitness(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "earwitness", *map(str, args)], capture_output=True, text=True,
                          input=stdin)


@pytest.mark.slow
def test_backfire_and_firecrackers_through_sim_pulses_then_locate(tmp_path):
    """The fleet's spl_db reaches the classifier: the backfire is `other`, the string `fireworks`, the gun `gunfire`."""
    scenario = tmp_path / "confounders.toml"
    scenario.write_text(CONFOUNDERS_TOML)
    pulses = tmp_path / "fleet.jsonl"
    sim = earwitness("sim", scenario, "--pulses", pulses)
    assert sim.returncode == 0, sim.stderr
    assert all("spl_db" in json.loads(line) for line in pulses.read_text().splitlines())
    out = earwitness("locate", "--sensors", tmp_path / "fleet.sensors.csv", pulses)
    assert out.returncode == 0, out.stderr
    classes = {}
    for incident in map(json.loads, out.stdout.splitlines()):
        t_s = (incident["t_ns"] - START_NS) / NS_PER_S
        event = next(e for e in EVENTS_S if e - 1.0 <= t_s <= e + EVENT_SLACK_S)
        classes.setdefault(event, set()).add(incident["class"])
        assert "level" in incident["class_cues"], incident["class_cues"]   # read from spl_db
    assert classes == {e: {c} for e, c in EVENTS_S.items()}


def _long_input(tmp_path, copies: int = COPIES):
    """The `small` scenario's fleet pulses, ``copies`` times, COPY_SHIFT_S apart: several stretches."""
    one = tmp_path / "small.jsonl"
    sim = earwitness("sim", "small", "--pulses", one)
    assert sim.returncode == 0, sim.stderr
    records = [json.loads(line) for line in one.read_text().splitlines()]
    shift_ns = int(COPY_SHIFT_S * NS_PER_S)
    lines = [json.dumps(dict(p, t_ns=p["t_ns"] + k * shift_ns)) for k in range(copies) for p in records]
    pulses = tmp_path / "long.jsonl"
    pulses.write_text("\n".join(lines) + "\n")
    return tmp_path / "small.sensors.csv", pulses, lines


def _whole(sensors_path, pulses_path) -> list[str]:
    """The incidents of the whole input located at once (as `locate` did before it streamed)."""
    sensors = read_sensors(sensors_path)
    pulses = read_pulses(pulses_path, sensors)
    records = _records(pulses, sensors)
    out = []
    for incident in locate_pulses(pulses, sensors):
        arrivals = shot_arrivals(incident, records, sensors, incident_c_m_s(incident))
        incident.update(classify(incident, arrivals, sensors, recent=out, pulses=records))
        out.append(incident)
    return [json.dumps(i) for i in out]


@pytest.mark.slow
def test_streamed_incidents_are_those_of_the_whole_input(tmp_path):
    sensors, pulses, lines = _long_input(tmp_path)
    stretcher = Stretcher(quiet_gap_s(read_sensors(sensors)), max_disorder_s=0.0)
    table = read_sensors(sensors)
    rows = [(table.index[p["sensor"]], p["t_ns"]) for p in map(json.loads, lines)]
    closed = [s for row in rows for s in stretcher.add(row, "") or []] + stretcher.finish()
    assert len(closed) >= COPIES and sum(map(len, closed)) == len(rows)
    whole = _whole(sensors, pulses)
    assert len(whole) >= COPIES
    for disorder in ("0", "600", "inf"):
        out = earwitness("locate", "--sensors", sensors, "--max-disorder-s", disorder, pulses)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == whole, disorder


@pytest.mark.slow
def test_slightly_out_of_order_input_gives_the_same_incidents(tmp_path):
    """Pulses up to --max-disorder-s out of order: held back and put in order, nothing changes."""
    sensors, pulses, lines = _long_input(tmp_path)
    sorted_out = earwitness("locate", "--sensors", sensors, pulses)
    # Each copy's pulses reversed: up to the copy's length (a few seconds) out of order.
    per_copy = len(lines) // COPIES
    shuffled = [line for k in range(COPIES) for line in reversed(lines[k * per_copy:(k + 1) * per_copy])]
    out = earwitness("locate", "--sensors", sensors, "--max-disorder-s", "30", "-", stdin="\n".join(shuffled) + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == sorted_out.stdout and out.stdout


def test_a_pulse_too_far_out_of_order_is_a_one_line_error(tmp_path):
    sensors, pulses, lines = _long_input(tmp_path)
    late = lines[0]
    pulses.write_text("\n".join([*lines[1:], late]) + "\n")
    out = earwitness("locate", "--sensors", sensors, "--max-disorder-s", "10", pulses)
    errors = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(errors) == 1, out.stderr
    t_late = json.loads(late)["t_ns"]
    lead_s = (max(json.loads(line)["t_ns"] for line in lines[1:]) - t_late) / NS_PER_S
    assert errors[0].startswith(f"earwitness locate: error: {pulses} line {len(lines)}: t_ns {t_late} "
                                f"is {lead_s:.1f} s before line {len(lines) - 1}'s, in a stretch already located")
    assert "sort them by t_ns" in errors[0] and "--max-disorder-s" in errors[0]
    # What was located before it was printed.
    assert len(out.stdout.splitlines()) >= COPIES - 1


@pytest.mark.skipif(not hasattr(select, "poll"), reason="needs poll() on pipes")
def test_incidents_come_out_before_the_input_ends(tmp_path):
    """From a pipe that stays open: each stretch's incidents are printed once a later pulse closes it."""
    sensors, _, lines = _long_input(tmp_path, copies=2)
    proc = subprocess.Popen([sys.executable, "-m", "earwitness", "locate", "--sensors", str(sensors),
                             "--max-disorder-s", "5", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("\n".join(lines) + "\n")   # both copies; the second closes the first's stretch
        proc.stdin.flush()
        poll = select.poll()
        poll.register(proc.stdout, select.POLLIN)
        assert poll.poll(120_000), "no incident before the input ended"
        first = json.loads(proc.stdout.readline())
        assert first["t_ns"] < json.loads(lines[len(lines) // 2])["t_ns"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.slow
def test_progress_goes_to_stderr_when_asked(tmp_path):
    sensors, pulses, _ = _long_input(tmp_path, copies=1)
    quiet = earwitness("locate", "--sensors", sensors, pulses)
    assert "% of" not in quiet.stderr            # stderr not a terminal: no progress unless asked
    loud = earwitness("locate", "--sensors", sensors, "--progress", pulses)
    size_mb = os.path.getsize(pulses) / 1e6
    assert f"earwitness locate: 100% of {size_mb:.1f} MB, " in loud.stderr
    assert loud.stdout == quiet.stdout


def test_a_stream_without_quiet_gaps_is_still_held_in_bounded_memory():
    """A busy city never falls quiet: the stretch is cut at its longest gap every MAX_STRETCH_S, with a note."""
    quiet_s, max_stretch_s, every_s = 15.0, 120.0, 1.0
    stretcher = Stretcher(quiet_s, max_disorder_s=0.0, max_stretch_s=max_stretch_s)
    t0_ns = 1_750_000_000 * NS_PER_S
    held, closed, number = [], [], {}
    for k in range(2000):
        # A pulse a second, the gap after every hundredth a little longer: where the cuts should fall.
        t_ns = t0_ns + int((k * every_s + 0.5 * (k // 100)) * NS_PER_S)
        number[t_ns] = k
        closed += stretcher.add((k % 8, t_ns), f"line {k + 1}")
        held.append(len(stretcher))
    closed += stretcher.finish()
    assert sum(map(len, closed)) == 2000 and len(closed) >= 2000 * every_s / (max_stretch_s + quiet_s)
    assert max(held) <= (max_stretch_s + quiet_s) / every_s + 2
    assert stretcher.notes and "no quiet gap of 15.0 s" in stretcher.notes[0]
    # Cut at the longer gaps, not anywhere.
    assert all(number[part[-1][1]] % 100 == 99 for part in closed[:-1])
