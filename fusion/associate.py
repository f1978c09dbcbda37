"""Association: which pulses are the first arrivals of one shot.

Among unassociated pulses (shots, echoes, noise, any sensors) a shot is the largest set of
pulses, at most one per sensor, that straight-line propagation from one point at one
emission time explains to within a tolerance (the mutual-consistency test of TN098 §II.A/C).
Echoes and non-line-of-sight arrivals come late by amounts that differ per sensor, so they
do not join the consistent set.

Search (:func:`best_seed`): for a candidate source point g every pulse implies an emission
time ``t_i - |g - s_i| / c``; the pulses of one shot pile up in a short window. Moving the
point by at most r changes each implied time by at most r / c, so the count in a window
widened by 2 r / c at a cell's centre bounds the count anywhere in the cell. That bound
drives a best-first branch and bound over a quadtree of the area (Land & Doig 1960): cells
whose bound cannot beat the best leaf found are never split, so no grid is searched blindly.
The seed is then refined by least squares and re-selection of one pulse per sensor
(:func:`grow_shot`); the shot's pulses are removed and the search repeats for the next shot,
so a pulse belongs to at most one shot, and shots of a burst whose arrivals interleave
differently at each sensor are separated by their emission times.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from fusion.multilaterate import Geometry, fit_shots

# Smallest quadtree cell (m): the emission-time slack it adds, 2 r / c, stays a few ms.
LEAF_SIZE_M = 2.0
# Cells per side of the first level of the quadtree.
ROOT_CELLS = 16
# Search area: the reporting sensors' bounding box widened by this fraction of its span
# (at least MIN_MARGIN_M): shooters well outside an array are not located reliably anyway.
MARGIN_FRACTION = 0.25
MIN_MARGIN_M = 200.0
# Cells split per step of the branch and bound (vectorised together).
BATCH_CELLS = 64
# Robust fit scale and rounds of re-selection while growing a shot.
ROBUST_SCALE_S = 5e-3
GROW_ROUNDS = 4
# A shot needs at least this fraction of the sensors of the strongest shot found among the
# same pulses: sets of echoes (and the echo off a wall beside the shooter, which looks like a
# second source there) agree across far fewer sensors than the first arrivals do.
RELATIVE_SUPPORT = 0.5
# Pulse selection is done in 2D, the final fit in the caller's geometry (TN098 §II.E).
SELECTION_GEOMETRY = Geometry("2d")


@dataclass
class Shot:
    """One associated shot: its pulses and the fit that selected them."""

    pulses: np.ndarray  # indices into the pulse arrays, one per sensor
    position: np.ndarray  # solved coordinates (x, y[, z]) in the local frame
    t0_s: float  # emission time on the caller's time origin
    c: float  # speed of sound used


def _window_counts(emit: np.ndarray, width_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most values of each row of ``emit`` inside any window of its row's ``width_s``.

    Rows are sorted and, per start value, the end of its window found by one
    :func:`numpy.searchsorted` over the flattened rows, each row lifted by a stride so
    rows never mix. Returns the count and the start time of the best window per row.
    """
    g, n = emit.shape
    srt = np.sort(emit, axis=1)
    span = float(srt[:, -1].max() - srt[:, 0].min()) if n else 0.0
    stride = span + float(np.max(width_s)) + 1.0
    lift = (np.arange(g) * stride)[:, None]
    flat = (srt - srt[:, :1] + lift).ravel()
    ends = np.searchsorted(flat, (srt - srt[:, :1] + lift + width_s[:, None]).ravel(), side="right")
    counts = ends.reshape(g, n) - (np.arange(g * n).reshape(g, n))
    best = np.argmax(counts, axis=1)
    return counts[np.arange(g), best], srt[np.arange(g), best]


def _distinct_in_window(emit: np.ndarray, sensor: np.ndarray, width_s: float) -> tuple[int, float]:
    """Most distinct sensors among values of ``emit`` in a window of ``width_s``; its start."""
    order = np.argsort(emit)
    e = emit[order]
    onehot = np.zeros((len(e), int(sensor.max()) + 1), dtype=bool)
    onehot[np.arange(len(e)), sensor[order]] = True
    inside = (e[None, :] >= e[:, None]) & (e[None, :] <= e[:, None] + width_s)
    distinct = (inside.astype(np.int32) @ onehot.astype(np.int32) > 0).sum(axis=1)
    best = int(np.argmax(distinct))
    return int(distinct[best]), float(e[best])


