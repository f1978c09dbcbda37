"""The oracle beside every figure: robust least squares on a *given* grouping of pulses.

For a real test the grouping is the commercial system's own (nlos-tuples.json); for a
synthetic scene, the true first arrivals. Association is thus taken as solved, so the gap
between the locator and the oracle is what association (and the locator's own fit) costs.

Method: scipy.optimize.least_squares with the soft-L1 loss (a smooth Huber-like
M-estimator, Huber 1964), 2D straight-line time differences (TN098 §II.D; its 2D model,
§V.B), unknowns x, y and the emission time; residuals in metres of path (c * time) so that
the loss scale reads as a distance. Written with scipy rather than the project's
``fusion.locator.multilaterate.irls`` so the yardstick does not share code with what it
measures. Started from the first-hearing sensor and from the centroid; the lower cost wins.

Its ``err_m`` is the formal 95 % radius of the fit alone (timing noise only, ORACLE_SIGMA_S:
the 1 ms rounding's 0.29 ms beside TN098 Table I's 0.1 ms picking error), for comparison
with the locator's: a radius that ignores survey, speed-of-sound and NLOS error.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

SOFT_L1_SCALE_M = 1.0  # about 3 ms of path: beyond it a residual counts linearly, not squared
ORACLE_SIGMA_S = math.sqrt((1e-3 ** 2) / 12 + 1e-4 ** 2)
MIN_PULSES = 3  # x, y and the emission time
CONFIDENCE = 0.95


def fit(positions_m: np.ndarray, t_s: np.ndarray, c_m_s: float) -> tuple[np.ndarray, float, float]:
    """Robust 2D position, emission time (s, in ``t_s``'s frame) and formal 95 % radius (m)."""
    xy = np.asarray(positions_m, dtype=float)[:, :2]
    t_s = np.asarray(t_s, dtype=float)
    t_ref = float(t_s.min())
    path_m = (t_s - t_ref) * c_m_s

    def residuals(p):
        return path_m - p[2] - np.hypot(xy[:, 0] - p[0], xy[:, 1] - p[1])

    starts = [np.append(xy[np.argmin(t_s)] + 1.0, -1.0), np.append(xy.mean(axis=0), -np.ptp(path_m) - 1.0)]
    best = min((optimize.least_squares(residuals, s, loss="soft_l1", f_scale=SOFT_L1_SCALE_M) for s in starts),
               key=lambda r: r.cost)
    jac = best.jac
    try:
        cov = np.linalg.inv(jac.T @ jac)[:2, :2] * (ORACLE_SIGMA_S * c_m_s) ** 2
        radius = math.sqrt(stats.chi2.ppf(CONFIDENCE, 2) * float(np.linalg.eigvalsh(cov).max()))
    except np.linalg.LinAlgError:
        radius = math.inf
    return best.x[:2], t_ref + best.x[2] / c_m_s, radius


def incident(groups: list[tuple[np.ndarray, np.ndarray, list[str]]], c_m_s: float) -> list[dict]:
    """The oracle's incident (a list of at most one) from per-shot (positions, times s, sensor ids).

    Groups with fewer than MIN_PULSES pulses are not located (as the locator could not).
    """
    shots = []
    for positions, t_s, ids in groups:
        if len(t_s) < MIN_PULSES:
            continue
        xy, t0, radius = fit(positions, t_s, c_m_s)
        shots.append({"x": float(xy[0]), "y": float(xy[1]), "t_s": t0, "err_m": radius, "sensors": sorted(ids)})
    if not shots:
        return []
    return [{"rounds": len(shots), "x": float(np.mean([s["x"] for s in shots])),
             "y": float(np.mean([s["y"] for s in shots])),
             "sensors": sorted({i for s in shots for i in s["sensors"]}), "shots": shots}]
