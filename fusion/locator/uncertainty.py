"""Uncertainty of a located shot: the error budget, its propagation to the position, the 95 % ellipse and radius.

The error budget
----------------
Each arrival time i used by the final fit errs by the sum of independent parts; its variance is

    var_i = (a) u_i^2                     the pick's own timing uncertainty: its stated ``t_unc``
                                          (the pulse's onset and the node's clock), else
                                          DEFAULT_PICK_SD_S for a report that states none;
          + (b) q^2 / 12                  rounding: times reported to q = 1 ms (detected from the
                                          data: every time of the incident on one millisecond grid)
                                          are uniform within +-q/2;
          + (c) (SURVEY_SD_M / c)^2       the sensor's surveyed position errs by SURVEY_SD_M along
                                          the line of sight (consumer GPS, multipath);
          + (d) (C_PATH_REL_SD * tau_i)^2 the speed of sound along this path differs from the
                                          fit's one c (wind along the path, temperature gradients)
                                          by a relative error, independent per path; tau_i = d_i / c
                                          is the travel time (a correlated form, one wind vector of
                                          sd WIND_SD_M_S per axis for all paths, is there too, held
                                          at 0: the per-path form calibrates sharper, see below);
          + (e) NLOS_SD_S^2               residual non-line-of-sight / diffraction delay that
                                          outlier rejection left in (a few ms over a rooftop: a
                                          per-arrival term, heavy-tailed in truth; its variance is
                                          what enters here);
          + (g) p_i^2                     in the "2d" geometry, the path the plane leaves out: a
                                          sensor dz_i above or below the shot's plane (the sensors'
                                          median height) is sqrt(d^2 + dz^2) - d further (Pittsburgh's
                                          hills: up to 8 m of path); p_i is that over c.

plus, where the final fit held c fixed (a stated temperature, or too few arrivals to estimate it),
a part common to every arrival of the incident, (f) ``C_COMMON_REL_SD * tau_i`` fully correlated
between arrivals (the stated temperature is not that of the air along the paths: an airport's,
some km away, is off by a few degC; TEMPERATURE_SD_C). Where c is estimated, (f) is the
estimate's own error and already in the propagation below.

Propagation (linearised, Gauss-Newton)
--------------------------------------
The fit minimises sum w_i r_i^2 with its own weights w_i = 1 / sigma_i^2 (the stated sigmas; they
need not be the budget's). Its estimate moves by ``A e`` for arrival errors ``e``, with
``A = (J^T W J)^-1 J^T W`` and J the Jacobian of predicted arrival times by the unknowns
(every shot's position and emission time, and c where fitted). So the unknowns' covariance is
the sandwich ``A S A^T`` (e.g. Kay, "Fundamentals of Statistical Signal Processing: Estimation
Theory", 1993, §8.5; Mikhail & Ackermann, "Observations and Least Squares", 1976, ch. 4), with S
the budget's covariance of the arrivals (diagonal plus the rank-one (f)). Where the fit's own
residual scatter exceeds what the budget predicts for it (``E[r^T V^-1 r] = tr(V^-1 P S P^T)``,
``P = I - J A``, V the budget's variances) the covariance is inflated by their ratio, and the
95 % quantile is then that of F(2, dof) rather than chi-square(2) (the variance was estimated
from dof residuals; Mikhail & Ackermann §4.7). With no residual degrees of freedom the budget
alone speaks.

The 95 % region
---------------
The horizontal 2x2 block of that covariance gives the ellipse (semi-axes ``sqrt(k2 * l)`` for
its eigenvalues l, k2 = chi-square(2) 95 % quantile 5.991, or 2 F(2, dof; 0.95) when inflated)
with its major axis' orientation in degrees clockwise from north (0-180, a compass bearing),
and ``err_m``, the radius of the circle about the estimate holding the true position with 95 %
probability (:func:`fusion.locator.multilaterate.radius95_m`, the exact circular integral, not
the ellipse's major axis).

Of the constants that physics does not fix, C_PATH_REL_SD was fitted on the Pittsburgh 2018
live-fire data (TN098 supplement, ShotSpotter Inc., CC BY 4.0), FP1-FP3, and scored by
leave-one-position-out (``python -m bench.bench_uncertainty``); SURVEY_SD_M and NLOS_SD_S, which
the data cannot separate, are held at stated values. See their comments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from fusion.locator.multilaterate import CONFIDENCE, Fit, Geometry, radius95_m

# (a) Timing sigma of a pick that states none: a couple of samples at the 8-12 kHz rates of
# deployed sensors (the commercial reports of TN098 carry no uncertainty).
DEFAULT_PICK_SD_S = 2e-4
# (b) Reported times on a grid of this step are rounded to it: uniform, variance step^2 / 12.
ROUNDING_STEP_S = 1e-3
ROUNDING_TOL_S = 1e-7          # float tolerance of "on the grid" (times are relative seconds)
MIN_ROUNDING_CHECK = 3         # fewer times than this cannot tell a grid from chance
UNIFORM_VARIANCE_FACTOR = 1.0 / 12.0
# (f) The stated temperature against the air along the paths (an airport's, km away): a few
# degC, and c = 20.03 sqrt(T + 273.15) moves by dT / (2 (T + 273.15)) relative.
TEMPERATURE_SD_C = 3.0
C_COMMON_REL_SD = TEMPERATURE_SD_C / (2.0 * 288.15)
# (c) and (e) held, not fitted: each is a constant independent variance per arrival, which arrival
# times cannot tell apart, and on FP1-FP3 coverage and sharpness are flat in (e) from 0 to 3 ms
# (fusion.locator.calibration). (c): a fixed node's surveyed position, ~1 m along a line of sight;
# (e): diffraction over a rooftop delays a near line-of-sight arrival by a few ms, and the final
# fit's outlier rule (locate.OUTLIER_SIGMAS robust sigmas) leaves delays of that size in.
SURVEY_SD_M = 1.0
NLOS_SD_S = 3e-3
# (d) fitted (fusion.locator.calibration.fit_budget: the sharpest value of its grid whose err_m holds
# >= 95 % of the shots) on Pittsburgh 2018 FP1-FP3 (TN098 supplement, ShotSpotter Inc., CC BY 4.0),
# every reported pulse, --temperature-c, the 108 shots within 25 m of the survey; shipped: fitted on
# all three positions (in-sample coverage 0.981, sharpness 2.13x). Held out (fitted on the other
# two): FP1 coverage 1.00, sharpness 1.97x; FP2 0.25, 0.79x; FP3 1.00, 4.87x. FP2's shots all lie
# 4-6 m off its survey (a bias common to the position: its survey is a smartphone's, ~2.5 m; TN098's
# own RMS there is 4.0 m) that FP1 and FP3 do not show, so no fit on them covers it. Simulation
# (bench/bench_uncertainty.py: the fleet's pulses of city_demo, city_exchange, city_park, city;
# sensors where their GPS puts them, 3 m/s wind, NLOS): coverage 0.938, sharpness 1.11x.
C_PATH_REL_SD = 0.01125
# (d)'s wind form: fitted instead of the per-path form (bench), 1.6 m/s holds 0.963 of FP1-FP3 at
# 2.50x in-sample but over-covers the simulation (1.00), and held out fails FP2 all the same (0.25).
WIND_SD_M_S = 0.0
# Quantile of the 95 % ellipse: chi-square with 2 degrees of freedom.
CHI2_2D = float(special.chdtri(2, 1.0 - CONFIDENCE))
ORIENTATION_DECIMALS = 1
AXIS_DECIMALS = 2


@dataclass(frozen=True)
class Budget:
    """The budget's constants (module docstring): (a) default pick sigma, (c) survey, (d) per-path c, (e) NLOS."""

    pick_sd_s: float = DEFAULT_PICK_SD_S
    survey_sd_m: float = SURVEY_SD_M
    c_path_rel_sd: float = C_PATH_REL_SD
    nlos_sd_s: float = NLOS_SD_S
    wind_sd_m_s: float = WIND_SD_M_S
    c_common_rel_sd: float = C_COMMON_REL_SD


