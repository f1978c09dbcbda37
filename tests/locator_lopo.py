"""Leave-one-position-out on the Pittsburgh development tests (FP1-FP3; TN098 supplement,
ShotSpotter Inc., CC BY 4.0), through the CLI, from all reported pulses and from the audio.

Each firing position in turn is held out: ``fit(train_tests) -> settings`` sees only the
other two positions' tests, ``score(held_out_tests, settings)`` scores the third.
:func:`fit_nothing` runs the locator as shipped: its location uses no constant fitted on data,
but two terms of the error budget behind ``err_m`` (the per-path speed-of-sound term (d), the
gross term (i)) ship fitted on all three positions (:mod:`fusion.locator.calibration`; their
leave-one-position-out folds are bench/bench_uncertainty.py's), so err_m's coverage through it is
in-sample. A constant fitted per fold plugs in as a ``fit`` returning settings the scorers
apply: ``locate_args`` (extra CLI arguments) or ``err_scale`` (a factor
on every err_m; :func:`fit_err_scale` fits one, as an example of the hook).

Beside each, the oracle (:mod:`locator_oracle`) on the commercial system's own grouping
(nlos-tuples.json): from all its pulses, and for the audio path from the pulses of only the
sensors whose recordings we have (the same few sensors `detect` reads).
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import replace

import numpy as np

import locator_oracle as oracle
import pittsburgh_pulses as pp
from earwitness.units import NS_PER_S
from locator_scoring import Case, dist_m, locate_case, run_cli, score

POSITIONS = ("FP1", "FP2", "FP3")
Settings = dict
Fit = Callable[[list[pathlib.Path]], Settings]


def position_of(test: pathlib.Path) -> str:
    return test.parent.name


def fit_nothing(train_tests: list[pathlib.Path]) -> Settings:
    """The locator as shipped, whatever the training tests (its budget's (d), (i): fitted on all three)."""
    return {}


def folds(tests: list[pathlib.Path], fit: Fit = fit_nothing):
    """Per held-out position: (position, its tests, the settings fitted on the other two)."""
    for held in POSITIONS:
        held_tests = [t for t in tests if position_of(t) == held]
        train = [t for t in tests if position_of(t) != held]
        if held_tests:
            yield held, held_tests, fit(train)


def lopo(tests, scorer: Callable[[list[pathlib.Path], Settings], dict], fit: Fit = fit_nothing) -> dict:
    """{held-out position: scorer(held-out tests, settings fitted without them)}."""
    return {held: scorer(held_tests, settings) for held, held_tests, settings in folds(tests, fit)}


def _locate_args(test, settings: Settings) -> list[str]:
    return ["--temperature-c", str(pp.temperature_c(test)), *settings.get("locate_args", [])]


_located: dict[tuple, Case] = {}  # (input kind, test folder, CLI arguments) -> Case: each run once per process


def pulses_case(test, workdir: pathlib.Path, settings: Settings) -> Case:
    """`earwitness locate` on every pulse the test's sensors reported."""
    args = _locate_args(test, settings)
    key = ("all", str(test), tuple(args))
    if key not in _located:
        sensors, pulses = pp.write_inputs(test, workdir / test.name / "all")
        survey, rounds = pp.survey(test)
        _located[key] = locate_case(test.name, sensors, pulses, survey, rounds, args)
    return with_err_scale(_located[key], settings.get("err_scale", 1.0))


def with_err_scale(case: Case, scale: float) -> Case:
    """The case with every shot's ``err_m`` multiplied by ``scale`` (a fitted calibration)."""
    if scale == 1.0:
        return case
    incidents = [{**inc, "shots": [{**s, "err_m": s["err_m"] * scale} for s in inc["shots"]]}
                 for inc in case.incidents]
    return replace(case, incidents=incidents)


ERR_FLOOR_M = 0.01  # err_m is printed to the centimetre; below that a ratio means nothing
COVERAGE = 0.95


def fit_err_scale(workdir: pathlib.Path, case_of: Callable | None = None) -> Fit:
    """An example ``fit``: the factor k such that k * err_m holds the survey for COVERAGE of the
    training tests' shots (the empirical quantile of true error over err_m). A calibration of
    the error budget goes the same way: fitted on two positions, scored on the third."""
    def fit(train_tests) -> Settings:
        ratios = [dist_m(s, case.truth_xy) / max(float(s["err_m"]), ERR_FLOOR_M)
                  for case in ((case_of or pulses_case)(t, workdir, {}) for t in train_tests)
                  for inc in case.incidents for s in inc["shots"]]
        return {"err_scale": float(np.quantile(ratios, COVERAGE))} if ratios else {}
    return fit


def detect_inputs(test, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Sensors CSV and pulses JSONL from the test's WAVs through `earwitness detect` (each
    WAV's .json gives the sensor's position and the UTC of its first sample); reused if written."""
    sensors, pulses = folder / "sensors.csv", folder / "pulses.jsonl"
    if sensors.exists() and pulses.exists():
        return sensors, pulses
    folder.mkdir(parents=True, exist_ok=True)
    positions, lines = {}, []
    for wav in sorted(test.glob("*.wav")):
        meta = json.loads(wav.with_suffix(".json").read_text())
        sid, loc = meta["serial_number"], meta["location"]
        positions[sid] = (loc["x"], loc["y"], loc["z"])
        status, text, err = run_cli(["detect", "--sensor", sid, "--start-utc", meta["timestamp"], str(wav)])
        if status != 0:
            raise RuntimeError(f"detect {wav.name}: {err.strip()}")
        lines += text.splitlines()
    pulses.write_text("".join(line + "\n" for line in lines))
    pp.write_sensors_csv(positions, sensors)  # last: its presence marks a complete folder
    return sensors, pulses


def audio_case(test, workdir: pathlib.Path, settings: Settings) -> Case:
    """`earwitness detect` on the test's recordings, then `earwitness locate`."""
    args = _locate_args(test, settings)
    key = ("audio", str(test), tuple(args))
    if key not in _located:
        sensors, pulses = detect_inputs(test, workdir / test.name / "audio")
        survey, rounds = pp.survey(test)
        _located[key] = locate_case(test.name, sensors, pulses, survey, rounds, args)
    return with_err_scale(_located[key], settings.get("err_scale", 1.0))


def recorded_sensors(test) -> set[str]:
    return {json.loads(w.with_suffix(".json").read_text())["serial_number"] for w in test.glob("*.wav")}


def oracle_case(test, only_sensors: set[str] | None = None) -> Case:
    """The oracle on the commercial grouping, optionally only the pulses of ``only_sensors``."""
    positions, _ = pp.all_pulses(test)
    c = pp.speed_of_sound(pp.temperature_c(test))
    groups = []
    for shot in pp.commercial_shots(test):
        shot = [p for p in shot if only_sensors is None or p["sensor"] in only_sensors]
        t_s = np.array([p["t_ns"] for p in shot], dtype=np.int64)
        t_s = (t_s - (t_s.min() if len(t_s) else 0)) / NS_PER_S
        groups.append((np.array([positions[p["sensor"]] for p in shot]).reshape(-1, 3), t_s,
                       [p["sensor"] for p in shot]))
    survey, rounds = pp.survey(test)
    return Case(test.name, survey[:2], rounds, oracle.incident(groups, c))


def pulses_scorer(workdir: pathlib.Path):
    """A LOPO scorer: ours from all pulses and the oracle on the full commercial grouping."""
    def scorer(held_tests, settings):
        return {"ours": score([pulses_case(t, workdir, settings) for t in held_tests]),
                "oracle": score([oracle_case(t) for t in held_tests])}
    return scorer


def audio_scorer(workdir: pathlib.Path):
    """A LOPO scorer: ours through detect + locate, the oracle on the recorded sensors' picks."""
    def scorer(held_tests, settings):
        return {"ours": score([audio_case(t, workdir, settings) for t in held_tests]),
                "oracle": score([oracle_case(t, recorded_sensors(t)) for t in held_tests])}
    return scorer


def audio_offsets_m(tests, name: str, workdir: pathlib.Path) -> tuple[int, list[float]]:
    """For the test ``name`` of ``tests`` (skipped if absent): rounds fired, and every shot's distance
    from the survey, through `earwitness detect` and `earwitness locate` (:func:`audio_case`)."""
    import pytest

    test = next((t for t in tests if t.name == name), None)
    if test is None:
        pytest.skip(f"{name} absent from the Pittsburgh data")
    case = audio_case(test, workdir, {})
    return case.rounds, [dist_m(s, case.truth_xy) for inc in case.incidents for s in inc["shots"]]
