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
# A further round at the place takes at least this many of the lone set's pulses (the rest of its arrivals may be
# pulses no shot holds): one would only move a pulse, and two leave the set fewer than a round's sensors.
FURTHER_FROM_LONE = 2


def _path_terms(picks: Picks, rounds: list[Shot]) -> dict[int, float]:
    """Per sensor that a round of the place holds: the median delay of its arrivals over the straight path."""
    xy, c = rounds[0].position[:2], rounds[0].c
    delays: dict[int, list[float]] = {}
    for r in rounds:
        for row in r.pulses:
            delays.setdefault(int(picks.sensor[row]), []).append(
                float(picks.t_s[row] - r.t0_s - np.hypot(*(picks.xy[row] - xy)) / c))
    return {s: float(np.median(d)) for s, d in delays.items()}


def _claims(picks: Picks, lone: Shot, rounds: list[Shot], unused: np.ndarray) -> tuple[dict[int, list[int]], list[int]]:
    """Which pulses of ``lone`` the ``rounds`` of one place explain: {round index: rows} of arrivals a round lacks
    (REPEAT: rows repeating an arrival a round holds), and the rows of a further round there (empty if none), which
    may take pulses no shot holds (``unused``) at sensors the lone set's part of it lacks."""
    xy, c = rounds[0].position[:2], rounds[0].c
    term_s = np.zeros(int(picks.sensor.max()) + 1)
    termed = np.zeros(len(term_s), dtype=bool)
    for sensor, term in _path_terms(picks, rounds).items():
        term_s[sensor], termed[sensor] = term, True

    def emitted(rows: np.ndarray) -> np.ndarray:
        """Each row's emission time at the place, its sensor's path term taken off."""
        return picks.t_s[rows] - np.hypot(*(picks.xy[rows] - xy).T) / c - term_s[picks.sensor[rows]]

    def tolerance(rows: np.ndarray) -> np.ndarray:
        return ARRIVAL_SIGMAS * np.where(termed[picks.sensor[rows]], MODEL_SIGMA_S, PATH_TERM_SD_S)

    rows = np.asarray(lone.pulses, dtype=int)
    emit = dict(zip(rows.tolist(), emitted(rows).tolist()))
    tol = dict(zip(rows.tolist(), tolerance(rows).tolist()))
    claims: dict[int, list[int]] = {}
    free = []
    for row, t in emit.items():
        near = [k for k, r in enumerate(rounds) if abs(t - r.t0_s) <= tol[row]]
        if not near:
            free.append(row)
            continue
        k = min(near, key=lambda k: abs(t - rounds[k].t0_s))
        held = set(picks.sensor[rounds[k].pulses].tolist())
        claims.setdefault(REPEAT if int(picks.sensor[row]) in held else k, []).append(row)
    further = _further_round(picks, free, (emit, tol), unused, (emitted, tolerance), rounds)
    return claims, further


def _further_round(picks: Picks, free: list[int], lone_times, unused: np.ndarray, at_place, rounds: list[Shot]) -> list[int]:
    """The rows of a further round at the place that takes FURTHER_FROM_LONE or more of the lone set's ``free`` rows
    (``lone_times``: their emission times and tolerances there, by row), with pulses of ``unused`` (no shot holds
    them; ``at_place``: the functions giving rows' emission times and tolerances) at the sensors those lack, in all
    from MIN_ROUND_SENSORS sensors or more, MIN_ROUND_GAP_S from the place's rounds; the lone set's rows first."""
    emit, tol = lone_times
    if len(free) < FURTHER_FROM_LONE:  # one pulse per sensor in a shot
        return []

    def around(t0: float) -> list[int]:
        return [r for r in free if abs(emit[r] - t0) <= tol[r]]

    own = max((around(emit[r]) for r in free), key=len)
    t0 = float(np.median([emit[r] for r in own]))
    own = around(t0)
    sensors = {int(picks.sensor[r]) for r in own}
    if len(sensors) < FURTHER_FROM_LONE or any(abs(t0 - r.t0_s) < MIN_ROUND_GAP_S for r in rounds):
        return []
    emitted, tolerance = at_place
    rows = unused[~np.isin(picks.sensor[unused], list(sensors))]
    off_s = np.abs(emitted(rows) - t0)
    near = off_s <= tolerance(rows)
    added: dict[int, tuple[float, int]] = {}  # per sensor the nearest pulse to t0 (the first of equals)
    for row, off in zip(rows[near].tolist(), off_s[near].tolist()):
        s = int(picks.sensor[row])
        if s not in added or off < added[s][0]:
            added[s] = (off, row)
    if len(sensors) + len(added) < MIN_ROUND_SENSORS:
        return []
    return own + sorted(row for _, row in added.values())


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


