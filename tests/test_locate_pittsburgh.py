"""`earwitness locate` on the real Pittsburgh pulse reports (FP1-FP3; TN098 supplement by
ShotSpotter, Inc., CC BY 4.0): every pulse a test's sensors reported, echoes and noise
included, goes in; located, counted shots must come out."""
from __future__ import annotations

import json
import math

import pytest

import locator_scoring as scoring
import pittsburgh_pulses as pp
from earwitness import cli

pytestmark = pytest.mark.slow

WITHIN_M = scoring.WITHIN_M


def run_locate(capsys, sensors, pulses, *extra) -> list[dict]:
    """The CLI's own entry point, in process (the subprocess path is tested in test_locate_cli)."""
    status = cli.main(["locate", "--sensors", str(sensors), *extra, str(pulses)])
    out = capsys.readouterr()
    assert status == 0, out.err
    return [json.loads(line) for line in out.out.splitlines()]


def score(pittsburgh, tmp_path, with_temperature: bool) -> dict:
    """The shared figures (tests/locator_scoring.py) of `earwitness locate` on every test."""
    cases = []
    for test in pittsburgh:
        sensors, pulses = pp.write_inputs(test, tmp_path / test.name)
        survey, rounds = pp.survey(test)
        extra = ["--temperature-c", str(pp.temperature_c(test))] if with_temperature else []
        case = scoring.locate_case(test.name, sensors, pulses, survey, rounds, extra)
        assert case.status == 0, case.note
        cases.append(case)
    return scoring.score(cases)


def test_every_pittsburgh_test_located_counted_from_all_pulses(pittsburgh, tmp_path, capsys):
    figures = score(pittsburgh, tmp_path, with_temperature=True)
    with capsys.disabled():
        print(f"\nlocate, Pittsburgh FP1-FP3, all pulses, --temperature-c from weather.json: {figures}")
    assert figures["within_25m"] == 1.0
    assert figures["rounds_located"] >= 0.99
    assert figures["rounds_exact"] >= 0.95
    assert figures["median_err_m"] <= 4.0


def test_pittsburgh_without_temperature_estimates_the_speed_of_sound(pittsburgh, tmp_path, capsys):
    figures = score(pittsburgh, tmp_path, with_temperature=False)
    with capsys.disabled():
        print(f"\nlocate, Pittsburgh FP1-FP3, all pulses, speed of sound estimated: {figures}")
    assert figures["within_25m"] >= 0.95
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
