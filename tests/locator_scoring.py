"""One scoring of the locator's output against truth, for the tests and the benchmarks alike.

A *case* is one test or scene: one burst of ``rounds`` fired from one known position, and
the incidents the locator (or the oracle) made of its pulses. :func:`score` turns cases into
the figures of issue 14:

- ``rounds_located``: per case, the shots (of any incident) within WITHIN_M of the truth,
  capped at the rounds fired, summed, over the rounds fired;
- ``rounds_exact``: share of cases whose incidents hold as many rounds as were fired;
- ``within_25m``: share of cases whose main incident (most rounds, then most sensors; the
  one an analyst looks at first) is within WITHIN_M of the truth;
- ``median_err_m``, ``rms_err_m``: horizontal error of the located shots (those within
  WITHIN_M; the others are counted by ``rounds_located``);
- ``err_coverage``: share of *all* shots put out (a false or misplaced shot included) whose
  true horizontal error is at most their ``err_m`` (issue 14: the 95 % radius should hold
  the truth for 0.93-0.98 of them);
- ``sharpness``: median ``err_m`` over median true error of those same shots (<= 2.5).

The truth of a real test is its surveyed position (smartphone GPS, about 2.5 m; TN098 §IV),
so real errors include the survey's own.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

WITHIN_M = 25.0  # TN098's benchmark criterion for a located incident
DISPLAY_MAX = 1e3  # a ratio past this (an exact fit's sharpness) prints as ">1000"
FIGURES = ("rounds_located", "rounds_exact", "within_25m", "median_err_m", "rms_err_m",
           "err_coverage", "sharpness")


@dataclass
class Case:
    """One burst with known truth and what came out of it."""

    name: str
    truth_xy: tuple[float, float]
    rounds: int
    incidents: list[dict] = field(default_factory=list)
    note: str = ""  # why nothing came out (the CLI's one-line reason), if it says so
    tags: dict = field(default_factory=dict)  # conditions of a synthetic scene, for breakdowns
    status: int = 0  # the CLI's exit status


def dist_m(item: dict, truth_xy) -> float:
    """Horizontal distance from a shot or incident (``x``, ``y``) to the truth."""
    return math.hypot(item["x"] - truth_xy[0], item["y"] - truth_xy[1])


def main_incident(incidents: list[dict]) -> dict | None:
    """The incident an analyst looks at first: most rounds, then most sensors."""
    return max(incidents, key=lambda i: (i["rounds"], len(i.get("sensors", ()))), default=None)


def case_figures(case: Case) -> dict:
    """Per-case counts :func:`score` adds up (also what a breakdown by condition reads)."""
    shots = [s for inc in case.incidents for s in inc["shots"]]
    errors = [dist_m(s, case.truth_xy) for s in shots]
    near = [e for e in errors if e <= WITHIN_M]
    best = main_incident(case.incidents)
    return {"located": min(len(near), case.rounds), "fired": case.rounds,
            "exact": sum(i["rounds"] for i in case.incidents) == case.rounds,
            "within": best is not None and dist_m(best, case.truth_xy) <= WITHIN_M,
            "near_err_m": near, "all_err_m": errors,
            "err_m": [float(s["err_m"]) if s.get("err_m") is not None else math.nan for s in shots]}


def score(cases: list[Case]) -> dict:
    """The figures of issue 14 over ``cases`` (see the module docstring); NaN where undefined."""
    per = [case_figures(c) for c in cases]
    fired = sum(p["fired"] for p in per)
    near = np.array([e for p in per for e in p["near_err_m"]])
    true_err = np.array([e for p in per for e in p["all_err_m"]])
    err_m = np.array([e for p in per for e in p["err_m"]])
    stated = np.isfinite(err_m)
    n = max(len(cases), 1)
    return {
        "tests": len(cases),
        "rounds_fired": fired,
        "rounds_located": sum(p["located"] for p in per) / fired if fired else math.nan,
        "rounds_exact": sum(p["exact"] for p in per) / n,
        "within_25m": sum(p["within"] for p in per) / n,
        "median_err_m": float(np.median(near)) if len(near) else math.nan,
        "rms_err_m": float(np.sqrt(np.mean(near ** 2))) if len(near) else math.nan,
        "err_coverage": float(np.mean(true_err[stated] <= err_m[stated])) if stated.any() else math.nan,
        "sharpness": (float(np.median(err_m[stated]) / np.median(true_err[stated]))
                      if stated.any() and np.median(true_err[stated]) > 0 else math.nan),
    }


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``earwitness ARGV`` in this process (its own entry point); status, stdout, stderr."""
    from earwitness import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def locate_case(name: str, sensors_csv, pulses_jsonl, truth_xy, rounds: int, extra=(), tags=None) -> Case:
    """``earwitness locate`` on one input, as a scored case. A refusal (non-zero status with no
    output) is a case with no incidents and the CLI's reason in ``note``."""
    status, out, err = run_cli(["locate", "--sensors", str(sensors_csv), *extra, str(pulses_jsonl)])
    incidents = [json.loads(line) for line in out.splitlines() if line.strip()]
    note = "" if incidents else err.strip().splitlines()[-1] if err.strip() else f"exit {status}"
    return Case(name, tuple(truth_xy[:2]), rounds, incidents, note, dict(tags or {}), status)


def failure(case: Case) -> str:
    """What went wrong with a case, in the words association work needs ("" if nothing):
    nothing out; a shot put more than WITHIN_M off (false or misplaced); rounds lost (merged
    or missed); an extra round (a split or an echo taken for a round)."""
    f = case_figures(case)
    if not case.incidents:
        return "nothing located"
    if any(e > WITHIN_M for e in f["all_err_m"]):
        return "shot > 25 m off"
    if f["located"] < f["fired"]:
        return "rounds lost"
    return "" if f["exact"] else "extra round"


def breakdown(cases: list[Case], key) -> dict:
    """{condition: figures} over the cases grouped by ``key(case)`` (e.g. a band of sensor counts)."""
    groups: dict = {}
    for case in cases:
        groups.setdefault(key(case), []).append(case)
    return {k: score(v) for k, v in sorted(groups.items())}


def format_row(label: str, figures: dict, width: int = 34) -> str:
    """One aligned line of the figures, for the benchmark's tables."""
    def f(key, fmt):
        v = figures.get(key, math.nan)
        width = fmt.replace("f", "s").split(".")[0]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return format("-", width)
        return format(v, fmt) if abs(v) < DISPLAY_MAX else format(f">{DISPLAY_MAX:.0f}", width)
    return (f"{label:<{width}s}{figures['tests']:>6d}{f('rounds_located', '>9.3f')}{f('rounds_exact', '>8.3f')}"
            f"{f('within_25m', '>8.3f')}{f('median_err_m', '>9.2f')}{f('rms_err_m', '>8.2f')}"
            f"{f('err_coverage', '>8.3f')}{f('sharpness', '>7.2f')}")


def header(width: int = 34) -> str:
    return (f"{'':<{width}s}{'tests':>6s}{'located':>9s}{'exact':>8s}{'<=25m':>8s}{'med m':>9s}{'rms m':>8s}"
            f"{'cover':>8s}{'sharp':>7s}")
