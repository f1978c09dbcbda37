"""Bursts no shot anchors: a few sensors' rounds placed jointly, and weighed against association's shots.

Association (:mod:`fusion.locator.associate`) needs one shot that d + 2 sensors agree on; a burst
that fewer sensors heard (three sensors, several rounds) is fixed here from its rounds together
(:func:`few_sensor_burst`), scored by the burst model of :mod:`fusion.locator.burst` with each
sensor's hearing unknown. Where association found shots at one place only, the stretch may
instead hold such a burst, those shots being sets of unrelated pulses (or of a burst's rounds mixed)
that passed the chance test by chance: the two explanations are weighed by their Bayes factors
(:func:`burst_or_found`).
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from fusion.locator.associate import MIN_MARGIN_M, MIN_PULSES_FOR_SCATTER, Shot
from fusion.locator.burst import DETECTION_PROB, DISTINCT_PLACES_M, HEAR_PRIOR, MIN_ROUND_GAP_S, MIN_ROUND_SENSORS, burst_at
from fusion.locator.echorepeats import echo_burst, trails
from fusion.locator.multilaterate import Geometry
from fusion.locator.picks import Picks
from fusion.locator.shooters import split_by_place
from fusion.locator.triplevote import triple_points, voted_places

log = logging.getLogger(__name__)

# Where no round says which sensors hear a burst (few_sensor_burst, hearing one unknown per burst), a
# sensor hears it when it is within the burst's hearing radius R, blurred by log-normal shadowing
# (Rappaport, "Wireless Communications", 2002, §4.9; the same law for sound: spherical spreading plus
# a Gaussian excess loss in dB; TN098 Fig. 2: level scatters widely about range): P(hears) =
# HEAR_MAX Phi((ln R - ln r) / HEAR_SHADOWING_SIGMA). The sigma is 6 dB of shadowing in ln(range)
# (level falls 20 log10 r: 6 dB is 0.69 in ln r); R, set by the blast's loudness and the sensors'
# thresholds, is unknown: equally likely a priori on a grid of doublings (the shadowing's own width).
HEAR_SHADOWING_SIGMA = 6.0 * math.log(10.0) / 20.0
HEAR_RADII_M = (125.0, 250.0, 500.0, 1000.0, 2000.0)
# Highest prior that a sensor hears a burst where range sets it (a near sensor may be shadowed).
HEAR_MAX = 0.95
# Largest stretch (pulses) searched again with hearing one unknown per burst: its cost grows with
# the square of the stretch; a few sensors' rounds among others' unrelated reports are tens of
# pulses (the Pittsburgh-like scenes that need it 50-105), a fireworks night's stretches more.
JOINT_HEARING_MAX_PULSES = 120
# A burst is ambiguous where another place explains it within this log Bayes factor (3 nats:
# 2 log B = 6, the edge of "strong" evidence in Kass & Raftery 1995's scale): three sensors in 2D
# leave two mirror places for every round alike; no position is given then.
AMBIGUITY_NATS = 3.0

# A rival place (_rival) lies within the area searched widened by this much again. The burst's place prior is
# spread over the area searched (associate.search_bounds: the sensors' box and a margin of at least this), whose
# edge is no wall: a rival just past it can still be the gun's place (thinned FP1 case 17 of
# tests/pittsburgh_harder.py: a 3-sensor burst's rival 53 m past it; dismissed, the burst came out 136 m off).
# A mirror root kilometres off (2.7 km off four sensors that all heard it, in the audio-like scene of
# burst_or_found) is not.
RIVAL_MARGIN_M = MIN_MARGIN_M

# Sensors whose heights tell the ground's height near a place (Ground).
GROUND_SENSORS = 3


@dataclass(frozen=True, eq=False)
class Ground:
    """The fit's geometry per place: 2.5D with the source on the ground near it.

    In hilly terrain (each Pittsburgh array's sensors lie over 90-135 m of height) a 2D fit, which
    sets the source at each sensor's own height, misplaces a sensor 60 m above the shooter and 300 m
    off by 6 m (17 ms), where a burst's rounds agree to a few ms: such a sensor is left out, and the
    three left keep a mirror place. The shooter stands on the ground, which near a place is about as
    high as the sensors nearest it (they stand on its buildings): the median height of the
    GROUND_SENSORS nearest is taken. (tests/pittsburgh_like.py places its shooters so too.)
    """

    sensors_m: np.ndarray  # (m, 3): every sensor of the array
    dims = 2  # solved coordinates: x, y

    def at(self, place) -> Geometry:
        """The geometry of a source at ``place`` (x, y)."""
        range_m = np.hypot(*(self.sensors_m[:, :2] - np.asarray(place, dtype=float)[:2]).T)
        nearest = np.argsort(range_m)[:GROUND_SENSORS]
        return Geometry("2.5d", float(np.median(self.sensors_m[nearest, 2])))


def _geometry_at(geometry, place) -> Geometry:
    """``geometry`` itself, or a :class:`Ground`'s geometry at ``place``."""
    return geometry.at(place) if isinstance(geometry, Ground) else geometry


def few_sensor_burst(picks: Picks, rows: np.ndarray, c: float, bounds, geometry: Geometry,  # noqa: PLR0913
                     array_m: np.ndarray | None = None, loud: np.ndarray | None = None) -> list[Shot]:
    """A burst no single shot seeded (three sensors, say): places voted by sensor triples, the likeliest burst kept.

    Association proper (:func:`fusion.locator.associate.find_shots`) needs a shot that d + 2
    sensors agree on; three sensors that heard several rounds still fix the shooter jointly
    (three rounds: 9 arrivals, 5 unknowns). Every round of one place has the same arrival-time
    differences, so three sensors in 2D keep a single round's geometry, mirror solution included
    (Schau & Robinson 1987): of places the data explain about equally, the one nearer the sensors
    is taken, by a prior of detection falling with range (spherical spreading: the level drops
    6 dB per doubling of distance, so P(heard) ~ 1/r per sensor). ``array_m``: every sensor of the
    array (indexed as ``picks.sensor``; x, y and z), so that those that reported nothing in the stretch count
    against a place near them (:func:`_silent_llr`), and a burst two places explain alike in 2D is searched
    again on the ground (:func:`_on_the_ground`). ``loud``: the rows of ``rows`` association searched
    (those not far below their sensor's loudest: fusion.locator.locate._loud_enough), searched first: each
    sensor's weak echoes and noise left out, a sensor's clutter rate is its own few loud pulses', so a burst
    three sensors heard stands out of it (seed 2018 scene 8 of tests/pittsburgh_like.py: -1.4 nats among all
    31 pulses); all ``rows`` where they hold none (a real burst's later rounds can come weaker: the Pittsburgh
    tests thinned to 3-8 sensors, tests/test_locate_burst.py, lose rounds without). Returns the burst's
    rounds (sharing one place), or none.
    """
    for searched in ([] if loud is None else [loud]) + [rows]:
        silent = _silent(picks, searched, array_m)
        shots, _, rival = _ranked_few_sensor_burst(picks, searched, c, bounds, geometry, silent)
        if shots and rival is not None:
            shots, rival = _on_the_ground(picks, searched, c, bounds, (geometry, shots, rival), array_m, silent)
        if shots and rival is None:
            return shots
        if shots:
            _say_two_places(picks, shots, rival)
    return []


def _say_two_places(picks: Picks, shots: list[Shot], rival) -> None:
    """The one-line reason a burst is not located: two places explain it alike."""
    log.warning("a burst of %d rounds heard by %d sensors fits two places equally, (%.0f, %.0f) and (%.0f, %.0f) m: "
                "not located (a sensor more, or --mode 2.5d with sensors at other heights, would tell them apart)",
                len(shots), picks.n_sensors(np.concatenate([s.pulses for s in shots])), *shots[0].position[:2],
                *np.asarray(rival)[:2])


def _on_the_ground(picks: Picks, rows: np.ndarray, c: float, bounds, found, array_m: np.ndarray | None,  # noqa: PLR0913
                   silent_xy: np.ndarray):
    """A burst two places explain alike in 2D (``found``: geometry, rounds, the rival place), searched
    again with the source on the ground (:class:`Ground`): (rounds, rival or None).

    A sensor far above or below the shooter that 2D left out can tell the mirror place from the true
    one (three sensors in 2D cannot). Only the two places 2D found are taken: the ground's height is a
    prior (the Pittsburgh FP1's nearest sensor stands 17 m below the firing point), good enough to tell
    two candidates apart, not to find a third.
    """
    geometry, shots, rival = found
    if geometry.mode != "2d" or array_m is None:
        return shots, rival
    there, _, there_rival = _ranked_few_sensor_burst(picks, rows, c, bounds, Ground(np.asarray(array_m, dtype=float)),
                                                     silent_xy)
    if there and there_rival is None and any(np.hypot(*(there[0].position[:2] - np.asarray(p)[:2])) <= DISTINCT_PLACES_M
                                             for p in (shots[0].position, rival)):
        return there, None
    return shots, rival


def _silent(picks: Picks, rows: np.ndarray, array_m: np.ndarray | None) -> np.ndarray:
    """Positions (x, y) of the array's sensors with no pulse among ``rows`` (none if the array is not given)."""
    if array_m is None:
        return np.zeros((0, 2))
    quiet = np.ones(len(array_m), dtype=bool)
    quiet[np.unique(picks.sensor[rows])] = False
    return np.asarray(array_m, dtype=float)[quiet, :2]


def _ranked_few_sensor_burst(picks: Picks, rows: np.ndarray, c: float, bounds, geometry: Geometry,
                             silent_xy: np.ndarray | None = None):
    """The likeliest few-sensor burst, its log Bayes factor where scored with hearing one unknown per burst
    (as :func:`burst_or_found` weighs it, else None), and the other place that explains it about as well
    (:func:`_rival`), or None: (rounds, score or None, rival or None)."""
    if len(np.unique(picks.sensor[rows])) < MIN_ROUND_SENSORS:
        return [], None, None
    area_m2 = _area_m2(bounds)
    # Rounds scored with each sensor's hearing charged per round first (conservative: a burst
    # that passes so passes easily), then with hearing one unknown per burst (see find_rounds: a
    # burst few of many sensors hear, each round below one on its own); where both find a burst, the one
    # likelier with hearing set by range is kept (_rather: a place 700 m off the sensors, seed 31 scene 108 of
    # tests/pittsburgh_like.py, passed with hearing per round where the true place found no rounds so). The
    # places are voted once and scored under either model.
    places = voted_places(picks, rows, c, bounds, MIN_ROUND_GAP_S)
    joint = False
    best = _likeliest_burst(picks, rows, c, (places, area_m2), geometry, joint)
    if len(rows) <= JOINT_HEARING_MAX_PULSES:
        other = _likeliest_burst(picks, rows, c, (places, area_m2), geometry, True)
        if other[0] and (not best[0] or _rather(picks, rows, c, geometry, area_m2, best[0], other)):
            best, joint = other, True
    rival = _rival(picks, rows, c, geometry, best, bounds, joint, silent_xy)
    if rival is not None and not joint and _has_silent(silent_xy):
        # A second opinion that can tell the two places apart, not find a rival the first did not (see _rival).
        rival = _rival(picks, rows, c, geometry, best, bounds, True, silent_xy)
    # A mirror place that explains the burst clearly better (by more than AMBIGUITY_NATS) is its place, not a
    # rival: refined from a vote a few metres off, a burst can settle on three sensors' exact fit and leave a
    # fourth out (seed 606 scene 80 of tests/pittsburgh_like.py: 2 rounds of 4 sensors, 59 m off with 3,
    # +0.4 nats, where the mirror root of those 3 lies 2 m from the truth and holds all 4, +5.8 nats).
    # Better both with and without the silent sensors: a burst refined again from its own fitted place need not
    # score as it did from its vote, which the silent-sensor score (_rival's) does (seed 601 scene 68: the true
    # place 40.7 nats from its vote, 24.3 refined again; by that score alone a place 95 m off, +34, took it).
    if joint and rival is not None and rival[1] > rival[2] + AMBIGUITY_NATS:
        there = _unanchored_burst(picks, rows, _start(picks, rows, rival[0], geometry), c, geometry, area_m2, True)
        if there[0] and there[1] > best[1] + AMBIGUITY_NATS:
            best = there
            rival = _rival(picks, rows, c, geometry, best, bounds, joint, silent_xy)
    return best[0], best[1] if joint else None, None if rival is None else rival[0]


def place_by_hearing(picks: Picks, rows: np.ndarray, array_m: np.ndarray | None, places_xy) -> int | None:
    """Of a shot's exact ``places_xy`` (a fix and its mirror root), the index of the one likelier by more than
    AMBIGUITY_NATS by who heard it: the sensors of ``rows`` heard it once, those of ``array_m`` with no pulse among
    ``rows`` did not, each with the prior of :func:`_range_hearing` (its range and the shot's hearing radius, integrated
    over HEAR_RADII_M). None where neither is so much likelier (or no sensor stayed silent to tell them apart)."""
    silent_xy = _silent(picks, rows, array_m)
    if not _has_silent(silent_xy):
        return None

    def log_likelihood(place) -> float:
        terms = []
        for radius_m in HEAR_RADII_M:
            heard, silent = _range_hearing(picks, rows, place, radius_m), hearing_prior(silent_xy, place, radius_m)
            terms.append(float(np.sum(np.log(heard * DETECTION_PROB)) + np.sum(np.log1p(-silent * DETECTION_PROB))))
        return float(special.logsumexp(terms)) - math.log(len(HEAR_RADII_M))

    scores = [log_likelihood(np.asarray(p, dtype=float)[:2]) for p in places_xy]
    best = int(np.argmax(scores))
    return best if all(scores[best] - s > AMBIGUITY_NATS for k, s in enumerate(scores) if k != best) else None


def _has_silent(silent_xy: np.ndarray | None) -> bool:
    """Whether any sensor of the array reported nothing (``silent_xy``: :func:`_silent`)."""
    return silent_xy is not None and len(silent_xy) > 0


def _rather(picks: Picks, rows: np.ndarray, c: float, geometry: Geometry, area_m2: float,  # noqa: PLR0913
            found: list[Shot], other: tuple[list[Shot], float]) -> bool:
    """Whether the burst found with hearing one unknown per burst (``other``: rounds, log Bayes factor) is
    the likelier than ``found``, found with hearing per round: both scored with hearing one unknown per burst
    (each sensor's prior set by its range), the model that weighs them alike (Kass & Raftery 1995).
    Within DISTINCT_PLACES_M of each other too: the two are then one place, but need not be the same rounds
    at the same point (seed 612 scene 152 of tests/pittsburgh_like.py: with hearing per round, 3 rounds of the
    5 sensors 20 m off, the round two sensors missed left out; with hearing one unknown, all 4 rounds 4 m off)."""
    place = _start(picks, rows, found[0].position, geometry)
    return other[1] > _unanchored_burst(picks, rows, place, c, geometry, area_m2, True)[1]


def _likeliest_burst(picks: Picks, rows: np.ndarray, c: float, search, geometry: Geometry,
                     joint_hearing: bool) -> tuple[list[Shot], float]:
    """Of the voted places (``search``: those of :func:`voted_places` and the area searched, m^2), the
    burst with most rounds, then the best score (its Bayes factor less the range prior of
    :func:`few_sensor_burst`): (rounds, score)."""
    best: tuple[list[Shot], float] = ([], -math.inf)
    places, area_m2 = search
    for place in places:
        shots, score = _unanchored_burst(picks, rows, _start(picks, rows, place, geometry), c, geometry, area_m2, joint_hearing)
        if not shots or score <= 0.0:
            continue
        if not joint_hearing:  # with joint hearing, range is in each sensor's prior (_range_hearing)
            heard_from = np.unique(picks.sensor[np.concatenate([s.pulses for s in shots])], return_index=True)[1]
            rows_heard = np.concatenate([s.pulses for s in shots])[heard_from]
            range_m = np.hypot(*(picks.xy[rows_heard] - shots[0].position[:2]).T)
            score -= float(np.sum(np.log(np.maximum(range_m, 1.0))))
        if (len(shots), score) > (len(best[0]), best[1]):
            best = (shots, score)
    return best


def _unanchored_burst(picks: Picks, rows: np.ndarray, start, c: float, geometry: Geometry, area_m2: float,  # noqa: PLR0913
                      joint_hearing: bool, min_rounds: int = 2, silent_xy: np.ndarray | None = None
                      ) -> tuple[list[Shot], float]:
    """:func:`burst_at` where no anchor says which sensors hear the burst: (rounds, log Bayes factor).

    Every sensor of the stretch hears it (a few sensors that all reported it), or each as likely
    as not (a few among many); the likelier is kept. With hearing one unknown per burst
    (``joint_hearing``), each sensor's prior is set by its range and the burst's hearing radius,
    which is unknown: a uniform prior over HEAR_RADII_M, integrated out (the Bayes factors averaged;
    the rounds are the likeliest radius's). The radius ties the sensors' hearing together: near
    sensors silent and a far one hearing is unlikely at any radius. Sensors that reported nothing
    at all (``silent_xy``) count too (:func:`_silent_llr`).
    """
    geometry = _geometry_at(geometry, start)
    priors = [_range_hearing(picks, rows, start, r) for r in HEAR_RADII_M] if joint_hearing else (1.0, HEAR_PRIOR)
    found = [burst_at(picks, rows, start, c, geometry, area_m2, (prior, joint_hearing), min_rounds) for prior in priors]
    shots, score = max(found, key=lambda f: (len(f[0]) > 0, f[1]))
    if joint_hearing and shots:
        if silent_xy is not None and len(silent_xy):
            found = [(f[0], f[1] + _silent_llr(silent_xy, f[0], r)) if f[0] else f for f, r in zip(found, HEAR_RADII_M)]
        score = float(special.logsumexp([f[1] for f in found if f[0]])) - math.log(len(priors))
    return shots, score


def _silent_llr(silent_xy: np.ndarray, shots: list[Shot], radius_m: float) -> float:
    """Log-likelihood ratio, burst against clutter, of the sensors that reported no pulse at all.

    A sensor that hears the burst (prior as :func:`_range_hearing`) and reported nothing missed every
    round, (1 - P_D)^K; one that does not hear it reports nothing as under clutter alone: per sensor
    ``1 - h + h (1 - P_D)^K``, the missed-detection term of probabilistic data association (Bar-Shalom,
    Willett & Tian 2011, ch. 3) that the sensors of the stretch get in :func:`fusion.locator.burst._hearing`.
    A mirror place beside sensors that stayed silent is so told from the true one."""
    hears = hearing_prior(silent_xy, shots[0].position, radius_m)
    return float(np.sum(np.log1p(-hears * (1.0 - (1.0 - DETECTION_PROB) ** len(shots)))))


def _range_hearing(picks: Picks, rows: np.ndarray, place, radius_m: float) -> np.ndarray:
    """Per sensor of ``rows`` (in np.unique order) the prior that it hears a burst at ``place`` whose
    hearing radius is ``radius_m``: HEAR_MAX Phi((ln R - ln r) / HEAR_SHADOWING_SIGMA) (log-normal
    shadowing, see HEAR_SHADOWING_SIGMA): a silent sensor near the place counts against it, a far
    one hardly, so a mirror place nearer to sensors that heard nothing is the less likely."""
    _, first = np.unique(picks.sensor[rows], return_index=True)
    return hearing_prior(picks.xy[rows[first]], place, radius_m)


def hearing_prior(sensors_xy: np.ndarray, place, radius_m: float) -> np.ndarray:
    """Per sensor at ``sensors_xy`` the prior that it hears a shot at ``place`` (x, y first) whose hearing radius is
    ``radius_m``, as :func:`_range_hearing` states it."""
    range_m = np.maximum(np.hypot(*(np.asarray(sensors_xy, dtype=float)[:, :2] - np.asarray(place, dtype=float)[:2]).T), 1.0)
    return HEAR_MAX * special.ndtr((math.log(radius_m) - np.log(range_m)) / HEAR_SHADOWING_SIGMA)


def _rival(picks: Picks, rows, c: float, geometry: Geometry, best, bounds,  # noqa: PLR0913
           joint_hearing: bool = False, silent_xy: np.ndarray | None = None):
    """The other place that explains a burst about as well (within AMBIGUITY_NATS) or better, or None: (its
    position, its score, the chosen place's score weighed alike); of several, the likeliest.

    Candidates are the exact sources of each round's first three arrivals (:func:`triple_points`:
    the mirror root of a three-sensor geometry) more than DISTINCT_PLACES_M from the chosen place and
    within RIVAL_MARGIN_M of ``bounds`` (x0, y0, x1, y1: the area searched).
    With hearing one unknown per burst, both places are weighed with the sensors that reported nothing
    (``silent_xy``, :func:`_silent_llr`) too: the mirror of a place inside the array often lies beside
    sensors that stayed silent. (Only here: to tell two places apart, not to accept a burst.) Where there are
    such sensors, :func:`_ranked_few_sensor_burst` asks again so of a rival to a burst found with hearing
    per round: with each sensor's hearing charged per round, a place whose hearing sensors lie far apart and one
    the four sensors surround can score alike (seed 602 scene 1 of tests/pittsburgh_like.py in the audio-like
    regime: 5 rounds 5 m off, +22.7 nats with hearing one unknown (+11.6 with the silent sensors), against +5.8
    (-2.4) for a rival 750 m off, which stopped it). Only to clear a rival: asked first, the silent sensors found
    one the rounds' own model had told apart (held-out seed 101 scene 155: 3 rounds of 3 sensors 8 m off, their
    mirror 86 m off within AMBIGUITY_NATS with hearing one unknown, not with hearing per round).
    """
    shots, score = best
    if not shots:
        return None
    x0, y0, x1, y1 = bounds
    area_m2 = _area_m2(bounds)
    here = shots[0].position[:2]
    triples = [s.pulses[np.unique(picks.sensor[s.pulses], return_index=True)[1]][:3] for s in shots]
    triples = np.array([t for t in triples if len(t) == 3])
    if len(triples) == 0:
        return None
    points, _ = triple_points(picks.xy[triples], picks.t_s[triples], c)
    weigh_silent = joint_hearing and _has_silent(silent_xy) and \
        any(np.hypot(*(p - here)) > DISTINCT_PLACES_M for p in points)
    if weigh_silent:  # the chosen place weighed as its rivals are
        score = _unanchored_burst(picks, rows, _start(picks, rows, here, geometry), c, geometry, area_m2, joint_hearing,
                                  silent_xy=silent_xy)[1]
    found, tried = None, []
    for point in points:
        if not (x0 - RIVAL_MARGIN_M <= point[0] <= x1 + RIVAL_MARGIN_M and
                y0 - RIVAL_MARGIN_M <= point[1] <= y1 + RIVAL_MARGIN_M):
            continue
        if np.hypot(*(point - here)) <= DISTINCT_PLACES_M or \
                any(np.hypot(*(point - p)) <= DISTINCT_PLACES_M for p in tried):
            continue
        tried.append(point)
        start = _start(picks, rows, point, geometry)
        if joint_hearing:
            other, other_score = _unanchored_burst(picks, rows, start, c, geometry, area_m2, joint_hearing,
                                                   silent_xy=silent_xy)
        else:
            other, other_score = burst_at(picks, rows, start, c, _geometry_at(geometry, start), area_m2)
        if other and np.hypot(*(other[0].position[:2] - here)) > DISTINCT_PLACES_M and \
                other_score >= score - AMBIGUITY_NATS and (found is None or other_score > found[1]):
            found = (other[0].position, other_score, score)
    return found


def burst_or_found(picks: Picks, rows: np.ndarray, found: list[Shot], c: float, bounds, geometry: Geometry,  # noqa: PLR0913
                   array_m: np.ndarray | None = None) -> list[Shot]:
    """The likelier explanation of a stretch's pulses ``rows``: the shots association ``found``, at one place
    or several, or a burst few sensors heard elsewhere (:func:`few_sensor_burst`).

    Association's chance test passes a set of unrelated pulses in about one search in a hundred
    (FALSE_ALARMS); in a stretch where that set is all association found, it leaves a burst three
    sensors heard unsearched. The same holds of a set that mixes a burst's rounds: where each sensor
    carries a static delay of its own (survey, wind, a diffracted path; 5-14 ms at the true place in
    2D), no round of the burst reaches the chance count while far sensors' arrivals of several rounds
    agree with a few unrelated pulses at a place hundreds of metres off (seed 601 scene 184 of
    tests/pittsburgh_like.py: 9 sensors at the retry tolerance, 1.4 km off a 4-round burst 7 sensors
    heard). Both are scored by one model on the same pulses, each a burst at its place (a lone shot
    one of a single round), with hearing one unknown per burst: the one with the larger Bayes factor
    against clutter is kept (Bayesian model selection, Kass & Raftery 1995). Shots found at several places
    (DISTINCT_PLACES_M apart) score their places' factors summed, each pulse counted once
    (:func:`places_evidence`): with 4-5 sensors hearing and dense echoes (the audio-like regime of
    bench/bench_accuracy.py), association's 4-sensor sets mix a burst's
    rounds into shots at several places, each fitting exactly (seed 601 scene 0 of tests/pittsburgh_like.py
    in that regime: 2 shots 92 and 120 m off a 3-round burst the few-sensor search places 2 m off). Shots
    association found with MIN_PULSES_FOR_SCATTER or more pulses, or several rounds at one place, give way only to a
    burst that explains more of the pulses than they do (a lone small shot at each of several places is no such
    round: seed 602 scene 1 in that regime, 5 rounds of 3-4 sensors mixed into 5 exact 4-sensor fits 228-891 m
    off, 20 pulses, against the burst's 18 at the true place): the burst model scores one place's rounds with no term
    for a sensor's echoes, and it can outweigh rounds association found with a burst of fewer pulses
    that is then ambiguous, leaving neither (without this: Pittsburgh FP2 audio rounds located 1.000 ->
    0.750, the thinned Pittsburgh inputs 0.852 -> 0.824; the 97th thinned case, 3 rounds of 7 sensors, in
    tests/test_locate_burst.py). A burst at the place of some of the shots may still take the place of
    shots elsewhere that hold its pulses (:func:`_burst_at_found`).
    Where no burst of two rounds or more is found, places whose shots trail another's at every sensor, sets
    of its echoes, go (:func:`_without_trailing_sets`).
    A burst two places explain alike (:func:`_rival`) that still outweighs association's shots leaves
    neither: those are chance's, the burst's place unknown. As in :func:`few_sensor_burst`, the sensors of
    ``array_m`` that reported nothing among ``rows`` weigh the burst's place against its rival.
    (``rows`` are the loud ones association searched; searching the weaker pulses too, as
    few_sensor_burst does where the loud ones hold no burst, lost rounds on the Pittsburgh audio:
    FP1 exact 0.944 -> 0.889, FP2 1.000 -> 0.944.)
    """
    grouped = by_place(found)
    places = [place[0].position[:2] for place in grouped]
    burst, burst_score, rival = _ranked_few_sensor_burst(picks, rows, c, bounds, geometry, _silent(picks, rows, array_m))
    near_found = [burst[0].position[:2]] + ([] if rival is None else [rival[:2]]) if burst else []
    area_m2 = _area_m2(bounds)

    score = functools.partial(place_evidence, picks, rows, c, geometry, area_m2)

    if len(burst) < 2:
        return _without_trailing_sets(picks, found, grouped, score)

    if any(np.hypot(*(p - q)) <= DISTINCT_PLACES_M for p in near_found for q in places):
        return _burst_at_found(picks, found, burst, rival, score)
    held = [s for place in grouped if len(place) > 1 or len(place[0].pulses) >= MIN_PULSES_FOR_SCATTER for s in place]
    if held and sum(len(s.pulses) for s in burst) <= sum(len(s.pulses) for s in held):
        return found

    # Found with hearing one unknown per burst, the burst was scored so already (from its voted place,
    # not its fitted one: the same fit to within 1e-3 nats); found with hearing per round, it is scored so here.
    if burst_score is None:
        burst_score = score(burst[0].position, 2)[1]
    if burst_score <= places_evidence(found, score):
        return found
    # A burst that two places explain alike (its rival) still explains the pulses better than association's
    # shots do: those are then no more than chance's, and neither is given.
    if rival is not None:
        _say_two_places(picks, burst, rival)
        return []
    return burst


def place_evidence(picks: Picks, rows: np.ndarray, c: float, geometry: Geometry, area_m2: float,  # noqa: PLR0913
                   place, min_rounds: int, taken: frozenset = frozenset()) -> tuple[list[Shot], float]:
    """A burst's rounds at ``place`` among ``rows`` less the pulses ``taken`` (another place's rounds hold them),
    with hearing one unknown per burst, and its log Bayes factor against clutter, as :func:`burst_or_found` weighs
    a place. A place where not even one round is found has no evidence to weigh, not an even one (0 nats): -inf.
    (A set of a round's echoes fitting a place exactly outweighed the round, whose place scores below zero with
    4-5 sensors: seed 602 scene 64 of tests/pittsburgh_like.py in the audio-like regime, a 5-sensor round 1 m off
    at -3.8 nats, and 4 of its echoes 112 m off, where no round is found.)"""
    free = rows[~np.isin(rows, list(taken))] if taken else rows
    rounds, evidence = _unanchored_burst(picks, free, _start(picks, free, place, geometry), c, geometry, area_m2,
                                         True, min_rounds)
    return rounds, (evidence if rounds else -math.inf)


def _burst_at_found(picks: Picks, found: list[Shot], burst: list[Shot], rival, score) -> list[Shot]:
    """Association's shots ``found``, or the few-sensor ``burst`` at the place of some of them with the rest
    weighed again; ``score(place, min_rounds)``: a place's rounds and log Bayes factor as :func:`burst_or_found` weighs it.

    Where 4-5 sensors hear each round among dense echoes (the audio-like regime of bench/bench_accuracy.py),
    association's 4-sensor sets, each fitting exactly, take some rounds' arrivals into shots at other places,
    mixed with echoes, while the few-sensor search, scoring every round at one place, finds the whole burst
    at the place of one of them (seed 601 scene 2 of tests/pittsburgh_like.py in that regime: 5 rounds of 4-5
    sensors, all 22 arrivals direct, 2 m off; association: 8 shots, 2 of them within 25 m). A pulse is one
    arrival: shots elsewhere that hold any of the burst's pulses are inconsistent with it, and the burst
    replaces the shots at its place and those where their places together score no evidence (a log Bayes
    factor <= 0: a shooter elsewhere that the burst's pulses also fit keeps association's shots). With none
    of its pulses taken elsewhere, association's shots at the place stay: a burst that only adds rounds there
    is completion's to find (fusion.locator.burst.complete_bursts weighs echo sets there; the few-sensor
    search does not). Either way, shots at places sharing no pulse with the burst stay only where their
    place scores evidence of its own (:func:`_evident`) and is no burst of the burst's echoes
    (:func:`fusion.locator.echorepeats.echo_burst`; seed 601 scene 18: all 5 rounds found, and beside them
    two such bursts and three lone echo sets, 14 shots in all).
    A rival place (:func:`_rival`: one that explains the burst about as well) where association found no
    shot, or only a burst of the burst's echoes, does not stop it: association's shot at the burst's place
    tells the two apart (seed 601 scene 11 there: 3 rounds of 3-4 sensors, one found 1 m off and a mix of the
    other two 356 m off; the burst's rival 264 m off), nor does one where association's shots score no evidence of
    their own (seed 604 scene 97 there: 5 rounds of 5 sensors found 6 m off; beside its rival, 23 m from it, a
    4-sensor set scoring -7.2 nats, and 12 more such sets at 8 places: 13 shots came out, 1 within 25 m). One
    where association's shots score evidence (> 0) keeps ``found`` (less those bursts of echoes).
    """
    here = burst[0].position[:2]
    near = [float(np.hypot(*(s.position[:2] - here))) <= DISTINCT_PLACES_M for s in found]
    if not any(near):
        return found
    ghosts = {id(s) for place in by_place([s for s, n in zip(found, near) if not n]) if echo_burst(burst, place, picks)
              for s in place}
    near = [n for s, n in zip(found, near) if id(s) not in ghosts]
    found = [s for s in found if id(s) not in ghosts]
    at_rival = [] if rival is None else [s for s in found if float(np.hypot(*(s.position[:2] - rival[:2]))) <= DISTINCT_PLACES_M]
    if at_rival and places_evidence(at_rival, score) > 0.0:
        return found
    taken = set(np.concatenate([s.pulses for s in burst]).tolist())
    clash = [not n and bool(taken & set(s.pulses.tolist())) for s, n in zip(found, near)]
    rest = _evident([s for s, n, k in zip(found, near, clash) if not (n or k)], score)
    if not any(clash) or places_evidence([s for s, k in zip(found, clash) if k], score) > 0.0:
        return [s for s, n, k in zip(found, near, clash) if n or k] + rest
    return burst + rest


def _without_trailing_sets(picks: Picks, found: list[Shot], grouped: list[list[Shot]], score) -> list[Shot]:
    """``found`` (``grouped``: by place, :func:`by_place`) less the places each of whose shots trails a shot at
    a place heard first (at every sensor they share, :func:`fusion.locator.echorepeats.trails`) that scores at
    least as much: sets of its echoes.

    With 4-5 sensors hearing among dense echoes, a lone round comes out beside a 4-sensor set of its echoes
    that fits a place hundreds of metres off exactly; neither place scores evidence of its own (a set of 4
    is all a round there has), so which is the round rests on the earliest arrival: the direct sound comes
    first at every sensor (TN098 §II.B)."""
    # In order of first arrival, not of discharge time: a set of echoes fitted far off has an early one.
    places = sorted(grouped, key=lambda place: min(float(picks.t_s[s.pulses].min()) for s in place))
    if len(places) < 2:
        return found
    scores = [score(place[0].position[:2], 1)[1] for place in places]
    kept: list[int] = []
    for k, place in enumerate(places):
        if not any(scores[k] <= scores[q] and all(any(trails(s, a, picks) for a in places[q]) for s in place)
                   for q in kept):
            kept.append(k)
    kept_ids = {id(s) for k in kept for s in places[k]}
    return [s for s in found if id(s) in kept_ids]


def _evident(shots: list[Shot], score) -> list[Shot]:
    """The ``shots`` whose place scores evidence against clutter (a log Bayes factor > 0 by ``score``)."""
    return [shot for place in by_place(shots) if score(place[0].position[:2], 1)[1] > 0.0 for shot in place]


def by_place(shots: list[Shot]) -> list[list[Shot]]:
    """``shots`` grouped by place (DISTINCT_PLACES_M, single linkage)."""
    if not shots:
        return []
    xy = np.array([s.position[:2] for s in shots])
    return [[shots[i] for i in members] for members in split_by_place(xy, DISTINCT_PLACES_M)]


def places_evidence(shots: list[Shot], score) -> float:
    """The log Bayes factor of the places of ``shots`` together, ``score(place, min_rounds, taken)`` scoring one
    (:func:`place_evidence` on a stretch): the places in order of their own factors, each scored on the pulses the
    places before it left free, summed.

    A pulse is one arrival: scored each on all the pulses, two places whose rounds share pulses count them twice
    and can outweigh a burst that explains them once (with the path terms of fusion.locator.pathterms, a thinned
    Pittsburgh FP2 case of tests/pittsburgh_harder.py, 5 sensors and 3 rounds: two places' 15.4 and 9.6 nats on
    shared pulses against the burst's 18.5). Best first, as sequential detection takes its sources: once one
    is explained, its pulses are no evidence for another."""
    ranked = sorted((score(place[0].position[:2], 1) + (place[0].position[:2],) for place in by_place(shots)),
                    key=lambda f: f[1], reverse=True)
    if not ranked:
        return 0.0
    rounds, total, _ = ranked[0]
    taken = set(_pulses(rounds))
    for _, _, place in ranked[1:]:
        rounds, evidence = score(place, 1, frozenset(taken))
        total += evidence
        taken.update(_pulses(rounds))
    return float(total)


def _pulses(rounds: list[Shot]) -> list[int]:
    """The pulses (rows) of ``rounds``."""
    return [int(i) for s in rounds for i in s.pulses]


def _area_m2(bounds) -> float:
    """The area (m^2) of ``bounds`` (x0, y0, x1, y1), over which a burst's place prior is spread."""
    x0, y0, x1, y1 = bounds
    return (x1 - x0) * (y1 - y0)


def _start(picks: Picks, rows: np.ndarray, place, geometry: Geometry) -> np.ndarray:
    """A place's start for a fit in ``geometry``: its 2D point, at the sensors' median height in 3D."""
    place = np.asarray(place, dtype=float)[:2]
    return place if geometry.dims == 2 else np.append(place, np.median(picks.pos_m[rows, 2]))
