"""Location accuracy you cannot fool yourself with (issue 14, item 5).

Prints, each beside its oracle (robust least squares, scipy soft-L1, on the commercial
system's grouping or a synthetic scene's true first arrivals; tests/locator_oracle.py):

1. leave-one-position-out on the Pittsburgh development tests (FP1-FP3; TN098 supplement,
   ShotSpotter Inc., CC BY 4.0) through `earwitness locate`, from all reported pulses and
   from the audio (`earwitness detect` on each test's WAVs first), the three folds side by
   side. What is fitted on these tests, and on what: two terms of err_m's error budget
   (fusion.locator.calibration), the per-path speed-of-sound term (d) on every reported pulse
   and the gross term (i) on the audio path; the values shipped, which these runs use, are
   those fitted on all three positions, so err_m's coverage and sharpness here are in-sample
   (fitted on two positions and scored on the third: bench/bench_uncertainty.py, bounded in
   tests/test_locate_uncertainty.py). The location figures (rounds, within 25 m, median and RMS
   error) use no fitted term: from the reported pulses they are held out; from the audio the
   detector's defaults were set on all three positions (its trigger level is chosen
   leave-one-position-out only in bench/bench_detector.py; tests/detector_lopo.py);
2. Pittsburgh-like synthetic scenes (tests/pittsburgh_like.py, written apart from the
   simulator), overall and broken down by the conditions that make association hard.

Run alone: ``.venv/bin/python -m bench bench_accuracy`` (EW_ACCURACY_SCENES=N for fewer scenes).
Figures (tests/locator_scoring.py): rounds located within 25 m / rounds fired, rounds exact,
tests within 25 m, median and RMS error of located shots, err_m coverage and sharpness.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
# The test helpers read the shared data and score; reuse them rather than a second copy.
sys.path.insert(0, str(REPO / "tests"))

# EW_ACCURACY_SCENES=60 makes a quick run while iterating (the figures then carry more noise).
SCENES = int(os.environ.get("EW_ACCURACY_SCENES", "300"))
SEED = 2018
ABLATION_SCENES = max(SCENES // 3, 1)
ABLATION_SEED = 7
WELL_HEARD = 10
# Sensors hearing a shot, mean (the default scenes': pittsburgh_like.Conditions.hear_mean): a quieter gun or a
# place at the array's edge, where many rounds reach only the 3-sensor floor (bursts of mirror places, lone
# shots no count can check).
FEW_HEARING_MEAN = 8.0
TARGETS = {  # issue 14, "Must show"
    "pulses": "rounds located >= 0.99, rounds exact >= 0.95, within 25 m 1.00, median <= 4 m; err_m coverage >= 0.90",
    "audio": "rounds located >= 0.85, rounds exact >= 0.85, within 25 m >= 0.95",
    "synthetic": "rounds located >= 0.98, rounds exact >= 0.95; err_m coverage 0.93-0.98, sharpness <= 2.5",
}
# Before association's small-array rule counted the stretch's sensors (not a chunk's), 300 scenes, seed 2018:
# rounds located, rounds exact, tests within 25 m, err_m coverage, sharpness.
SYNTHETIC_BEFORE = {"default": "0.936, 0.890, 0.960, coverage 0.973, sharpness 2.50",
                    "--complete-bursts": "0.968, 0.943, 0.960, coverage 0.974, sharpness 2.49",
                    # then completion on by default; until a few-sensor burst's hearing was one unknown
                    "default, before hearing per burst": "0.968, 0.957, 0.960, coverage 0.979, sharpness 2.50",
                    # until an exact-fit burst's place kept its true posterior area and a few-sensor burst's
                    # hearing followed log-normal shadowing: the same figures on seed 2018 after; held-out
                    # seeds (200 scenes each): 99 0.985, 0.970, 0.975 -> 0.991, 0.975, 0.980; 5 0.977, 0.980,
                    # 0.970 before and after.
                    "default, before shadowing": "0.974, 0.960, 0.963, coverage 0.973, sharpness 2.49",
                    # the same until a lone shot of few sensors was weighed against a few-sensor burst;
                    # held-out seeds (200 scenes each) the same before and after.
                    "default, before fewburst": "0.974, 0.960, 0.963, coverage 0.973, sharpness 2.49",
                    # the same until a few-sensor burst's place was refined until it settled (burst.burst_at);
                    # held-out seeds 31 and 43 (200 scenes each) the same before and after.
                    "default, before the settled place": "0.978, 0.963, 0.967, coverage 0.974, sharpness 2.49"}
# Failed scenes then, by kind (of 300): the default's, then with --complete-bursts.
BEFORE_SCENES = 300  # the before figures are of the default run (300 scenes, seed 2018)
FAILURES_BEFORE = {"": "nothing located 10, shot > 25 m off 1, extra round 1 (before fewburst and shadowing too; earlier: "
                       "rounds lost 17, nothing located 11, shot > 25 m off 5, extra round 1)",
                   "with --complete-bursts": "nothing located 11, shot > 25 m off 5, extra round 1"}
# One difficulty at a time (ABLATION_SCENES of ABLATION_SEED) before a set of echoes that recur after the burst's other
# rounds was dropped (fusion/locator/echorepeats.py): rounds located, rounds exact.
BEFORE_ABLATION_SCENES = 100
ONE_AT_A_TIME_BEFORE = {"clean + dense echoes": "1.000, 0.720", "all, dense echoes": "0.950, 0.700",
                        "audio-like": "0.696, 0.360"}
# What of each Pittsburgh table is held out (module docstring).
HELD_OUT = {"pulses": "location held out; err_m's (d), (i) fitted on all three (held out: bench_uncertainty)",
            "audio": "detector defaults and err_m's (d), (i) set on all three positions: not held out"}
ROWS = (("rounds_located", "rounds located", ".3f"), ("rounds_exact", "rounds exact", ".3f"),
        ("within_25m", "tests within 25 m", ".3f"), ("median_err_m", "median error m", ".2f"),
        ("rms_err_m", "RMS error m", ".2f"), ("err_coverage", "err_m coverage", ".3f"),
        ("sharpness", "sharpness", ".2f"))


def _fmt(value, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def print_folds(title: str, folds: dict) -> None:
    """The three folds side by side: per figure, ours and the oracle per held-out position."""
    print(f"\n{title}")
    cols = [(fp, who) for fp in folds for who in ("ours", "oracle")]
    print(f"{'held out:':<20s}" + "".join(f"{fp + ' ' + who:>12s}" for fp, who in cols))
    print(f"{'tests':<20s}" + "".join(f"{folds[fp][who]['tests']:>12d}" for fp, who in cols))
    for key, label, fmt in ROWS:
        print(f"{label:<20s}" + "".join(f"{_fmt(folds[fp][who][key], fmt):>12s}" for fp, who in cols))


def pittsburgh(tests, workdir: pathlib.Path) -> None:
    import locator_lopo as lopo

    for kind, scorer in (("pulses", lopo.pulses_scorer(workdir)), ("audio", lopo.audio_scorer(workdir))):
        start = time.perf_counter()
        folds = lopo.lopo(tests, scorer)
        what = "all reported pulses" if kind == "pulses" else "the audio (detect, then locate)"
        print_folds(f"Leave-one-position-out, Pittsburgh, from {what} ({time.perf_counter() - start:.0f} s); "
                    + HELD_OUT[kind], folds)
        print(f"target (issue 14), each fold: {TARGETS[kind]}")
        calibrated(tests, workdir, kind)
        failed_tests(tests, workdir, kind)


def failed_tests(tests, workdir: pathlib.Path, kind: str) -> None:
    """Which tests fail and how, by the shared failure kinds (held-out runs, reused)."""
    import locator_lopo as lopo
    from locator_scoring import failure

    case_of = lopo.pulses_case if kind == "pulses" else lopo.audio_case
    kinds: dict[str, list[str]] = {}
    for test in tests:
        case = case_of(test, workdir, {})
        if failure(case):
            kinds.setdefault(failure(case), []).append(f"{lopo.position_of(test)}/{test.name}")
    print("failed tests: " + ("; ".join(f"{k} {len(v)} ({', '.join(v)})" for k, v in sorted(kinds.items()))
                              if kinds else "none"))


def calibrated(tests, workdir: pathlib.Path, kind: str) -> None:
    """The LOPO hook at work: err_m times a factor fitted on the other two positions."""
    import locator_lopo as lopo
    from locator_scoring import score

    case_of = lopo.pulses_case if kind == "pulses" else lopo.audio_case

    def scorer(held, settings):
        return {"k": settings.get("err_scale", math.nan), **score([case_of(t, workdir, settings) for t in held])}

    folds = lopo.lopo(tests, scorer, lopo.fit_err_scale(workdir, case_of))
    print("example of the fit hook: err_m x k, k = 95th percentile of true error / err_m on the other two positions")
    print(f"{'held out:':<20s}" + "".join(f"{fp:>12s}" for fp in folds))
    for key, label, fmt in (("k", "k fitted", ".2f"), ("err_coverage", "err_m coverage", ".3f"),
                            ("sharpness", "sharpness", ".2f")):
        print(f"{label:<20s}" + "".join(f"{_fmt(f[key], fmt):>12s}" for f in folds.values()))


def _band(n: int, edges=(5, 9, 15)) -> str:
    lo = 3
    for edge in edges:
        if n <= edge:
            return f"{lo:>2d}-{edge:<2d}"
        lo = edge + 1
    return f"{lo:>2d}-25"


def _overlap(case) -> str:
    """How many later rounds reach some sensor before a round has reached them all."""
    if case.tags["rounds"] == 1:
        return "single"
    ratio = case.tags["spread_s"] / case.tags["min_gap_s"]
    return "<1 gap" if ratio < 1 else ("1-3 gaps" if ratio < 3 else ">=3 gaps")


def _nlos_share(case) -> str:
    share = case.tags["nlos"] / max(case.tags["hearing"], 1)
    return "none" if share == 0 else ("<=20%" if share <= 0.2 else ">20%")


BREAKDOWNS = (
    ("sensors hearing", lambda c: _band(c.tags["hearing"])),
    ("rounds in burst", lambda c: str(c.tags["rounds"])),
    ("arrival spread over the shortest gap (interleave)", _overlap),
    ("share of hearing sensors NLOS", _nlos_share),
)


def synthetic(tests, workdir: pathlib.Path) -> None:
    import pittsburgh_like as pl
    from locator_scoring import breakdown, format_row, header, score

    start = time.perf_counter()
    scenes = pl.scenes(tests, SCENES, seed=SEED)
    ours, oracle = pl.cases(scenes, workdir / "synthetic")
    completed, _ = pl.cases(scenes, workdir / "synthetic-completed", ["--complete-bursts"])
    print(f"\nPittsburgh-like synthetic scenes: {SCENES}, seed {SEED}, layouts of FP1-FP3, 1-5 rounds "
          f"0.2-1.5 s apart, NLOS, echoes, noise, survey error ({time.perf_counter() - start:.0f} s)")
    print(header())
    print(format_row("ours", score(ours)))
    print(format_row("ours, --complete-bursts", score(completed)))
    print(format_row("oracle (true first arrivals)", score(oracle)))
    for name, figures in SYNTHETIC_BEFORE.items():
        print(f"  before ({name}): located, exact, within 25 m {figures}")
    print("(the oracle is given each round's arrivals: its rounds exact is 1 by construction; its err_m is the")
    print(" formal radius from timing noise alone, shown for comparison)")
    print(f"target (issue 14): {TARGETS['synthetic']}")
    for title, key in BREAKDOWNS:
        # Past the sensor count, only scenes heard by enough sensors: few sensors fail on their
        # own and would be counted again under every other heading.
        few = title != "sensors hearing"
        kept = [k for k, c in enumerate(ours) if not few or c.tags["hearing"] >= WELL_HEARD]
        print(f"\n  by {title}" + (f" (scenes heard by >= {WELL_HEARD} sensors: {len(kept)})" if few else ""))
        print(header())
        theirs = breakdown([oracle[k] for k in kept], key)
        for cond, figures in breakdown([ours[k] for k in kept], key).items():
            print(format_row(f"  {cond} ours", figures))
            print(format_row(f"  {cond} oracle", theirs[cond]))
    failures(ours)
    failures(completed, "with --complete-bursts")
    one_at_a_time(tests, workdir)


def failures(ours, label: str = "") -> None:
    """Each failed scene once, by what went wrong and how many sensors heard it."""
    from locator_scoring import failure

    table: dict[tuple[str, str], int] = {}
    for case in ours:
        kind = failure(case)
        if kind:
            table[kind, _band(case.tags["hearing"])] = table.get((kind, _band(case.tags["hearing"])), 0) + 1
    bands = sorted({b for _, b in table})
    print(f"\n  failed scenes by kind{' ' + label if label else ''} (columns: sensors hearing; of {len(ours)} scenes)")
    print(f"  {'':<20s}" + "".join(f"{b:>8s}" for b in bands))
    for kind in sorted({k for k, _ in table}):
        print(f"  {kind:<20s}" + "".join(f"{table.get((kind, b), 0):>8d}" for b in bands))
    if label in FAILURES_BEFORE and len(ours) == BEFORE_SCENES:
        print(f"  before: {FAILURES_BEFORE[label]}")


def one_at_a_time(tests, workdir: pathlib.Path) -> None:
    """The same scenes (seed, places, bursts, hearing sensors) with one difficulty at a time."""
    import pittsburgh_like as pl
    from locator_scoring import breakdown, format_row, header, score

    base = pl.Conditions()
    clean = base.clean()
    conditions = {
        "exact": base.exact(), "clean": clean,
        "clean + NLOS": dataclasses.replace(clean, nlos_share=base.nlos_share),
        "clean + echoes": dataclasses.replace(clean, echoes_mean=base.echoes_mean),
        "clean + noise": dataclasses.replace(clean, noise_rate_hz=base.noise_rate_hz),
        "clean + dropouts": dataclasses.replace(clean, dropout=base.dropout),
        # `earwitness detect` on the Pittsburgh WAVs finds 8-25 pulses per sensor for 3 rounds:
        # reverberation the commercial reports (and base.echoes_mean) leave out.
        "clean + dense echoes": dataclasses.replace(clean, echoes_mean=pl.DENSE_ECHOES),
        # Every difficulty on, as the default scenes, with fewer sensors hearing each shot.
        "all, fewer hear": dataclasses.replace(base, hear_mean=FEW_HEARING_MEAN),
        "all, dense echoes": dataclasses.replace(base, echoes_mean=pl.DENSE_ECHOES),
        # The same with each pulse's level reported (spl_db, as the supplement's reports carry it): a round's
        # level repeats at a sensor, an echo's does not (fusion/locator/echosets.py reads it).
        "all, dense echoes, levels": dataclasses.replace(base, echoes_mean=pl.DENSE_ECHOES,
                                                         spl_sd_db=pl.REPORTS_SPL_SD_DB),
        "audio-like": base.audio_like(),  # as `detect` then `locate` on a test's 4-5 recordings
    }
    print(f"\nOne difficulty at a time: {ABLATION_SCENES} scenes (seed {ABLATION_SEED}) each; 'exact': flat, no error "
          "at all; 'clean': survey, picking, 1 ms, wind, temperature errors and heights, no NLOS/echo/noise/dropout; "
          f"'all': every difficulty, with a mean of {FEW_HEARING_MEAN:g} sensors hearing a shot ({base.hear_mean:g} by "
          f"default) or {pl.DENSE_ECHOES:g} echoes per sensor and round; 'audio-like': {pl.AUDIO_HEARING[0]:g} sensors hearing, "
          f"only they report, {pl.DENSE_ECHOES:g} echoes")
    print(header())
    for name, cond in conditions.items():
        ours, oracle = pl.cases(pl.scenes(tests, ABLATION_SCENES, seed=ABLATION_SEED, cond=cond),
                                workdir / name.replace(" ", ""))
        print(format_row(f"{name} ours", score(ours)))
        print(format_row(f"{name} oracle", score(oracle)))
        if name in ONE_AT_A_TIME_BEFORE and ABLATION_SCENES == BEFORE_ABLATION_SCENES:
            print(f"  before echo repeats: located, exact {ONE_AT_A_TIME_BEFORE[name]}")
        for band, figures in breakdown(ours, lambda c: _band(c.tags["hearing"], (5, 9))).items():
            print(format_row(f"   ours, {band} sensors", figures))


def main() -> None:
    from conftest import pittsburgh_tests

    tests = pittsburgh_tests()
    if not tests:
        print("bench_accuracy: Pittsburgh data absent (../shared/data/pittsburgh-2018); skipped "
              "(the synthetic scenes use its sensor layouts too)")
        return
    logging.getLogger("fusion").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ew-accuracy-") as tmp:
        workdir = pathlib.Path(tmp)
        pittsburgh(tests, workdir)
        synthetic(tests, workdir)


if __name__ == "__main__":
    main()
