"""Calibration of the error budget (:mod:`fusion.locator.uncertainty`) on shots with known truth.

A budget's constants that physics does not fix are chosen so that the 95 % radius ``err_m``
holds the true position for 95 % of the calibration shots, and, among the budgets that do, the
sharpest (the smallest median ``err_m``): a grid search over the non-line-of-sight term (e) and
the per-path speed-of-sound term (d) (calibration of prediction regions by coverage, in the sense
of Gneiting, Balabdaoui & Raftery, "Probabilistic forecasts, calibration and sharpness", JRSS B
69, 2007: sharpness subject to calibration). Survey error (c) is held at its stated value: with
one sensor per arrival it is, like (e), a constant independent variance per arrival, and arrival
times cannot tell the two apart.

Scores are held out by the caller (leave-one-position-out): :func:`fit_budget` on some shots,
:func:`score` on others.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fusion.locator.multilaterate import CONFIDENCE
from fusion.locator.uncertainty import BUDGET, Arrivals, Budget, shot_uncertainties

# The grid: NLOS sigma 0-4 ms by 0.25 ms, per-path relative c error 0-2 % by 0.25 %.
NLOS_GRID_S = np.arange(0.0, 4.01e-3, 2.5e-4)
C_PATH_GRID = np.arange(0.0, 0.0201, 0.0025)


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


def fit_budget(records: list[Record], base: Budget = BUDGET, target: float = CONFIDENCE) -> Budget:
    """The sharpest budget on the grid whose coverage of ``records`` is at least ``target``.

    Sharpest: the smallest median ``err_m``. Where no budget of the grid reaches the target,
    the one with the highest coverage.
    """
    true = np.array([r.true_err_m for r in records])
    best, best_key = base, None
    for nlos_s in NLOS_GRID_S:
        for c_rel in C_PATH_GRID:
            budget = replace(base, nlos_sd_s=float(nlos_s), c_path_rel_sd=float(c_rel))
            err = radii_m(records, budget)
            coverage = float(np.mean(true <= err))
            key = (coverage < target, -coverage if coverage < target else 0.0, float(np.median(err)))
            if best_key is None or key < best_key:
                best, best_key = budget, key
    return best
