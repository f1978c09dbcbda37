"""Clutter that follows each arrival: a sensor's pulse rate as a self-exciting point process.

A sensor's pulses that are no round's first arrival (echoes off walls and hills, unrelated bangs) are
clutter to :mod:`fusion.locator.burst`. Unrelated pulses come at a steady rate; echoes do not: they
follow each arrival, crowded into its first few hundred milliseconds and thinning out over seconds
(delays from a scene's reflectors, about uniform in log delay). A flat rate over the stretch charges a
set of echoes a round's arrivals as if it were anywhere in the stretch, while a round's own arrivals,
first after a quiet spell, are charged the crowd of the echoes that follow them.

The rate here is a Hawkes process (Hawkes, Biometrika 58, 1971): at sensor s,
``lambda_s(t) = mu_s + eta sum_{t_j < t} g(t - t_j)`` over the sensor's earlier pulses, with ``g`` the
log-uniform density of an echo's delay on [:data:`ECHO_MIN_DELAY_S`, :data:`ECHO_MAX_DELAY_S`]; the steady
rates ``mu_s`` and the echoes per pulse ``eta`` (one for all sensors: a few pulses each cannot fix their
own) are fitted by maximum likelihood with the expectation-maximisation of Veen & Schoenberg (2008, in
"Statistical Methods for Point Processes", the stochastic declustering of ETAS).
"""
from __future__ import annotations

import math

import numpy as np

from fusion.locator.echosets import ECHO_MAX_DELAY_S

# An echo's delay behind what it echoes, shortest: a detector's pulse lasts a few ms, and a reflection
# sooner than that is part of the pulse it follows.
ECHO_MIN_DELAY_S = 5e-3
EM_ITERATIONS = 50
EM_TOLERANCE = 1e-6  # relative change of eta that ends the iterations
# The steady rate's floor (1/s): one pulse an hour, so that no pulse's rate is zero.
MIN_RATE_HZ = 1.0 / 3600.0


def echo_delay_density(delay_s: np.ndarray) -> np.ndarray:
    """The log-uniform density of an echo's delay (1/s): ``1 / (d ln(max/min))`` inside the range."""
    d = np.asarray(delay_s, dtype=float)
    inside = (d >= ECHO_MIN_DELAY_S) & (d <= ECHO_MAX_DELAY_S)
    return np.where(inside, 1.0 / (np.maximum(d, ECHO_MIN_DELAY_S) * math.log(ECHO_MAX_DELAY_S / ECHO_MIN_DELAY_S)), 0.0)


def _echo_share(delay_s: np.ndarray) -> np.ndarray:
    """The share of an echo delay's density within ``delay_s`` (the kernel's cumulative)."""
    d = np.clip(np.asarray(delay_s, dtype=float), ECHO_MIN_DELAY_S, ECHO_MAX_DELAY_S)
    return np.log(d / ECHO_MIN_DELAY_S) / math.log(ECHO_MAX_DELAY_S / ECHO_MIN_DELAY_S)


def following_rates(sensor: np.ndarray, t_s: np.ndarray, duration_s: float) -> np.ndarray:
    """Per pulse the clutter rate (1/s) of its sensor at its time, given the sensor's earlier pulses.

    ``sensor`` (small integers) and ``t_s`` are per pulse; ``duration_s`` is the stretch's length, over
    which the steady rates are spread (at least the pulses' own span). Returns ``lambda_s(t_i)`` of the
    module doc per pulse.
    """
    sensor = np.asarray(sensor)
    t_s = np.asarray(t_s, dtype=float)
    if len(t_s) == 0:
        return np.zeros(0)
    start = float(t_s.min())
    span_s = max(duration_s, float(t_s.max()) - start, ECHO_MIN_DELAY_S)
    # Per pulse sum_j g(t_i - t_j) over its sensor's earlier pulses: a sensor's few pulses against each other.
    excitation = np.zeros(len(t_s))
    for s in np.unique(sensor):
        rows = np.flatnonzero(sensor == s)
        excitation[rows] = echo_delay_density(t_s[rows][:, None] - t_s[rows][None, :]).sum(axis=1)
    exposure = max(float(_echo_share(start + span_s - t_s).sum()), ECHO_MIN_DELAY_S)  # echoes due in the stretch
    n_sensors = int(sensor.max()) + 1
    mu = np.bincount(sensor, minlength=n_sensors) / (2.0 * span_s)
    eta = 0.5 * len(t_s) / exposure
    # EM (Veen & Schoenberg 2008): each pulse's share of being steady or an echo, then the rates from the shares.
    for _ in range(EM_ITERATIONS):
        rate = np.maximum(mu[sensor] + eta * excitation, MIN_RATE_HZ)
        mu = np.maximum(np.bincount(sensor, weights=mu[sensor] / rate, minlength=n_sensors) / span_s, MIN_RATE_HZ)
        new_eta = float((eta * excitation / rate).sum()) / exposure
        settled = abs(new_eta - eta) <= EM_TOLERANCE * max(eta, MIN_RATE_HZ)
        eta = new_eta
        if settled:
            break
    return np.maximum(mu[sensor] + eta * excitation, MIN_RATE_HZ)
