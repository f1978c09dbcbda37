"""Association: which pulses are the first arrivals of one shot.

Among unassociated pulses (shots, echoes, noise, any sensors) a shot is the largest set of
pulses, at most one per sensor, that straight-line propagation from one point at one
emission time explains to within a tolerance (the mutual-consistency test of TN098 §II.A/C).
Echoes and non-line-of-sight arrivals come late by amounts that differ per sensor, so they
do not join the consistent set.

Search (:func:`best_seed`): for a candidate source point g every pulse implies an emission
time ``t_i - |g - s_i| / c``; the pulses of one shot pile up in a short window. Moving the
point by at most r changes each implied time by at most r / c, so the count in a window
widened by 2 r / c at a cell's centre bounds the count anywhere in the cell. That bound
drives a best-first branch and bound over a quadtree of the area (Land & Doig 1960): cells
whose bound cannot beat the best leaf found are never split, so no grid is searched blindly.
The seed is then refined by least squares and re-selection of one pulse per sensor
(:func:`grow_shot`); the shot's pulses are removed and the search repeats for the next shot,
so a pulse belongs to at most one shot, and shots of a burst whose arrivals interleave
differently at each sensor are separated by their emission times.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np

from earwitness.units import MAD_TO_SIGMA
from fusion.locator.chance import chance_support, listening
from fusion.locator.multilaterate import Geometry, fit_shots, irls
from fusion.locator.picks import Picks
from fusion.locator.seedsearch import LEAF_SIZE_M, MAX_SEED_STEPS, SeedSearch, best_seed

log = logging.getLogger(__name__)

# A leaf's window slack as a distance: its diagonal (twice the half-diagonal r).
LEAF_SLACK_M = LEAF_SIZE_M * math.sqrt(2.0)
# Search area: the reporting sensors' bounding box widened by this fraction of its span
# (at least MIN_MARGIN_M): shooters well outside an array are not located reliably anyway.
MARGIN_FRACTION = 0.25
MIN_MARGIN_M = 200.0
# Dense inputs (a search of this many pulses or more: a long burst heard across a city; and the
# later chunks of its stretch) get a budget in work instead (pulses bound, summed over the cells
# bound; about 0.1 s), since their proofs cost tens of seconds per shot (the whole area must be refined
# to ~10 m before the bound falls below a shot's support) and there are dozens of shots: the
# seed city's 40 rounds (1,367 pulses) took 10 minutes exactly.  No Pittsburgh, audio-path,
# synthetic or other test input reaches it (the largest search has 465 pulses, 12 million of work;
# the library's city_park 574 pulses).
# An exhausted search that found nothing is seeded from a short busy span (see BUSY_SPAN_S);
# when that grows no shot, no further shot is taken to exist.  The support chance reaches is
# taken from the rates of the pulses not yet explained: a burst's own first arrivals, dozens
# per sensor, otherwise raise it above the support of its quieter shots (32 of 40 located).
DENSE_PULSES = 600
# Length of the chunks a long stretch of pulses is associated in (find_shots_in_stretch).
CHUNK_S = 3.0
DENSE_SEED_WORK = 1_000_000
# The seed of an exhausted dense search: the best point among the pulses of the busiest span
# this long (a shot's nearest sensors hear it within it), few enough to be searched in full.
BUSY_SPAN_S = 2.0
# Sets searched for there: above this share of the support a shot needs (the span holds the
# arrivals at its nearer sensors only), and a higher floor prunes the search sooner.
BUSY_SPAN_SHARE = 0.5
# Robust fit scale and rounds of re-selection while growing a shot.
ROBUST_SCALE_S = 5e-3
GROW_ROUNDS = 4
# A shot needs at least this fraction of the sensors of the strongest shot found among the
# same pulses: sets of echoes (and the echo off a wall beside the shooter, which looks like a
# second source there) agree across far fewer sensors than the first arrivals do.
RELATIVE_SUPPORT = 0.5
# Half-width of the emission-time window of the search: tight, so that arrivals of shots
# 60 ms apart cannot mix into one set; growing the seed then admits up to tol_s.
SEARCH_TOLERANCE_S = 5e-3
# Sensors short of the small-array cap a set may be where they were not listening at it (see
# chance.LISTEN_S). Each lowers the seed search's floor by one: on a busy array (the fireworks
# night's windows, 10-15 sensors all hearing pops) the sets far below the count are many, each
# searched for, grown and refused as its sensors were listening (with no limit the fireworks test
# took 5x as long). FP2's test_032 needs one (4 of 6 agree where the count asks 5).
SILENT_FORGIVEN = 1
# Consistency tolerance after the first shot, in robust sigmas of its residuals.
TOLERANCE_SIGMAS = 5.0
# Fewest pulses in the first shot for its scatter to set the tolerance (MAD of fewer is noise).
MIN_PULSES_FOR_SCATTER = 8
# A first arrival may lag the straight-line prediction by this much (TN098 §II.C's limit for
# urban diffraction): the tolerance a set with an earlier pulse is held to (see first_arrivals).
FIRST_ARRIVAL_TOLERANCE_S = 0.04
# Pulse selection is done in 2D, the final fit in the caller's geometry (TN098 §II.E).
SELECTION_GEOMETRY = Geometry("2d")



@dataclass
class Shot:
    """One associated shot: its pulses and the fit that selected them."""

    pulses: np.ndarray  # indices into the pulse arrays, one per sensor
    position: np.ndarray  # solved coordinates (x, y[, z]) in the local frame
    t0_s: float  # emission time on the caller's time origin
    c: float  # speed of sound used
    residuals_s: np.ndarray  # measured minus predicted arrival of each pulse
    place: object = None  # shots with the same place share one position in the final fit (a burst's rounds)


@dataclass(frozen=True)
class SearchConfig:
    """How :func:`find_shots` associates: speed of sound, tolerances, support, area and budgets.

    Attributes
    ----------
    c : float
        Speed of sound, m/s.
    tol_s, min_tol_s : float
        Largest |measured - predicted| arrival time of a pulse kept in a shot: ``tol_s`` for
        the first shot, then :data:`TOLERANCE_SIGMAS` times the first shot's robust timing
        scatter, within ``min_tol_s``..``tol_s``.
    min_sensors : int
        Fewest sensors a shot needs; also at least :data:`RELATIVE_SUPPORT` of the strongest
        shot's (so a much weaker shot among the same pulses is not reported).
    speeds : tuple of float
        When given, c is uncertain: the first shot is searched at each of these speeds (the
        one where most sensors agree wins), grown with c estimated within ``c_bounds``
        (default: the smallest and largest of them), and that estimate used for the rest.
    c_bounds : (float, float), optional
        Range of the speed of sound the first shot's fit may estimate.
    dense : bool
        Treat the input as dense (see DENSE_PULSES) whatever its size: a later chunk of a
        stretch whose earlier chunk was.
    bounds : (x_min, y_min, x_max, y_max), optional
        Area searched; default: the picks' sensors' (:func:`search_bounds`).
    geometry : Geometry
        Of the fits that select pulses (SELECTION_GEOMETRY).
    max_steps : int
        Budget of every seed search in steps (MAX_SEED_STEPS).
    dense_work : float
        Budget of a dense input's seed searches in work (DENSE_SEED_WORK).
    array_sensors : int, optional
        Sensors of the whole stretch (a chunk of it may hold few): where so few that no set can
        reach significance by count, the best set short of one sensor is kept. Default: the picks'.
    listeners : Picks, optional
        Every pulse of the stretch, however quiet: the sensors with one within LISTEN_S of a
        shot's arrival are those the cap counts (:func:`listening`). Default: the picks.
    array_m : ndarray, shape (m, 3), optional
        Every sensor of the array (x, y, z) (indexed as the picks' ``sensor``), those that reported nothing too:
        a few-sensor burst's place is weighed by who did not hear it (:mod:`fusion.locator.fewburst`).
    """

    c: float
    tol_s: float
    min_tol_s: float
    min_sensors: int
    speeds: tuple[float, ...] = ()
    c_bounds: tuple[float, float] | None = None
    dense: bool = False
    bounds: tuple[float, float, float, float] | None = None
    geometry: Geometry = field(default_factory=lambda: SELECTION_GEOMETRY)
    max_steps: int = MAX_SEED_STEPS
    dense_work: float = DENSE_SEED_WORK
    array_sensors: int | None = None
    listeners: Picks | None = None
    array_m: np.ndarray | None = None

    @property
    def window_s(self) -> float:
        """Width of the seed search's emission-time window (see SEARCH_TOLERANCE_S)."""
        return 2.0 * min(self.tol_s, SEARCH_TOLERANCE_S)

    @property
    def fit_c_bounds(self) -> tuple[float | None, float | None]:
        """Range the speed of sound is estimated within: ``c_bounds``, else that of ``speeds``."""
        return self.c_bounds or ((min(self.speeds), max(self.speeds)) if self.speeds else (None, None))

    def seed_search(self, c: float, window_s: float) -> SeedSearch:
        """One seed search of this configuration at speed ``c`` (its budget in work only if dense).

        ``bounds`` must be set (:func:`find_shots` sets it from the picks where it is not).
        """
        return SeedSearch(c, window_s, self.bounds, self.max_steps, self.dense_work if self.dense else 0.0)


def _best_over_speeds(picks: Picks, config: SearchConfig, trials, window_s: float, floor: int, hints=None):
    """:func:`best_seed` at each trial speed, each only having to beat the best so far (so later ones prune early).

    Returns ((support, point, start), speed, exhausted): point None when no trial beats
    ``floor``; exhausted when any search ran out of budget.
    """
    (support, point, start), speed = (floor, None, 0.0), config.c
    exhausted = False
    for trial in trials:
        stats = {}
        found = best_seed(picks, config.seed_search(trial, window_s), support, hints, stats)
        exhausted = exhausted or stats["exhausted"]
        if found[0] > support:
            (support, point, start), speed = found, trial
    return (support, point, start), speed, exhausted


def _busy_span_seed(picks: Picks, config: SearchConfig, trials, window_s: float, floor: int):
    """Seed from the busiest BUSY_SPAN_S of ``picks`` (most sensors), searched in full.

    For a dense search that ran out of budget before finding any set above ``floor``: the
    arrivals of one shot at the sensors nearest it come within a short span, whose few pulses
    are searched at once (on the step budget alone: a few hundred pulses); the best point there
    seeds the shot, grown over all the pulses.
    Returns ((support, point, start), speed), point None when no set there beats ``floor``.
    """
    order = np.argsort(picks.t_s, kind="stable")
    t_sorted = picks.t_s[order]
    ends = np.searchsorted(t_sorted, t_sorted + BUSY_SPAN_S, side="right")
    busiest = max(range(len(order)), key=lambda k: len(np.unique(picks.sensor[order[k:ends[k]]])))
    span = picks.take(order[busiest:ends[busiest]])
    (support, point, start), speed = (floor, None, 0.0), None
    for trial in trials:
        found = best_seed(span, SeedSearch(trial, window_s, config.bounds, config.max_steps), support)
        if found[0] > support:
            (support, point, start), speed = found, trial
    return (support, point, start), speed


def _nearest_per_sensor(candidates: np.ndarray, sensor: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Of candidate pulses, the one per sensor with the smallest |residual|."""
    order = candidates[np.argsort(np.abs(residual[candidates]))]
    _, first = np.unique(sensor[order], return_index=True)
    return np.sort(order[first])


def grow_shot(picks: Picks, seed: np.ndarray, available: np.ndarray, start, config: SearchConfig, *,
              core_tol_s: float | None = None, fit_c: bool = False) -> Shot | None:
    """Refine a seed set into a shot: fit, re-select one pulse per sensor within a tolerance, repeat.

    Each round fits position and emission time (robust IRLS, so a late arrival in the set
    pulls little), predicts every available pulse's arrival, keeps per sensor the pulse
    closest to its prediction if within the tolerance, and stops when the set no longer
    changes: first with ``core_tol_s`` (a tight core, which arrivals of neighbouring shots
    of a burst cannot join), then with ``config.tol_s`` (admitting diffracted arrivals), at
    ``config.c`` in ``config.geometry``. With ``fit_c`` the grown set's speed of sound is then
    estimated (within ``config.fit_c_bounds``, Levenberg-Marquardt with a soft-L1 loss) and the
    set grown once more at that speed.

    ``seed`` and the returned shot's pulses are row indices of ``picks``; ``available`` masks
    the rows a shot may take; ``start`` is (position, t0_s).
    """
    tol_s = config.tol_s
    shot = _grow(picks, seed, available, start, config.c, config.geometry, (min(core_tol_s or tol_s, tol_s), tol_s))
    if shot is None or not fit_c:
        return shot
    chosen = shot.pulses
    fit = fit_shots([(picks.pos_m[chosen], picks.t_s[chosen], picks.sigma_s[chosen])], config.c, config.geometry,
                    [(shot.position, shot.t0_s)], fit_c=True, loss="soft_l1", scale_s=ROBUST_SCALE_S,
                    c_bounds=config.fit_c_bounds)
    return _grow(picks, chosen, available, (fit.positions[0], float(fit.t0_s[0])), fit.c, config.geometry, (tol_s,))


def _grow(picks: Picks, chosen, available, start, c: float, geometry: Geometry, tolerances) -> Shot | None:
    """Rounds of robust IRLS fit (Holland & Welsch 1977) and nearest-arrival re-selection at each tolerance."""
    pos, t0 = start
    sensors_m, t_s = picks.pos_m, picks.t_s
    for tol in dict.fromkeys(tolerances):
        for _ in range(GROW_ROUNDS):
            pos, t0 = irls(sensors_m[chosen], t_s[chosen], picks.sigma_s[chosen], c, geometry, (pos, t0),
                           ROBUST_SCALE_S)
            src = geometry.source_coords(pos)
            diff = geometry.sensor_coords(sensors_m) - src
            residual = t_s - t0 - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c
            candidates = np.flatnonzero(available & (np.abs(residual) <= tol))
            if len(candidates) == 0:
                return None
            new = _nearest_per_sensor(candidates, picks.sensor, residual)
            if np.array_equal(new, chosen):
                break
            chosen = new
    return Shot(chosen, np.asarray(pos), t0, c, residual[chosen])


def search_bounds(xy: np.ndarray) -> tuple[float, float, float, float]:
    """The area searched: the sensors' bounding box widened by a margin."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    margin = max(MIN_MARGIN_M, MARGIN_FRACTION * float(np.max(hi - lo)))
    return float(lo[0] - margin), float(lo[1] - margin), float(hi[0] + margin), float(hi[1] + margin)


def inside(bounds: tuple[float, float, float, float], position) -> bool:
    """Whether ``position`` (x, y first) lies in ``bounds`` (:func:`search_bounds`)."""
    x0, y0, x1, y1 = bounds
    return bool(x0 <= position[0] <= x1 and y0 <= position[1] <= y1)


def implied_discharge_s(picks: Picks, rows, position, c: float, geometry: Geometry) -> np.ndarray:
    """Implied discharge times t_i - |p - s_i| / c of the pulses ``rows`` at ``position``."""
    diff = geometry.sensor_coords(picks.pos_m[rows]) - geometry.source_coords(position)
    return picks.t_s[rows] - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c


def _seed_set(picks: Picks, c: float, point, start_s: float, width_s: float, available) -> np.ndarray:
    """Pulses whose implied emission time at ``point`` falls in the window: one per sensor."""
    diff = point - picks.xy
    emit = picks.t_s - np.sqrt(np.einsum("nk,nk->n", diff, diff)) / c
    centre = start_s + width_s / 2.0
    candidates = np.flatnonzero(available & (emit >= start_s) & (emit <= start_s + width_s))
    return _nearest_per_sensor(candidates, picks.sensor, emit - centre)


def _grow_from(picks: Picks, available, config: SearchConfig, found, speed: float, window_s: float, fit_c: bool):
    """The shot grown from a seed (:func:`best_seed`'s ``found`` at ``speed``), and the seed set it grew from."""
    _, point, start = found
    seed = _seed_set(picks, speed, point, start, window_s + 2 * LEAF_SIZE_M / speed, available)
    t0 = float(np.median(picks.t_s[seed] - np.hypot(*(point - picks.xy[seed]).T) / speed))
    grown = grow_shot(picks, seed, available, (point, t0), replace(config, c=speed), core_tol_s=window_s / 2.0,
                      fit_c=fit_c)
    return grown, seed


def _strongest_shot(picks: Picks, available, config: SearchConfig, hints, least: int, most: int, first: bool):
    """The next shot among the ``available`` picks: seed searches, then growth (:func:`grow_shot`).

    ``least``..``most`` bound the support chance allows (:func:`chance_support`) from below
    and above. Returns (shot, seed, fell_back): shot None when no seed grew into one with the
    support needed; seed the pulses it grew from (None: no seed at all); fell_back when a
    dense search's seed came from a busy span.
    """
    idx = np.flatnonzero(available)
    candidates = picks.take(idx)
    fit_c = bool(config.speeds) and first
    trials = config.speeds if fit_c else (config.c,)
    # Until a first shot is found, a window as wide as the tolerance is tried beside the
    # tight one: with few sensors, diffraction or a sensor's clock error can leave no
    # tight set, or a tight set of echoes smaller than the shot's within the tolerance.
    # Of the shots grown from each width's seed, the one more sensors agree on wins.
    widths = dict.fromkeys((config.window_s, 2.0 * config.tol_s)) if first else (config.window_s,)
    shot, seed, fell_back = None, None, False
    for width in widths:
        pool = idx if config.dense else slice(None)  # dense: the rates of the pulses not yet explained
        chance = chance_support(picks.sensor[pool], picks.t_s[pool], width + LEAF_SLACK_M / config.c, config.c,
                                config.bounds)
        needed = max(least, min(chance, most))
        if shot is not None and len(shot.pulses) >= MIN_PULSES_FOR_SCATTER:
            break  # so many sensors agreeing tightly are no chance set: no need to look wider
        # Where the array is too small to reach significance by count (the cap binds), a set
        # SILENT_FORGIVEN sensors short of it may still be kept where they were not listening (see
        # LISTEN_S), so the search looks that much lower; a larger array is held to the count.
        relax = not config.dense and chance >= most
        floor = max((max(least, needed - SILENT_FORGIVEN) if relax else needed) - 1,
                    len(shot.pulses) if shot is not None else 0)
        found, speed, exhausted = _best_over_speeds(candidates, config, trials, width, floor, hints)
        if found[1] is None and exhausted and config.dense:
            fell_back = True
            found, speed = _busy_span_seed(candidates, config, trials, width,
                                           max(config.min_sensors, int(BUSY_SPAN_SHARE * needed)) - 1)
        if found[1] is None:
            continue
        grown, width_seed = _grow_from(picks, available, config, found, speed, width, fit_c)
        if seed is None:
            seed = width_seed
        if grown is not None and relax:
            heard_n = listening(config.listeners or picks, grown.position[:2], grown.t0_s, grown.c)
            needed = max(least, needed - SILENT_FORGIVEN, min(needed, heard_n - 1))
        if grown is not None and len(grown.pulses) >= needed and (shot is None or len(grown.pulses) > len(shot.pulses)):
            shot, seed = grown, width_seed
    return shot, seed, fell_back


def first_arrivals(picks: Picks, shot: Shot, available: np.ndarray, config: SearchConfig) -> Shot:
    """The shot with a sensor's pulse replaced by an earlier one there, where that makes a consistent set as large.

    With ``config.min_sensors`` pulses (d + 2: one residual degree of freedom) one sensor's pulse is
    hardly checked by the rest: the other d + 1 sensors' arrival-time differences fit two places
    (the mirror roots, Schau & Robinson 1987), and a pulse at that sensor for each makes a consistent
    set. The direct path is the shortest, so of two pulses at one sensor the earlier is the first
    arrival and the later an echo or a non-line-of-sight path (TN098 §II.B; on the Pittsburgh audio a
    reflection 0.1-0.3 s late, as loud as the direct sound, fitted a place 30-170 m off tighter than
    the direct sound fitted the true one). So the set with the earlier pulse is kept where it is
    consistent within FIRST_ARRIVAL_TOLERANCE_S and at every sensor of the shot no later; an earlier
    pulse that is another round's arrival from the shot's place (:func:`_another_round`) is not
    taken, nor one whose set's place other rounds repeat less often than the shot's (:func:`_repeats`:
    the round before's echo). Larger sets are checked by their own residuals and left as they are.
    """
    tol_s = max(config.tol_s, FIRST_ARRIVAL_TOLERANCE_S)
    while len(shot.pulses) == config.min_sensors:
        better, repeats = None, None
        for row in shot.pulses:
            rest = shot.pulses[shot.pulses != row]
            earlier = np.flatnonzero(available & (picks.sensor == picks.sensor[row]) & (picks.t_s < picks.t_s[row]))
            earlier = earlier[~_another_round(picks, earlier, shot, available, config)]
            for e in earlier[np.argsort(picks.t_s[earlier])]:
                trial = np.sort(np.append(rest, e))
                start = config.geometry.closed_form(picks.pos_m[trial], picks.t_s[trial], shot.c)
                grown = _grow(picks, trial, available, start, shot.c, config.geometry, (tol_s,))
                # Four arrivals fit a plane wave as well as a place: a fit run off past the area searched
                # (a shot 2.4e6 km off, seed 602 scene 83 of the audio-like scenes) is no place.
                if grown is None or e not in grown.pulses or not _no_later(picks, grown.pulses, shot.pulses) \
                        or not inside(config.bounds, grown.position):
                    continue
                # Across a burst the earlier pulse may be the round before's echo: the set it makes then fits a
                # place no other round comes from, where the shot's place is every round's (seed 604 scene 72 of
                # the audio-like scenes: 4 rounds at 4 sensors, each set swapped to a place 200-500 m off).
                repeats = _repeats(picks, shot, available, config) if repeats is None else repeats
                if _repeats(picks, grown, available, config) >= repeats:
                    better = grown
                    break
            if better is not None:
                break
        if better is None:
            break
        shot = better
    return shot


def earlier_set(picks: Picks, shot: Shot, available: np.ndarray, config: SearchConfig) -> Shot:
    """The shot, or a set as large whose pulse at some sensor of it is earlier and at none later.

    :func:`first_arrivals` for sets above ``config.min_sensors``, where one pulse swapped at a time
    cannot move a set: of two sets as large, the one no later at every sensor they share is the
    direct sound (TN098 §II.B), the other a mix of reflections and noise (on the Pittsburgh audio,
    FP2's test_026: a reflection 0.3 s late at one sensor, later pulses at two more and a noise
    pulse at a fifth fitted a place 150 m off as well as the direct sound fitted the shooter's).
    Per sensor of the shot the seed search is rerun over the pulses no later than the shot's at
    its sensors and earlier at that one (less those that are another round's arrival from the
    shot's place, :func:`_another_round`); the first set grown as large is taken.
    Sets of ``config.min_sensors`` are first_arrivals' and sets of MIN_PULSES_FOR_SCATTER or
    more no chance mix; dense inputs are left as they are (the searches' cost). :func:`find_shots`
    calls it only where the array is too small for the count to reach significance.
    """
    n = len(shot.pulses)
    if config.dense or not config.min_sensors < n < MIN_PULSES_FOR_SCATTER:
        return shot
    at_s = np.full(int(picks.sensor.max()) + 1, np.inf)
    at_s[picks.sensor[shot.pulses]] = picks.t_s[shot.pulses]
    no_later = available & (picks.t_s <= at_s[picks.sensor])
    earlier = np.flatnonzero(no_later & (picks.t_s < at_s[picks.sensor]))
    no_later[earlier[_another_round(picks, earlier, shot, available, config)]] = False
    for row in shot.pulses:
        mask = no_later & ~((picks.sensor == picks.sensor[row]) & (picks.t_s >= picks.t_s[row]))
        if picks.n_sensors(mask) < n:
            continue
        candidates = picks.take(np.flatnonzero(mask))
        best = None
        for width in dict.fromkeys((config.window_s, 2.0 * config.tol_s)):
            found = best_seed(candidates, config.seed_search(shot.c, width), n - 1)
            if found[0] < n:
                continue
            grown, _ = _grow_from(picks, mask, replace(config, c=shot.c), found, shot.c, width, False)
            if grown is not None and len(grown.pulses) >= n and inside(config.bounds, grown.position) \
                    and (best is None or len(grown.pulses) > len(best.pulses)):
                best = grown
        if best is not None:
            return best
    return shot


def _another_round(picks: Picks, rows: np.ndarray, shot: Shot, available: np.ndarray, config: SearchConfig) -> np.ndarray:
    """Per pulse of ``rows`` whether it is another round's arrival from the shot's place: pulses at
    d other sensors imply its discharge time there within ``config.tol_s`` (a burst's rounds reach
    every sensor in turn, so a sensor's earlier pulse may be the round before, not this one's)."""
    others = available.copy()
    others[shot.pulses] = False
    emit = implied_discharge_s(picks, slice(None), shot.position, shot.c, config.geometry)
    return heard_elsewhere(picks, rows, others, emit, config.geometry.dims, config.tol_s)


def heard_elsewhere(picks: Picks, rows: np.ndarray, others: np.ndarray, emit_s: np.ndarray, dims: int,
                    tol_s: float) -> np.ndarray:
    """Per pulse of ``rows`` whether pulses of ``others`` (a mask over ``picks``) at ``dims`` sensors other
    than its own imply its discharge time within ``tol_s`` (``emit_s``: every pulse's implied discharge time
    at one place, :func:`implied_discharge_s`): a sound from that place many sensors heard, not one sensor's own."""
    out = np.zeros(len(rows), dtype=bool)
    for k, row in enumerate(rows):
        near = others & (picks.sensor != picks.sensor[row]) & (np.abs(emit_s - emit_s[row]) <= tol_s)
        out[k] = picks.n_sensors(near) >= dims
    return out


def _repeats(picks: Picks, shot: Shot, available: np.ndarray, config: SearchConfig) -> int:
    """Other rounds from the shot's place: discharge times there, apart from the shot's, that pulses at
    d of its sensors imply within ``config.tol_s`` (counted in a sweep over the implied times). Not d + 1:
    a sensor may miss a burst's later direct arrivals (Pittsburgh FP2 test_031 from the audio: one of four
    did, and the true place's later rounds held three sensors' pulses only at two)."""
    emit = implied_discharge_s(picks, slice(None), shot.position, shot.c, config.geometry)
    others = available & np.isin(picks.sensor, picks.sensor[shot.pulses]) & (np.abs(emit - shot.t0_s) > 2 * config.tol_s)
    others[shot.pulses] = False
    count, past = 0, -np.inf
    for row in np.flatnonzero(others)[np.argsort(emit[others])]:
        if emit[row] <= past:
            continue
        window = others & (emit >= emit[row]) & (emit <= emit[row] + 2 * config.tol_s)
        if picks.n_sensors(window) >= config.geometry.dims:
            count, past = count + 1, emit[row] + 2 * config.tol_s
    return count


def _no_later(picks: Picks, new: np.ndarray, old: np.ndarray) -> bool:
    """Whether the pulse set ``new`` has a pulse at every sensor of ``old``, none of them later."""
    at = dict(zip(picks.sensor[new].tolist(), picks.t_s[new].tolist()))
    return all(s in at and at[s] <= t for s, t in zip(picks.sensor[old].tolist(), picks.t_s[old].tolist()))


def _after_first_shot(config: SearchConfig, shot: Shot) -> SearchConfig:
    """The configuration for the shots after the first: its speed of sound, when estimated, and
    a tolerance of TOLERANCE_SIGMAS robust sigmas (MAD, Rousseeuw & Croux 1993) of its residuals."""
    if config.speeds:
        config = replace(config, c=shot.c)
    if len(shot.pulses) >= MIN_PULSES_FOR_SCATTER:
        # The first (strongest) shot measures the timing scatter; later sets are held to it.
        scatter = MAD_TO_SIGMA * float(np.median(np.abs(shot.residuals_s - np.median(shot.residuals_s))))
        config = replace(config, tol_s=min(config.tol_s, max(TOLERANCE_SIGMAS * scatter, config.min_tol_s)))
    return config


def find_shots(picks: Picks, config: SearchConfig, prior: np.ndarray | None = None) -> list[Shot]:
    """Associate pulses into shots, largest consistent set first, each pulse used at most once.

    Greedy: the strongest set (a branch-and-bound seed, Land & Doig 1960, grown by robust
    refits) is taken and its pulses removed, then the next (the mutual-consistency test of
    TN098 §II.A/C).

    Parameters
    ----------
    picks : Picks
        The pulses: sensor index, arrival time and sigma, and sensor position (local metres).
    config : SearchConfig
        Speed of sound, tolerances, support, area and budgets.
    prior : ndarray, shape (k, 2), optional
        Where shots were found among neighbouring pulses (an earlier chunk of a long stretch):
        tried first by the budgeted searches of a dense input (DENSE_PULSES), so that a burst's
        next chunk starts from its shooter instead of a busy span.

    Returns
    -------
    list of Shot, in the order found (largest first); their pulses are row indices of ``picks``.
    """
    config = replace(config, dense=config.dense or len(picks) >= DENSE_PULSES,
                     bounds=config.bounds or search_bounds(picks.xy))
    available = np.ones(len(picks), dtype=bool)
    shots: list[Shot] = []
    # A small array cannot reach significance (chance_support's count: a Bonferroni-bounded false-alarm
    # rate, as in CFAR detection): then the best set short of one sensor is kept. The array is the
    # stretch's: a chunk's few leftover pulses (a widely heard shot's far echoes) are no small array,
    # and are held to the count; a round among them is the burst model's to find at its shooter's place.
    # The cap is over the sensors listening at the shot (chance.listening): a far sensor silent then
    # does not raise it.
    most = (config.array_sensors or picks.n_sensors()) - 1
    # Where the count cannot tell a shot from a chance set as large (the cap binds), the earlier
    # set is the shot (earlier_set); a larger array is left to the count (the seed city's exchange).
    small = chance_support(picks.sensor, picks.t_s, config.window_s + LEAF_SLACK_M / config.c, config.c,
                           config.bounds) >= most
    while picks.n_sensors(available) >= config.min_sensors:
        hints = np.array([s.position[:2] for s in shots]).reshape(-1, 2)
        if prior is not None and config.dense:
            hints = np.vstack([hints, np.asarray(prior, dtype=float).reshape(-1, 2)])
        strongest = max((len(s.pulses) for s in shots), default=0)
        least = max(config.min_sensors, math.ceil(RELATIVE_SUPPORT * strongest))
        shot, seed, fell_back = _strongest_shot(picks, available, config, hints, least, most, not shots)
        if seed is None or (shot is None and fell_back):
            break  # (an unproven seed that grows no shot: no further shot is taken to exist)
        if shot is None:
            available[seed] = False  # cannot form a shot: never seed from them again
            continue
        shot = first_arrivals(picks, shot, available, config)
        if small:
            shot = earlier_set(picks, shot, available, config)
        if not shots:
            config = _after_first_shot(config, shot)
        shots.append(shot)
        available[shot.pulses] = False
    return shots


def find_shots_in_stretch(picks: Picks, seg: np.ndarray, config: SearchConfig, quiet_s: float) -> list[Shot]:
    """:func:`find_shots` among the rows ``seg`` of one stretch (``quiet_s``: the gap that ends a stretch), a chunk of
    CHUNK_S at a time. The shots' pulses are rows of ``picks``.
    """
    shots = []
    used = np.zeros(len(seg), dtype=bool)
    # Long stretches are associated a chunk at a time (each with a propagation span of
    # overlap), so the search costs grow with the length of the input, not its square.
    seg_t = picks.t_s[seg]
    dense = False  # once a chunk is dense, the rest of the stretch is searched as dense too
    for core_start in np.arange(seg_t.min(), seg_t.max() + CHUNK_S, CHUNK_S):
        core_end = core_start + CHUNK_S
        part = np.flatnonzero(~used & (seg_t >= core_start) & (seg_t < core_end + quiet_s))
        idx = seg[part]
        if picks.n_sensors(idx) < config.min_sensors:
            continue
        for shot in find_shots(picks.take(idx), replace(config, dense=dense),
                               prior=np.array([s.position[:2] for s in shots]).reshape(-1, 2)):
            if seg_t[part[shot.pulses]].min() < core_end:  # later ones: the next chunk's
                used[part[shot.pulses]] = True
                shot.pulses = idx[shot.pulses]
                shots.append(shot)
        dense = dense or len(idx) >= DENSE_PULSES
    return shots
