"""Sets mixed from another place's arrivals: a lone weak shot whose pulses a better-supported place's rounds explain.

With few sensors hearing, association's least set (4 sensors in 2D, one residual degree of freedom) can be
mixed from the arrivals of a burst's rounds, which fit some place elsewhere exactly; the rounds it took them
from then lack those sensors, or a round lacks the set altogether. A pulse is one arrival: where a place that
holds more pulses explains the set, it needs no place of its own (the same principle that lets a few-sensor
burst take back its rounds, :func:`fusion.locator.fewburst.burst_or_found`).

Example::

    shots = without_mixed_sets(picks, shots, need=4)
"""
from __future__ import annotations

import numpy as np

from fusion.locator.associate import Shot
from fusion.locator.burst import MIN_ROUND_GAP_S, MIN_ROUND_SENSORS, MODEL_SIGMA_S, PATH_TERM_SD_S
from fusion.locator.fewburst import by_place
from fusion.locator.picks import Picks

# A pulse is a round's arrival at a place within this many sigmas of it: MODEL_SIGMA_S where its sensor's path
# term is known from the place's other rounds, PATH_TERM_SD_S where no round there holds that sensor.
ARRIVAL_SIGMAS = 3.0
# A repeat of an arrival (one sound reported twice, the commercial reports' double reports) is explained, not taken.
REPEAT = -1


def _path_terms(picks: Picks, rounds: list[Shot]) -> dict[int, float]:
    """Per sensor that a round of the place holds: the median delay of its arrivals over the straight path."""
    xy, c = rounds[0].position[:2], rounds[0].c
    delays: dict[int, list[float]] = {}
    for r in rounds:
        for row in r.pulses:
            delays.setdefault(int(picks.sensor[row]), []).append(
                float(picks.t_s[row] - r.t0_s - np.hypot(*(picks.xy[row] - xy)) / c))
    return {s: float(np.median(d)) for s, d in delays.items()}


def _claims(picks: Picks, lone: Shot, rounds: list[Shot]) -> tuple[dict[int, list[int]], list[int]]:
    """Which pulses of ``lone`` the ``rounds`` of one place explain: {round index: rows} of arrivals a round lacks
    (REPEAT: rows repeating an arrival a round holds), and the rows of a further round there (empty if none)."""
    xy, c = rounds[0].position[:2], rounds[0].c
    terms = _path_terms(picks, rounds)
    sensor = {int(row): int(picks.sensor[row]) for row in lone.pulses}
    emit = {row: float(picks.t_s[row] - np.hypot(*(picks.xy[row] - xy)) / c - terms.get(s, 0.0)) for row, s in sensor.items()}
    tol = {row: ARRIVAL_SIGMAS * (MODEL_SIGMA_S if s in terms else PATH_TERM_SD_S) for row, s in sensor.items()}
    claims: dict[int, list[int]] = {}
    free = []
    for row, t in emit.items():
        near = [k for k, r in enumerate(rounds) if abs(t - r.t0_s) <= tol[row]]
        if not near:
            free.append(row)
            continue
        k = min(near, key=lambda k: abs(t - rounds[k].t0_s))
        claims.setdefault(REPEAT if sensor[row] in set(picks.sensor[rounds[k].pulses].tolist()) else k, []).append(row)
    if len({sensor[r] for r in free}) < MIN_ROUND_SENSORS:
        return claims, []
    t0 = float(np.median([emit[r] for r in free]))
    further = [r for r in free if abs(emit[r] - t0) <= tol[r]]
    if len({sensor[r] for r in further}) < MIN_ROUND_SENSORS or any(abs(t0 - r.t0_s) < MIN_ROUND_GAP_S for r in rounds):
        return claims, []
    return claims, further


def _give(picks: Picks, rounds: list[Shot], claims: dict[int, list[int]], further: list[int]) -> list[Shot]:
    """Add the claimed arrivals to their rounds (in place); the further round, if any, as a new shot at their place."""
    for k, rows in claims.items():
        if k != REPEAT:
            rounds[k].pulses = np.sort(np.concatenate([rounds[k].pulses, rows]))
    if not further:
        return []
    # A round of MIN_ROUND_SENSORS arrivals fixes a time, not a place: it shares its anchor's (as complete_bursts' do).
    anchor = max(rounds, key=lambda s: len(s.pulses))
    anchor.place = anchor.place if anchor.place is not None else id(anchor)
    rows = np.sort(np.array(further))
    travel_s = np.hypot(*(picks.xy[rows] - anchor.position[:2]).T) / anchor.c
    t0 = float(np.median(picks.t_s[rows] - travel_s))
    return [Shot(rows, anchor.position.copy(), t0, anchor.c, picks.t_s[rows] - t0 - travel_s, anchor.place)]


def without_mixed_sets(picks: Picks, shots: list[Shot], need: int) -> list[Shot]:
    """``shots`` less each lone shot of ``need`` pulses or fewer (the only round at its place) whose pulses, all but
    at most one, a place holding more pulses explains: as arrivals its rounds lack (each sensor's path term taken
    from the place's rounds that hold it), as repeats of arrivals they hold, or as a further round there of
    MIN_ROUND_SENSORS or more, MIN_ROUND_GAP_S from its rounds. Those pulses go to that place; the one left over, if
    any, is free. The shots kept in their order, then the further rounds made.

    Measured at stop 43 (bench/bench_association.py and tests/pittsburgh_like.py): the thinned Pittsburgh inputs'
    FP1 test_014 on 5 sensors, a 4-sensor set 172 m off mixed from rounds 1 and 2 and two double reports, came out
    with its 3 rounds only (rounds exact 0.889 -> 0.898, false shots 7 -> 6); audio-like tuning seeds 602 scene 16
    (a 4-sensor set 93 m off: round 4's three arrivals and an echo) and 603 scene 30 (round 2) placed at their
    shooters (rounds located 0.891 -> 0.895, 0.889 -> 0.892); 601, 604, the default seeds 605, 612, 616, held-out
    audio-like seeds 263, 269, 271 and every other Pittsburgh row unchanged. Two lone sets at two places, each of
    4 pulses, are left as they are: neither holds more (seed 601 scene 24 there).
    """
    if len(shots) < 2:
        return shots
    places = by_place(shots)
    out, added = list(shots), []
    for lone in [p[0] for p in places if len(p) == 1 and len(p[0].pulses) <= need]:
        if all(s is not lone for s in out):
            continue
        richer = [p for p in places if all(s is not lone for s in p) and sum(len(s.pulses) for s in p) > len(lone.pulses)]
        for rounds in sorted(richer, key=lambda p: -sum(len(s.pulses) for s in p)):
            if not any(r is s for r in rounds for s in out):
                continue
            claims, further = _claims(picks, lone, rounds)
            if sum(len(v) for v in claims.values()) + len(further) >= len(lone.pulses) - 1:
                out = [s for s in out if s is not lone]
                added += _give(picks, rounds, claims, further)
                break
    if len(out) == len(shots):
        return shots
    return out + sorted(added, key=lambda s: s.t0_s)
