"""Echo sets told from rounds: whether a set of arrivals from a burst's place is a new discharge or an echo.

At a shooter's place every pulse implies a discharge time (:mod:`fusion.locator.burst`); a
reflector near the shooter (a house front, a wall behind them) makes an image source a few
metres away, and each round's echo then arrives at every sensor that heard the round, later by
about the same extra path: at the place, a second cluster of implied discharge times, as a round
would make. Timing alone cannot tell the two apart (both fit the place, each with its own t0);
what can is the level each sensor measured. A round of the same gun from the same place
reaches a sensor with the level its earlier rounds did (same source, same path); an echo set
reaches it weaker, by the reflection's loss and its longer path, at every sensor alike.

The model (two hypotheses for a candidate set C following an accepted round R, compared by
their Bayes factor, as competing association hypotheses are in multi-hypothesis tracking, Reid
1979, and in seismic phase association, where a later phase is told from a new event by the
source it implies: REAL, Zhang et al., SRL 90(6), 2019; GaMMA, Zhu et al., JGR 127, 2022):

- a pulse's level is its emission's source level plus a path term of the (place, sensor), plus
  an independent scatter of sigma :data:`LEVEL_SIGMA_DB` (turbulent scintillation, the
  detector's peak estimate); so at a sensor both heard, the difference d_i = L_i(C) - L_i(R)
  has the path term cancelled (and the sensor's gain, for levels in dBFS) and scatter sqrt(2) sigma;
- **round**: C's source level is R's plus a shot-to-shot variation m ~ N(0, :data:`GUN_SIGMA_DB`),
  common to every sensor;
- **echo of R**: C's source level is R's less a loss m = -a, a uniform over 0 to
  :data:`ECHO_LOSS_MAX_DB` (the image's reflection loss and extra spreading), common to every
  sensor; R precedes C by at most :data:`ECHO_MAX_DELAY_S`.

Which sensors heard the set speaks too. A round of the same gun from the same place reaches every
sensor its earlier round did, each with the detection probability P_D of a round's first
arrival: k of the round's n sensors hear it with probability P_D^k (1 - P_D)^(n - k). An echo
comes off a reflector that either every sensor sees (a house front behind the shooter: then it
is heard as a round is) or only some share q of them do, q unknown; the two as likely as not
(:data:`FULL_REACH_SHARE`), and with a uniform prior on q integrated out, the partial reflector
gives B(k + 1, n - k + 1) (the beta-binomial marginal likelihood; Gelman et al., Bayesian Data
Analysis, 3rd ed., §2.4). So a set that only a few of its round's sensors heard is an echo,
whatever its levels (the seed city's exchange: 3 of 14), while one that all of them heard is
judged on its levels. Sensors that heard the set but not the round say little either way (the
round's arrival missed, or its direct path blocked and the echo's open) and are left out.

The common offset is integrated out numerically (a grid); a level at or above
:data:`CLIPPED_DBFS` in ``peak_dbfs`` is a lower bound on the true level (a censored
observation: its term is the probability of the difference lying beyond the measured one), and
a sensor where both are clipped says nothing. With :data:`ECHO_LOG_PRIOR_ODDS`, C is an echo where
the posterior odds exceed one. The level constants are physical priors; the prior odds are
chosen by leave-one-position-out (so an echo set must bring a Bayes factor of e^2.5, about 12,
"positive" to "strong" evidence on Kass & Raftery 1995's scale).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from fusion.locator.picks import Picks

# Per-pulse scatter of a received level about its source level plus path term, dB: turbulent
# scintillation over a few hundred metres (1-3 dB; Wilson et al., JASA 99, 1996) and the
# detector's peak estimate of a sampled pulse.
LEVEL_SIGMA_DB = 2.0
# Shot-to-shot variation of one firearm's muzzle blast level with one load, dB.
GUN_SIGMA_DB = 1.5
# An echo's loss against its direct sound, uniform from 0 (a hard wall, a short detour) to this, dB:
# beyond it the echo falls under what a detector reports of a blast tens of dB above the noise.
ECHO_LOSS_MAX_DB = 20.0
# An echo set follows its round within this (TN098 §II.B: reflections arrive over "a period of
# time that may extend to several seconds"; the stretch a burst is searched in is about this long).
ECHO_MAX_DELAY_S = 2.0
# Log prior odds of an echo set against a further round, for a set that follows a round: the one
# constant set on data, chosen leave-one-position-out on the Pittsburgh audio (FP1-FP3; fitted on
# two positions over -6 to +3, the middle of the values that score best, scored on the third; the
# folds chose -2, -2.5, -2.5: bench/bench_association.py prints them). Even odds (0) lose a real
# round whose levels are clipped at one sensor and just under the clip at another.
ECHO_LOG_PRIOR_ODDS = -2.5
# A peak_dbfs at or above this is clipped: a lower bound on the level, not a measurement.
CLIPPED_DBFS = -3.0
# Prior share of echo sets whose reflector every sensor of the round sees (hears as it hears a
# round) against one only some of them see: even odds, nothing known.
FULL_REACH_SHARE = 0.5
# Grid of the common offset (dB), fine against the scatter.
OFFSET_STEP_DB = 0.25
OFFSET_SPAN_SIGMAS = 6.0


def received_levels(spl_db: np.ndarray, peak_dbfs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pulse (level dB, clipped): ``spl_db`` where given (not clipped), else ``peak_dbfs``,
    clipped at or above CLIPPED_DBFS; NaN where a pulse states neither."""
    spl = np.asarray(spl_db, dtype=float)
    peak = np.asarray(peak_dbfs, dtype=float)
    has_spl = np.isfinite(spl)
    level = np.where(has_spl, spl, peak)
    clipped = ~has_spl & np.isfinite(peak) & (peak >= CLIPPED_DBFS)
    return level, clipped


