"""Bursts: rounds fired from one place, each with its own discharge time, scored by likelihood.

A burst's rounds share a position p; round k has its own discharge time t0_k. For a candidate
p every pulse i (sensor s_i, arrival t_i) implies a discharge time e_i = t_i - |p - s_i| / c;
at the true p the first arrivals of one round pile up at t0_k across sensors, while echoes,
late non-line-of-sight (NLOS) arrivals and unrelated pulses scatter. Once the shooter's place
is known (a shot found by :mod:`fusion.locator.associate`, or the vote of sensor triples,
:mod:`fusion.locator.triplevote`), the rounds of a burst are separated by their implied discharge times even where
their arrivals interleave across sensors (a far sensor hears round 1 after a near one hears
round 3).

The measurement model is that of probabilistic data association (Bar-Shalom, Willett & Tian,
"Tracking and Data Fusion", 2011, ch. 3; Bar-Shalom & Tse 1975): at each sensor a round is
heard with probability :data:`DETECTION_PROB`; its first arrival is late by a one-sided,
heavy-tailed NLOS delay with probability :data:`NLOS_SHARE` (an exponential excess delay on the
Gaussian timing error: the exponentially modified Gaussian, as in NLOS TOA models, e.g.
Gustafsson & Gunnarsson, IEEE SP Magazine 22(4), 2005); every other pulse of the sensor
(echoes, later pulses at the same sensor, unrelated noise) is clutter, a Poisson process at
the sensor's own rate in the stretch (in :func:`complete_bursts`, a rate that follows each sound,
crowded where its echoes crowd: :mod:`fusion.locator.clutter`). A round at t0 is then worth, per sensor, the likelihood
ratio ``P_D sum_i f(e_i - t0) / lambda_s + 1 - P_D`` against "all clutter"; each sensor gives
at most one first arrival per round (the pulse most likely to be it). Where no shot says
which sensors hear a burst (:func:`fusion.locator.fewburst.few_sensor_burst`), a sensor may not hear it at all (out of
range, shadowed): it is marginalised over that with prior :data:`HEAR_PRIOR`, or, where that finds no
burst (a few of many reporting sensors hear it), with its hearing one unknown for all rounds, given
the burst's unknown hearing radius under log-normal shadowing (:data:`fusion.locator.fewburst.HEAR_SHADOWING_SIGMA`).

A round is accepted when its Bayes factor against "no round" (Laplace approximation, Kass &
Raftery 1995: the likelihood ratio at its best t0 times the Occam factor of a t0 uniform over
the stretch, ``sqrt(2 pi) sigma_t0 / T``) exceeds one, and at least :data:`MIN_ROUND_SENSORS`
sensors hear it; rounds are taken greedily, best first, at least :data:`MIN_ROUND_GAP_S` apart.
Position and discharge times are then refined jointly by robust least squares (soft-L1
M-estimator, Huber 1964; :func:`fusion.locator.multilaterate.fit_shots` with ``places``).

No constant here is fitted to Pittsburgh data: they are physical priors, stated where defined.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from scipy import special

from earwitness.units import MAD_TO_SIGMA
from fusion.locator.associate import Shot, implied_discharge_s
from fusion.locator.clutter import following_rates
from fusion.locator.echosets import is_echo_set, level_set
from fusion.locator.multilaterate import Geometry, fit_shots
from fusion.locator.pathterms import path_terms
from fusion.locator.picks import Picks

log = logging.getLogger(__name__)

# Prior probability that a sensor of the stretch hears a burst at all (it may be out of range or
# shadowed; as likely as not), where no round of it says so.
HEAR_PRIOR = 0.5
# Probability that a sensor which hears a burst hears a given round's first arrival at all.
DETECTION_PROB = 0.8
# Prior share of first arrivals that come late, around a building (TN098 §II.C: urban arrivals
# are often diffracted; it accepts up to 40 ms) ...
NLOS_SHARE = 0.2
# ... by an exponential excess delay of this mean (a diffracted path a few metres longer).
NLOS_MEAN_DELAY_S = 0.01
# Floor of the Gaussian timing error of a first arrival on top of the pulse's own sigma: ms
# rounding of reports (0.29 ms), a sensor's survey error (~0.3 m, 1 ms), short diffraction.
MODEL_SIGMA_S = 1e-3
# Fewest sensors that make a round: its t0 is one unknown; two more arrivals check it.
MIN_ROUND_SENSORS = 3
# Rounds of one gun come at least this far apart (1200 rounds/min).
MIN_ROUND_GAP_S = 0.05
# Rounds a place is searched for at most (a magazine; a bound on the greedy loop only).
MAX_ROUNDS = 40
# Joint refinements of a place (fit, then re-assignment of the rounds' pulses).
REFINE_ROUNDS = 2
# Where no anchor fixes the place (burst_at), the refinement goes on while the place still moves by more
# than PLACE_SETTLED_M (well under a place's timing resolution, MODEL_SIGMA_S c = 0.34 m), at most
# MAX_REFINE_ROUNDS times (a bound on the loop): the Bayes factor's Laplace approximation is taken at
# the posterior mode (Kass & Raftery 1995, §4.1.1), which two steps from a voted place 10 m off need not reach.
PLACE_SETTLED_M = 0.05
MAX_REFINE_ROUNDS = 8
ROBUST_SCALE_S = 5e-3
# Where a first arrival's density is worth computing: from this many sigmas early to this many
# NLOS mean delays late (beyond, it is below e^-8 of its peak, far under any clutter rate).
DENSITY_SIGMAS = 6.0
DENSITY_TAUS = 8.0
# The place of a shot fixed exactly by d + 1 sensors (a position with no degree of freedom), and
# how closely a root must fit them (they are three equations in three unknowns: it fits exactly).
EXACT_FIX = "exact"
EXACT_RESIDUAL_S = 1e-4
# Places closer than this are one place, not two answers.
DISTINCT_PLACES_M = 25.0
# Prior sd of a path term, the delay every round of a burst takes on the path to one sensor
# (fusion.locator.pathterms): a sensor's survey error of 1-2 m along the line of sight (3-6 ms), its
# height in a 2D fit (a few ms at most ranges), the wind along the path (1 m/s over 500 m: 4 ms).
# Stated, not fitted (4 and 7 ms were compared at stop 40, in an earlier form of the model).
PATH_TERM_SD_S = 5e-3


def first_arrival_density(r_s: np.ndarray, sigma_s: np.ndarray) -> np.ndarray:
    """Density of a first arrival's residual (measured - predicted), 1/s: Gaussian core plus late NLOS tail.

    ``(1 - NLOS_SHARE) N(r; 0, sigma) + NLOS_SHARE EMG(r; sigma, tau)``, where the
    exponentially modified Gaussian is the density of a Gaussian error plus an exponential
    delay of mean tau (Grushka 1972's form, with scipy's erfcx for numerical safety).
    """
    tau = NLOS_MEAN_DELAY_S
    z = r_s / sigma_s
    gauss = np.exp(-0.5 * z * z) / (math.sqrt(2.0 * math.pi) * sigma_s)
    # EMG: (1/2tau) exp(sigma^2/2tau^2 - r/tau) erfc(u), u = (sigma/tau - r/sigma)/sqrt 2; for u > 0
    # as exp(-z^2/2) erfcx(u) (erfc underflows there), else directly (the exponent is then bounded).
    u = (sigma_s / tau - z) / math.sqrt(2.0)
    pos = u > 0
    emg = 0.5 / tau * np.where(pos, np.exp(-0.5 * z * z) * special.erfcx(np.where(pos, u, 0.0)),
                               np.exp(np.minimum(0.5 * (sigma_s / tau) ** 2 - r_s / tau, 0.0)) * special.erfc(u))
    return (1.0 - NLOS_SHARE) * gauss + NLOS_SHARE * emg


def clutter_rates(sensor: np.ndarray, duration_s: float) -> np.ndarray:
    """Per pulse, its sensor's pulse rate over the stretch (1/s): the Poisson clutter density."""
    counts = np.bincount(sensor)
    return counts[sensor] / max(duration_s, MIN_ROUND_GAP_S)


