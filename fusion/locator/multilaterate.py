"""Multilateration: source position and discharge time from arrival times at known sensors.

Straight-line propagation at one speed of sound ``c``: a pulse from a source at ``p``
fired at ``t0`` reaches sensor ``s_i`` at ``t_i = t0 + |p - s_i| / c``. Three geometries
(TN098 §II.E): ``"2d"`` (sensors projected onto the horizontal plane; the default, the best
in TN098's urban tests), ``"2.5d"`` (3D distances, source held at a given height) and
``"3d"`` (free height; ill-conditioned for nearly planar arrays).

A closed-form start (:func:`mlg`) is refined by iterative least squares
(:func:`fit_shots`, Levenberg-Marquardt; :func:`irls` for association's many small refits),
robust while pulses are being selected and plain for the final fit, from which the
covariance and the calibrated 95 % error radius (:func:`radius95_m`) come.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from earwitness.units import speed_of_sound
from fusion.locator.wind import as_wind, travel_and_gradient, travel_times

MODES = ("2d", "2.5d", "3d")
# Plausible outdoor air temperatures bound the speed of sound when it is estimated.
T_MIN_C, T_MAX_C = -40.0, 50.0
DEFAULT_TEMPERATURE_C = 15.0
CONFIDENCE = 0.95
# Gauss-Legendre nodes for the circular-error integral in radius95_m.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


C_MIN, C_MAX = speed_of_sound(T_MIN_C), speed_of_sound(T_MAX_C)


def solve_dims(mode: str) -> int:
    """Number of position coordinates solved for in ``mode`` (2, 2 or 3)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return 3 if mode == "3d" else 2


