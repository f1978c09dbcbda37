"""Places a burst may come from, voted by sensor triples (a Hough-style vote).

Where no single shot is strong enough to seed a burst (:mod:`fusion.locator.burst`), every
feasible triple of arrivals at three sensors is solved in closed form (Schau & Robinson 1987);
a burst's true place collects one point from each round it was heard in, at distinct discharge
times, while chance triples of echoes scatter.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from fusion.locator.picks import Picks

# Sensor triples searched for a burst no shot seeded (each triple solved in closed form).
MAX_TRIPLE_SENSORS = 6
MAX_TRIPLES = 20_000
# Points from triples of different rounds count as one place within this (m), and places
# tried (best voted first) when no single shot is strong enough to seed a burst.
VOTE_RADIUS_M = 10.0
PLACES_TRIED = 12


def triple_points(xy: np.ndarray, t_s: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact 2D sources of arrival triples: (points (m, 2), discharge times (m,)), both roots where valid.

    ``xy`` (q, 3, 2) and ``t_s`` (q, 3): three sensors and one arrival at each. With ranges
    rho + c (t_i - t_1) to sensor i, the differences of the squared range equations are
    linear in p for a given rho (p = a - rho b), and |p - s_1| = rho gives a quadratic in rho
    (the closed-form TDOA solution of Schau & Robinson 1987, spherical intersection).
    """
    d = xy[:, 1:] - xy[:, :1]                       # (q, 2, 2) sensors 2, 3 relative to sensor 1
    v = c * (t_s[:, 1:] - t_s[:, :1])                # (q, 2) range differences
    u = 0.5 * (np.einsum("qik,qik->qi", d, d) - v * v)
    det = d[:, 0, 0] * d[:, 1, 1] - d[:, 0, 1] * d[:, 1, 0]
    ok = np.abs(det) > 1e-6
    det = np.where(ok, det, 1.0)
    inv = np.stack([np.stack([d[:, 1, 1], -d[:, 0, 1]], -1), np.stack([-d[:, 1, 0], d[:, 0, 0]], -1)], 1) / det[:, None, None]
    a = np.einsum("qij,qj->qi", inv, u)
    b = np.einsum("qij,qj->qi", inv, v)
    qa = np.einsum("qi,qi->q", b, b) - 1.0
    qb = -2.0 * np.einsum("qi,qi->q", a, b)
    qc = np.einsum("qi,qi->q", a, a)
    disc = qb * qb - 4.0 * qa * qc
    ok &= (disc >= 0) & (np.abs(qa) > 1e-9)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    qa = np.where(ok, qa, 1.0)
    points, times = [], []
    for sign in (1.0, -1.0):
        rho = (-qb + sign * sq) / (2.0 * qa)
        valid = ok & (rho >= 0) & np.all(rho[:, None] + v >= 0, axis=1)
        p = a - rho[:, None] * b + xy[:, 0]
        points.append(p[valid])
        times.append(t_s[valid, 0] - rho[valid] / c)
    return np.concatenate(points), np.concatenate(times)


def _triples(picks: Picks, rows: np.ndarray, c: float, min_gap_s: float):
    """Arrival triples from three different sensors that some source could have made (each pair's
    difference within their separation / c); at most MAX_TRIPLES, from the MAX_TRIPLE_SENSORS busiest sensors."""
    sensors, counts = np.unique(picks.sensor[rows], return_counts=True)
    sensors = sensors[np.argsort(-counts, kind="stable")][:MAX_TRIPLE_SENSORS]
    xy_all, t_all = [], []
    for trio in itertools.combinations(sensors, 3):
        parts = [rows[picks.sensor[rows] == s] for s in trio]
        grid = np.array(np.meshgrid(*parts, indexing="ij")).reshape(3, -1).T
        t = picks.t_s[grid]
        xy = picks.xy[grid]
        feasible = np.ones(len(grid), dtype=bool)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            feasible &= np.abs(t[:, i] - t[:, j]) <= np.hypot(*(xy[:, i] - xy[:, j]).T) / c + min_gap_s
        xy_all.append(xy[feasible])
        t_all.append(t[feasible])
        if sum(len(x) for x in xy_all) >= MAX_TRIPLES:
            break
    if not xy_all:
        return np.zeros((0, 3, 2)), np.zeros((0, 3))
    return np.concatenate(xy_all)[:MAX_TRIPLES], np.concatenate(t_all)[:MAX_TRIPLES]


def voted_places(picks: Picks, rows: np.ndarray, c: float, bounds, min_gap_s: float) -> np.ndarray:
    """Places where triples of different rounds agree (a Hough-style vote), best first, shape (k, 2).

    Each feasible arrival triple has one or two exact sources (:func:`triple_points`); a
    burst's true place gets one from every round it was heard in, at distinct discharge
    times, while chance triples of echoes scatter. A point's vote is the number of others
    within VOTE_RADIUS_M whose discharge time is at least ``min_gap_s`` (two rounds' least gap) from its own.
    """
    xy, t = _triples(picks, rows, c, min_gap_s)
    points, t0 = triple_points(xy, t, c)
    x0, y0, x1, y1 = bounds
    inside = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    points, t0 = points[inside], t0[inside]
    if len(points) < 2:
        return np.zeros((0, 2))
    pairs = cKDTree(points).query_pairs(VOTE_RADIUS_M, output_type="ndarray")
    pairs = pairs[np.abs(t0[pairs[:, 0]] - t0[pairs[:, 1]]) >= min_gap_s]
    votes = np.bincount(pairs.ravel(), minlength=len(points))
    order = np.argsort(-votes, kind="stable")
    chosen: list[np.ndarray] = []
    for i in order:
        if votes[i] == 0 or len(chosen) >= PLACES_TRIED:
            break
        if all(np.hypot(*(points[i] - p)) > VOTE_RADIUS_M for p in chosen):
            near = np.concatenate([pairs[pairs[:, 0] == i, 1], pairs[pairs[:, 1] == i, 0], [i]])
            chosen.append(np.median(points[near], axis=0))
    return np.array(chosen).reshape(-1, 2)
