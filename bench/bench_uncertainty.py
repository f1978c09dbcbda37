"""Calibration of err_m (the error budget of fusion.locator.uncertainty): held out by firing position, and in simulation.

Pittsburgh FP1-FP3 (TN098 supplement, ShotSpotter Inc., CC BY 4.0), every reported pulse in:
the budget's fitted constants (fusion.locator.calibration.fit_budget) are fitted on two firing
positions and scored on the third (coverage of the surveyed position, sharpness = median err_m
over median true error), each fold printed; then fitted on all three (the constants shipped,
in-sample). Simulation: the simulator's fleet pulses of library scenarios (sensors where their GPS
says; wind, NLOS, echoes), untold (still air, the shipped budget; and with frame 0) beside told
the scenario's wind with a weather reading's error, frame 0, as the live run tells fusion (and told
it exactly). Targets (issue 14): coverage >= 0.90 held
out, 0.93-0.98 in simulation, sharpness <= 2.5. The wind and frame terms are stated, not fitted
(fusion.locator.calibration); a block shows what the folds do with other stated values. The audio
path (`earwitness detect` on each test's 4-5 WAVs, then the locator; every shot put out) is where
term (i), the gross error on arrivals the geometry barely checks, is fitted (calibration.fit_gross):
its folds fit it on two positions' audio, then the per-path term on their pulses, and score both
paths of the third, beside the budget without (i). Last, per-sensor static terms (station
corrections, tests/station_terms.py), fitted on each position's own shots without truth (no sensor
hears two positions): what they do to its offset and figures, oracle and `earwitness locate`.
"""
from __future__ import annotations

import pathlib
import sys
import tempfile
from dataclasses import replace

import numpy as np

from earwitness.units import NS_PER_MS, NS_PER_S

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))   # the test helpers read the shared data

SCENARIOS = ("city_demo", "city_exchange", "city_park", "city")
# One reading's error moves every shot of a scenario alike: four scenarios are four draws, so the
# told budget is also scored over this many readings of each (simulator.live.weather_settings). The
# coverage's cluster sd over the 4 x READINGS draws: 0.060 at 8 readings (0.864, next 8: 0.891), 0.020
# at 40, 0.015 at 60 (0.893); 40 keeps it under the window's half-width. Re-measured at commit 31a27d2:
# 0.905, sd 0.017 at 40; the bench's cost 13 min of CPU (783 s user; 34 min wall on two shared cores).
READINGS = 40
LIKE_SCENES, LIKE_SEED = 300, 2018   # bench_accuracy's Pittsburgh-like scenes
# Issue 14's window for a position's err_m: covering this share of its shots, at most this many
# times their median true error.
HELD_OUT_COVERAGE, MAX_SHARPNESS = 0.90, 2.5
WITHIN_M = 25.0   # the oracle's shots scored against the survey (as the locator's)
STATION_ROUNDS = 2   # rounds of station terms (tests/station_terms.py)
STATIC_QUANTILE, STATIC_TRIALS, STATIC_SEED = 0.99, 2000, 14


def _line(name: str, figures: dict) -> str:
    return (f"{name:28s} shots {figures['shots']:4d}  coverage {figures['coverage']:.3f}  "
            f"sharpness {figures['sharpness']:.2f}  median err_m {figures['median_err_m']:.2f} m  "
            f"median true {figures['median_true_m']:.2f} m")


def _folds(by_position: dict, base) -> None:
    """Each position held out: the budget fitted on the other two (from ``base``), scored on it."""
    from fusion.locator import calibration

    for held in sorted(by_position):
        train = [r for fp, recs in by_position.items() if fp != held for r in recs]
        budget = calibration.fit_budget(train, base)
        print(_line(f"  {held} held out", calibration.score(by_position[held], budget)),
              f" fitted: c per path {budget.c_path_rel_sd:.5f}")


def _audio_folds(by_audio: dict, by_position: dict) -> None:
    """Each position held out: term (i) fitted on the other two's audio, (d) on their pulses; both paths scored."""
    from fusion.locator import calibration, uncertainty

    for held in sorted(by_audio):
        train_audio = [r for fp, recs in by_audio.items() if fp != held for r in recs]
        train_pulses = [r for fp, recs in by_position.items() if fp != held for r in recs]
        for label, base in (("no (i)", replace(uncertainty.BUDGET, gross_sd_s=0.0)),
                            ("with (i)", calibration.fit_gross(train_audio))):
            budget = calibration.fit_budget(train_pulses, base)
            print(_line(f"  {held} audio, {label}", calibration.score(by_audio[held], budget)),
                  f" fitted: gross {budget.gross_sd_s * NS_PER_S / NS_PER_MS:.1f} ms")
            print(_line(f"  {held} pulses, {label}", calibration.score(by_position[held], budget)),
                  f" fitted: c per path {budget.c_path_rel_sd:.5f}")
    every = [r for recs in by_audio.values() for r in recs]
    fitted = calibration.fit_gross(every)
    print(_line("  audio, all three, in-sample", calibration.score(every, fitted)),
          f" fitted: gross {fitted.gross_sd_s * NS_PER_S / NS_PER_MS:.1f} ms")