BUDGET = Budget()


@dataclass(frozen=True)
class Arrivals:
    """What the budget needs of one final fit (all its shots' arrivals, rows in the fit's order).

    ``jac_s``: d(predicted arrival, s) / d(unknowns), unknowns ordered as in
    :func:`fusion.locator.multilaterate.fit_shots` (per shot its coordinates and emission time,
    then c where fitted); ``fit_sigma_s``: the fit's own sigmas (its weights);
    ``stated_unc_s``: the pulses' stated uncertainty (NaN: none stated); ``rounded``: times on
    the 1 ms grid; ``travel_s``: d_i / c; ``projection_s``: term (g), the path the 2D model leaves
    out; ``toward_xy``: the horizontal unit vector from the source to the sensor (the wind's
    part of (d)); ``shot``: the shot of each row.
    """

    jac_s: np.ndarray
    fit_sigma_s: np.ndarray
    residual_s: np.ndarray
    stated_unc_s: np.ndarray
    rounded: np.ndarray
    travel_s: np.ndarray
    projection_s: np.ndarray
    toward_xy: np.ndarray
    shot: np.ndarray
    c_m_s: float
    dims: int
    c_fitted: bool
    dof: int


def on_grid(t_s: np.ndarray, step_s: float = ROUNDING_STEP_S) -> bool:
    """Whether the times lie on one grid of ``step_s`` (reports rounded to it), judged on at least 3."""
    t_s = np.asarray(t_s, dtype=float)
    if len(t_s) < MIN_ROUNDING_CHECK:
        return False
    steps = (t_s - t_s.min()) / step_s
    return bool(np.all(np.abs(steps - np.round(steps)) * step_s <= ROUNDING_TOL_S))


