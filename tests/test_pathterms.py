"""fusion.locator.pathterms: a sensor's delay shared by a burst's rounds, integrated out."""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats

from fusion.locator.pathterms import MAX_TERM_SDS, path_terms

PRIOR_SD_S = 5e-3


def _marginal(residuals_s, sigma_s) -> float:
    """log int N(b; 0, prior) prod_k N(r_k - b; 0, s_k) db by quadrature."""
    def integrand(b):
        return stats.norm.pdf(b, 0.0, PRIOR_SD_S) * np.prod(stats.norm.pdf(residuals_s - b, 0.0, sigma_s))
    value, _ = integrate.quad(integrand, -10 * PRIOR_SD_S, 10 * PRIOR_SD_S, points=[float(np.mean(residuals_s))],
                              epsabs=0.0, limit=200)
    return math.log(value)


def test_the_log_factor_is_the_terms_integrated_out():
    """Three sensors whose arrivals, round after round, are late by about -2, 0 and +3 ms (the middle one's
    residuals symmetric about 0, so the terms' median is 0 and centring leaves them): the rounds' likelihood at
    the terms times the factor is the exact marginal of each sensor's term (Gaussian residuals: Laplace's method
    is exact)."""
    residuals_s = np.array([-2.4e-3, -1.1e-3, -2.2e-3, 0.5e-3, -0.5e-3, 0.2e-3, -0.2e-3, 3.3e-3, 2.1e-3, 3.9e-3])
    sensor = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    sigma_s = np.array([1.0, 1.0, 1.0, 1.2, 1.2, 1.2, 1.2, 0.8, 0.8, 0.8]) * 1e-3
    terms_s, termed, log_factor = path_terms(sensor, residuals_s, sigma_s, 3, PRIOR_SD_S)
    assert termed.all() and terms_s[1] == 0.0
    assert terms_s[0] < -1e-3 and terms_s[2] > 2e-3
    at_terms = float(np.sum(stats.norm.logpdf(residuals_s - terms_s[sensor], 0.0, sigma_s)))
    exact = sum(_marginal(residuals_s[sensor == s], sigma_s[sensor == s]) for s in range(3))
    assert abs(at_terms + log_factor - exact) < 1e-6


def test_a_sensor_without_arrivals_has_no_term_and_a_delay_past_the_prior_is_held():
    sensor = np.array([0, 0, 1, 1, 3, 3])
    residuals_s = np.array([0.0, 0.0, 0.0, 0.0, 0.05, 0.05])
    terms_s, termed, _ = path_terms(sensor, residuals_s, np.full(6, 1e-3), 4, PRIOR_SD_S)
    assert termed.tolist() == [True, True, False, True]
    assert terms_s[2] == 0.0
    assert terms_s[3] == MAX_TERM_SDS * PRIOR_SD_S