def _round_scores(emit_s, sensor, sigma_s, rate, t0_s, hears: np.ndarray):
    """Log-likelihood ratio of a round at each of ``t0_s`` against clutter, and per (t0, pulse) the terms.

    Every sensor of the stretch counts: with probability ``hears[s]`` it hears the burst at all
    (then a round is heard with P_D, or missed), else its pulses are all clutter (the sensor
    marginalised over both). Returns (llr per t0, f/lambda per (t0, pulse), its sums per (t0, sensor)).
    """
    r = emit_s[None, :] - t0_s[:, None]
    sigma = np.broadcast_to(sigma_s[None, :], r.shape)
    # The density is negligible beyond DENSITY_SIGMAS sigmas early or DENSITY_TAUS NLOS means late.
    near = (r > -DENSITY_SIGMAS * sigma) & (r < DENSITY_TAUS * NLOS_MEAN_DELAY_S)
    ratio = np.zeros(r.shape)
    ratio[near] = first_arrival_density(r[near], sigma[near]) / np.broadcast_to(rate[None, :], r.shape)[near]
    per_sensor = np.zeros((len(t0_s), len(hears)))
    np.add.at(per_sensor.T, sensor, ratio.T)
    llr = np.log(1.0 - hears + hears * (DETECTION_PROB * per_sensor + 1.0 - DETECTION_PROB)).sum(axis=1)
    return llr, ratio, per_sensor


