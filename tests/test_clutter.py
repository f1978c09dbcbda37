"""The clutter rate that follows each sound (fusion/locator/clutter.py), on point processes of known rate."""
from __future__ import annotations

import numpy as np

from fusion.locator import clutter


def _echoing(rng, n_arrivals: int, echoes_per_arrival: float, duration_s: float):
    """Arrivals at a steady rate, each followed by a Poisson number of echoes with log-uniform delays:
    times (sorted) and whether each is an arrival."""
    arrivals = rng.uniform(0.0, duration_s, n_arrivals)
    lo, hi = np.log(clutter.ECHO_MIN_DELAY_S), np.log(clutter.ECHO_MAX_DELAY_S)
    echoes = np.concatenate([a + np.exp(rng.uniform(lo, hi, rng.poisson(echoes_per_arrival))) for a in arrivals])
    t = np.concatenate([arrivals, echoes])
    order = np.argsort(t)
    return t[order], np.concatenate([np.ones(len(arrivals), bool), np.zeros(len(echoes), bool)])[order]


def test_steady_pulses_get_their_steady_rate():
    rng = np.random.default_rng(1)
    duration_s, rate_hz = 600.0, 0.5
    t = np.sort(rng.uniform(0.0, duration_s, rng.poisson(rate_hz * duration_s)))
    rates = clutter.following_rates(np.zeros(len(t), dtype=int), t, duration_s, np.zeros(len(t), bool))
    assert np.all(np.abs(rates / rate_hz - 1.0) < 0.3)


def test_echoes_crowd_the_rate_just_after_a_sound_and_not_before_it():
    rng = np.random.default_rng(2)
    duration_s = 600.0
    t, arrival = _echoing(rng, 60, 5.0, duration_s)
    # A probe pulse 30 ms after an arrival that follows a quiet spell: its rate against the arrival's own.
    quiet = next(k for k in np.flatnonzero(arrival) if k > 0 and t[k] - t[k - 1] > clutter.ECHO_MAX_DELAY_S)
    probe_t = np.append(t, t[quiet] + 0.03)
    rates = clutter.following_rates(np.zeros(len(probe_t), dtype=int), probe_t, duration_s, np.append(arrival, False))
    assert rates[-1] > 5.0 * rates[quiet]
    # Echoes of a sound no shot holds crowd after it too: unmarked, the arrival still excites.
    unmarked = clutter.following_rates(np.zeros(len(probe_t), dtype=int), probe_t, duration_s, np.zeros(len(probe_t), bool))
    assert unmarked[-1] > 3.0 * unmarked[quiet]


def test_a_string_of_sounds_without_echoes_is_charged_no_crowd():
    """Firecrackers or automatic fire: a string of arrivals 50 ms apart, nothing echoing; a quiet pulse
    within the string is charged the steady rate, not a crowd the arrivals would raise as echoes."""
    rng = np.random.default_rng(4)
    duration_s = 600.0
    steady = np.sort(rng.uniform(0.0, duration_s, 300))
    string = 200.0 + 0.05 * np.arange(20)
    t = np.concatenate([steady, string, [200.525]])
    arrival = np.concatenate([np.zeros(len(steady), bool), np.ones(len(string), bool), [False]])
    rates = clutter.following_rates(np.zeros(len(t), dtype=int), t, duration_s, arrival)
    assert rates[-1] < 2.0 * len(steady) / duration_s


def test_each_sensor_has_its_own_steady_rate():
    rng = np.random.default_rng(3)
    duration_s = 600.0
    a = np.sort(rng.uniform(0.0, duration_s, 600))
    b = np.sort(rng.uniform(0.0, duration_s, 60))
    t = np.concatenate([a, b])
    sensor = np.concatenate([np.zeros(len(a), dtype=int), np.ones(len(b), dtype=int)])
    rates = clutter.following_rates(sensor, t, duration_s, np.zeros(len(t), bool))
    assert 0.7 < np.median(rates[sensor == 0]) < 1.3 and 0.07 < np.median(rates[sensor == 1]) < 0.13


def test_no_pulses_no_rates():
    assert clutter.following_rates(np.zeros(0, dtype=int), np.zeros(0), 1.0, np.zeros(0, bool)).shape == (0,)
