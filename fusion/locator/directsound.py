"""The direct sound before a burst's arrivals: a place fitted to a sensor's echoes, moved to its direct sound.

The direct path is the shortest (TN098 §II.B): of the pulses one shot brings a sensor, the first is
the direct sound and the later ones its echoes, each at a lag the buildings fix (image sources, Allen &
Berkley, JASA 65, 1979), the same after every round of a burst from one place. Three or four sensors'
arrivals fit some place exactly whichever pulse a sensor contributes, so a burst can be fitted to a
sensor's echo: its place is then off (seed 602 scene 187 of tests/pittsburgh_like.py: three sensors,
three rounds, one sensor's echo 79 ms after its direct sound, 116 m off), and that sensor's direct sound
comes before its arrival, round after round, at one lag.

The model, per sensor s of a place's rounds and lag L < 0 taken from a pulse before one round's arrival
there: under "the arrival is the direct sound" a pulse no shot holds lies within REPEAT_TOL_S of the
point L before another round's arrival by chance (a Poisson process at the sensor's rate of such pulses
over the burst); under "the arrival is an echo of an earlier sound" it is there with P_D. The log Bayes
factor of the second (less the log of the lags tried at the sensor: a look-elsewhere charge) above zero
makes the earlier pulses a candidate for the sensor's arrivals (in places whose rounds hold d + 2 sensors
or fewer: more check each arrival by the rest). An earlier pulse that other sensors heard too (pulses at
``dims`` more sensors imply its discharge time at the place: a round the shots missed, a second gun firing
with the first) is no one sensor's direct sound. Each candidate's rounds are refitted with one position
(robust least squares); of those whose every arrival then lies within the association's tolerance, the
place inside the area searched, the one that fits tightest is taken, and the search repeats (a second
sensor's echoes) up to MAX_MOVES times.
"""
from __future__ import annotations

import math

import numpy as np

from fusion.locator.associate import Shot, heard_elsewhere, implied_discharge_s, inside
from fusion.locator.burst import DETECTION_PROB, DISTINCT_PLACES_M, MIN_ROUND_SENSORS, ROBUST_SCALE_S
from fusion.locator.echorepeats import PROB_FLOOR, REPEAT_TOL_S, ROUND_SPREAD_S
from fusion.locator.echosets import ECHO_MAX_DELAY_S
from fusion.locator.multilaterate import Geometry, fit_shots
from fusion.locator.picks import Picks
from fusion.locator.shooters import split_by_place

# Fewest rounds at a place whose arrivals can repeat a lag: the one it is taken from and one more.
MIN_ROUNDS = 2
# Sensors moved at most per place (a bound on the loop: each move is one sensor's echoes).
MAX_MOVES = 3
# Only places whose rounds hold at most this many sensors more than the place's coordinates: with d + 2
# arrivals a round has one redundant one, which a sensor's echo fits at another place as well as its direct
# sound fits the shooter's (first_arrivals' premise); more are each checked by the rest (associate.earlier_set).
MAX_REDUNDANT = 2


def _arrival_rows(picks: Picks, rounds: list[Shot], sensor: int) -> list[int | None]:
    """Per round its pulse at ``sensor`` (the earliest it holds there), or None."""
    out: list[int | None] = []
    for shot in rounds:
        rows = shot.pulses[picks.sensor[shot.pulses] == sensor]
        out.append(int(rows[np.argmin(picks.t_s[rows])]) if len(rows) else None)
    return out


def earlier_sounds(picks: Picks, free: np.ndarray, arrivals: list[int | None],
                   detection_prob: float = DETECTION_PROB) -> list[tuple[float, list[int | None]]]:
    """Earlier sounds at one sensor, likeliest first: (log Bayes factor, per round the earlier pulse or None).

    ``free``: rows of ``picks`` at the sensor that no shot holds; ``arrivals``: per round of the place its
    arrival's row there (None: not heard). See the module docstring; each lag a pulse before a round's arrival
    makes is one candidate.
    """
    heard = [(k, a) for k, a in enumerate(arrivals) if a is not None]
    if len(heard) < MIN_ROUNDS or not len(free):
        return []
    times = picks.t_s[free]
    at = np.array([picks.t_s[a] for _, a in heard])
    start, end = at.min() - ECHO_MAX_DELAY_S, at.max()
    rate_hz = np.count_nonzero((times >= start) & (times <= end)) / (end - start)
    chance = min(max(1.0 - math.exp(-rate_hz * 2.0 * REPEAT_TOL_S), PROB_FLOOR), 1.0 - PROB_FLOOR)
    lags = sorted({float(t - a) for t in times for a in at if -ECHO_MAX_DELAY_S <= t - a < -REPEAT_TOL_S})
    out = []
    for lag in lags:
        near = np.abs(times[None, :] - (at[:, None] + lag)) <= REPEAT_TOL_S
        hits = int(np.count_nonzero(near.any(axis=1)))
        # The round the lag was taken from is a hit by construction: only the others speak.
        n, misses = hits - 1, len(heard) - hits
        odds = n * math.log(detection_prob / chance) + misses * math.log((1.0 - detection_prob) / (1.0 - chance))
        rows: list[int | None] = [None] * len(arrivals)
        for i, (k, _) in enumerate(heard):
            if near[i].any():
                rows[k] = int(free[np.argmin(np.abs(times - at[i] - lag))])
        out.append((odds - math.log(len(lags)), rows))
    return sorted(out, key=lambda o: -o[0])


