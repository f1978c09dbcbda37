"""Chance agreement: how many sensors must agree before a set of pulses is no coincidence.

Unrelated pulses (echoes, noise) agree on a place and an emission time by chance at some rate;
:func:`chance_support` is the support that stays above that (a Bonferroni-bounded false-alarm
rate, as in CFAR detection). A small array cannot reach it, and association then keeps the best
set short of one sensor; :func:`listening` counts the sensors that cap is taken over.
"""
from __future__ import annotations

import numpy as np

from fusion.locator.picks import Picks

# Expected number of chance sets of unrelated pulses allowed per search (see chance_support).
FALSE_ALARMS = 0.01
# A sensor listening to a scene reports within this of a shot's arrival there (the shot, its echoes,
# the neighbouring rounds of a burst: 0.1-1 s apart). The small-array cap (find_shots' ``most``: a set
# may lack one sensor) counts only the sensors listening at the shot: a sensor 1 km off that reported
# nothing then (FP2's test_032, six sensors, two far ones that heard only later rounds) cannot have
# made a chance set likelier, nor missed the shot by chance.
LISTEN_S = 1.0


def chance_support(sensor: np.ndarray, t_s: np.ndarray, window_s: float, c: float,
                   bounds: tuple[float, float, float, float], false_alarms: float | None = None) -> int:
    """Smallest support that chance coincidences of unrelated pulses reach less than ``false_alarms`` times.

    Sensor j's pulses, at its mean rate r_j over the stretch, fall in a window w with
    probability p_j = 1 - exp(-r_j w); the number of sensors agreeing by chance is
    Poisson-binomial (tail by the usual recursion). The search looks at about
    area / (c w)^2 independent points times duration / w independent windows (the
    resolution of a window of w), so a support k is significant when that many trials
    times P(K >= k) stays below ``false_alarms`` (a Bonferroni bound, as in CFAR detection).
    """
    duration_s = max(float(np.ptp(t_s)), window_s)
    counts = np.bincount(sensor)
    p = -np.expm1(-counts[counts > 0] / duration_s * window_s)
    dist = np.zeros(len(p) + 1)
    dist[0] = 1.0
    for pj in p:
        dist[1:] = dist[1:] * (1 - pj) + dist[:-1] * pj
        dist[0] *= 1 - pj
    tail = np.cumsum(dist[::-1])[::-1]  # tail[k] = P(K >= k)
    x0, y0, x1, y1 = bounds
    trials = (x1 - x0) * (y1 - y0) / (c * window_s) ** 2 * duration_s / window_s
    significant = np.flatnonzero(trials * tail < (FALSE_ALARMS if false_alarms is None else false_alarms))
    return int(significant[0]) if len(significant) else len(p) + 1


def listening(listeners: Picks, xy_m, t0_s: float, c: float) -> int:
    """Sensors of ``listeners`` that reported a pulse within LISTEN_S of when the sound of a shot
    at ``xy_m`` emitted at ``t0_s`` reached them (at speed ``c``)."""
    diff = listeners.xy - np.asarray(xy_m, dtype=float)
    lag_s = listeners.t_s - t0_s - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c
    return listeners.n_sensors(np.abs(lag_s) <= LISTEN_S)