def _member_mask(ratio, per_sensor, sensor, hears: np.ndarray) -> np.ndarray:
    """Per (t0, pulse) whether the pulse is that round's first arrival at its sensor: its posterior
    against the sensor's other pulses, a miss and not hearing the burst exceeds one half (so at most
    one per sensor)."""
    pi = hears[sensor]
    return pi * DETECTION_PROB * ratio > 0.5 * (1.0 - pi + pi * (DETECTION_PROB * per_sensor[:, sensor] + 1.0 -
                                                              DETECTION_PROB))


def find_rounds(emit_s, sensor, sigma_s, rate, hears, taken_t0_s=(),
                joint_hearing: bool = False) -> list[tuple[float, np.ndarray]]:
    """Rounds among implied discharge times at one place, best first, by the Bayes-factor test of the module doc.

    ``emit_s``, ``sensor``, ``sigma_s`` and ``rate`` (clutter) are per pulse, ``sensor`` an
    index into ``hears`` (per sensor of the stretch, the probability it hears the burst); rounds are
    kept at least MIN_ROUND_GAP_S from each other and from ``taken_t0_s``. Returns
    (t0_s, member rows, log Bayes factor) per round; each pulse joins at most one round.

    With ``joint_hearing``, whether a sensor hears the burst is one unknown for all its rounds: after each round taken,
    ``hears`` becomes its posterior given that round (so a sensor silent in the first round is
    not charged a full miss again in every later one), and a round's Bayes factor is its increment
    to the burst's. The first rounds of a burst few of many sensors hear may so come out below one
    while the burst as a whole is well above: rounds are taken while the burst's total is not yet
    positive (while each adds more than the one before), then until a round adds nothing, and the
    best-scoring prefix is kept.
    """
    duration_s = float(np.ptp(emit_s)) if len(emit_s) else 0.0
    hears = np.asarray(hears, dtype=float).copy()
    free = np.ones(len(emit_s), dtype=bool)
    taken = list(taken_t0_s)
    rounds = []
    total = 0.0
    best_total, best_n = 0.0, 0
    for _ in range(MAX_ROUNDS):
        cand = np.flatnonzero(free)
        if len(cand) < MIN_ROUND_SENSORS:
            break
        t0s = emit_s[cand]
        if taken:
            t0s = t0s[np.min(np.abs(t0s[:, None] - np.asarray(taken)[None, :]), axis=1) >= MIN_ROUND_GAP_S]
        if len(t0s) == 0:
            break
        llr, ratio, per_sensor = _round_scores(emit_s[cand], sensor[cand], sigma_s[cand], rate[cand], t0s, hears)
        member = _member_mask(ratio, per_sensor, sensor[cand], hears)
        enough = member.sum(axis=1) >= MIN_ROUND_SENSORS
        if not enough.any():
            break
        best = int(np.argmax(np.where(enough, llr, -np.inf)))
        members = cand[member[best]]
        # t0 from the members (Gaussian core: their weighted mean), then the Occam factor of t0.
        w = 1.0 / sigma_s[members] ** 2
        t0 = float(np.sum(w * emit_s[members]) / np.sum(w))
        llr_t0, _, per_sensor_t0 = _round_scores(emit_s[cand], sensor[cand], sigma_s[cand], rate[cand],
                                                 np.array([t0]), hears)
        sigma_t0 = 1.0 / math.sqrt(float(np.sum(w)))
        occam = math.log(max(duration_s, MIN_ROUND_GAP_S) / (math.sqrt(2.0 * math.pi) * sigma_t0))
        at_t0 = max(float(llr_t0[0]), float(llr[best]))
        evidence = at_t0 - occam
        # The best remaining round is not worth its parameter: none further is, once the burst is
        # worth its own (or its rounds' increments no longer grow as the hearing charge is paid off).
        if evidence <= 0.0 and (total > 0.0 or not joint_hearing or (rounds and evidence <= rounds[-1][2])):
            break
        rounds.append((t0, members, evidence))
        taken.append(t0)
        free[members] = False
        total += evidence
        if total > best_total:
            best_total, best_n = total, len(rounds)
        if not joint_hearing:
            continue
        # The sensors' hearing, given this round at the better of its two t0s (both scored above with
        # these hears, so not scored again): h' = h term / (1 - h + h term) (Bayes' rule).
        at = per_sensor_t0[0] if float(llr_t0[0]) >= float(llr[best]) else per_sensor[best]
        term = DETECTION_PROB * at + 1.0 - DETECTION_PROB
        hears = hears * term / (1.0 - hears + hears * term)
    return rounds[:best_n]


