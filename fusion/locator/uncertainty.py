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
                                          fit's one c (gusts, temperature gradients) by a relative
                                          error, independent per path; tau_i = d_i / c is the
                                          travel time (the wind's common part: below);
          + (e) NLOS_SD_S^2               residual non-line-of-sight / diffraction delay that
                                          outlier rejection left in (a few ms over a rooftop: a
                                          per-path term, heavy-tailed in truth; its variance is
                                          what enters here);
          + (g) p_i^2                     in the "2d" geometry, the path the plane leaves out: a
                                          sensor dz_i above or below the shot's plane (the sensors'
                                          median height) is sqrt(d^2 + dz^2) - d further (Pittsburgh's
                                          hills: up to 8 m of path); p_i is that over c;
          + (i) G^2 where r_i < 0.1       an arrival the others barely check (its redundancy number
                                          r_i, below): a wrong pick on it (an echo, a late NLOS
                                          arrival the association's tolerance let in) moves the
                                          solution and leaves almost no residual, so neither the
                                          outlier rule nor the residuals' excess can see it.

Of these, (a) and (b) are the arrival's own; (c), (d), (e) and (g) belong to the path from the
place to the sensor, so the rounds of a burst, fitted at one place, share them (one survey error,
one diffraction, one height per sensor): fully correlated between the arrivals of one sensor at one
place, they do not average out over the rounds as the arrival's own parts do.

plus parts correlated between arrivals, which move the solution more than they show in its
residuals:

- (f) where the final fit held c fixed (a stated temperature, or too few arrivals to estimate
  it), ``C_COMMON_REL_SD * tau_i`` fully correlated between arrivals (the stated temperature is
  not that of the air along the paths: an airport's, some km away, is off by a few degC;
  TEMPERATURE_SD_C). Where c is estimated, (f) is the estimate's own error and already in the
  propagation below;
- (d)'s wind form: one wind vector of sd WIND_SD_M_S per axis for all paths; it makes sound
  toward sensor i early by ``tau_i (w.u_i) / c`` (u_i the unit vector toward the sensor), which
  for sensors all around shifts the source by about ``d w / c``, the same for every shot of a
  place and invisible in the residuals. Where a wind is told (locate's ``wind_m_s``), the fit
  models it (``c + w.u_i`` along each path, :mod:`fusion.locator.wind`; the Jacobian here is the
  fit's) and this term is the told reading's error, TOLD_WIND_SD_M_S per axis (:func:`told_budget`),
  propagated as the live run draws it (simulator.live.wind_reading: N(0, sd) east and north, so the
  covariance is ``sd^2 lag lag^T`` with ``lag`` the two columns of ``tau_i u_i / c``, not a magnitude's
  sd^2 / 2 per axis); the fits' own shifts under a misread wind match it (tests/test_locate_wind.py);

and, on the position itself,

- (h) the frame: the place as found on the ground (a phone's GPS, a map) against the frame of
  the sensors' surveyed positions, one horizontal offset of sd FRAME_SD_M per axis, which no
  number of sensors averages out. A setting (locate's ``frame_m``, the typical distance, default
  FRAME_TYPICAL_M): 0 where the places compared against are in the sensors' own frame (simulation,
  whose truth and sensors share one frame, each sensor with its own survey error only).

Propagation (linearised, Gauss-Newton)
--------------------------------------
The fit minimises sum w_i r_i^2 with its own weights w_i = 1 / sigma_i^2 (the stated sigmas; they
need not be the budget's). Its estimate moves by ``A e`` for arrival errors ``e``, with
``A = (J^T W J)^-1 J^T W`` and J the Jacobian of predicted arrival times by the unknowns
(every shot's position and emission time, and c where fitted). So the unknowns' covariance is
the sandwich ``A S A^T`` (e.g. Kay, "Fundamentals of Statistical Signal Processing: Estimation
Theory", 1993, §8.5; Mikhail & Ackermann, "Observations and Least Squares", 1976, ch. 4), with S
the budget's covariance of the arrivals: the per-path part Q of (a)-(e), (g) (its diagonal V; a
block per sensor where a burst's rounds share a place), plus the correlated (f) and wind. The
residuals ``r = P e`` (``P = I - J A``) see the per-path part and little of the common one, so only
the per-path part is checked against them: where ``r^T V^-1 r`` exceeds what the budget predicts for
it (``tr(V^-1 P S P^T)``), that part's
variance is taken as estimated from the fit's dof residuals, scaled by the excess and widened
to the 95 % quantile of F(2, dof) rather than chi-square(2) (Mikhail & Ackermann §4.7); the
correlated parts and (h) are added as stated. So a shot's radius follows its own geometry,
residuals and distances, over a floor (h) that no fit can see below.

(i), the arrivals the geometry cannot check: an arrival's redundancy number ``r_i = P_ii`` (the
share of an error on it that shows in its own residual; Baarda, "A testing procedure for use in
geodetic networks", 1968; Förstner, "The reliability of block triangulation", PE&RS 51, 1985)
is near 1 where many sensors check one another and near 0 where the fix passes through the
arrival whatever it is: 4 sensors in 2D leave one redundant arrival for all four, and a shot
outside its sensors' hull often has one with r_i of 0.01-0.05. Those below R_UNCONTROLLED
(Förstner's "poorly controlled", r_i < 0.1) carry a gross error of sd GROSS_SD_S, which enters
the propagation (``A_i A_i^T G^2``) but not the residual check. Fixes on many sensors have none
and keep their radius; a 4-sensor fix from bad geometry gets the radius its unchecked arrival
allows.

The 95 % region
---------------
The horizontal 2x2 block of that covariance gives the ellipse (semi-axes ``sqrt(k2 * l)`` for
its eigenvalues l, k2 = chi-square(2) 95 % quantile 5.991; the F widening is already in the
covariance) with its major axis' orientation in degrees clockwise from north (0-180, a compass
bearing), and ``err_m``, the radius of the circle about the estimate holding the true position
with 95 % probability (:func:`fusion.locator.multilaterate.radius95_m`, the exact circular
integral, not the ellipse's major axis).

Of the constants that physics does not fix, C_PATH_REL_SD was fitted on the Pittsburgh 2018
live-fire data (TN098 supplement, ShotSpotter Inc., CC BY 4.0), FP1-FP3, and scored by
leave-one-position-out (``python -m bench.bench_uncertainty``), and GROSS_SD_S (i) the same way on
the audio path's few-sensor fixes, where the arrivals below R_UNCONTROLLED are; SURVEY_SD_M and
NLOS_SD_S, which the data cannot separate, and the wind and frame, which two firing positions
cannot estimate (each position is one draw of them), are held at stated values. See their
comments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import special

from fusion.locator.multilaterate import CONFIDENCE, Fit, Geometry, radius95_m, unknowns_layout
from fusion.locator.wind import as_wind, travel_and_gradient

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
# (c) and (e) held, not fitted: each is a constant variance per path, one draw per sensor and place, which arrival
# times cannot tell apart, and on FP1-FP3 coverage and sharpness are flat in (e) from 0 to 3 ms
# (fusion.locator.calibration). (c): a fixed node's surveyed position, ~1 m along a line of sight;
# (e): diffraction over a rooftop delays a near line-of-sight arrival by a few ms, and the final
# fit's outlier rule (locate.OUTLIER_SIGMAS robust sigmas) leaves delays of that size in.
SURVEY_SD_M = 1.0
NLOS_SD_S = 3e-3
# (d) fitted (fusion.locator.calibration.fit_budget: the sharpest value of its grid whose err_m holds
# >= 95 % of the shots) on Pittsburgh 2018 FP1-FP3 (TN098 supplement, ShotSpotter Inc., CC BY 4.0),
# every reported pulse, --temperature-c, the 108 shots within 25 m of the survey, with (h) and the
# wind below as stated; shipped: fitted on all three positions (in-sample coverage 0.99, sharpness
# 2.27x; 0.00125 until the direct sound was taken before a louder reflection, locate.PRECURSOR_LAG_S:
# then 0 came out sharper by 2 mm of median err_m). Held out (fitted on the other two): FP1 coverage
# 1.00, sharpness 2.36x; FP2 1.00, 1.29x; FP3 0.97, 5.03x (its shots lie 1.4 m from its survey,
# inside the frame's floor). Without the wind and the frame, FP2's shots, all 4-6 m off its survey,
# went uncovered held out (0.25): no fit on FP1 and FP3 sees such an offset. Simulation
# (bench/bench_uncertainty.py): the fleet's pulses of city_demo, city_exchange, city_park, city
# (sensors where their GPS puts them, 3 m/s wind, NLOS) untold coverage 0.963, sharpness 1.31x;
# told over 40 readings 0.943, 2.08x.
# FP3's sharpness is out of reach of any per-shot radius: tests/test_locate_uncertainty.py,
# test_held_out_misses_are_one_offset_per_position.
C_PATH_REL_SD = 0.0
# (d)'s wind form, stated, not fitted: the wind along the rooftops is not measured (TN098 §III.D:
# the airports' 0-5 m/s "can provide only a rough estimate of local conditions"; §IV: light, 0-2
# m/s, during the test). A uniform wind w shifts a source whose sensors lie about d away by about
# d w / c, the same for every shot of the place and invisible in the residuals: 1 m/s per axis
# (95 % of winds under 2.4 m/s) is 1.5-1.9 m per axis at FP1-FP3's 500-630 m.
WIND_SD_M_S = 1.0
# (d)'s wind form where a wind is told (locate's wind_m_s; the fit then models it, fusion.locator.wind):
# what is left is the told reading against the air along the paths during the shot's second or two,
# stated, not fitted. A station's reading is a mean over minutes at one mast (an airport's 10-min
# mean, a rooftop anemometer); gusts and the streets' channelling move the wind near the ground by a
# fraction of it, and 0.5 m/s per axis is a sixth of the simulator's 3 m/s (95 % of misses under 1.2
# m/s). The simulator's live runs tell fusion a reading with this error drawn per axis
# (simulator.live.WEATHER_READING_SD_M_S), not the wind they blow. Checked on 60 readings of each scenario's
# fleet pulses (bench/bench_uncertainty.py scores 40): where the reading dominates, a scenario's shots are
# covered or missed together, and err_m covers city_park's 0.935, city's 0.974 (60 draws each), missing where
# the reading is off by more than the 95 % circle's 1.22 m/s; what city_demo and city_exchange miss even told
# the exact wind are shots association built on a wall reflection (7 % of the told shots, 7-22 m off; located
# from direct and NLOS arrivals only, every one is covered), which no budget term describes.
TOLD_WIND_SD_M_S = 0.5
# (h) The frame, stated, not fitted: the place as someone finds it on the ground (a phone's GPS, a
# map; Pittsburgh's surveys: a smartphone, "on the order of 2.5 m", TN098 §IV) against the frame
# the sensors' surveyed positions make. One horizontal offset common to every arrival: it moves the
# solution without a residual, and no number of sensors averages it out. 2.5 m read as the mean
# distance of a circular normal error, sd * sqrt(pi / 2) (the Rayleigh distribution's mean).
# Settable (locate's frame_m, the fusion server's frame_m, `earwitness locate --frame-m`): 0 where the
# places err_m is compared against are in the sensors' own frame (simulation: truth and sensors share one).
FRAME_TYPICAL_M = 2.5
RAYLEIGH_MEAN_PER_SD = math.sqrt(math.pi / 2.0)
FRAME_SD_M = FRAME_TYPICAL_M / RAYLEIGH_MEAN_PER_SD
# Quantile of the 95 % ellipse: chi-square with 2 degrees of freedom.
CHI2_2D = float(special.chdtri(2, 1.0 - CONFIDENCE))
# (i) An arrival is "poorly controlled" below this redundancy number (Förstner 1985: r_i < 0.1, an
# error on it shows less than a tenth in its own residual). Stated, not fitted.
R_UNCONTROLLED = 0.1
# (i) sd of a gross error on a poorly controlled arrival: fitted (fusion.locator.calibration.fit_gross: the
# sharpest value of its grid, 0 to the association's retry tolerance, whose err_m holds >= 95 %) on the
# Pittsburgh 2018 FP1-FP3 audio path (`earwitness detect` on each test's 4-5 WAVs, then locate): the
# commercial picks (12-21 sensors a shot) leave none of FP1-FP3's 108 shots an arrival below R_UNCONTROLLED, so they
# cannot fit it. Shipped: fitted on all three positions; held-out figures in the README and bench/bench_uncertainty.py.
# 0.025 until association counted only the sensors listening at a shot (fusion.locator.chance) and
# preferred the earlier of two sets as large (associate.earlier_set), which located FP2's test_032, test_026;
# 0.03 until a few-sensor burst at a found place took its rounds back from shots elsewhere (fewburst._burst_at_found).
GROSS_SD_S = 0.02
ORIENTATION_DECIMALS = 1
AXIS_DECIMALS = 2


@dataclass(frozen=True)
class Budget:
    """The budget's constants (module docstring): (a) default pick sigma, (c) survey, (d) per-path c and wind, (e) NLOS,
    (f) the stated temperature's c, (h) the frame, (i) a gross error on an arrival the others barely check."""

    pick_sd_s: float = DEFAULT_PICK_SD_S
    survey_sd_m: float = SURVEY_SD_M
    c_path_rel_sd: float = C_PATH_REL_SD
    nlos_sd_s: float = NLOS_SD_S
    wind_sd_m_s: float = WIND_SD_M_S
    c_common_rel_sd: float = C_COMMON_REL_SD
    frame_sd_m: float = FRAME_SD_M
    gross_sd_s: float = GROSS_SD_S


BUDGET = Budget()


def frame_problem(frame_m: float, name: str = "frame_m") -> str | None:
    """Why ``frame_m`` (the frame term's typical distance; ``name`` in the message) cannot be used, or None."""
    if not (math.isfinite(frame_m) and frame_m >= 0.0):
        return f"{name} must be a distance >= 0 metres, not {frame_m}"
    return None


def told_budget(wind_told: bool, frame_m: float = FRAME_TYPICAL_M, base: Budget = BUDGET) -> Budget:
    """``base`` with the wind's sd for a wind told (TOLD_WIND_SD_M_S) or not (``base``'s) and the frame (h)
    from ``frame_m``, its typical (mean) distance; ``base`` itself where neither changes (no wind told, the
    default frame)."""
    if frame_problem(frame_m):
        raise ValueError(frame_problem(frame_m))
    if not wind_told and frame_m == FRAME_TYPICAL_M:
        return base
    return replace(base, wind_sd_m_s=TOLD_WIND_SD_M_S if wind_told else base.wind_sd_m_s,
                   frame_sd_m=frame_m / RAYLEIGH_MEAN_PER_SD)


@dataclass(frozen=True)
class Arrivals:
    """What the budget needs of one final fit (all its shots' arrivals, rows in the fit's order).

    ``jac_s``: d(predicted arrival, s) / d(unknowns), unknowns ordered as in
    :func:`fusion.locator.multilaterate.fit_shots` (per place its coordinates, per shot its emission time,
    then c where fitted); ``fit_sigma_s``: the fit's own sigmas (its weights);
    ``stated_unc_s``: the pulses' stated uncertainty (NaN: none stated); ``rounded``: times on
    the 1 ms grid; ``travel_s``: d_i / c; ``projection_s``: term (g), the path the 2D model leaves
    out; ``toward_xy``: the horizontal unit vector from the source to the sensor (the wind's
    part of (d)); ``shot``: the shot of each row; ``path``: per row its path, one id per sensor and place
    (terms (c), (d), (e), (g) are one draw per path).
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
    pos_cols: np.ndarray  # per shot the columns of its (place's) position in ``jac_s``
    path: np.ndarray


def on_grid(t_s: np.ndarray, step_s: float = ROUNDING_STEP_S) -> bool:
    """Whether the times lie on one grid of ``step_s`` (reports rounded to it), judged on at least 3."""
    t_s = np.asarray(t_s, dtype=float)
    if len(t_s) < MIN_ROUNDING_CHECK:
        return False
    steps = (t_s - t_s.min()) / step_s
    return bool(np.all(np.abs(steps - np.round(steps)) * step_s <= ROUNDING_TOL_S))


def arrivals_of_fit(fit: Fit, groups: list, stated_unc_s: list, geometry: Geometry, rounded: bool,  # noqa: PLR0913
                    wind_m_s=None, sensor_ids: list | None = None) -> Arrivals:
    """The :class:`Arrivals` of a :func:`fit_shots` result: its Jacobian recomputed at the solution.

    ``groups`` are the fit's (sensors_m, t_s, sigma_s) per shot, ``stated_unc_s`` per shot the
    pulses' stated uncertainties (NaN where none); ``wind_m_s`` the wind the fit was told (None: still air);
    ``sensor_ids`` per shot its arrivals' sensors (default: told apart by position), so that a sensor's
    arrivals of rounds at one place are one path.
    """
    wind = as_wind(wind_m_s)
    dims, k = geometry.dims, len(groups)
    # The fit's unknowns: rounds of one place (a burst) share its position columns.
    _, pos_cols, t0_cols = unknowns_layout(k, fit.places, dims)
    n = sum(len(g[1]) for g in groups)
    n_par = int(t0_cols[-1]) + 1 + int(fit.c_fitted)
    jac = np.zeros((n, n_par))
    travel, projection, shot = np.zeros(n), np.zeros(n), np.zeros(n, dtype=int)
    toward = np.zeros((n, 2))
    paths: dict[tuple, int] = {}
    path = np.zeros(n, dtype=int)
    row = 0
    for j, (pos_m, _, _) in enumerate(groups):
        ids = sensor_ids[j] if sensor_ids is not None else [tuple(p) for p in np.asarray(pos_m, dtype=float)]
        path[row:row + len(ids)] = [paths.setdefault((int(pos_cols[j][0]), sid), len(paths)) for sid in ids]
        coords = geometry.sensor_coords(np.asarray(pos_m, dtype=float))
        diff = geometry.source_coords(fit.positions[j]) - coords
        dist = np.maximum(np.linalg.norm(diff, axis=1), 1e-6)
        rows = slice(row, row + len(dist))
        jac[rows, t0_cols[j]] = 1.0
        # The fit's own model: c + w.u along each path where a wind was told (fusion.locator.wind).
        travel[rows], jac[rows, pos_cols[j]], by_c = travel_and_gradient(diff, dist, fit.c, wind, dims)
        if fit.c_fitted:
            jac[rows, -1] = by_c
        shot[rows] = j
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
                    int(fit.dof), pos_cols, path)


def arrival_variances_s2(arr: Arrivals, budget: Budget = BUDGET) -> np.ndarray:
    """Per arrival the budget's own variance, s^2: terms (a) and (b) of the module docstring."""
    pick = np.where(np.isfinite(arr.stated_unc_s), arr.stated_unc_s, budget.pick_sd_s)
    rounding = np.where(arr.rounded, ROUNDING_STEP_S**2 * UNIFORM_VARIANCE_FACTOR, 0.0)
    return pick**2 + rounding


@dataclass(frozen=True)
class PerPath:
    """The per-path part of the arrivals' covariance, ``Q = diag(own_s2) + S S^T``, held factored: each arrival's
    own variance (a), (b), and ``S[i, path[i]] = path_sd_s[i]``, (c), (d), (e), (g) drawn once per path
    (:attr:`Arrivals.path`). Products with it cost O(n) per row, where the n x n matrix costs O(n^2)."""

    own_s2: np.ndarray
    path: np.ndarray
    path_sd_s: np.ndarray

    @property
    def variances_s2(self) -> np.ndarray:
        """Its diagonal, per arrival."""
        return self.own_s2 + self.path_sd_s**2

    def times(self, m: np.ndarray) -> np.ndarray:
        """``m @ Q`` (``m``: rows over the arrivals)."""
        ids, inverse = np.unique(self.path, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
        per_path = np.add.reduceat((m * self.path_sd_s)[:, order], starts, axis=1)   # m S, one column per path
        return m * self.own_s2 + per_path[:, inverse] * self.path_sd_s


def per_path_covariance(arr: Arrivals, budget: Budget = BUDGET) -> PerPath:
    """The per-path part of the arrivals' covariance (:class:`PerPath`): each arrival's own (a), (b), and (c), (d),
    (e), (g), one draw per path, shared by every two arrivals of a path."""
    path_sd = np.sqrt((budget.survey_sd_m / arr.c_m_s) ** 2 + (budget.c_path_rel_sd * arr.travel_s) ** 2 +
                      budget.nlos_sd_s**2 + arr.projection_s**2)
    return PerPath(arrival_variances_s2(arr, budget), arr.path, path_sd)


def covariances(arr: Arrivals, budget: Budget = BUDGET) -> list[np.ndarray]:
    """Per shot the covariance of its solved horizontal position, m^2, the 95 % quantile's small-sample factor in it.

    The sandwich ``A S A^T`` of the fit's linearised estimator (module docstring): its per-path
    part widened by the residuals' excess over the budget, then the correlated parts (wind, the
    stated temperature) and the frame (h) added as stated.
    """
    per_path = per_path_covariance(arr, budget)
    # The common parts, factored (their covariance L L^T): (d), the wind's part: a wind w (east, north; each of
    # sd wind_sd_m_s) speeds the sound toward sensor i by w.u_i, so its arrival comes tau_i (w.u_i) / c early,
    # correlated through the one w; and (f), the stated temperature's c, where c is not fitted.
    common = [budget.wind_sd_m_s * arr.travel_s[:, None] * arr.toward_xy / arr.c_m_s]
    if not arr.c_fitted:
        common.append((budget.c_common_rel_sd * arr.travel_s)[:, None])
    common_l = np.hstack(common)
    n_shots = int(arr.shot.max()) + 1
    try:
        a = estimator(arr)
    except np.linalg.LinAlgError:
        return [np.full((2, 2), np.inf) for _ in range(n_shots)]
    a_common = a @ common_l
    cov = (per_path.times(a) @ a.T * _per_path_scale(arr, a, per_path, common_l) + a_common @ a_common.T
           + _unchecked_cov(arr, a, budget))
    frame = budget.frame_sd_m**2 * np.eye(2)
    return [cov[np.ix_(arr.pos_cols[j][:2], arr.pos_cols[j][:2])] + frame for j in range(n_shots)]


def estimator(arr: Arrivals) -> np.ndarray:
    """``A = (J^T W J)^-1 J^T W``: how the fit's unknowns move with its arrivals (raises LinAlgError where singular)."""
    jw = arr.jac_s / arr.fit_sigma_s[:, None] ** 2
    return np.linalg.solve(arr.jac_s.T @ jw, jw.T)


def redundancy_numbers(arr: Arrivals, a: np.ndarray | None = None) -> np.ndarray:
    """Per arrival ``r_i = P_ii``, ``P = I - J A``: the share of an error on it that shows in its own residual (Baarda 1968)."""
    a = estimator(arr) if a is None else a
    return np.diag(np.eye(len(arr.fit_sigma_s)) - arr.jac_s @ a)


def _unchecked_cov(arr: Arrivals, a: np.ndarray, budget: Budget) -> np.ndarray:
    """Term (i): ``G^2 sum A_i A_i^T`` over the arrivals with redundancy number below R_UNCONTROLLED.

    A gross error on such an arrival passes into the solution with almost no residual (module
    docstring), so it is added as stated, beside the residual check rather than in it.
    """
    unchecked = redundancy_numbers(arr, a) < R_UNCONTROLLED
    cols = a[:, unchecked]
    return budget.gross_sd_s**2 * (cols @ cols.T)


def _per_path_scale(arr: Arrivals, a: np.ndarray, per_path: PerPath, common_l: np.ndarray) -> float:
    """The factor on the per-path part's covariance: the residuals' excess over the budget, F-widened.

    The fit's residuals ``r = P e`` (``P = I - J A``) see the per-path errors and little of the
    common ones (a wind or a wrong c moves the solution, not the residuals).
    ``E[r^T V^-1 r] = tr(V^-1 P S P^T)`` (V the per-path part's diagonal; ``common_l`` the common parts' factor L,
    their covariance L L^T) splits into the per-path
    part's share and the common part's; where the observed statistic exceeds the budget's, the per-path
    variance is taken as estimated from the residuals: scaled by the excess, and by
    ``2 F(2, dof; 0.95) / chi2(2; 0.95)``, the 95 % quantile of an estimated variance (Mikhail &
    Ackermann §4.7; the factor :func:`fusion.locator.multilaterate.radius95_m` applies).
    1 where the budget already accounts for the residuals or no residual dof is left.
    """
    if arr.dof <= 0:
        return 1.0
    var = per_path.variances_s2
    p = np.eye(len(var)) - arr.jac_s @ a
    observed = float(np.sum(arr.residual_s**2 / var))
    # tr(V^-1 P S P^T), each part from its factors: (P L)(P L)^T's and (P Q) P^T's diagonals.
    from_corr = float(np.sum(np.sum((p @ common_l) ** 2, axis=1) / var))
    from_ind = float(np.sum(np.sum(per_path.times(p) * p, axis=1) / var))
    scale = (observed - from_corr) / from_ind if from_ind > 0 else 1.0
    if scale <= 1.0:
        return 1.0
    return scale * 2.0 * float(special.fdtri(2, arr.dof, CONFIDENCE)) / CHI2_2D


def ellipse(cov_xy: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """The 95 % ellipse of a horizontal covariance: semi-axes (m) and the major axis' bearing.

    ``orientation_deg``: degrees clockwise from north, in [0, 180). Semi-axes are
    ``sqrt(k2 * eigenvalue)``, k2 the chi-square(2) quantile (a small-sample factor is already
    in the covariances of :func:`covariances`).
    """
    cov_xy = np.asarray(cov_xy, dtype=float)[:2, :2]
    if not np.all(np.isfinite(cov_xy)):
        return {"semi_major_m": math.inf, "semi_minor_m": math.inf, "orientation_deg": 0.0}
    k2 = float(special.chdtri(2, 1.0 - confidence))
    vals, vecs = np.linalg.eigh(0.5 * (cov_xy + cov_xy.T))
    vals = np.clip(vals, 0.0, None)
    east, north = vecs[0, 1], vecs[1, 1]       # eigh sorts ascending: column 1 is the major axis
    bearing = math.degrees(math.atan2(east, north)) % 180.0
    return {"semi_major_m": round(math.sqrt(k2 * vals[1]), AXIS_DECIMALS),
            "semi_minor_m": round(math.sqrt(k2 * vals[0]), AXIS_DECIMALS),
            "orientation_deg": round(bearing, ORIENTATION_DECIMALS) % 180.0}


def shot_uncertainties(arr: Arrivals, budget: Budget = BUDGET) -> list[dict]:
    """Per shot ``{"err_m", "ellipse", "cov_m2"}``: the 95 % radius, ellipse and the 2x2 covariance."""
    return [{"err_m": radius95_m(cov_xy), "ellipse": ellipse(cov_xy), "cov_m2": cov_xy}
            for cov_xy in covariances(arr, budget)]