def without_mixed_sets(picks: Picks, shots: list[Shot], need: int, rows: np.ndarray | None = None) -> list[Shot]:
    """``shots`` less each lone shot of ``need`` pulses or fewer (the only round at its place) whose pulses a place
    holding more pulses explains: as arrivals its rounds lack (each sensor's path term taken from the place's rounds
    that hold it), as repeats of arrivals they hold, or as a further round there of MIN_ROUND_SENSORS or more sensors,
    MIN_ROUND_GAP_S from its rounds, which takes FURTHER_FROM_LONE or more of the lone set's pulses and, at the sensors
    those lack, pulses of ``rows`` (the stretch) that no shot holds. The lone shot goes where the place explains all
    its pulses but at most one, or FURTHER_FROM_LONE or more of them, leaving fewer than MIN_ROUND_SENSORS: too few
    for the round it claims to be. Those pulses go to that place; the rest are free. The shots kept in their order,
    then the further rounds made.

    Measured at stop 43 (bench/bench_association.py and tests/pittsburgh_like.py): the thinned Pittsburgh inputs'
    FP1 test_014 on 5 sensors, a 4-sensor set 172 m off mixed from rounds 1 and 2 and two double reports, came out
    with its 3 rounds only (rounds exact 0.889 -> 0.898, false shots 7 -> 6); audio-like tuning seeds 602 scene 16
    (a 4-sensor set 93 m off: round 4's three arrivals and an echo) and 603 scene 30 (round 2) placed at their
    shooters (rounds located 0.891 -> 0.895, 0.889 -> 0.892); 601, 604, the default seeds 605, 612, 616, held-out
    audio-like seeds 263, 269, 271 and every other Pittsburgh row unchanged. Two lone sets at two places, each of
    4 pulses, are left as they are: neither holds more (seed 601 scene 24 there).
    Since stop 44 a further round may take pulses no shot holds, and a set left too small goes (audio-like seed 277
    scene 33: two 4-sensor sets 424-444 m off, each mixed from two of rounds 2 and 3's three arrivals at the burst's
    place, the third unused, with echoes; the 4 rounds came out, 2 before).
    """
    if len(shots) < 2:
        return shots
    places = by_place(shots)
    out, added = list(shots), []
    for lone in [p[0] for p in places if len(p) == 1 and len(p[0].pulses) <= need]:
        if all(s is not lone for s in out):
            continue
        richer = [p for p in places if all(s is not lone for s in p) and sum(len(s.pulses) for s in p) > len(lone.pulses)]
        unused = np.empty(0, dtype=int) if rows is None else np.setdiff1d(rows, np.concatenate([s.pulses for s in out + added]))
        for rounds in sorted(richer, key=lambda p: -sum(len(s.pulses) for s in p)):
            if not any(r is s for r in rounds for s in out):
                continue
            claims, further = _claims(picks, lone, rounds, unused)
            explained = sum(len(v) for v in claims.values()) + len(np.intersect1d(further, lone.pulses))
            left = len(lone.pulses) - explained
            if left <= 1 or (explained >= FURTHER_FROM_LONE and left < MIN_ROUND_SENSORS):
                out = [s for s in out if s is not lone]
                added += _give(picks, rounds, claims, further)
                break
    if len(out) == len(shots):
        return shots
    return out + sorted(added, key=lambda s: s.t0_s)