def best_seed(xy: np.ndarray, sensor: np.ndarray, t_s: np.ndarray, c: float, window_s: float,
              bounds: tuple[float, float, float, float], floor: int = 0) -> tuple[int, np.ndarray, float]:
    """Branch-and-bound search for the point where most sensors' pulses agree on one emission time.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Position of each pulse's sensor.
    sensor : ndarray of int, shape (n,)
        Sensor index of each pulse.
    t_s : ndarray, shape (n,)
        Arrival times, seconds.
    c : float
        Speed of sound, m/s.
    window_s : float
        Width of the emission-time window that counts as consistent.
    bounds : (x_min, y_min, x_max, y_max)
        Area searched.
    floor : int
        Support not worth finding: cells that cannot beat it are pruned at once.

    Returns
    -------
    support : int
        Number of distinct sensors at the best leaf.
    point : ndarray, shape (2,)
    emit_start_s : float
        Start of the best emission-time window.
    """
    x0, y0, x1, y1 = bounds
    size = max(x1 - x0, y1 - y0) / ROOT_CELLS
    cx, cy = np.meshgrid(x0 + size * (np.arange(ROOT_CELLS) + 0.5), y0 + size * (np.arange(ROOT_CELLS) + 0.5))
    centres = np.column_stack([cx.ravel(), cy.ravel()])
    sizes = np.full(len(centres), size)
    heap: list[tuple[int, int, float, float, float]] = []
    counter = 0

    def push(cells: np.ndarray, cell_sizes: np.ndarray, floor: int) -> None:
        nonlocal counter
        diff = cells[:, None, :] - xy[None, :, :]
        emit = t_s[None, :] - np.sqrt(np.einsum("gnk,gnk->gn", diff, diff)) / c
        slack = window_s + cell_sizes * math.sqrt(2.0) / c
        bound, _ = _window_counts(emit, slack)
        for (px, py), h, ub in zip(cells, cell_sizes, bound):
            if ub > floor:
                heapq.heappush(heap, (-int(ub), counter, float(px), float(py), float(h)))
                counter += 1

    best = (floor, np.array([(x0 + x1) / 2, (y0 + y1) / 2]), 0.0)
    push(centres, sizes, floor)
    while heap and -heap[0][0] > best[0]:
        batch = [heapq.heappop(heap) for _ in range(min(BATCH_CELLS, len(heap)))]
        batch = [b for b in batch if -b[0] > best[0]]
        splits = []
        for _, _, px, py, h in batch:
            if h <= LEAF_SIZE_M:
                diff = np.array([px, py]) - xy
                emit = t_s - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c
                support, start = _distinct_in_window(emit, sensor, window_s + h * math.sqrt(2.0) / c)
                if support > best[0]:
                    best = (support, np.array([px, py]), start)
            else:
                splits.append((px, py, h))
        if splits:
            parents = np.array(splits)
            quarter = parents[:, 2:3] / 4.0
            offsets = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=float)
            children = (parents[:, None, :2] + offsets[None, :, :] * quarter[:, :, None]).reshape(-1, 2)
            push(children, np.repeat(parents[:, 2] / 2.0, 4), best[0])
    return best


