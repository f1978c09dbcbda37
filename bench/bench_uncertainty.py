"""Calibration of err_m (the error budget of fusion.locator.uncertainty): held out by firing position, and in simulation.

Pittsburgh FP1-FP3 (TN098 supplement, ShotSpotter Inc., CC BY 4.0), every reported pulse in:
the budget's fitted constants (fusion.locator.calibration.fit_budget) are fitted on two firing
positions and scored on the third (coverage of the surveyed position, sharpness = median err_m
over median true error), each fold printed; then fitted on all three (the constants shipped,
in-sample). Simulation: the shipped budget on the simulator's fleet pulses of library scenarios
(sensors where their GPS says; wind, NLOS, echoes). Targets (issue 14): coverage >= 0.90 held
out, 0.93-0.98 in simulation, sharpness <= 2.5. The wind and frame terms are stated, not fitted
(fusion.locator.calibration); a last block shows what the folds do with other stated values.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

from earwitness.units import NS_PER_S

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))   # the test helpers read the shared data

SCENARIOS = ("city_demo", "city_exchange", "city_park", "city")
LIKE_SCENES, LIKE_SEED = 300, 2018   # bench_accuracy's Pittsburgh-like scenes
# Issue 14's window for a position's err_m: covering this share of its shots, at most this many
# times their median true error.
HELD_OUT_COVERAGE, MAX_SHARPNESS = 0.90, 2.5
WITHIN_M = 25.0   # the oracle's shots scored against the survey (as the locator's)


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


def _oracle_offset_m(tests) -> np.ndarray:
    """Mean error vector (east, north) of the oracle (robust least squares on the commercial grouping,
    tests/locator_oracle.py, written apart from the locator) over ``tests``' shots within WITHIN_M."""
    import locator_oracle
    import pittsburgh_pulses as pp

    vectors = []
    for test in tests:
        positions, _ = pp.all_pulses(test)
        survey, _ = pp.survey(test)
        c_m_s = pp.speed_of_sound(pp.temperature_c(test))
        for shot in pp.commercial_shots(test):
            if len(shot) < locator_oracle.MIN_PULSES:
                continue
            xyz = np.array([positions[p["sensor"]] for p in shot])
            t_ns = np.array([p["t_ns"] for p in shot])
            xy, _, _ = locator_oracle.fit(xyz, (t_ns - t_ns.min()) / NS_PER_S, c_m_s)
            vec = xy - np.array(survey[:2])
            if np.hypot(*vec) <= WITHIN_M:
                vectors.append(vec)
    return np.mean(vectors, axis=0)


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
        _per_position(tests, by_vectors)
    else:
        print("bench_uncertainty: Pittsburgh data absent (../shared/data/pittsburgh-2018); skipped")
    print("Simulation, shipped budget (target coverage 0.93-0.98):")
    every = []
    for name in SCENARIOS:
        records = ur.fleet_records(name)
        every += records
        print(_line(f"  {name}", calibration.score(records, uncertainty.BUDGET)))
    print(_line("  all scenarios", calibration.score(every, uncertainty.BUDGET)))
    if tests:
        like = ur.pittsburgh_like_records(tests, LIKE_SCENES, LIKE_SEED)
        print(_line(f"  Pittsburgh-like, {LIKE_SCENES} scenes", calibration.score(like, uncertainty.BUDGET)))


if __name__ == "__main__":
    main()
