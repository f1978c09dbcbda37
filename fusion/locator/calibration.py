"""Calibration of the error budget (:mod:`fusion.locator.uncertainty`) on shots with known truth.

A budget's constant that physics does not fix and the data can is chosen so that the 95 % radius
``err_m`` holds the true position for 95 % of the calibration shots, and, among the values that
do, the sharpest (the smallest median ``err_m``): a grid search over the per-path speed-of-sound
term (d) (calibration of prediction regions by coverage, "sharpness subject to calibration",
Gneiting, Balabdaoui & Raftery, "Probabilistic forecasts, calibration and sharpness", JRSS B 69,
2007); the same search fits term (i), the gross error on arrivals the geometry barely checks, on
shots that have such arrivals (:func:`fit_gross`). The others are held at their stated values:
survey error (c) and the non-line-of-sight term (e) are both a constant variance per path (a sensor's,
from one place), which arrival times cannot tell apart; the wind and the frame (h) are one draw per firing
position, so two positions cannot estimate them (fitted on FP1 and FP3, whose shots lie 1-3 m off their surveys, they come out
too small for FP2's 4-6 m), and they are stated from what is known of the air and the surveys
(:mod:`fusion.locator.uncertainty`).

Scores are held out by the caller (leave-one-position-out): :func:`fit_budget` on some shots,
:func:`score` on others.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fusion.locator.locate import RETRY_TOLERANCE_S
from fusion.locator.multilaterate import CONFIDENCE
from fusion.locator.uncertainty import BUDGET, Arrivals, Budget, shot_uncertainties

# The grid: per-path relative c error 0-2.5 % by 0.125 % (a 4 m/s wind along a path is 1.2 %).
C_PATH_GRID = np.arange(0.0, 0.02501, 0.00125)
# Term (i)'s gross error on a poorly controlled arrival: 0 to the association's retry tolerance (a
# wrong pick it accepts errs by at most that), by 2.5 ms.
GROSS_GRID_S = np.arange(0.0, RETRY_TOLERANCE_S + 1e-9, 0.0025)


@dataclass(frozen=True)
class Record:
    """One located shot with known truth: its fit's :class:`Arrivals`, which shot of the fit, its error (m)."""

    arrivals: Arrivals
    shot: int
    true_err_m: float


def radii_m(records: list[Record], budget: Budget) -> np.ndarray:
    """``err_m`` of every record under ``budget`` (one propagation per fit, shared by its shots)."""
    cache: dict[int, list[dict]] = {}
    out = np.empty(len(records))
    for i, r in enumerate(records):
        key = id(r.arrivals)
        if key not in cache:
            cache[key] = shot_uncertainties(r.arrivals, budget)
        out[i] = cache[key][r.shot]["err_m"]
    return out


def score(records: list[Record], budget: Budget) -> dict:
    """Coverage (share of shots whose true error is within err_m) and sharpness (median err_m over median true error)."""
    err = radii_m(records, budget)
    true = np.array([r.true_err_m for r in records])
    return {"shots": len(records), "coverage": float(np.mean(true <= err)),
            "sharpness": float(np.median(err) / max(float(np.median(true)), 1e-9)),
            "median_err_m": float(np.median(err)), "median_true_m": float(np.median(true))}


def _sharpest_covering(records: list[Record], budgets, target: float) -> Budget:
    """Of ``budgets``, the sharpest (smallest median err_m) whose coverage of ``records`` is at least
    ``target``; where none reaches it, the one with the highest coverage."""
    true = np.array([r.true_err_m for r in records])
    best, best_key = None, None
    for budget in budgets:
        err = radii_m(records, budget)
        coverage = float(np.mean(true <= err))
        key = (coverage < target, -coverage if coverage < target else 0.0, float(np.median(err)))
        if best_key is None or key < best_key:
            best, best_key = budget, key
    return best


def fit_budget(records: list[Record], base: Budget = BUDGET, target: float = CONFIDENCE) -> Budget:
    """``base`` with the sharpest per-path c error of the grid whose coverage of ``records`` is at least ``target``.

    Sharpest: the smallest median ``err_m``. Where no value of the grid reaches the target,
    the one with the highest coverage.
    """
    return _sharpest_covering(records, (replace(base, c_path_rel_sd=float(c)) for c in C_PATH_GRID), target)


def fit_gross(records: list[Record], base: Budget = BUDGET, target: float = CONFIDENCE) -> Budget:
    """``base`` with term (i)'s gross error (on poorly controlled arrivals) fitted as :func:`fit_budget` fits (d).

    Only shots with an arrival below :data:`fusion.locator.uncertainty.R_UNCONTROLLED` move with
    it: fitted on few-sensor fixes (the Pittsburgh audio path), where they are.
    """
    return _sharpest_covering(records, (replace(base, gross_sd_s=float(g)) for g in GROSS_GRID_S), target)