def _timing_sigma(picks: Picks, rows, scatter_s) -> np.ndarray:
    """Per pulse the Gaussian core's sigma: its own, the model floor and the place's fit scatter (one for
    all the pulses, or per pulse)."""
    return np.sqrt(picks.sigma_s[rows] ** 2 + MODEL_SIGMA_S ** 2 + scatter_s ** 2)


def _duration(picks: Picks, rows) -> float:
    return float(np.ptp(picks.t_s[rows])) if len(rows) else 0.0


def complete_bursts(picks: Picks, rows: np.ndarray, shots: list[Shot], geometry: Geometry, need: int,
                    levels: tuple[np.ndarray, np.ndarray] | None = None) -> list[Shot]:
    """Rounds of the shots' bursts that association missed: searched at each shot's place.

    ``rows`` are the stretch's pulses (rows of ``picks``) a round may take; pulses already in
    ``shots`` are not. A round that fewer than ``need`` sensors hear (too few to fix a place of
    its own) joins its anchor's place: its ``place`` is set to the anchor's (and the anchor's
    too), so the final fit shares their position; a round that ``need`` or more sensors hear is
    fitted on its own, as association's shots are (the pops of a firecracker string, a shooter
    on the move, are not quite one place). A set of arrivals at the place that is the echo of
    an earlier round there (:func:`fusion.locator.echosets.is_echo_set`, from ``levels``: per
    row of ``picks`` the received level in dB and whether it is clipped) is no round: its pulses
    are explained and left out. Each pulse's clutter rate follows the sounds before it at its sensor,
    the shots' arrivals among them (:func:`fusion.locator.clutter.following_rates`): a set of echoes tens
    of ms after a round is charged the echoes that crowd there (seed 602 scene 28 of
    tests/pittsburgh_like.py, audio-like: 4 echoes 70 ms after a round, fitting its place to 6 m, came
    out as a second round). Returns the new rounds.
    """
    used = np.zeros(len(picks), dtype=bool)
    for s in shots:
        used[s.pulses] = True
    new: list[Shot] = []
    labels, sensor_of_row = np.unique(picks.sensor[rows], return_inverse=True)
    sensor_at = np.zeros(len(picks), dtype=int)
    sensor_at[rows] = sensor_of_row
    rate_at = np.zeros(len(picks))
    rate_at[rows] = following_rates(sensor_of_row, picks.t_s[rows], _duration(picks, rows), used[rows])
    taken = [s.t0_s for s in shots]
    # Strongest anchors first: their places are the best known.
    for anchor in sorted(shots, key=lambda s: -len(s.pulses)):
        pool = rows[~used[rows]]
        if len(np.unique(picks.sensor[pool])) < MIN_ROUND_SENSORS:
            break
        # A sensor that heard a shot of this place hears the burst; one that heard none of its n
        # shots does with the posterior h (1 - P_D)^n / (h (1 - P_D)^n + 1 - h), whether it hears
        # being marginalised once per burst (see _hearing), not charged a miss per round.
        hears = _anchor_hearing(picks, labels, [s for s in shots if np.hypot(*(s.position[:2] - anchor.position[:2]))
                                                <= DISTINCT_PLACES_M])
        found, position, emit = _rounds_at(picks, pool, anchor, geometry, (sensor_at[pool], rate_at[pool], hears), taken)
        if not found:
            continue
        here = [s for s in shots if np.hypot(*(s.position[:2] - position[:2])) <= DISTINCT_PLACES_M]
        heard = [level_set(picks, s.pulses, s.t0_s, levels) for s in here]
        for t0, members, _ in sorted(found, key=lambda f: f[0]):
            chosen = pool[members]
            candidate = level_set(picks, chosen, t0, levels)
            used[chosen] = True
            if is_echo_set(candidate, heard, DETECTION_PROB):
                continue
            heard.append(candidate)
            place = None
            if len(np.unique(picks.sensor[chosen])) < need:
                place = anchor.place if anchor.place is not None else id(anchor)
                anchor.place = place
            new.append(Shot(chosen, position.copy(), t0, anchor.c, emit[members] - t0, place))
            used[chosen] = True
            taken.append(t0)
    return new