def _log_mean_exp(log_f: np.ndarray, weights: np.ndarray) -> float:
    top = float(np.max(log_f))
    return top + math.log(float(np.sum(weights * np.exp(log_f - top))))


def echo_log_odds(diff_db: np.ndarray, later_clipped: np.ndarray, earlier_clipped: np.ndarray) -> float:
    """Log Bayes factor of "echo" over "round" for a set whose levels differ by ``diff_db`` from an
    earlier round's at the sensors both heard (later minus earlier), per the module's model.

    ``later_clipped``/``earlier_clipped``: per sensor whether that level is only a lower bound.
    Zero (no evidence) where no sensor speaks.
    """
    d = np.asarray(diff_db, dtype=float)
    lo_later = np.asarray(later_clipped, dtype=bool)
    lo_earlier = np.asarray(earlier_clipped, dtype=bool)
    speaks = np.isfinite(d) & ~(lo_later & lo_earlier)
    d, lo_later, lo_earlier = d[speaks], lo_later[speaks], lo_earlier[speaks]
    if len(d) == 0:
        return 0.0
    sigma = math.sqrt(2.0) * LEVEL_SIGMA_DB
    span = OFFSET_SPAN_SIGMAS * max(sigma, GUN_SIGMA_DB)
    m = np.arange(-ECHO_LOSS_MAX_DB - span, span + OFFSET_STEP_DB, OFFSET_STEP_DB)
    z = (d[None, :] - m[:, None]) / sigma
    # Exact differences: Gaussian; the later clipped: the true difference is at least d; the earlier: at most d.
    terms = np.where(lo_later[None, :], stats.norm.logsf(z),
                     np.where(lo_earlier[None, :], stats.norm.logcdf(z), stats.norm.logpdf(z) - math.log(sigma)))
    log_like = terms.sum(axis=1)
    round_prior = stats.norm.pdf(m, 0.0, GUN_SIGMA_DB) * OFFSET_STEP_DB
    echo_prior = ((m <= 0.0) & (m >= -ECHO_LOSS_MAX_DB)) * (OFFSET_STEP_DB / ECHO_LOSS_MAX_DB)
    return _log_mean_exp(log_like, echo_prior) - _log_mean_exp(log_like, round_prior)


def hearing_log_odds(heard_n: int, of_n: int, detection_prob: float) -> float:
    """Log Bayes factor of "echo" over "round" for a set that ``heard_n`` of the ``of_n`` sensors of
    an earlier round heard, per the module's model (``detection_prob``: P_D of a round's arrival)."""
    k, n = heard_n, of_n
    round_ = k * math.log(detection_prob) + (n - k) * math.log1p(-detection_prob)
    partial = float(special.betaln(k + 1, n - k + 1)) - round_
    return math.log(FULL_REACH_SHARE + (1.0 - FULL_REACH_SHARE) * math.exp(partial))


def is_echo_set(later: dict, earlier: list[dict], detection_prob: float) -> bool:
    """Whether a set ``later`` ({sensor index: (level dB, clipped)}, at discharge time ``"t0_s"``)
    is an echo of one of the ``earlier`` rounds (each alike) rather than a round of its own, from
    the levels at the sensors both heard and from how many of the earlier round's sensors heard it
    (``detection_prob``: P_D of a round's arrival at a sensor that hears its burst).

    Each earlier round that precedes it by at most ECHO_MAX_DELAY_S is a candidate parent; the
    echo hypothesis is their mixture (equal shares), against one round (prior log odds ECHO_LOG_PRIOR_ODDS).
    """
    odds = []
    for parent in earlier:
        lag_s = later["t0_s"] - parent["t0_s"]
        if not 0.0 < lag_s <= ECHO_MAX_DELAY_S:
            continue
        # A parent none of whose sensors heard the set still speaks: by its sensors' silence (the
        # levels then say nothing, and 0 of n hearing is likelier of a partial reflector's echo
        # than of a round of the same place, heard at each with P_D).
        common = sorted(set(later["levels"]) & set(parent["levels"]))
        a = np.array([later["levels"][s] for s in common], dtype=float).reshape(-1, 2)
        b = np.array([parent["levels"][s] for s in common], dtype=float).reshape(-1, 2)
        odds.append(echo_log_odds(a[:, 0] - b[:, 0], a[:, 1] > 0, b[:, 1] > 0)
                    + hearing_log_odds(len(common), len(parent["levels"]), detection_prob))
    if not odds:
        return False
    mixture = _log_mean_exp(np.array(odds), np.full(len(odds), 1.0 / len(odds)))
    return mixture + ECHO_LOG_PRIOR_ODDS > 0.0


def level_set(picks: Picks, rows: np.ndarray, t0_s: float, levels) -> dict:
    """A set of arrivals as :func:`is_echo_set` reads it: its t0 and per
    sensor (level dB, clipped) of its first pulse there; the level NaN where ``levels`` is None."""
    out: dict = {}
    for r in rows[np.argsort(picks.t_s[rows], kind="stable")]:
        level = (float(levels[0][r]), float(levels[1][r])) if levels is not None else (math.nan, 0.0)
        out.setdefault(int(picks.sensor[r]), level)
    return {"t0_s": t0_s, "levels": out}