def arrivals_of_fit(fit: Fit, groups: list, stated_unc_s: list, geometry: Geometry, rounded: bool) -> Arrivals:
    """The :class:`Arrivals` of a :func:`fit_shots` result: its Jacobian recomputed at the solution.

    ``groups`` are the fit's (sensors_m, t_s, sigma_s) per shot, ``stated_unc_s`` per shot the
    pulses' stated uncertainties (NaN where none).
    """
    dims, k = geometry.dims, len(groups)
    per = dims + 1
    n = sum(len(g[1]) for g in groups)
    n_par = k * per + int(fit.c_fitted)
    jac = np.zeros((n, n_par))
    travel, projection, shot = np.zeros(n), np.zeros(n), np.zeros(n, dtype=int)
    toward = np.zeros((n, 2))
    row = 0
    for j, (pos_m, _, _) in enumerate(groups):
        coords = geometry.sensor_coords(np.asarray(pos_m, dtype=float))
        diff = geometry.source_coords(fit.positions[j]) - coords
        dist = np.maximum(np.linalg.norm(diff, axis=1), 1e-6)
        rows = slice(row, row + len(dist))
        jac[rows, j * per: j * per + dims] = diff[:, :dims] / (dist * fit.c)[:, None]
        jac[rows, j * per + dims] = 1.0
        if fit.c_fitted:
            jac[rows, -1] = -dist / fit.c**2
        travel[rows], shot[rows] = dist / fit.c, j
        flat = -diff[:, :2]
        toward[rows] = flat / np.maximum(np.linalg.norm(flat, axis=1), 1e-6)[:, None]
        if geometry.mode == "2d":   # (g): heights left out, about the shot's plane (the sensors' median height)
            dz = np.asarray(pos_m, dtype=float)[:, 2] - float(np.median(np.asarray(pos_m, dtype=float)[:, 2]))
            projection[rows] = (np.hypot(dist, dz) - dist) / fit.c
        row += len(dist)
    return Arrivals(jac, np.concatenate([np.asarray(g[2], dtype=float) for g in groups]),
                    np.concatenate([np.asarray(r, dtype=float) for r in fit.residuals_s]),
                    np.concatenate([np.asarray(u, dtype=float) for u in stated_unc_s]),
                    np.full(n, bool(rounded)), travel, projection, toward, shot, float(fit.c), dims, bool(fit.c_fitted),
                    int(fit.dof))


def arrival_variances_s2(arr: Arrivals, budget: Budget = BUDGET) -> np.ndarray:
    """Per arrival the budget's independent variance, s^2: terms (a) to (e) and (g) of the module docstring."""
    pick = np.where(np.isfinite(arr.stated_unc_s), arr.stated_unc_s, budget.pick_sd_s)
    rounding = np.where(arr.rounded, ROUNDING_STEP_S**2 * UNIFORM_VARIANCE_FACTOR, 0.0)
    return (pick**2 + rounding + (budget.survey_sd_m / arr.c_m_s) ** 2 +
            (budget.c_path_rel_sd * arr.travel_s) ** 2 + budget.nlos_sd_s**2 + arr.projection_s**2)


