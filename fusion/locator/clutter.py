"""Clutter that follows each sound: a sensor's pulse rate as a self-exciting point process.

A sensor's pulses that are no round's first arrival (echoes off walls and hills, unrelated bangs) are
clutter to :mod:`fusion.locator.burst`. Unrelated pulses come at a steady rate; echoes do not: they
follow each arrival, crowded into its first few hundred milliseconds and thinning out over seconds
(delays from a scene's reflectors, about uniform in log delay). A flat rate over the stretch charges a
set of echoes a round's arrivals as if it were anywhere in the stretch, while a round's own arrivals,
first after a quiet spell, are charged the crowd of the echoes that follow them.

The rate here is a self-exciting point process (Hawkes, Biometrika 58, 1971) in which sounds excite and
echoes do not: at sensor s, ``lambda_s(t) = mu_s + eta sum_{t_j < t} w_j g(t - t_j)`` over the sensor's
earlier pulses, with ``g`` the log-uniform density of an echo's delay on [:data:`ECHO_MIN_DELAY_S`,
:data:`ECHO_MAX_DELAY_S`] and ``w_j`` how far pulse j is a sound: 1 for a known first arrival (a shot's),
else its share of being no echo (a round no shot holds yet, an unrelated bang). The steady rates ``mu_s``
and the echoes per sound ``eta`` (one for all sensors: a few pulses each cannot fix their own) are fitted
on the pulses that are no known arrival, by the expectation-maximisation of Veen & Schoenberg (2008, in
"Statistical Methods for Point Processes": the stochastic declustering of ETAS), the weights updated each
step. Known arrivals are left out of the fit: a string of them (firecrackers, automatic fire) tens of ms
apart would otherwise be fitted as each other's echoes, and charge each other that crowd (the fireworks
night of tests/test_classify.py lost 6 of a string's 17 pops, and with them its class).
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
EM_START_SHARE = 0.5  # EM starts from half the clutter steady and half echoes
# The steady rate's floor (1/s): one pulse an hour, so that no pulse's rate is zero.
MIN_RATE_HZ = 1.0 / 3600.0
# The echoes due in a stretch (a count), kept off zero where no sound can echo in it.
MIN_ECHOES_DUE = 1e-9
# Echoes per sound (eta) below which the EM's stop test reads a change absolutely, not relative to eta:
# where eta falls to zero (no pulse is an echo), a relative change would never settle.
MIN_ECHOES_PER_SOUND = 1e-9


def echo_delay_density(delay_s: np.ndarray) -> np.ndarray:
    """The log-uniform density of an echo's delay (1/s): ``1 / (d ln(max/min))`` inside the range."""
    d = np.asarray(delay_s, dtype=float)
    inside = (d >= ECHO_MIN_DELAY_S) & (d <= ECHO_MAX_DELAY_S)
    return np.where(inside, 1.0 / (np.maximum(d, ECHO_MIN_DELAY_S) * math.log(ECHO_MAX_DELAY_S / ECHO_MIN_DELAY_S)), 0.0)


def _echo_share(delay_s: np.ndarray) -> np.ndarray:
    """The share of an echo delay's density within ``delay_s`` (the kernel's cumulative)."""
    d = np.clip(np.asarray(delay_s, dtype=float), ECHO_MIN_DELAY_S, ECHO_MAX_DELAY_S)
    return np.log(d / ECHO_MIN_DELAY_S) / math.log(ECHO_MAX_DELAY_S / ECHO_MIN_DELAY_S)


def following_rates(sensor: np.ndarray, t_s: np.ndarray, duration_s: float, arrival: np.ndarray) -> np.ndarray:
    """Per pulse the clutter rate (1/s) of its sensor at its time, given the sound that came before it there.

    ``sensor`` (small integers), ``t_s`` and ``arrival`` (whether the pulse is a known first arrival, a
    shot's) are per pulse; ``duration_s`` is the stretch's length, over which the steady rates are spread
    (at least the pulses' own span). The rates are fitted on the pulses that are no known arrival. Echoes
    follow sounds, not echoes: a known arrival excites in full, another pulse by its share of being no echo
    (a round's arrival that no shot holds, or an unrelated bang). Returns ``lambda_s(t_i)`` per pulse.
    """
    sensor = np.asarray(sensor)
    t_s = np.asarray(t_s, dtype=float)
    arrival = np.asarray(arrival, dtype=bool)
    if len(t_s) == 0:
        return np.zeros(0)
    start = float(t_s.min())
    span_s = max(duration_s, float(t_s.max()) - start, ECHO_MIN_DELAY_S)
    by_sensor = [np.flatnonzero(sensor == s) for s in np.unique(sensor)]
    # g(t_i - t_j) among a sensor's own pulses (a few against each other, not the stretch's).
    kernels = [echo_delay_density(t_s[rows][:, None] - t_s[rows][None, :]) for rows in by_sensor]
    due = _echo_share(start + span_s - t_s)  # the share of a sound's echoes that falls inside the stretch
    clutter = ~arrival
    n_sensors = int(sensor.max()) + 1
    mu = EM_START_SHARE * np.bincount(sensor[clutter], minlength=n_sensors) / span_s
    eta = (1.0 - EM_START_SHARE) * np.count_nonzero(clutter) / max(float(due.sum()), MIN_ECHOES_DUE)
    parent = np.where(arrival, 1.0, EM_START_SHARE)  # how far each pulse is a sound that echoes

    def excitation() -> np.ndarray:  # sum_j w_j g(t_i - t_j) per pulse, at the current weights
        out = np.zeros(len(t_s))
        for rows, kernel in zip(by_sensor, kernels):
            out[rows] = kernel @ parent[rows]
        return out

    # EM (Veen & Schoenberg 2008): each clutter pulse's share of being steady or an echo, then the rates from them.
    for _ in range(EM_ITERATIONS):
        rate = np.maximum(mu[sensor] + eta * excitation(), MIN_RATE_HZ)
        steady = mu[sensor] / rate
        parent = np.where(arrival, 1.0, steady)
        mu = np.maximum(np.bincount(sensor[clutter], weights=steady[clutter], minlength=n_sensors) / span_s, MIN_RATE_HZ)
        new_eta = float((1.0 - steady[clutter]).sum()) / max(float((parent * due).sum()), MIN_ECHOES_DUE)
        settled = abs(new_eta - eta) <= EM_TOLERANCE * max(eta, MIN_ECHOES_PER_SOUND)
        eta = new_eta
        if settled:
            break
    return np.maximum(mu[sensor] + eta * excitation(), MIN_RATE_HZ)