def _anchor_hearing(picks: Picks, labels: np.ndarray, here: list[Shot]) -> np.ndarray:
    """Per sensor of ``labels`` the probability it hears the burst of the shots ``here`` (one place)."""
    missed = (1.0 - DETECTION_PROB) ** len(here)
    hears = np.full(len(labels), HEAR_PRIOR * missed / (HEAR_PRIOR * missed + 1.0 - HEAR_PRIOR))
    heard = np.unique(np.concatenate([picks.sensor[s.pulses] for s in here])) if here else np.zeros(0, dtype=int)
    hears[np.isin(labels, heard)] = 1.0
    return hears


def _scatter(residuals_s: np.ndarray) -> float:
    """Robust sigma of residuals (MAD, Rousseeuw & Croux 1993)."""
    r = np.asarray(residuals_s)
    return MAD_TO_SIGMA * float(np.median(np.abs(r - np.median(r)))) if len(r) else 0.0


def _station_terms(picks: Picks, rows: np.ndarray, residuals_s: np.ndarray) -> np.ndarray:
    """Per sensor (indexed as ``picks.sensor``) the anchor's residual there: the path's own delay.

    Rounds from one place travel the same paths, so what delays one round's arrival at a sensor
    (a diffraction round a building, the sensor's survey error, a clock offset) delays every
    round's alike: a source-specific station term (Richards-Dinger & Shearer, JGR 105, 2000;
    station corrections in REAL, Zhang et al. 2019). Zero at sensors the anchor did not hear.
    """
    terms = np.zeros(int(picks.sensor.max()) + 1 if len(picks) else 0)
    terms[picks.sensor[rows]] = residuals_s
    return terms


def _rounds_at(picks: Picks, pool: np.ndarray, anchor: Shot, geometry: Geometry, clutter, taken):
    """Rounds among ``pool`` fired from the anchor's place, the place refined jointly with them.

    ``clutter`` is (sensor index, clutter rate per pool row; per sensor, how likely it hears the burst). Rounds by
    :func:`find_rounds` at the place, each pulse's implied discharge time less its sensor's
    station term (:func:`_station_terms`, from the anchor's residuals; at a sensor with a term only the
    picks' own timing error remains, not the place's fit scatter); the anchor and those
    rounds fitted with one shared position (robust least squares), the rounds found again at
    the fitted place; REFINE_ROUNDS times. Returns (rounds, the place, the pool's implied
    discharge times there, without station terms).
    """
    sensor, rate, hears = clutter
    position = np.asarray(anchor.position, dtype=float)
    scatter = _scatter(anchor.residuals_s)
    terms = _station_terms(picks, anchor.pulses, anchor.residuals_s)
    anchor_group = (picks.pos_m[anchor.pulses], picks.t_s[anchor.pulses], picks.sigma_s[anchor.pulses])
    found: list = []
    # Where the anchor's term is taken off, the path's error cancels (a double difference, Waldhauser &
    # Ellsworth, BSSA 90, 2000): only the two picks' own errors remain, not the place's fit scatter.
    termed = np.isin(picks.sensor[pool], picks.sensor[anchor.pulses])
    for _ in range(REFINE_ROUNDS):
        emit = implied_discharge_s(picks, pool, position, anchor.c, geometry) - terms[picks.sensor[pool]]
        found = find_rounds(emit, sensor, _timing_sigma(picks, pool, np.where(termed, 0.0, scatter)), rate, hears, taken)
        if not found:
            break
        groups = [anchor_group] + [(picks.pos_m[pool[m]], picks.t_s[pool[m]], picks.sigma_s[pool[m]])
                                   for _, m, _ in found]
        starts = [(position, anchor.t0_s)] + [(position, t0) for t0, _, _ in found]
        fit = fit_shots(groups, anchor.c, geometry, starts, loss="soft_l1", scale_s=ROBUST_SCALE_S,
                        places=[0] * len(groups))
        position = fit.positions[0]
        scatter = _scatter(np.concatenate(fit.residuals_s))
        terms = _station_terms(picks, anchor.pulses, fit.residuals_s[0])
    emit = implied_discharge_s(picks, pool, position, anchor.c, geometry)
    return found, position, emit