def _oracle_offset_m(tests) -> np.ndarray:
    """Mean error vector (east, north) of the oracle (robust least squares on the commercial grouping,
    tests/locator_oracle.py, written apart from the locator) over ``tests``' shots within WITHIN_M."""
    import station_terms as st

    shots = [s for group in st.position_shots(tests).values() for s in group]
    vectors = st.error_vectors(shots, st.oracle_xy(shots))
    return vectors[np.hypot(*vectors.T) <= WITHIN_M].mean(axis=0)


def _per_position(tests, by_vectors: dict) -> None:
    """Why no per-shot err_m meets issue 14 in every fold: each position's shots share one offset
    from its survey (the oracle's too), which nothing a shot's own fit shows tells apart."""
    import uncertainty_records as ur
    from fusion.locator import uncertainty

    print("Per position: the shots' common offset from the survey and their scatter about it; the window")
    print(f"err_m must fall in (>= the {HELD_OUT_COVERAGE:.2f} quantile of true error, <= {MAX_SHARPNESS} x its median);")
    print("the shipped err_m; the medians of what each shot's own fit shows (sensors, residual RMS, off-centre):")
    for fp in sorted(by_vectors):
        vecs = np.array([v for v, _ in by_vectors[fp]])
        records = [r for _, r in by_vectors[fp]]
        true = np.array([r.true_err_m for r in records])
        mean = vecs.mean(axis=0)
        scatter = float(np.sqrt(np.mean(np.sum((vecs - mean) ** 2, axis=1))))
        oracle = _oracle_offset_m([t for t in tests if t.parent.name == fp])
        err = [u["err_m"] for r in records for u in uncertainty.shot_uncertainties(r.arrivals)[r.shot:r.shot + 1]]
        ev = [ur.shot_evidence(r) for r in records]
        med = {k: float(np.median([e[k] for e in ev])) for k in ev[0]}
        print(f"  {fp}: offset ({mean[0]:+.2f}, {mean[1]:+.2f}) = {np.hypot(*mean):.2f} m "
              f"(oracle {np.hypot(*oracle):.2f} m), scatter {scatter:.2f} m RMS; window "
              f"{np.quantile(true, HELD_OUT_COVERAGE):.2f}-{MAX_SHARPNESS * np.median(true):.2f} m, shipped "
              f"{np.median(err):.2f} m; sensors {med['sensors_n']:.0f}, residual RMS "
              f"{med['residual_rms_ms']:.1f} ms, off-centre {med['off_centre']:.2f}")


def _stated_alternatives(by_position: dict) -> None:
    """The folds with the stated wind and frame terms left out, one or both (what each buys)."""
    from dataclasses import replace

    from fusion.locator import uncertainty

    print("The same folds with other stated values (wind m/s per axis, frame m per axis):")
    for wind, frame in ((0.0, 0.0), (uncertainty.WIND_SD_M_S, 0.0), (0.0, uncertainty.FRAME_SD_M)):
        print(f" wind {wind:.2f}, frame {frame:.2f}:")
        _folds(by_position, replace(uncertainty.BUDGET, wind_sd_m_s=wind, frame_sd_m=frame))


def _station_terms(tests, workdir: pathlib.Path) -> None:
    """Per-sensor static terms (tests/station_terms.py): fitted on a position's own shots without truth
    (none can be fitted on the other two: no sensor hears two positions), what they do to its offset,
    scatter and the issue's figures; and how large an offset static terms of their size can make."""
    import station_terms as st
    from locator_scoring import score

    by_position = st.position_shots(tests)
    print(f"Per-sensor static terms (station corrections), no truth; sensors heard at two positions: "
          f"{len(st.shared_sensors(by_position))}")
    for fp, shots in sorted(by_position.items()):
        rounds = st.self_calibrate(shots, STATION_ROUNDS)
        (o0, s0), (o1, s1) = (st.offset_and_scatter(st.error_vectors(shots, xy)) for _, xy in (rounds[0], rounds[-1]))
        terms = rounds[-1][0]
        reach = st.static_offset_quantile(shots, terms, STATIC_QUANTILE, STATIC_TRIALS, STATIC_SEED)
        print(f"  {fp} oracle: offset {o0:.2f} -> {o1:.2f} m, scatter {s0:.2f} -> {s1:.2f} m; terms "
              f"{np.std(list(terms.values())):.2f} m of path RMS, whose offset's {STATIC_QUANTILE} quantile is {reach:.2f} m")
        located = st.locator_self_calibration([t for t in tests if t.parent.name == fp], workdir / fp, STATION_ROUNDS)
        for k, (delays_ns, cases) in enumerate(located):
            f = score(cases)
            offset, scatter = st.offset_and_scatter(st.case_error_vectors(cases))
            print(f"  {fp} locate, round {k}: located {f['rounds_located']:.3f} exact {f['rounds_exact']:.3f} "
                  f"median {f['median_err_m']:.2f} m cover {f['err_coverage']:.3f} sharp {f['sharpness']:.2f}; "
                  f"offset {offset:.2f} m scatter {scatter:.2f} m; terms "
                  f"{np.std(list(delays_ns.values()) or [0]) / NS_PER_MS:.2f} ms RMS")