def _refit(picks: Picks, rounds: list[Shot], geometry: Geometry) -> list[Shot] | None:
    """``rounds`` (their pulses as given) fitted with one position: new shots, or None where too few
    sensors hear a round."""
    if any(picks.n_sensors(r.pulses) < MIN_ROUND_SENSORS for r in rounds):
        return None
    groups = [(picks.pos_m[r.pulses], picks.t_s[r.pulses], picks.sigma_s[r.pulses]) for r in rounds]
    c = rounds[0].c
    fit = fit_shots(groups, c, geometry, [(r.position, r.t0_s) for r in rounds], loss="soft_l1",
                    scale_s=ROBUST_SCALE_S, places=[0] * len(rounds))
    return [Shot(r.pulses, np.asarray(fit.positions[k], dtype=float).copy(), float(fit.t0_s[k]), c,
                 np.asarray(fit.residuals_s[k]), r.place) for k, r in enumerate(rounds)]


def _moved(picks: Picks, rounds: list[Shot], free: np.ndarray, search) -> list[Shot] | None:
    """The place's rounds with one sensor's arrivals moved to its earlier sound, refitted, or None: of the
    sensors' earlier sounds (:func:`earlier_sounds`, log Bayes factor above zero) that no other sensor heard
    (:func:`fusion.locator.associate.heard_elsewhere` within ROUND_SPREAD_S), the one whose rounds then fit
    tightest (the least largest residual) within ``tol_s``."""
    geometry, tol_s, bounds = search
    best, best_res = None, tol_s
    free_mask = np.zeros(len(picks), dtype=bool)
    free_mask[free] = True
    emit = implied_discharge_s(picks, slice(None), rounds[0].position, rounds[0].c, geometry)  # one place: once
    for sensor in np.unique(picks.sensor[np.concatenate([r.pulses for r in rounds])]):
        arrivals = _arrival_rows(picks, rounds, int(sensor))
        tried = set()
        for odds, earlier in earlier_sounds(picks, free[picks.sensor[free] == sensor], arrivals):
            if odds <= 0.0:
                break
            if tuple(earlier) in tried:
                continue
            tried.add(tuple(earlier))
            taken = np.array([e for e in earlier if e is not None])
            if heard_elsewhere(picks, taken, free_mask, emit, geometry.dims, ROUND_SPREAD_S).any():
                continue
            moved = []
            for r, late, early in zip(rounds, arrivals, earlier):
                kept = r.pulses[r.pulses != late] if late is not None else r.pulses
                moved.append(Shot(np.sort(kept if early is None else np.append(kept, early)), r.position, r.t0_s,
                                  r.c, r.residuals_s, r.place))
            refit = _refit(picks, moved, geometry)
            if refit is None or not inside(bounds, refit[0].position):
                continue
            worst = max(float(np.max(np.abs(s.residuals_s))) for s in refit)
            if worst <= best_res:
                best, best_res = refit, worst
    return best


def direct_sounds(picks: Picks, rows: np.ndarray, shots: list[Shot], geometry: Geometry, tol_s: float,
                  bounds) -> list[Shot]:
    """``shots`` with each burst fitted to a sensor's echoes moved to its direct sound (module docstring).

    ``rows``: the stretch's pulses (rows of ``picks``); those no shot holds may be a sensor's earlier sound.
    ``tol_s``: the association's tolerance, every moved arrival's bound; ``bounds``: the area searched.
    """
    shots = list(shots)
    if not shots:
        return shots
    held = np.zeros(len(picks), dtype=bool)
    for s in shots:
        held[s.pulses] = True
    for group in split_by_place(np.array([s.position[:2] for s in shots]), DISTINCT_PLACES_M):
        if len(group) < MIN_ROUNDS or max(picks.n_sensors(shots[k].pulses) for k in group) > geometry.dims + MAX_REDUNDANT:
            continue
        rounds = [shots[k] for k in group]
        for _ in range(MAX_MOVES):
            # A moved sensor's later pulses stay held (they are its echoes); its earlier ones become held.
            for r in rounds:
                held[r.pulses] = True
            moved = _moved(picks, rounds, rows[~held[rows]], (geometry, tol_s, bounds))
            if moved is None:
                break
            rounds = moved
        for k, r in zip(group, rounds):
            shots[k] = r
    return shots
