"""Path terms: the delay a burst's every round takes on the path to one sensor, as a random effect.

Rounds fired from one place travel the same paths, so what delays one round's arrival at a sensor
delays them all alike: the sensor's survey error along the line of sight, the wind along the path,
its height above or below the source in a 2D fit, a diffracted path round a building. That is a
source-specific station term (Richards-Dinger & Shearer, JGR 105, 2000), here one unknown b_s per
sensor of a burst with the prior b_s ~ N(0, ``prior_sd_s``), the arrivals of its rounds at the
sensor r_sk = b_s + e_sk with e_sk ~ N(0, sigma_sk) independent. Charged per round instead, as
independent residuals, a static delay is paid once for every round, and a place whose sensors
carry a few ms each scores below one that three or four sensors fit exactly.

:func:`path_terms` gives each sensor's posterior mean (the shrunk mean of its residuals: the
empirical-Bayes estimate of a random effect, Gelman et al., "Bayesian Data Analysis", 3rd ed.,
2013, §5.4) and the log of the factor that integrating b_s out multiplies the rounds' likelihood
by, at that mean (Laplace's method, Kass & Raftery 1995; exact for Gaussian residuals):

    log int N(b; 0, sb) prod_k N(r_k - b; 0, s_k) db
        = sum_k log N(r_k - b*; 0, s_k) - b*^2 / (2 sb^2) + log(s_post / sb)

with 1 / s_post^2 = 1 / sb^2 + sum_k 1 / s_k^2 and b* = s_post^2 sum_k r_k / s_k^2. The rounds'
own likelihood is then taken at the arrivals less b*, each at its own sigma.

Example::

    terms_s, termed, log_factor = path_terms(sensor, residuals_s, sigma_s, n_sensors, 5e-3)
"""
from __future__ import annotations

import numpy as np

# A sensor's term is held within this many prior sds: beyond it a delay is an NLOS path or a wrong
# pick of that round, which the rounds' own model (a late tail, clutter) explains, not one shared by all.
MAX_TERM_SDS = 2.5


def path_terms(sensor: np.ndarray, residuals_s: np.ndarray, sigma_s: np.ndarray, n_sensors: int,
               prior_sd_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Per sensor its path term (s), whether it has one, and the log factor of the terms integrated out.

    ``sensor`` (indices below ``n_sensors``), ``residuals_s`` and ``sigma_s`` are per arrival of the burst's
    rounds. A sensor with no arrival has no term (0, not termed: its delay is unknown, N(0, prior_sd_s)).
    The terms are centred on their median (a delay common to every sensor is each round's discharge time,
    not a path's) and held within MAX_TERM_SDS prior sds; the log factor is that of the module doc at the
    terms so taken.
    """
    sensor = np.asarray(sensor, dtype=int)
    precision = np.bincount(sensor, weights=1.0 / np.asarray(sigma_s) ** 2, minlength=n_sensors)
    weighted = np.bincount(sensor, weights=np.asarray(residuals_s) / np.asarray(sigma_s) ** 2, minlength=n_sensors)
    posterior_precision = 1.0 / prior_sd_s ** 2 + precision
    terms = weighted / posterior_precision
    termed = precision > 0
    if termed.any():
        terms[termed] -= np.median(terms[termed])
    limit = MAX_TERM_SDS * prior_sd_s
    terms = np.clip(np.where(termed, terms, 0.0), -limit, limit)
    log_factor = float(np.sum(-0.5 * (terms[termed] / prior_sd_s) ** 2
                              - 0.5 * np.log(prior_sd_s ** 2 * posterior_precision[termed])))
    return terms, termed, log_factor
