"""The locator's inner solvers against independent references: the C branch-and-bound seed
search against an exhaustive count over every leaf cell, and the written-out
Levenberg-Marquardt of fit_shots against scipy.optimize.least_squares."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

import synthetic_shots as syn
from earwitness.units import NS_PER_S
from fusion.locator.multilaterate import Geometry, fit_shots, speed_of_sound
from fusion.locator.picks import Picks
from fusion.locator.pulses import parse_pulses
from fusion.locator.seedsearch import LEAF_SIZE_M, ROOT_CELLS, SeedSearch, best_seed
from fusion.locator.sensors import Sensors

# The seed search reads no timing sigma; the table needs one per pulse.
SIGMA_S = 1e-3


def picks(xy, sensor, t_s) -> Picks:
    return Picks(sensor, t_s, np.full(len(t_s), SIGMA_S), xy)


def scene_arrays(seed: int, shots: int, echoes: int, noise: int):
    rng = np.random.default_rng(seed)
    sensors = syn.ring_array(rng, n=8, radius_m=500.0)
    truth = [(float(rng.uniform(-80, 80)), float(rng.uniform(-80, 80)), 1.5, 1.0 + 0.1 * k) for k in range(shots)]
    scene = syn.render(sensors, truth, rng, echoes_per_sensor=echoes, noise_pulses=noise)
    table = Sensors.from_local(sensors)
    pulses = parse_pulses(scene.pulses, table)
    t_s = (pulses.t_ns - pulses.t_ns.min()) / NS_PER_S
    return table.enu_m[pulses.sensor, :2], pulses.sensor, t_s, truth


def exhaustive_support(xy, sensor, t_s, c, window_s, bounds) -> int:
    """Most distinct sensors in any emission-time window at any leaf of the quadtree (all of them)."""
    x0, y0, x1, y1 = bounds
    side = max(x1 - x0, y1 - y0) / ROOT_CELLS
    while side > LEAF_SIZE_M:
        side /= 2.0
    per_side = round(max(x1 - x0, y1 - y0) / side)
    centres = x0 + side * (np.arange(per_side) + 0.5), y0 + side * (np.arange(per_side) + 0.5)
    gx, gy = (a.ravel() for a in np.meshgrid(*centres))
    width_s = window_s + side * math.sqrt(2.0) / c
    onehot = (sensor[:, None] == np.unique(sensor)[None, :]).astype(float)
    best = 0
    for chunk in np.array_split(np.arange(len(gx)), max(1, len(gx) // 2048)):
        emit = t_s[None, :] - np.hypot(gx[chunk, None] - xy[None, :, 0], gy[chunk, None] - xy[None, :, 1]) / c
        start = emit[:, :, None]  # window starting at each pulse
        inside = (emit[:, None, :] >= start) & (emit[:, None, :] <= start + width_s)
        best = max(best, int(((inside.astype(float) @ onehot) > 0).sum(axis=2).max()))
    return best


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seed_search_finds_the_best_leaf_of_an_exhaustive_search(seed):
    xy, sensor, t_s, truth = scene_arrays(seed, shots=2, echoes=2, noise=6)
    c = speed_of_sound(15.0)
    bounds = (-100.0, -100.0, 100.0, 100.0)
    window_s = 0.004
    support, point, start = best_seed(picks(xy, sensor, t_s), SeedSearch(c, window_s, bounds))
    assert support == exhaustive_support(xy, sensor, t_s, c, window_s, bounds)
    assert support >= 7  # the shots' own first arrivals agree at 7-8 sensors
    # The point returned is one of the shots, and its window holds that many sensors.
    assert min(math.hypot(point[0] - s[0], point[1] - s[1]) for s in truth) < 5.0
    emit = t_s - np.hypot(*(point - xy).T) / c
    in_window = (emit >= start) & (emit <= start + window_s + 2 * LEAF_SIZE_M / c)
    assert len(np.unique(sensor[in_window])) >= support - 1


def test_seed_search_prunes_what_cannot_beat_the_floor():
    xy, sensor, t_s, _ = scene_arrays(4, shots=1, echoes=1, noise=4)
    c = speed_of_sound(15.0)
    support, _, _ = best_seed(picks(xy, sensor, t_s), SeedSearch(c, 0.004, (-100.0, -100.0, 100.0, 100.0)),
                              floor=len(np.unique(sensor)))
    assert support == len(np.unique(sensor))  # nothing beats every sensor: the floor comes back


def scipy_fit(groups, c, starts, *, fit_c, loss, scale_s, c_bounds):
    """The same cost through scipy.optimize.least_squares (the reference)."""
    k = len(groups)

    def residuals(x):
        speed = x[-1] if fit_c else c
        out = []
        for j, (pos, t, sigma) in enumerate(groups):
            px, py, t0 = x[3 * j: 3 * j + 3]
            out.append((t - t0 - np.hypot(px - pos[:, 0], py - pos[:, 1]) / speed) / sigma)
        return np.concatenate(out)

    x0 = np.concatenate([[*p[:2], t0] for p, t0 in starts] + ([[c]] if fit_c else []))
    bounds = (-np.inf, np.inf)
    if fit_c:
        bounds = (np.r_[np.full(3 * k, -np.inf), c_bounds[0]], np.r_[np.full(3 * k, np.inf), c_bounds[1]])
    f_scale = scale_s / float(np.median(np.concatenate([g[2] for g in groups])))
    result = optimize.least_squares(residuals, x0, bounds=bounds, loss=loss, f_scale=f_scale,
                                    x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return result.x


@pytest.mark.parametrize("loss,fit_c", [("linear", False), ("soft_l1", False), ("soft_l1", True), ("linear", True)])
def test_levenberg_marquardt_fit_matches_scipy_least_squares(loss, fit_c):
    rng = np.random.default_rng(7)
    sensors = np.array(list(syn.ring_array(rng, n=9, radius_m=600.0).values()))
    c_true = speed_of_sound(20.0)
    groups, starts = [], []
    for src in ([40.0, -25.0], [-60.0, 10.0]):
        t = 0.3 + np.hypot(*(sensors[:, :2] - src).T) / c_true + rng.normal(0, 5e-4, len(sensors))
        t[:2] += [0.012, 0.025]  # late, non-line-of-sight arrivals
        groups.append((sensors, t, np.full(len(t), 1e-3)))
        starts.append((np.array(src) + rng.normal(0, 15.0, 2), 0.28))
    c0, c_bounds = speed_of_sound(10.0), (speed_of_sound(0.0), speed_of_sound(30.0))
    fit = fit_shots(groups, c0, Geometry("2d"), starts, fit_c=fit_c, loss=loss, scale_s=5e-4, c_bounds=c_bounds)
    ref = scipy_fit(groups, c0, starts, fit_c=fit_c, loss=loss, scale_s=5e-4, c_bounds=c_bounds)
    assert np.allclose(fit.positions, ref[: 6].reshape(2, 3)[:, :2], atol=1e-3)
    assert np.allclose(fit.t0_s, ref[: 6].reshape(2, 3)[:, 2], atol=1e-8)
    if fit_c:
        assert fit.c == pytest.approx(ref[-1], abs=1e-3)


def test_seed_search_stops_at_its_work_budget_and_says_so(caplog):
    """One step is too few to reach a leaf: the search stops, keeps the floor, and logs why;
    the default budget finds the best leaf."""
    xy, sensor, t_s, _ = scene_arrays(1, shots=2, echoes=2, noise=6)
    c = speed_of_sound(15.0)
    bounds = (-100.0, -100.0, 100.0, 100.0)
    with caplog.at_level("INFO", logger="fusion.locator.seedsearch"):
        support, _, _ = best_seed(picks(xy, sensor, t_s), SeedSearch(c, 0.004, bounds, max_steps=1), floor=2)
    assert support == 2 and "stopped at its budget of 1 steps" in caplog.text
    support, _, _ = best_seed(picks(xy, sensor, t_s), SeedSearch(c, 0.004, bounds), floor=2)
    assert support == exhaustive_support(xy, sensor, t_s, c, 0.004, bounds)
