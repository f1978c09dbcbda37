"""The audio path on the real Pittsburgh recordings (FP1-FP3; TN098 supplement by
ShotSpotter, Inc., CC BY 4.0): `earwitness detect` on each test's WAVs (4-6 sensors,
positions from each WAV's .json `location`, start UTC from its `timestamp`), then
`earwitness locate` on what it found."""
from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

import locator_lopo as lopo
import pittsburgh_pulses as pp
from earwitness import cli

pytestmark = pytest.mark.slow

WITHIN_M = 25.0
# Measured on FP1-FP3: 0.96 (52/54) with the airport temperature (the target is 0.90;
# 0.91 before association kept a sensor's earlier pulse as the first arrival, issue 14: with 4
# sensors a reflection 0.1-0.3 s after the direct sound, as loud, fitted the mirror place of the
# other three sensors 30-170 m off; fusion/locator/associate.py, first_arrivals). The misses:
# test_026, where the reflection's set also takes a noise pulse at a fifth sensor and another pulse
# at a sixth, and test_032, where no 4 loud pulses agree (the near sensor's later rounds
# are clipped and more than 6 dB under its first's SNR) and the burst fits two places.
# 0.98 (53/54) since the small-array cap counts only the sensors listening at a shot (fusion/locator/
# chance.py): test_032's two far sensors, silent at its first round, no longer ask 5 of 6 to agree;
# 1.00 since of two sets as large the earlier is kept (associate.py, earlier_set: test_026).
MIN_LOCATED = 0.98
# With c estimated: 0.98 (0.96 before the listening cap, 0.89 before first_arrivals).
MIN_LOCATED_C_ESTIMATED = 0.98
# Rounds within WITHIN_M of those fired, and tests whose rounds are counted exactly, with the
# airport temperature: 0.94 and 0.96 by default, where bursts are completed
# (fusion/locator/burst.py completes the rounds of a burst at its shooter's place with the
# anchor's station terms, fusion/locator/echosets.py keeps its echo sets out; issue 14: 0.85;
# 0.87 and 0.96 before first_arrivals; 0.96 and 0.98 with the listening cap, 0.99 and 0.98 with
# earlier_set); 0.53 and 0.50 with --no-complete-bursts (0.49 and 0.50 before). test_014's third
# round is not in the audio (every WAV is zeros from before it arrives), so 161 of 162 at most.
MIN_ROUNDS_LOCATED = 0.99
MIN_ROUNDS_EXACT = 0.98
MIN_ROUNDS_LOCATED_UNCOMPLETED = 0.52
MIN_ROUNDS_EXACT_UNCOMPLETED = 0.49


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(argv)
    return status, out.getvalue()


def detect_test(test, folder):
    """Sensors CSV and pulses JSONL from the test's WAVs, through `earwitness detect`."""
    return lopo.detect_inputs(test, folder)


def located_share(tests, inputs, temperature: bool, rounds: dict | None = None, *options: str) -> float:
    """Share of tests located within WITHIN_M; ``rounds`` (if given) gets the rounds located and exact."""
    located = found = fired = exact = 0
    for test, (sensors, pulses) in zip(tests, inputs):
        extra = [*options, *(["--temperature-c", str(pp.temperature_c(test))] if temperature else [])]
        status, text = run(["locate", "--sensors", str(sensors), *extra, str(pulses)])
        assert status == 0
        incidents = [json.loads(line) for line in text.splitlines()]
        survey, n_rounds = pp.survey(test)
        # The incident an analyst would look at first: most rounds, then most sensors.
        best = max(incidents, key=lambda i: (i["rounds"], len(i["sensors"])), default=None)
        located += best is not None and math.hypot(best["x"] - survey[0], best["y"] - survey[1]) <= WITHIN_M
        near = [s for i in incidents for s in i["shots"] if math.hypot(s["x"] - survey[0], s["y"] - survey[1]) <= WITHIN_M]
        found, fired = found + min(len(near), n_rounds), fired + n_rounds
        exact += sum(i["rounds"] for i in incidents) == n_rounds
    if rounds is not None:
        rounds.update(located=found / fired, exact=exact / len(tests))
    return located / len(tests)


def test_detect_then_locate_on_pittsburgh_audio(pittsburgh, tmp_path, capsys):
    inputs = [detect_test(test, tmp_path / test.name) for test in pittsburgh]
    rounds = {}
    with_t = located_share(pittsburgh, inputs, True, rounds)
    without_t = located_share(pittsburgh, inputs, False)
    uncompleted = {}
    without_bursts = located_share(pittsburgh, inputs, True, uncompleted, "--no-complete-bursts")
    capsys.readouterr()
    with capsys.disabled():
        print(f"\ndetect + locate on Pittsburgh FP1-FP3 audio ({len(pittsburgh)} tests), located within "
              f"{WITHIN_M:.0f} m: {with_t:.2f} with --temperature-c, {without_t:.2f} with c estimated (target 0.90); "
              f"with --temperature-c rounds located {rounds['located']:.2f}, rounds exact {rounds['exact']:.2f}; "
              f"with --no-complete-bursts: {without_bursts:.2f}, rounds located {uncompleted['located']:.2f}, "
              f"exact {uncompleted['exact']:.2f}")
    assert with_t >= MIN_LOCATED
    assert without_t >= MIN_LOCATED_C_ESTIMATED
    assert rounds["located"] >= MIN_ROUNDS_LOCATED
    assert rounds["exact"] >= MIN_ROUNDS_EXACT
    assert without_bursts >= MIN_LOCATED
    assert uncompleted["located"] >= MIN_ROUNDS_LOCATED_UNCOMPLETED
    assert uncompleted["exact"] >= MIN_ROUNDS_EXACT_UNCOMPLETED


def test_locate_classes_pittsburgh_gunfire(pittsburgh, tmp_path):
    """`earwitness locate` classifies its incidents as the fusion server does: real gunfire,
    detected from one test's recordings, comes out gunfire, from measured cues."""
    sensors, pulses = detect_test(pittsburgh[0], tmp_path)
    status, text = run(["locate", "--sensors", str(sensors), str(pulses)])
    incidents = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert status == 0 and incidents
    assert {inc["class"] for inc in incidents} == {"gunfire"}
    assert all(inc["class_cues"] and 0.5 < inc["confidence"] <= 1.0 for inc in incidents)