def mlg(sensors_m: np.ndarray, t_s: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Closed-form location and emission time: Mathias, Leonardi & Galati (2008), as in TN098.

    Squaring ``|p - s_i| = c (t_i - t0)`` and moving every quadratic unknown into one extra
    unknown ``w = (c t0)^2 - |p|^2`` gives, per sensor, a linear equation
    ``2 s_i.p - 2 c t_i (c t0) + w = |s_i|^2 - (c t_i)^2`` (TN098 eq. 4-5), solved in the
    least-squares sense with the pseudoinverse. Needs ``n >= d + 2`` sensors.

    Parameters
    ----------
    sensors_m : ndarray, shape (n, d)
        Sensor positions in metres (d = 2 or 3).
    t_s : ndarray, shape (n,)
        Arrival times in seconds (any origin).
    c : float
        Speed of sound, m/s.

    Returns
    -------
    position : ndarray, shape (d,)
    t0_s : float
        Emission time on the same time origin as ``t_s``.
    """
    sensors_m = np.asarray(sensors_m, dtype=float)
    t_s = np.asarray(t_s, dtype=float)
    # Centre space and time: the squared terms otherwise swamp the differences.
    centre = sensors_m.mean(axis=0)
    t_ref = t_s.min()
    s = sensors_m - centre
    ct = c * (t_s - t_ref)
    a = np.column_stack([2.0 * s, -2.0 * ct, np.ones(len(s))])
    b = np.einsum("ij,ij->i", s, s) - ct * ct
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    d = s.shape[1]
    return sol[:d] + centre, t_ref + sol[d] / c


def reflect_for_2p5d(sensors_m: np.ndarray, t_s: np.ndarray, z_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Sensors doubled by reflection through the plane ``z = z_m`` (TN098 §II.E, "2.5D").

    Solving :func:`mlg` in 3D on the doubled set pins the solution to the plane by symmetry.
    """
    mirrored = sensors_m.copy()
    mirrored[:, 2] = 2.0 * z_m - mirrored[:, 2]
    return np.vstack([sensors_m, mirrored]), np.concatenate([t_s, t_s])


@dataclass
class Geometry:
    """How positions enter the propagation model.

    ``mode`` is one of :data:`MODES`; ``z_m`` is the source height held in ``"2.5d"``.
    """

    mode: str = "2d"
    z_m: float = 0.0

    @property
    def dims(self) -> int:
        return solve_dims(self.mode)

    def sensor_coords(self, sensors_m: np.ndarray) -> np.ndarray:
        """The coordinates distances are computed from: xy in 2D, xyz otherwise."""
        return sensors_m[:, :2] if self.mode == "2d" else sensors_m

    def source_coords(self, position: np.ndarray) -> np.ndarray:
        """Solved coordinates -> the point distances are measured from."""
        if self.mode == "2.5d":
            return np.array([position[0], position[1], self.z_m])
        return np.asarray(position, dtype=float)

    def closed_form(self, sensors_m: np.ndarray, t_s: np.ndarray, c: float) -> tuple[np.ndarray, float]:
        """:func:`mlg` start in this geometry (2.5D by reflection)."""
        if self.mode == "2.5d":
            pos, t0 = mlg(*reflect_for_2p5d(sensors_m, t_s, self.z_m), c)
            return pos[:2], t0
        return mlg(self.sensor_coords(sensors_m), t_s, c)


@dataclass
class Fit:
    """Result of :func:`fit_shots`.

    Attributes
    ----------
    positions : ndarray, shape (k, dims)
        Solved coordinates per shot (x, y[, z]).
    t0_s : ndarray, shape (k,)
        Emission times.
    c : float
        Speed of sound used or estimated.
    residuals_s : list of ndarray
        Per shot, measured minus predicted arrival time of each pulse.
    cov : list of ndarray
        Per shot, covariance of the solved coordinates (scaled by the variance factor).
    variance_factor : float
        Reduced chi-square of the fit (1 when there are no residual degrees of freedom).
    dof : int
        Residual degrees of freedom.
    c_fitted : bool
        Whether c was one of the unknowns (its last).
    places : list of int
        Per shot the index of its place (shots of one place share a position).
    """

    positions: np.ndarray
    t0_s: np.ndarray
    c: float
    residuals_s: list
    cov: list
    variance_factor: float
    dof: int
    c_fitted: bool = False
    places: list = None


# Robust losses of z = (r / scale)^2 (those of scipy's least_squares), each as its cost
# rho(z), its slope rho'(z) (the gradient's weight per residual) and rho' + 2 z rho''(z) (the
# curvature's, Triggs et al. 2000 §4.3; floored at 0 where negative, as for cauchy's outliers).
LOSSES = {
    "linear": (lambda z: z, np.ones_like, np.ones_like),
    "soft_l1": (lambda z: 2.0 * (np.sqrt(1.0 + z) - 1.0), lambda z: 1.0 / np.sqrt(1.0 + z),
                lambda z: (1.0 + z) ** -1.5),
    "cauchy": (np.log1p, lambda z: 1.0 / (1.0 + z), lambda z: np.maximum((1.0 - z) / (1.0 + z) ** 2, 0.0)),
}
# Levenberg-Marquardt of fit_shots(): damping start and ceiling (Nielsen 1999's update), most
# trial steps, and the stopping tests on the relative step and cost decrease (scipy's xtol, ftol).
LM_LAMBDA0 = 1e-3
LM_LAMBDA_MAX = 1e12
LM_MAX_STEPS = 200
LM_XTOL = 1e-8
LM_FTOL = 1e-8


def fit_shots(groups, c: float, geometry: Geometry, starts, *, fit_c: bool = False,  # noqa: PLR0913 (keyword-only)
              loss: str = "linear", scale_s: float = 1e-3, c_bounds: tuple[float, float] = (None, None),
              places=None, wind_m_s=None) -> Fit:
    """Least-squares fit of one or more shots, optionally sharing an estimated speed of sound.

    Minimises sum rho(((t_i - t0_k - |p_k - s_i| / c) / sigma_i)^2) (c + w.u for c in a told wind w, u
    from source to sensor: :mod:`fusion.locator.wind`) over every shot k's position p_k and emission time
    t0_k (and c when ``fit_c``, within its bounds) by Levenberg-Marquardt with an analytic Jacobian
    (:func:`_levenberg_marquardt`). With
    ``loss="soft_l1"`` or ``"cauchy"`` the fit is robust (an M-estimator, Huber 1964) to
    the late, non-line-of-sight arrivals still in a pulse set. The covariance
    ``s^2 (J^T J)^-1`` (Gauss-Newton, e.g. Mathias et al. 2008 §4) is meant for the final
    plain fit.

    Written out rather than :func:`scipy.optimize.least_squares` (which minimises the same
    cost): these problems have 3-40 unknowns and converge in a handful of steps, where
    SciPy's set-up and per-step overhead (~2 ms a call) was a third of the locator's run time.

    Parameters
    ----------
    groups : list of (sensors_m, t_s, sigma_s)
        Per shot: sensor positions (n, 3), arrival times (n,), timing sigmas (n,).
    c : float
        Speed of sound (the start value when ``fit_c``).
    geometry : Geometry
    starts : list of (position, t0_s)
        Start values per shot.
    fit_c : bool
        Estimate c, shared by all shots, within ``c_bounds`` (default :data:`C_MIN`..:data:`C_MAX`).
    loss : {"linear", "soft_l1", "cauchy"}
        As in :func:`scipy.optimize.least_squares`.
    scale_s : float
        Residual scale (seconds) where a robust loss turns away from squares.
    places : sequence of int, optional
        Per shot its place: shots of one place (a burst's rounds) share one position, each its
        own t0 (default: each shot its own place); ``positions`` and ``cov`` are the place's.
    wind_m_s : (east, north), optional
        A told wind, m/s (its exact Jacobian); None (default): still air.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    dims, k = geometry.dims, len(groups)
    coords = np.concatenate([geometry.sensor_coords(np.asarray(g[0], dtype=float)) for g in groups])
    times = np.concatenate([np.asarray(g[1], dtype=float) for g in groups])
    sigmas = np.concatenate([np.asarray(g[2], dtype=float) for g in groups])
    sizes = [len(g[1]) for g in groups]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    shot_of = np.repeat(np.arange(k), sizes)
    n, inv_sigma = len(times), 1.0 / sigmas
    first_of_place, shot_pos_cols, t0_col_of = unknowns_layout(k, places, dims)
    x = np.concatenate([np.concatenate([np.asarray(p, dtype=float)[:dims], [t0]]) if first else [t0]
                        for (p, t0), first in zip(starts, first_of_place)])
    c_lo, c_hi = (C_MIN if c_bounds[0] is None else c_bounds[0]), (C_MAX if c_bounds[1] is None else c_bounds[1])
    x = np.append(x, min(max(c, c_lo), c_hi)) if fit_c else x
    n_par, rows, wind = len(x), np.arange(n), as_wind(wind_m_s)
    # Column of each row's position and emission-time derivatives in the Jacobian.
    pos_cols, t0_cols = shot_pos_cols[shot_of], t0_col_of[shot_of]

    def unpack(x):
        """Per shot (position..., t0) rows from the unknowns."""
        return np.column_stack([x[shot_pos_cols], x[t0_col_of]])

    def model(x):
        shots = unpack(x)
        speed = x[-1] if fit_c else c
        src = shots[shot_of, :dims]
        if geometry.mode == "2.5d":
            src = np.column_stack([src, np.full(n, geometry.z_m)])
        diff = src - coords
        dist = np.maximum(np.sqrt(np.einsum("ij,ij->i", diff, diff)), 1e-6)
        return (times - shots[shot_of, dims] - travel_times(diff, dist, speed, wind)) * inv_sigma, (diff, dist, speed)

    def jacobian(diff, dist, speed):
        jac = np.zeros((n, n_par))
        _, by_pos, by_c = travel_and_gradient(diff, dist, speed, wind, dims)
        jac[rows[:, None], pos_cols] = -by_pos * inv_sigma[:, None]
        jac[rows, t0_cols] = -inv_sigma
        if fit_c:
            jac[:, -1] = -by_c * inv_sigma
        return jac

    f_scale = scale_s / float(np.median(sigmas))
    x, resid, (diff, dist, speed) = _levenberg_marquardt(
        x, model, lambda state: jacobian(*state), LOSSES[loss], f_scale, (c_lo, c_hi) if fit_c else None)
    shots = unpack(x)
    dof = max(n - n_par, 0)
    # A posteriori variance factor: the stated sigmas fix only the relative weights, the
    # residuals the scale (with radius95_m's F quantile this is calibrated for Gaussian noise).
    factor = float(resid @ resid) / dof if dof else 1.0
    jac = jacobian(diff, dist, speed)
    try:
        cov_all = np.linalg.inv(jac.T @ jac) * factor
    except np.linalg.LinAlgError:
        cov_all = np.full((n_par, n_par), np.inf)
    cov = [cov_all[np.ix_(shot_pos_cols[j], shot_pos_cols[j])] for j in range(k)]
    res_s = [resid[offsets[j]: offsets[j + 1]] * sigmas[offsets[j]: offsets[j + 1]] for j in range(k)]
    places_of = ((np.cumsum(first_of_place) - 1).tolist() if places is None else
                 np.unique(np.asarray(places), return_inverse=True)[1].tolist())
    return Fit(shots[:, :dims].copy(), shots[:, dims].copy(), float(speed), res_s, cov, factor, dof, bool(fit_c),
               places_of)



def unknowns_layout(k: int, places, dims: int):
    """Columns of :func:`fit_shots`' unknowns: per shot, its place's position where the place first
    appears, then its t0 (each shot its own place: the blocks (x, y[, z], t0) of one shot after another).

    Returns per shot: whether it is its place's first, its position columns (k, dims), its t0 column.
    """
    place_of = np.arange(k) if places is None else np.unique(np.asarray(places), return_inverse=True)[1]
    first_of_place = np.zeros(k, dtype=bool)
    first_of_place[np.unique(place_of, return_index=True)[1]] = True
    t0_col_of = np.cumsum(np.where(first_of_place, dims + 1, 1)) - 1
    pos_col_of = np.empty(int(place_of.max()) + 1 if k else 0, dtype=int)
    pos_col_of[place_of[first_of_place]] = t0_col_of[first_of_place] - dims
    return first_of_place, pos_col_of[place_of][:, None] + np.arange(dims)[None, :], t0_col_of


def _levenberg_marquardt(x, model, jacobian, loss, f_scale: float, last_bounds=None):
    """Minimise sum rho((r(x) / f_scale)^2) by Levenberg-Marquardt; returns x, r(x) and the model state.

    ``model(x)`` gives the residuals and a state from which ``jacobian(state)`` gives dr/dx;
    ``loss`` is an entry of :data:`LOSSES`. Steps solve ``(H + lam D) dx = -g`` with the
    Gauss-Newton curvature of the loss H (Triggs et al. 2000 §4.3) and Marquardt's scaling
    D = diag(H) (Marquardt 1963); lam follows the gain ratio (Nielsen 1999). With
    ``last_bounds`` the last unknown is projected onto (lo, hi) and held there while the
    cost falls outward (an active set of one bound).
    """
    cost_of, slope_of, curvature_of = loss

    def cost(r):
        return float(np.sum(cost_of((r / f_scale) ** 2)))

    n_par = len(x)
    resid, state = model(x)
    f = cost(resid)
    lam, grow = LM_LAMBDA0, 2.0
    moved = True
    for _ in range(LM_MAX_STEPS):
        if moved:
            jac = jacobian(state)
            z = (resid / f_scale) ** 2
            normal = (jac * curvature_of(z)[:, None]).T @ jac
            grad = jac.T @ (slope_of(z) * resid)
            free = np.ones(n_par, dtype=bool)
            if last_bounds is not None and ((x[-1] <= last_bounds[0] and grad[-1] > 0) or
                                            (x[-1] >= last_bounds[1] and grad[-1] < 0)):
                free[-1] = False
            scale = np.maximum(np.diag(normal), np.finfo(float).tiny)
        step = np.zeros(n_par)
        damped = normal + lam * np.diag(scale)
        try:
            if free.all():
                step = -np.linalg.solve(damped, grad)
            else:
                step[free] = -np.linalg.solve(damped[np.ix_(free, free)], grad[free])
        except np.linalg.LinAlgError:
            step[:] = 0.0
        trial = x + step
        if last_bounds is not None:
            trial[-1] = min(max(trial[-1], last_bounds[0]), last_bounds[1])
        step = trial - x
        small_step = bool(np.all(np.abs(step) <= LM_XTOL * (np.abs(x) + LM_XTOL)))
        t_resid, t_state = model(trial)
        t_f = cost(t_resid)
        # Gain ratio: actual over predicted decrease (the cost is 2 / f_scale^2 x the quadratic model's).
        predicted = (0.5 * step @ normal @ step + lam * step @ (scale * step)) * 2.0 / f_scale**2
        gain = (f - t_f) / predicted if predicted > 0 else -1.0
        moved = gain > 0
        if moved:
            small_gain = f - t_f <= LM_FTOL * f
            x, f, resid, state = trial, t_f, t_resid, t_state
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3)
            grow = 2.0
            if small_step or small_gain:
                break
        else:
            lam *= grow
            grow *= 2.0
            if small_step or lam > LM_LAMBDA_MAX:
                break
    return x, resid, state


# Iterations of irls(): from a seed a few metres off, Gauss-Newton converges in 3-4.
IRLS_ITERATIONS = 6
IRLS_STEP_TOL_M = 1e-3


def irls(sensors_m: np.ndarray, t_s: np.ndarray, sigma_s: np.ndarray, c: float, geometry: Geometry,
         start, scale_s: float) -> tuple[np.ndarray, float]:
    """Robust position and emission time of one shot by iteratively reweighted Gauss-Newton.

    The same soft-L1 M-estimator as ``fit_shots(..., loss="soft_l1")`` (weights
    ``1 / sqrt(1 + (r / scale)^2)``, Huber 1964; Holland & Welsch 1977 for IRLS), written
    out because association refits a growing pulse set many times per shot: a fixed few
    steps, each solving the small normal equations (lstsq's SVD where they are singular).
    """
    dims = geometry.dims
    coords = geometry.sensor_coords(np.asarray(sensors_m, dtype=float))
    t_s = np.asarray(t_s, dtype=float)
    w0 = 1.0 / np.asarray(sigma_s, dtype=float)
    pos = np.asarray(start[0], dtype=float)[:dims].copy()
    t0 = float(start[1])
    for _ in range(IRLS_ITERATIONS):
        diff = geometry.source_coords(pos) - coords
        dist = np.maximum(np.sqrt(np.einsum("ij,ij->i", diff, diff)), 1e-6)
        r = t_s - t0 - dist / c
        w = w0 / np.sqrt(np.sqrt(1.0 + (r / scale_s) ** 2))  # sqrt of the IRLS weight, per row
        jac = np.column_stack([diff[:, :dims] / (dist * c)[:, None], np.ones(len(r))]) * w[:, None]
        step = None
        if len(r) > dims:  # fewer rows than unknowns: lstsq's minimum-norm step
            try:
                step = np.linalg.solve(jac.T @ jac, jac.T @ (r * w))
            except np.linalg.LinAlgError:
                pass
        if step is None:
            step, *_ = np.linalg.lstsq(jac, r * w, rcond=None)
        pos += step[:dims]
        t0 += step[dims]
        if np.linalg.norm(step[:dims]) < IRLS_STEP_TOL_M:
            break
    return pos, t0


def radius95_m(cov_xy: np.ndarray, dof: int | None = None, confidence: float = CONFIDENCE) -> float:
    """Radius of the circle about the estimate holding the true position with ``confidence``.

    The horizontal error is taken as Gaussian with covariance ``cov_xy``; the probability
    inside radius r is ``P(l1 Z1^2 + l2 Z2^2 <= r^2)`` (l = eigenvalues), integrated over
    Z1 by Gauss-Legendre quadrature and solved for r with Brent's method. When the variance
    was estimated from ``dof`` residual degrees of freedom the covariance is widened by the
    ratio of the F(2, dof) to the chi-square(2) quantile (the usual small-sample correction).
    """
    lam = np.sort(np.linalg.eigvalsh(np.asarray(cov_xy, dtype=float)[:2, :2]))[::-1]
    if not np.all(np.isfinite(lam)) or lam[0] <= 0:
        return math.inf
    # Quantiles from scipy.special directly: scipy.stats' distribution objects cost ~0.1 ms a call.
    q_chi2 = float(special.chdtri(2, 1.0 - confidence))
    if dof:
        lam = lam * (2.0 * float(special.fdtri(2, dof, confidence)) / q_chi2)
    l1, l2 = float(lam[0]), max(float(lam[1]), lam[0] * 1e-12)

    def inside(r):
        a = r / math.sqrt(l1)
        z = a * _GL_X
        rest = np.maximum(r * r - l1 * z * z, 0.0) / l2
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return float(a * np.sum(_GL_W * pdf * special.erf(np.sqrt(rest / 2.0)))) - confidence

    lo = math.sqrt(l1) * float(special.ndtri(0.5 + confidence / 2.0))
    hi = math.sqrt(q_chi2 * l1)
    if inside(lo) >= 0:
        return lo
    return float(optimize.brentq(inside, lo, hi * 1.0001, xtol=1e-6 * hi))