def burst_at(picks: Picks, rows: np.ndarray, position, c: float, geometry: Geometry, area_m2: float,
             hearing=(1.0, False), min_rounds: int = 2):
    """The rounds of a burst fired from near ``position`` among ``rows``, refined jointly.

    Rounds by :func:`find_rounds`, then the place and every round's t0 fitted together (robust
    least squares with one shared position), rounds re-found at the fitted place; repeated
    REFINE_ROUNDS times, then on until the place settles (PLACE_SETTLED_M; at most MAX_REFINE_ROUNDS).
    Returns (rounds, log Bayes factor of the burst against clutter): the rounds' own, less the Occam
    factor of a place searched for over ``area_m2`` (Laplace: its prior area over its posterior's,
    ``2 pi sqrt(det cov)``), of the best-scoring configuration visited from the REFINE_ROUNDS-th step
    on (the Laplace approximation belongs at the posterior mode; alternating re-assignment and fit need
    not raise the score every step, as EM does its likelihood, so the best visited is the nearest to
    it: a Pittsburgh-like 2-round burst 6 of 18 reporting sensors heard scored below zero two steps
    from a vote 10 m off, +1.6 a step later, 0.6 m from the truth). No rounds when fewer than ``min_rounds`` are
    found (one round of three sensors has no degree of freedom to check it; one round is scored only to
    weigh association's shots, :func:`fusion.locator.fewburst.burst_or_found`). ``hearing``: how likely
    each sensor of the stretch is taken to hear the burst at all (one for all, or per sensor in
    np.unique order), and whether that is one unknown per burst (see :func:`find_rounds`).
    The burst so found is fitted again with a path term per sensor (:func:`_burst_with_path_terms`), a delay
    every round takes alike, and the likelier of the two is returned: charged per round, as here, a sensor's
    static delay (its height in a 2D fit, its survey error) is paid once for every round.
    """
    hear_prior, joint_hearing = hearing
    labels, sensor = np.unique(picks.sensor[rows], return_inverse=True)
    rate = clutter_rates(sensor, _duration(picks, rows))
    position = np.asarray(position, dtype=float)[:geometry.dims]
    shots: list[Shot] = []
    scatter = 0.0
    hears = np.array(np.broadcast_to(np.asarray(hear_prior, dtype=float), len(labels)))
    best: tuple[list[Shot], float] | None = None
    for step in range(1, MAX_REFINE_ROUNDS + 1):
        before = position
        emit = implied_discharge_s(picks, rows, position, c, geometry)
        sigma = _timing_sigma(picks, rows, scatter)
        found = find_rounds(emit, sensor, sigma, rate, hears, joint_hearing=joint_hearing)
        if len(found) < min_rounds:
            break
        fit = _fit_place(picks, rows, found, sigma, (position, c, geometry))
        position = fit.positions[0]
        shots = [Shot(rows[m], position.copy(), float(t0), c, r, -1)
                 for (_, m, _), t0, r in zip(found, fit.t0_s, fit.residuals_s)]
        pooled = np.concatenate(fit.residuals_s)
        scatter = MAD_TO_SIGMA * float(np.median(np.abs(pooled - np.median(pooled))))
        hears, llr = _hearing(emit, (sensor, sigma, rate), found, len(labels), np.asarray(hear_prior, dtype=float))
        evidence = llr - sum(_t0_occam(emit, sigma[m]) for _, m, _ in found) - _place_occam(fit, area_m2)
        if step < REFINE_ROUNDS:
            continue
        if best is None or evidence > best[1]:
            best = (shots, evidence)
        if np.hypot(*(position[:2] - before[:2])) <= PLACE_SETTLED_M:
            break
    if best is not None and best[0]:
        termed = _burst_with_path_terms(picks, rows, (c, geometry, area_m2), (sensor, len(labels), rate), hearing,
                                        min_rounds, best[0])
        if termed[0] and termed[1] > best[1]:
            best = termed
    return best if best is not None else ([], 0.0)


