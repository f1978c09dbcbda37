"""`earwitness locate` on the real Pittsburgh pulse reports (FP1-FP3; TN098 supplement by
ShotSpotter, Inc., CC BY 4.0): every pulse a test's sensors reported, echoes and noise
included, goes in; located, counted shots must come out."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import pittsburgh_pulses as pp
from earwitness import cli

pytestmark = pytest.mark.slow

WITHIN_M = 25.0


def run_locate(capsys, sensors, pulses, *extra) -> list[dict]:
    """The CLI's own entry point, in process (the subprocess path is tested in test_locate_cli)."""
    status = cli.main(["locate", "--sensors", str(sensors), *extra, str(pulses)])
    out = capsys.readouterr()
    assert status == 0, out.err
    return [json.loads(line) for line in out.out.splitlines()]


def score(pittsburgh, tmp_path, capsys, with_temperature: bool) -> dict:
    located = shots_found = shots_fired = rounds_exact = 0
    errors = []
    for test in pittsburgh:
        sensors, pulses = pp.write_inputs(test, tmp_path / test.name)
        survey, rounds = pp.survey(test)
        extra = ["--temperature-c", str(pp.temperature_c(test))] if with_temperature else []
        incidents = run_locate(capsys, sensors, pulses, *extra)
        # One test is one burst: its incident is the one with the most rounds.
        best = max(incidents, key=lambda inc: inc["rounds"], default=None)
        shots_fired += rounds
        if best is None:
            continue
        dist = math.hypot(best["x"] - survey[0], best["y"] - survey[1])
        located += dist <= WITHIN_M
        near = [s for s in best["shots"] if math.hypot(s["x"] - survey[0], s["y"] - survey[1]) <= WITHIN_M]
        shots_found += min(len(near), rounds)
        rounds_exact += sum(i["rounds"] for i in incidents) == rounds
        errors += [math.hypot(s["x"] - survey[0], s["y"] - survey[1]) for s in near]
    n = len(pittsburgh)
    return {"tests": n, "located_25m": located / n, "shots_found": shots_found / shots_fired,
            "rounds_exact": rounds_exact / n, "median_err_m": float(np.median(errors)),
            "rms_err_m": float(np.sqrt(np.mean(np.square(errors))))}


def test_every_pittsburgh_test_located_counted_from_all_pulses(pittsburgh, tmp_path, capsys):
    figures = score(pittsburgh, tmp_path, capsys, with_temperature=True)
    with capsys.disabled():
        print(f"\nlocate, Pittsburgh FP1-FP3, all pulses, --temperature-c from weather.json: {figures}")
    assert figures["located_25m"] == 1.0
    assert figures["shots_found"] >= 0.99
    assert figures["rounds_exact"] >= 0.95
    assert figures["median_err_m"] <= 4.0


def test_pittsburgh_without_temperature_estimates_the_speed_of_sound(pittsburgh, tmp_path, capsys):
    figures = score(pittsburgh, tmp_path, capsys, with_temperature=False)
    with capsys.disabled():
        print(f"\nlocate, Pittsburgh FP1-FP3, all pulses, speed of sound estimated: {figures}")
    assert figures["located_25m"] >= 0.95
    assert figures["rounds_exact"] >= 0.9
    assert figures["median_err_m"] <= 5.0


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_other_geometries_locate_a_pittsburgh_burst(pittsburgh, tmp_path, capsys, mode):
    test = pittsburgh[0]
    sensors, pulses = pp.write_inputs(test, tmp_path)
    survey, rounds = pp.survey(test)
    incidents = run_locate(capsys, sensors, pulses, "--temperature-c", str(pp.temperature_c(test)), "--mode", mode)
    assert [i["rounds"] for i in incidents] == [rounds]
    assert math.hypot(incidents[0]["x"] - survey[0], incidents[0]["y"] - survey[1]) <= WITHIN_M
