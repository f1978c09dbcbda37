"""Coverage planning: where a handgun shot would be located, and how well, from the simulator's physics.

For every cell of a grid over the area and every sensor, the shot's first arrival is the
simulator's own (:func:`simulator.propagation.discrete_arrivals`: spherical spreading, ISO 9613-1
air absorption, the urban excess attenuation, and with the probability the environment gives a
blocked line of sight a diffracted arrival with Maekawa's loss, its delay taken at NLOS_QUANTILES
of the environment's log-uniform range); its level over the background of the place and hour
(:func:`simulator.propagation.background_level_db`, each rooftop louder or quieter by
N(0, noise_sd_db), integrated by Gauss-Hermite quadrature) gives the probability that the node's
detector fires (:class:`simulator.fleet.DetectorModel`'s logistic in SNR).

* ``p_locate``: the probability that at least ``need`` sensors hear it (the fewest that fix a shot,
  d + 2 = 4 in 2D, :func:`fusion.locator.locate.min_sensors`; the live server alerts at one more),
  from the Poisson-binomial distribution of the number of sensors that hear it (exact recursion).
* ``err95_m``: the expected 95 % error radius where it is located, from the locator's error budget
  (:mod:`fusion.locator.uncertainty`: picking at the detector's SNR-dependent precision, the clock,
  the survey, the per-path speed of sound, residual NLOS) propagated through the fit of (x, y, t)
  as the inverse Fisher information of the sensors that hear it (Kay, "Fundamentals of Statistical
  Signal Processing: Estimation Theory", 1993, §3.7), averaged over DRAWS random sets of
  sensors that hear it (each sensor by its own probability), its 95 % radius by
  :func:`fusion.locator.multilaterate.radius95_m`.

:func:`suggest` adds sensors one at a time where they raise the mean ``p_locate`` over the area
most (greedy: adding sensor j lifts a cell's P(N >= k) by q_j P(N = k - 1), a closed form).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusion.locator.multilaterate import radius95_m
from fusion.locator.uncertainty import BUDGET, Budget
from simulator import propagation
from simulator.arrays import ROOFTOP_M
from simulator.fleet import LEVEL_FREQ_HZ, DetectorModel
from simulator.scenario import SHOOTER_HEIGHT_M
from simulator.sources import HANDGUN_LEVEL_DB

HANDGUN_MEDIAN_DB = float(np.mean(HANDGUN_LEVEL_DB))
NLOS_QUANTILES = (np.arange(8) + 0.5) / 8          # midpoints of eight equal-probability bins of the delay
HERMITE_POINTS = 5
DRAWS = 64
NOISE_SD_DB = 3.0                                   # rooftop-to-rooftop spread of background (simulator.sensors)
DEFAULT_NEED = 4
NEVER = 2.0                                         # a draw above 1: never blocked
US = 1e-6
DEFAULT_SEED = 18
MAX_CONDITION = 1e12                                # a set of sensors on one line fixes no position
# A night's wind of some 3 m/s from a direction the plan cannot know: per axis 3/sqrt(2) m/s.
WIND_SD_M_S = 2.0


@dataclass
class Conditions:
    """What the plan assumes of the shot and the night: source level, weather, city, hour, detector."""

    level_db: float = HANDGUN_MEDIAN_DB
    atmosphere: propagation.Atmosphere = field(default_factory=propagation.Atmosphere)
    environment: propagation.Environment = field(default_factory=propagation.Environment)
    zone: str = "residential"
    hour: float = 22.0
    noise_sd_db: float = NOISE_SD_DB
    detector: DetectorModel = field(default_factory=DetectorModel)
    budget: Budget = BUDGET
    need: int = DEFAULT_NEED
    shooter_height_m: float = SHOOTER_HEIGHT_M
    wind_sd_m_s: float = WIND_SD_M_S


@dataclass
class Coverage:
    """Per cell (rows of ``cells_xy``): per sensor the probability it hears, P(located), expected 95 % error."""

    cells_xy: np.ndarray
    sensors_xyz: np.ndarray
    p_hear: np.ndarray          # (cells, sensors)
    p_locate: np.ndarray        # (cells,)
    err95_m: np.ndarray         # (cells,), NaN where never located
    count_dist: np.ndarray      # (cells, sensors + 1): P(exactly n sensors hear)

    def summary(self, covered_p: float = 0.9) -> dict:
        """Mean P(located), the share of cells located with at least ``covered_p``, median expected error there."""
        good = self.p_locate >= covered_p
        return {"cells": int(len(self.p_locate)), "mean_p_locate": round(float(self.p_locate.mean()), 4),
                "covered_share": round(float(good.mean()), 4), "covered_p": covered_p,
                "median_err95_m": round(float(np.nanmedian(self.err95_m[good])), 1) if good.any() else None}


def hearing(cells_xy: np.ndarray, sensors_xyz: np.ndarray, cond: Conditions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(sensor hears a shot at the cell), P(it hears it on an unblocked path), and the timing sigma (s) there.

    All (cells, sensors). The locator's robust fit leaves out the late arrivals of blocked
    paths (milliseconds late: outliers), so only the unblocked ones sharpen the position.
    """
    env = propagation.Environment(**{**cond.environment.__dict__, "walls": []})
    noise_db = propagation.background_level_db(cond.zone, cond.hour)
    nodes, weights = np.polynomial.hermite_e.hermegauss(HERMITE_POINTS)
    weights = weights / weights.sum()
    n = len(sensors_xyz)
    p = np.zeros((len(cells_xy), n))
    p_los = np.zeros((len(cells_xy), n))
    sigma = np.zeros((len(cells_xy), n))
    for c, (x, y) in enumerate(cells_xy):
        src = np.array([x, y, cond.shooter_height_m])
        d_m = np.linalg.norm(sensors_xyz - src, axis=1)
        p_block = env.nlos_probability * (1.0 - np.exp(-d_m / env.nlos_scale_m))
        cases = [(1.0 - p_block, np.column_stack([np.full(n, NEVER), np.zeros(n)]))]
        cases += [(p_block / len(NLOS_QUANTILES), np.column_stack([np.full(n, -1.0), np.full(n, q)])) for q in NLOS_QUANTILES]
        for case, (weight, draws) in enumerate(cases):
            arr = propagation.discrete_arrivals(src, sensors_xyz, cond.atmosphere, env, draws)
            first = arr.select(arr.kind <= propagation.NLOS)
            snr = cond.level_db + propagation.level_change_db(first, cond.atmosphere, LEVEL_FREQ_HZ) - noise_db
            snr_by_noise = snr[:, None] - cond.noise_sd_db * nodes[None, :]
            p_det = (_p_detect(snr_by_noise, cond.detector) * weights).sum(axis=1)
            p[c, first.rcv] += weight * p_det
            if case == 0:
                p_los[c, first.rcv] = weight * p_det
                sigma[c, first.rcv] = _pick_sd_s(snr, cond.detector)
    return p, p_los, sigma