def _burst_with_path_terms(picks: Picks, rows: np.ndarray, model, stretch, hearing,  # noqa: PLR0913
                           min_rounds: int, start: list[Shot]) -> tuple[list[Shot], float]:
    """:func:`burst_at` with a path term per sensor (:mod:`fusion.locator.pathterms`), from the rounds ``start``.

    Each sensor's term is taken from its residuals in the rounds, its arrivals' implied discharge times less it;
    a sensor with a term is held to its picks' own sigma, one without (no round's arrival there yet) to that and
    the term's prior (PATH_TERM_SD_S) together. The rounds are found again, the place refitted (every arrival at
    the broad sigma: with the terms unknown, the place rests on the sensors' mean arrivals, each as uncertain as
    its term), and so on until the place settles. The burst's log Bayes factor adds the terms' factor
    (:func:`fusion.locator.pathterms.path_terms`) and takes the place's posterior area at the broad sigma.
    ``model`` is (c, geometry, area_m2) and ``stretch`` (per row its sensor index, the sensors' count, per row the
    clutter rate), as :func:`burst_at` has them. Returns (rounds, log Bayes factor) of the best configuration
    visited, or no rounds.
    """
    c, geometry, area_m2 = model
    sensor, n_sensors, rate = stretch
    hear_prior, joint_hearing = hearing
    hears = np.array(np.broadcast_to(np.asarray(hear_prior, dtype=float), n_sensors))
    own = _timing_sigma(picks, rows, 0.0)
    broad = np.sqrt(own ** 2 + PATH_TERM_SD_S ** 2)
    index = np.full(len(picks), -1)
    index[rows] = np.arange(len(rows))
    position = np.asarray(start[0].position, dtype=float)
    members, residuals = [index[s.pulses] for s in start], [np.asarray(s.residuals_s) for s in start]

    def at_terms(place):  # implied discharge times less each sensor's term, sigmas, the terms' log factor
        m = np.concatenate(members)
        terms, termed, log_factor = path_terms(sensor[m], np.concatenate(residuals), own[m], n_sensors, PATH_TERM_SD_S)
        emit = implied_discharge_s(picks, rows, place, c, geometry) - terms[sensor]
        return emit, np.where(termed[sensor], own, broad), log_factor

    best: tuple[list[Shot], float] = ([], -math.inf)
    emit, sigma, _ = at_terms(position)
    for _ in range(MAX_REFINE_ROUNDS):
        found = find_rounds(emit, sensor, sigma, rate, hears, joint_hearing=joint_hearing)
        if len(found) < min_rounds:
            break
        fit = _fit_place(picks, rows, found, broad, (position, c, geometry))
        before, position = position, fit.positions[0]
        members, residuals = [m for _, m, _ in found], list(fit.residuals_s)
        emit, sigma, log_factor = at_terms(position)
        # Each round's t0 at the fitted place with the terms taken off (the fit's own t0s carry their mean).
        found = [(float(np.sum(emit[m] / sigma[m] ** 2) / np.sum(1.0 / sigma[m] ** 2)), m, e) for _, m, e in found]
        _, llr = _hearing(emit, (sensor, sigma, rate), found, n_sensors, np.asarray(hear_prior, dtype=float))
        evidence = llr + log_factor - sum(_t0_occam(emit, sigma[m]) for _, m, _ in found) - \
            _place_occam(fit, area_m2)
        if evidence > best[1]:
            best = ([Shot(rows[m], position.copy(), float(t0), c, r, -1)
                     for (_, m, _), t0, r in zip(found, fit.t0_s, fit.residuals_s)], evidence)
        if np.hypot(*(position[:2] - before[:2])) <= PLACE_SETTLED_M:
            break
    return best


def _fit_place(picks: Picks, rows: np.ndarray, found, sigma_s: np.ndarray, start):
    """The rounds ``found`` (t0, member rows of ``rows``, score) fitted with one shared position (robust least squares,
    each arrival at its ``sigma_s``), from ``start``: (position, c, geometry)."""
    position, c, geometry = start
    groups = [(picks.pos_m[rows[m]], picks.t_s[rows[m]], sigma_s[m]) for _, m, _ in found]
    return fit_shots(groups, c, geometry, [(position, t0) for t0, _, _ in found], loss="soft_l1",
                     scale_s=ROBUST_SCALE_S, places=[0] * len(found))