def _cluster_se(groups: list, budget) -> float:
    """Standard error of the coverage of ``groups`` (lists of records, each sharing one draw of a reading's
    error and of the scenario's noise): the cluster-robust (ratio) estimate, since shots of one group are
    covered or missed together; NaN for fewer than two groups."""
    from fusion.locator import calibration

    groups = [g for g in groups if g]
    if len(groups) < 2:
        return float("nan")
    covered = np.array([calibration.score(g, budget)["coverage"] * len(g) for g in groups])
    sizes = np.array([len(g) for g in groups], dtype=float)
    share = covered.sum() / sizes.sum()
    return float(np.sqrt(np.sum((covered - share * sizes) ** 2) * len(groups) / (len(groups) - 1)) / sizes.sum())


def _simulation() -> None:
    """The fleet's pulses of each scenario, untold (still air; the shipped budget, and with frame 0) and
    told its wind as the live run tells it (simulator.live.weather_settings: the wind plus a seeded
    reading error, frame 0; and over READINGS readings), beside told the exact wind (what a reading that
    never errs would buy). Each scenario and reading is one draw of the reading's error (its shots are
    covered or missed together): the count of draws and the coverage's cluster-robust sd are printed."""
    import uncertainty_records as ur
    from fusion.locator import calibration, uncertainty
    from simulator.live import WEATHER_READING_SD_M_S

    print("Simulation (target coverage 0.93-0.98, sharpness <= 2.5): untold = still air, shipped budget (frame "
          f"{uncertainty.FRAME_TYPICAL_M:g} m) and with frame 0; told = the scenario's wind plus a reading error "
          f"({WEATHER_READING_SD_M_S:g} m/s per axis), frame 0; told exact = the wind without it:")
    told = uncertainty.told_budget(True, 0.0)
    budgets = {"untold": (uncertainty.BUDGET, {}), "untold, frame 0": (uncertainty.told_budget(False, 0.0), {}),
               "told": (told, {"told": True}), "told exact": (told, {"told": True, "exact": True}),
               f"told, {READINGS} readings": (told, {"told": True, "readings": READINGS})}
    every: dict[str, list] = {label: [] for label in budgets}
    for name in SCENARIOS:
        located: dict[tuple, list] = {}
        for label, (budget, how) in budgets.items():
            key = tuple(sorted(how.items()))
            groups = located[key] = located.get(key) or ur.fleet_records_by_reading(name, **how)
            every[label] += groups
            print(_line(f"  {name}, {label}", calibration.score([r for g in groups for r in g], budget)))
    for label, (budget, _) in budgets.items():
        print(_line(f"  all scenarios, {label}", calibration.score([r for g in every[label] for r in g], budget)),
              f" draws {sum(1 for g in every[label] if g)}, sd {_cluster_se(every[label], budget):.3f}")


def main() -> None:
    import uncertainty_records as ur
    from conftest import pittsburgh_tests
    from fusion.locator import calibration, uncertainty

    tests = pittsburgh_tests()
    if tests:
        by_vectors = ur.pittsburgh_error_vectors(tests)
        by_position = {fp: [r for _, r in shots] for fp, shots in by_vectors.items()}
        print("Pittsburgh FP1-FP3, leave-one-position-out (held out; target coverage >= 0.90, sharpness <= 2.5):")
        _folds(by_position, uncertainty.BUDGET)
        everything = [r for recs in by_position.values() for r in recs]
        budget = calibration.fit_budget(everything)
        print(_line("  all three (in-sample)", calibration.score(everything, budget)),
              f" fitted: c per path {budget.c_path_rel_sd:.5f}")
        print(_line("  shipped constants", calibration.score(everything, uncertainty.BUDGET)))
        _stated_alternatives(by_position)
        print("The audio path (detect, then locate), leave-one-position-out, every shot put out:")
        with tempfile.TemporaryDirectory(prefix="ew-uncertainty-") as tmp:
            _audio_folds(ur.pittsburgh_audio_records(tests, pathlib.Path(tmp)), by_position)
        _per_position(tests, by_vectors)
        with tempfile.TemporaryDirectory(prefix="ew-station-") as tmp:
            _station_terms(tests, pathlib.Path(tmp))
    else:
        print("bench_uncertainty: Pittsburgh data absent (../shared/data/pittsburgh-2018); skipped")
    _simulation()
    if tests:
        like = ur.pittsburgh_like_records(tests, LIKE_SCENES, LIKE_SEED)
        print(_line(f"  Pittsburgh-like, {LIKE_SCENES} scenes", calibration.score(like, uncertainty.BUDGET)))


if __name__ == "__main__":
    main()