def _nearest_per_sensor(candidates: np.ndarray, sensor: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Of candidate pulses, the one per sensor with the smallest |residual|."""
    order = candidates[np.argsort(np.abs(residual[candidates]))]
    _, first = np.unique(sensor[order], return_index=True)
    return np.sort(order[first])


def grow_shot(seed: np.ndarray, sensors_m: np.ndarray, sensor: np.ndarray, t_s: np.ndarray,
              sigma_s: np.ndarray, available: np.ndarray, c: float, geometry: Geometry,
              tol_s: float, start, *, fit_c: bool = False) -> Shot | None:
    """Refine a seed set into a shot: fit, re-select one pulse per sensor within ``tol_s``, repeat.

    Each round fits position and emission time (robust soft-L1 loss, so a late arrival in the
    set pulls little), predicts every available pulse's arrival, keeps per sensor the pulse
    closest to its prediction if within ``tol_s``, and stops when the set no longer changes.
    """
    chosen = seed
    pos, t0 = start
    for _ in range(GROW_ROUNDS):
        fit = fit_shots([(sensors_m[chosen], t_s[chosen], sigma_s[chosen])], c, geometry, [(pos, t0)],
                        fit_c=fit_c, loss="soft_l1", scale_s=ROBUST_SCALE_S)
        pos, t0, c = fit.positions[0], float(fit.t0_s[0]), fit.c
        src = geometry.source_coords(pos)
        diff = geometry.sensor_coords(sensors_m) - src
        residual = t_s - t0 - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c
        candidates = np.flatnonzero(available & (np.abs(residual) <= tol_s))
        if len(candidates) == 0:
            return None
        new = _nearest_per_sensor(candidates, sensor, residual)
        if np.array_equal(new, chosen):
            break
        chosen = new
    return Shot(chosen, np.asarray(pos), t0, c)


def search_bounds(xy: np.ndarray) -> tuple[float, float, float, float]:
    """The area searched: the sensors' bounding box widened by a margin."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    margin = max(MIN_MARGIN_M, MARGIN_FRACTION * float(np.max(hi - lo)))
    return float(lo[0] - margin), float(lo[1] - margin), float(hi[0] + margin), float(hi[1] + margin)


def _seed_set(xy, sensor, t_s, c, point, start_s, width_s, available) -> np.ndarray:
    """Pulses whose implied emission time at ``point`` falls in the window: one per sensor."""
    diff = point - xy
    emit = t_s - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c
    centre = start_s + width_s / 2.0
    candidates = np.flatnonzero(available & (emit >= start_s) & (emit <= start_s + width_s))
    return _nearest_per_sensor(candidates, sensor, emit - centre)


def find_shots(sensors_m: np.ndarray, sensor: np.ndarray, t_s: np.ndarray, sigma_s: np.ndarray,
               c: float, *, tol_s: float, min_sensors: int,
               speeds: tuple[float, ...] = (), speed_slack_s: float = 0.0) -> list[Shot]:
    """Associate pulses into shots, largest consistent set first, each pulse used at most once.

    Parameters
    ----------
    sensors_m : ndarray, shape (n, 3)
        Position of each pulse's sensor (local metres).
    sensor : ndarray of int, shape (n,)
        Sensor index of each pulse.
    t_s, sigma_s : ndarray, shape (n,)
        Arrival times and their sigmas, seconds.
    c : float
        Speed of sound, m/s.
    tol_s : float
        Largest |measured - predicted| arrival time of a pulse kept in a shot.
    min_sensors : int
        Fewest sensors a shot needs; also at least :data:`RELATIVE_SUPPORT` of the strongest
        shot's (so a much weaker shot among the same pulses is not reported).
    speeds : tuple of float
        When given, c is unknown: the first shot is searched at each of these speeds (its
        window widened by ``speed_slack_s``), grown with c estimated, and the estimate
        used for the rest.

    Returns
    -------
    list of Shot, in the order found (largest first).
    """
    xy = sensors_m[:, :2]
    bounds = search_bounds(xy)
    available = np.ones(len(t_s), dtype=bool)
    shots: list[Shot] = []
    window_s = 2.0 * tol_s
    while len(np.unique(sensor[available])) >= min_sensors:
        idx = np.flatnonzero(available)
        fit_c = bool(speeds) and not shots
        trials = speeds if fit_c else (c,)
        width = window_s + (speed_slack_s if fit_c else 0.0)
        needed = max(min_sensors, math.ceil(RELATIVE_SUPPORT * max((len(s.pulses) for s in shots), default=0)))
        found = [(best_seed(xy[idx], sensor[idx], t_s[idx], speed, width, bounds, needed - 1), speed)
                 for speed in trials]
        (support, point, start), speed = max(found, key=lambda f: f[0][0])
        if support < needed:
            break
        seed = _seed_set(xy, sensor, t_s, speed, point, start, width + 2 * LEAF_SIZE_M / speed, available)
        t0 = float(np.median(t_s[seed] - np.hypot(*(point - xy[seed]).T) / speed))
        shot = grow_shot(seed, sensors_m, sensor, t_s, sigma_s, available, speed, SELECTION_GEOMETRY, tol_s,
                         (point, t0), fit_c=fit_c)
        if shot is None or len(shot.pulses) < needed:
            available[seed] = False  # cannot form a shot: never seed from them again
            continue
        if fit_c:
            c = shot.c
        shots.append(shot)
        available[shot.pulses] = False
    return shots