def _place_occam(fit, area_m2: float) -> float:
    """Occam factor (log) of a place searched for over ``area_m2``: its prior area over its posterior's,
    ``2 pi sqrt(det cov)`` at the fit's stated sigmas (the fit's covariance less its variance factor).
    Three sensors' rounds fit their shared place exactly (the same two time differences each round): the
    factor is then ~1e-25, not zero, and dividing by it still recovers (J'J)^-1; a floor on it shrank the
    area by its square and charged such a burst ~30 nats of Occam factor."""
    vf = fit.variance_factor
    det = float(np.linalg.det(np.asarray(fit.cov[0])[:2, :2] / vf)) if vf > 0 else math.nan
    posterior_m2 = 2.0 * math.pi * math.sqrt(det) if det > 0 and math.isfinite(det) else area_m2
    return math.log(max(area_m2 / posterior_m2, 1.0))


def _t0_occam(emit_s: np.ndarray, member_sigma_s: np.ndarray) -> float:
    """Occam factor (log) of one round's t0, uniform over the stretch: its prior width over its posterior's."""
    sigma_t0 = 1.0 / math.sqrt(float(np.sum(1.0 / member_sigma_s ** 2)))
    duration_s = float(np.ptp(emit_s)) if len(emit_s) else 0.0
    return math.log(max(duration_s, MIN_ROUND_GAP_S) / (math.sqrt(2.0 * math.pi) * sigma_t0))


def _hearing(emit_s, pulses, found, n_sensors: int, hear_prior) -> tuple[np.ndarray, float]:
    """Per sensor the posterior that it hears the burst, and the burst's log-likelihood ratio against clutter.

    Whether a sensor hears a burst belongs to the (place, sensor), not to each round: it is
    marginalised once per burst, ``(1 - h) + h prod_k (P_D sum_i f_ik / lambda + 1 - P_D)`` per
    sensor, so a sensor out of range is charged its prior once instead of a miss per round.
    ``pulses`` is (sensor index, sigma, clutter rate) per pulse.
    """
    sensor, sigma_s, rate = pulses
    t0s = np.array([t0 for t0, _, _ in found])
    per_sensor = _round_scores(emit_s, sensor, sigma_s, rate, t0s, np.ones(n_sensors))[2]
    log_heard = np.log(DETECTION_PROB * per_sensor + 1.0 - DETECTION_PROB).sum(axis=0)
    if np.all(hear_prior >= 1.0):
        return np.ones(n_sensors), float(log_heard.sum())
    log_h = np.log(hear_prior)
    log_marginal = np.logaddexp(np.log1p(-hear_prior), log_h + log_heard)
    return np.exp(log_h + log_heard - log_marginal), float(log_marginal.sum())


def places_of(shots: list[Shot]) -> list[int]:
    """Per shot the place index for :func:`fusion.locator.multilaterate.fit_shots` (own place when untied)."""
    labels: dict = {}
    out = []
    for i, s in enumerate(shots):
        key = ("tied", s.place) if s.place is not None else ("own", i)
        out.append(labels.setdefault(key, len(labels)))
    return out


def place_dof(shots: list[Shot], places: list[int], dims: int) -> list[int]:
    """Per shot the residual degrees of freedom of its place: arrivals less (position + one t0 per round)."""
    n_obs = np.bincount(places, weights=[len(s.pulses) for s in shots])
    n_rounds = np.bincount(places)
    return [int(n_obs[p] - dims - n_rounds[p]) for p in places]


def located(shots: list[Shot], places: list[int], picks: Picks, need: int, dims: int) -> list[int]:
    """Indices of the shots a position can rest on: ``need`` sensors of their own, a shared place
    with at least one residual degree of freedom whose rounds each have MIN_ROUND_SENSORS, or an
    exact fix (:func:`fusion.locator.exactfix.single_exact_shot`) of d + 1 sensors."""
    dof = place_dof(shots, places, dims)
    counts = np.bincount(places)
    return [i for i, s in enumerate(shots) if picks.n_sensors(s.pulses) >= need or
            (counts[places[i]] > 1 and dof[i] >= 1 and picks.n_sensors(s.pulses) >= min(MIN_ROUND_SENSORS, need)) or
            (s.place == EXACT_FIX and picks.n_sensors(s.pulses) >= dims + 1)]
