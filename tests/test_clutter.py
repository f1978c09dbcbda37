"""The clutter rate that follows each arrival (fusion/locator/clutter.py), on point processes of known rate."""
from __future__ import annotations

import numpy as np

from fusion.locator import clutter


def _echoing(rng, n_arrivals: int, echoes_per_arrival: float, duration_s: float):
    """Arrivals at a steady rate, each followed by a Poisson number of echoes with log-uniform delays."""
    t = list(rng.uniform(0.0, duration_s, n_arrivals))
    lo, hi = np.log(clutter.ECHO_MIN_DELAY_S), np.log(clutter.ECHO_MAX_DELAY_S)
    for a in list(t):
        t += list(a + np.exp(rng.uniform(lo, hi, rng.poisson(echoes_per_arrival))))
    return np.sort(np.array(t))


def test_steady_pulses_get_their_steady_rate():
    rng = np.random.default_rng(1)
    duration_s, rate_hz = 600.0, 0.5
    t = np.sort(rng.uniform(0.0, duration_s, rng.poisson(rate_hz * duration_s)))
    rates = clutter.following_rates(np.zeros(len(t), dtype=int), t, duration_s)
    assert np.all(np.abs(rates / rate_hz - 1.0) < 0.3)


def test_echoes_crowd_the_rate_just_after_an_arrival_and_not_before_it():
    rng = np.random.default_rng(2)
    duration_s = 600.0
    t = _echoing(rng, 60, 5.0, duration_s)
    sensor = np.zeros(len(t), dtype=int)
    rates = clutter.following_rates(sensor, t, duration_s)
    # Probe: a pulse 30 ms after a quiet spell's first pulse, and that first pulse itself.
    gaps = np.diff(t)
    quiet = np.flatnonzero(gaps[:-1] > clutter.ECHO_MAX_DELAY_S)[0] + 1
    probe_t = np.append(t, t[quiet] + 0.03)
    probe = clutter.following_rates(np.zeros(len(probe_t), dtype=int), probe_t, duration_s)
    assert probe[-1] > 5.0 * rates[quiet]
    # The stretch's mean rate lies between the rate after a quiet spell and the crowded one.
    steady = len(t) / duration_s
    assert rates.min() < steady < rates.max()


def test_each_sensor_has_its_own_steady_rate():
    rng = np.random.default_rng(3)
    duration_s = 600.0
    a = np.sort(rng.uniform(0.0, duration_s, 600))
    b = np.sort(rng.uniform(0.0, duration_s, 60))
    t = np.concatenate([a, b])
    sensor = np.concatenate([np.zeros(len(a), dtype=int), np.ones(len(b), dtype=int)])
    rates = clutter.following_rates(sensor, t, duration_s)
    assert 0.7 < np.median(rates[sensor == 0]) < 1.3 and 0.07 < np.median(rates[sensor == 1]) < 0.13


def test_no_pulses_no_rates():
    assert clutter.following_rates(np.zeros(0, dtype=int), np.zeros(0), 1.0).shape == (0,)