def covariances(arr: Arrivals, budget: Budget = BUDGET) -> list[tuple[np.ndarray, int | None]]:
    """Per shot the covariance of its solved coordinates and the dof of its quantile (None: chi-square).

    The sandwich ``A S A^T`` of the fit's linearised estimator, inflated by the residuals' excess
    over the budget (module docstring).
    """
    var = arrival_variances_s2(arr, budget)
    # (d), the wind's part: a wind w (east, north; each of sd wind_sd_m_s) speeds the sound toward
    # sensor i by w.u_i, so its arrival comes tau_i (w.u_i) / c early: correlated through the one w.
    lag = arr.travel_s[:, None] * arr.toward_xy / arr.c_m_s
    cov_e = np.diag(var) + budget.wind_sd_m_s**2 * (lag @ lag.T)
    if not arr.c_fitted:
        common = budget.c_common_rel_sd * arr.travel_s
        cov_e = cov_e + np.outer(common, common)
    w = 1.0 / arr.fit_sigma_s**2
    jw = arr.jac_s * w[:, None]
    try:
        a = np.linalg.solve(arr.jac_s.T @ jw, jw.T)
    except np.linalg.LinAlgError:
        return [(np.full((arr.dims, arr.dims), np.inf), None) for _ in range(int(arr.shot.max()) + 1)]
    cov = a @ cov_e @ a.T
    dof = None
    if arr.dof > 0:
        p = np.eye(len(var)) - arr.jac_s @ a
        expected = float(np.trace((p @ cov_e @ p.T) / var[:, None]))
        scale = float(np.sum(arr.residual_s**2 / var)) / expected if expected > 0 else 1.0
        if scale > 1.0:
            cov, dof = cov * scale, arr.dof
    per = arr.dims + 1
    return [(cov[j * per: j * per + arr.dims, j * per: j * per + arr.dims], dof)
            for j in range(int(arr.shot.max()) + 1)]


def ellipse(cov_xy: np.ndarray, dof: int | None = None, confidence: float = CONFIDENCE) -> dict:
    """The 95 % ellipse of a horizontal covariance: semi-axes (m) and the major axis' bearing.

    ``orientation_deg``: degrees clockwise from north, in [0, 180). Semi-axes are
    ``sqrt(k2 * eigenvalue)``, k2 the chi-square(2) quantile, or 2 F(2, dof) where the variance
    was estimated from ``dof`` residual degrees of freedom.
    """
    cov_xy = np.asarray(cov_xy, dtype=float)[:2, :2]
    if not np.all(np.isfinite(cov_xy)):
        return {"semi_major_m": math.inf, "semi_minor_m": math.inf, "orientation_deg": 0.0}
    k2 = float(special.chdtri(2, 1.0 - confidence)) if not dof else 2.0 * float(special.fdtri(2, dof, confidence))
    vals, vecs = np.linalg.eigh(0.5 * (cov_xy + cov_xy.T))
    vals = np.clip(vals, 0.0, None)
    east, north = vecs[0, 1], vecs[1, 1]       # eigh sorts ascending: column 1 is the major axis
    bearing = math.degrees(math.atan2(east, north)) % 180.0
    return {"semi_major_m": round(math.sqrt(k2 * vals[1]), AXIS_DECIMALS),
            "semi_minor_m": round(math.sqrt(k2 * vals[0]), AXIS_DECIMALS),
            "orientation_deg": round(bearing, ORIENTATION_DECIMALS) % 180.0}


def shot_uncertainties(arr: Arrivals, budget: Budget = BUDGET) -> list[dict]:
    """Per shot ``{"err_m", "ellipse", "cov_m2"}``: the 95 % radius, ellipse and the 2x2 covariance."""
    out = []
    for cov, dof in covariances(arr, budget):
        cov_xy = cov[:2, :2]
        out.append({"err_m": radius95_m(cov_xy, dof), "ellipse": ellipse(cov_xy, dof),
                    "cov_m2": cov_xy})
    return out