def _p_detect(snr_db: np.ndarray, m: DetectorModel) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(snr_db - m.detect_snr_db) / m.detect_width_db))


def _pick_sd_s(snr_db: np.ndarray, m: DetectorModel) -> np.ndarray:
    """The fleet's picking error at this SNR, with the clock's, in seconds (simulator.fleet._detect)."""
    pick_us = np.minimum(m.pick_sd_us * 10.0 ** ((m.pick_ref_snr_db - np.minimum(snr_db, m.pick_ref_snr_db)) / 20.0),
                         m.pick_max_us)
    return np.sqrt(pick_us ** 2 + m.clock_sd_us ** 2) * US


def count_distribution(p: np.ndarray) -> np.ndarray:
    """P(exactly n of the sensors hear), per row of ``p`` (cells, sensors): the Poisson-binomial recursion."""
    dist = np.zeros((len(p), p.shape[1] + 1))
    dist[:, 0] = 1.0
    for j in range(p.shape[1]):
        q = p[:, j:j + 1]
        dist[:, 1:] = dist[:, 1:] * (1.0 - q) + dist[:, :-1] * q
        dist[:, 0] *= 1.0 - q[:, 0]
    return dist


def expected_error_m(cells_xy: np.ndarray, sensors_xyz: np.ndarray, p: np.ndarray, pick_s: np.ndarray,
                     cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Per cell the 95 % radius of the mean covariance over random sets of sensors that hear it unblocked.

    ``p`` (cells, sensors): each sensor's probability of an unblocked first arrival; a draw with
    fewer than ``cond.need`` of them does not count (the shot is located from what remains, or not).
    The arrivals' errors are the budget's independent terms plus its two correlated ones: the
    stated temperature's error, common to every path (f), and a wind of ``cond.wind_sd_m_s`` per
    axis, (d)'s correlated form; the fit weighs by the independent part, so its covariance is the
    sandwich (J'WJ)^-1 + (A G)(A G)' with G the correlated terms' columns
    (:func:`fusion.locator.uncertainty.covariances`).
    """
    c = cond.atmosphere.c_mps
    b = cond.budget
    out = np.full(len(cells_xy), np.nan)
    for k, (x, y) in enumerate(cells_xy):
        d = sensors_xyz[:, :2] - np.array([x, y])
        dist = np.maximum(np.linalg.norm(d, axis=1), 1.0)
        tau = dist / c
        var = pick_s[k] ** 2 + (b.survey_sd_m / c) ** 2 + (b.c_path_rel_sd * tau) ** 2 + b.nlos_sd_s ** 2
        jac = np.column_stack([-d[:, 0] / dist / c, -d[:, 1] / dist / c, np.ones(len(d))])
        toward = d / dist[:, None]
        corr = np.column_stack([b.c_common_rel_sd * tau, cond.wind_sd_m_s * tau[:, None] * toward / c])
        heard = rng.random((DRAWS, len(d))) < p[k]
        heard = heard[heard.sum(axis=1) >= cond.need]
        if not len(heard):
            continue
        wj = heard[:, :, None] * (jac / var[:, None])[None]            # (draws, sensors, 3): W J per draw
        info = np.einsum("dsi,sj->dij", wj, jac)
        ok = np.linalg.cond(info) < MAX_CONDITION
        if not ok.any():
            continue
        inv = np.linalg.inv(info[ok])
        ag = inv @ np.einsum("dsi,sk->dik", wj[ok], corr)                # A G: the correlated terms' effect
        cov = (inv + ag @ np.swapaxes(ag, 1, 2))[:, :2, :2].mean(axis=0)
        out[k] = radius95_m(cov)
    return out


def coverage(cells_xy, sensors_xyz, cond: Conditions | None = None, seed: int = DEFAULT_SEED) -> Coverage:
    """The plan's figures for these cells (plane metres, (C, 2)) and sensors ((S, 3), z up from the ground)."""
    cond = cond or Conditions()
    cells_xy = np.asarray(cells_xy, dtype=float).reshape(-1, 2)
    sensors_xyz = np.asarray(sensors_xyz, dtype=float).reshape(-1, 3)
    p, p_los, pick_s = hearing(cells_xy, sensors_xyz, cond)
    dist = count_distribution(p)
    p_locate = dist[:, cond.need:].sum(axis=1)
    err = expected_error_m(cells_xy, sensors_xyz, p_los, pick_s, cond, np.random.default_rng(seed))
    return Coverage(cells_xy, sensors_xyz, p, np.clip(p_locate, 0.0, 1.0), err, dist)


def suggest(cov: Coverage, candidates_xy: np.ndarray, k: int, cond: Conditions | None = None,
            height_m: float = ROOFTOP_M) -> list[np.ndarray]:
    """``k`` new sensor positions (x, y, z) chosen greedily for the largest rise in mean P(located)."""
    cond = cond or Conditions()
    candidates_xy = np.asarray(candidates_xy, dtype=float).reshape(-1, 2)
    cand_xyz = np.column_stack([candidates_xy, np.full(len(candidates_xy), height_m)])
    # Each candidate's hearing probability at every cell: a sensor at a candidate hears a cell's
    # shot as a sensor at the cell would hear one at the candidate (paths are reciprocal here).
    q, _, _ = hearing(cov.cells_xy, cand_xyz, cond)
    dist = cov.count_dist.copy()
    chosen: list[np.ndarray] = []
    for _ in range(k):
        at_edge = dist[:, cond.need - 1]
        gain = q.T @ at_edge
        if chosen:
            gain[[int(np.argmin(np.linalg.norm(candidates_xy - c[:2], axis=1))) for c in chosen]] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(cand_xyz[best])
        qb = q[:, best:best + 1]
        grown = np.zeros((len(dist), dist.shape[1] + 1))
        grown[:, :-1] += dist * (1.0 - qb)
        grown[:, 1:] += dist * qb
        dist = grown
    return chosen
