"""Echo sets told by their repeats: a shot whose arrivals recur, sensor by sensor, after the burst's other rounds.

Each sensor hears a source at a fixed place through a fixed impulse response (the buildings
round the shooter and round the sensor): every round of a burst from one place brings the same
echoes at the same lags after its direct arrival at that sensor (the image-source model, Allen &
Berkley, JASA 65, 1979; TN098 §IV: "loud, sharp echoes"). Where the echoes are many (`earwitness
detect` finds 8-25 pulses per sensor for three rounds), some of them, each of a different round
and lag at a different sensor, happen to line up as if from the burst's place at one discharge
time, and are located as one more round. Timing at the place cannot tell such a set from a round
(:mod:`fusion.locator.echosets` weighs its levels and which sensors heard it); what can is the
sensors' other pulses. If a set's arrival x at sensor s is an echo of round k, lag d = x - a_k
after k's arrival there, the same echo follows the burst's other rounds j at a_j + d, each heard
as a round's arrival is (P_D); if it is a round, a pulse there is chance (the sensor's rate of
unexplained pulses over the burst).

The model, per sensor s of a candidate set X whose arrival follows some round heard at s by at
most ECHO_MAX_DELAY_S: "repeat" is a pulse of s that no shot of the place explains within
REPEAT_TOL_S of any point a_j + (x - a_k) (k a round heard at s before x, j another round); under
"round" its probability is that of a Poisson process of the sensor's rate hitting one of those
windows, under "echo" P_D per other round on top. The log Bayes factor of echo over round is the
sum over the sensors (the repeats of different sensors are independent: each sensor its own
walls), with the prior odds of :data:`fusion.locator.echosets.ECHO_LOG_PRIOR_ODDS`; the likeliest
echo set is dropped, then the rest weighed again (its pulses may be another set's repeats), as a
sequential test of association hypotheses (Reid, IEEE TAC 24, 1979).

Evenly spaced rounds repeat one another too (round 3 lies a gap after round 2, as round 2 after
round 1): a pulse that a shot of the place holds is never counted as a repeat, and neither are
repeats at a discharge time that at least ROUND_SHARE of a round's count of the place's sensors
hear (a round the shots missed: Pittsburgh FP2, two 3-round tests merged, lost a round of 13
sensors to 46 nats of "repeats" that were its unlocated neighbour's arrivals). An echo of one round
at several sensors repeats after another round at one discharge time as well, but only at the
set's sensors.

On the Pittsburgh recordings (FP1-FP3, `earwitness detect` then `earwitness locate`), a pulse that
follows a located round at a sensor recurs at the same lag after another round, within 2 ms, for
0.17 / 0.21 / 0.68 of 326 / 401 / 342 such lags (FP1 / FP2 / FP3), against 0.003 / 0.027 / 0.012
at a point 37 ms off: the repeats are there, if less regular than P_D says. No round of FP1-FP3,
from the reports or the audio, comes within 4.8 nats of being dropped.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from fusion.locator.burst import DETECTION_PROB, DISTINCT_PLACES_M, MIN_ROUND_SENSORS
from fusion.locator.echosets import ECHO_LOG_PRIOR_ODDS, ECHO_MAX_DELAY_S
from fusion.locator.picks import Picks

# Two arrivals of one echo after two rounds, against the two rounds' arrivals: four reported times,
# each rounded to 1 ms in the commercial reports (+-0.5 ms) and picked within a few tenths of one.
REPEAT_TOL_S = 2e-3
# Repeats of different sensors within this of one discharge time are taken for one round: a shot's
# arrivals' scatter about its fit (association's tolerance floor, locate.MIN_TOLERANCE_S).
ROUND_SPREAD_S = 3e-3
# ... heard by at least this share of the sensors a round of the place typically has: echoes of one round at
# several sensors repeat after another round at one discharge time as well, but only at the set's sensors.
ROUND_SHARE = 0.5
# Fewest shots at a place for the test: a set, the round it echoes and one more round to repeat after.
MIN_GROUP_SHOTS = 3
# A set's lags after a round differ from sensor to sensor by more than this: each sensor hears its own walls. A
# round's after another at one place are one gap: on the Pittsburgh inputs (FP1-FP3, 158 pairs of located rounds,
# all pulses and audio) they spread 0.7-2.0 ms (median), 19 ms at most (an echo picked for a round at one sensor).
ECHO_LAG_SPREAD_S = 0.03
# Probabilities are kept off 0 and 1: no window hit by chance (a sensor with no other pulses), an echo
# certain to repeat after some of a long burst's rounds.
PROB_FLOOR = 1e-6


def _arrivals(shot, picks: Picks) -> dict[int, float]:
    """Per sensor of ``shot`` its first arrival, s."""
    out: dict[int, float] = {}
    for r in shot.pulses[np.argsort(picks.t_s[shot.pulses], kind="stable")]:
        out.setdefault(int(picks.sensor[r]), float(picks.t_s[r]))
    return out


def repeat_log_odds(x: int, others: list[int], shots: list, arrivals: list[dict], free_s: dict[int, np.ndarray],
                    detection_prob: float = DETECTION_PROB) -> float:
    """Log Bayes factor of "echo set" over "round" for ``shots[x]`` among the rounds ``others`` of its place.

    ``arrivals``: per shot its first arrival per sensor (s); ``free_s``: per sensor the times of the
    pulses no shot of the place holds (only those count as repeats). Zero where no sensor can speak.
    """
    n_after = len(others) - 1   # rounds each echo would repeat after, besides the one it echoes
    if n_after < 1:
        return 0.0
    none = np.zeros(0)
    per_sensor = []   # (chance, discharge times the sensor's repeats imply)
    for s, x_t in arrivals[x].items():
        parents = [k for k in others if s in arrivals[k] and 0.0 < x_t - arrivals[k][s] <= ECHO_MAX_DELAY_S]
        if not parents:
            continue
        points = np.array([(arrivals[j][s] if s in arrivals[j] else arrivals[k][s] + shots[j].t0_s - shots[k].t0_s)
                           + x_t - arrivals[k][s] for k in parents for j in others if j != k])
        heard = [arrivals[m][s] for m in [x, *others] if s in arrivals[m]]
        start, end = min(heard), max(heard) + ECHO_MAX_DELAY_S
        times = free_s.get(s, none)
        rate_hz = np.count_nonzero((times >= start) & (times <= end)) / (end - start)
        chance = min(max(1.0 - math.exp(-rate_hz * 2.0 * REPEAT_TOL_S * len(points)), PROB_FLOOR), 1.0 - PROB_FLOOR)
        hits = times[np.any(np.abs(times[:, None] - points[None, :]) <= REPEAT_TOL_S, axis=1)]
        # Travel to s taken from x's own arrival: the discharge time each repeat would have as a round.
        per_sensor.append((chance, hits - x_t + shots[x].t0_s))
    travel_s: dict[int, list[float]] = {}   # per sensor of the place: arrival after a shot's discharge
    for m in [x, *others]:
        for s, t in arrivals[m].items():
            travel_s.setdefault(s, []).append(t - shots[m].t0_s)
    travel = {s: float(np.median(v)) for s, v in travel_s.items()}
    typical = float(np.median([len(arrivals[m]) for m in others]))

    def a_round(discharge_s: float) -> bool:
        # A discharge time that a round's share of the place's sensors hear too is a round the shots missed
        # (a burst's rounds evenly spaced, one unlocated), not echoes: an echo repeats only where the set was heard.
        hearing = sum(bool(np.any(np.abs(free_s.get(s, none) - discharge_s - tau) <= ROUND_SPREAD_S))
                      for s, tau in travel.items())
        return hearing >= max(MIN_ROUND_SENSORS, ROUND_SHARE * typical)

    total = 0.0
    for chance, discharge_s in per_sensor:
        hit = any(not a_round(float(e)) for e in discharge_s)
        echo = min(1.0 - (1.0 - detection_prob) ** n_after * (1.0 - chance), 1.0 - PROB_FLOOR)
        total += math.log(echo / chance) if hit else math.log((1.0 - echo) / (1.0 - chance))
    return total


def without_repeated_echoes(shots: list, picks: Picks) -> list:
    """``shots`` (rows of ``picks`` in their ``pulses``) less the sets of echoes located as rounds of a burst:
    pairs of sets of the same echoes first (:func:`echo_pairs`), then by their repeats (module docstring),
    likeliest first."""
    shots = list(shots)
    if len(shots) < MIN_GROUP_SHOTS:
        return shots
    pairs = echo_pairs(shots, picks)
    shots = [s for s in shots if id(s) not in pairs]
    if len(shots) < MIN_GROUP_SHOTS:
        return shots
    held_t = picks.t_s[np.concatenate([s.pulses for s in shots])]
    # Only the pulses from the burst's first arrival to the echo span after its last can be repeats.
    window = np.flatnonzero((picks.t_s >= held_t.min()) & (picks.t_s <= held_t.max() + ECHO_MAX_DELAY_S))
    arrivals = [_arrivals(s, picks) for s in shots]
    while len(shots) >= MIN_GROUP_SHOTS:
        rows = np.setdiff1d(window, np.concatenate([s.pulses for s in shots]))
        free_s = {int(s): picks.t_s[rows[picks.sensor[rows] == s]] for s in np.unique(picks.sensor[rows])}
        best, best_odds = None, 0.0
        for x, shot in enumerate(shots):
            others = [m for m, o in enumerate(shots) if m != x and
                      float(np.hypot(*(o.position[:2] - shot.position[:2]))) <= DISTINCT_PLACES_M]
            if len(others) < MIN_GROUP_SHOTS - 1:
                continue
            odds = repeat_log_odds(x, others, shots, arrivals, free_s) + ECHO_LOG_PRIOR_ODDS
            if odds > best_odds:
                best, best_odds = x, odds
        if best is None:
            break
        del shots[best], arrivals[best]
    return shots


def _repeated_lags(late1: dict, late2: dict, early1: dict, early2: dict) -> np.ndarray:
    """The lags (s) of ``late1`` after ``early1`` (arrivals per sensor) at the sensors all four share where ``late2``
    follows ``early2`` by the same lag within REPEAT_TOL_S, each in (0, ECHO_MAX_DELAY_S]: one echo after two sounds."""
    common = sorted(set(late1) & set(late2) & set(early1) & set(early2))
    lag1 = np.array([late1[s] - early1[s] for s in common])
    lag2 = np.array([late2[s] - early2[s] for s in common])
    return lag1[(lag1 > 0.0) & (lag1 <= ECHO_MAX_DELAY_S) & (np.abs(lag1 - lag2) <= REPEAT_TOL_S)]


def _trailing(shots: list, arrivals: list[dict]) -> list[tuple[int, int]]:
    """(set, round) for each shot that follows another of its place at MIN_ROUND_SENSORS sensors or more, each lag
    in (0, ECHO_MAX_DELAY_S], with no more pulses than it and lags that differ by sensor by more than
    ECHO_LAG_SPREAD_S: what an echo set's lags do, and a round's never (its lags are the gap). A pair of echo sets
    (:func:`echo_pairs`) is two of these, so the quartic search runs over them only."""
    out = []
    for x, k in itertools.permutations(range(len(shots)), 2):
        if len(shots[x].pulses) > len(shots[k].pulses) or \
                float(np.hypot(*(shots[x].position[:2] - shots[k].position[:2]))) > DISTINCT_PLACES_M:
            continue
        lags = [arrivals[x][s] - arrivals[k][s] for s in set(arrivals[x]) & set(arrivals[k])]
        lags = [lag for lag in lags if 0.0 < lag <= ECHO_MAX_DELAY_S]
        if len(lags) >= MIN_ROUND_SENSORS and np.ptp(lags) > ECHO_LAG_SPREAD_S:
            out.append((x, k))
    return out


def echo_pairs(shots: list, picks: Picks) -> set[int]:
    """The ids of ``shots`` that are two sets of the same echoes after two different rounds of their place.

    A sensor's echo comes at its own lag after every round (module docstring), and sets of echoes after two rounds
    can each be located as a round, each then holding the other's repeats, which :func:`repeat_log_odds` does not
    count (a pulse a shot holds is no repeat). Two shots X, Y that follow two other rounds k, j at the same lags
    (:func:`_repeated_lags`, as :func:`echo_burst` across places) at MIN_ROUND_SENSORS common sensors or more, lags
    that differ from sensor to sensor by more than ECHO_LAG_SPREAD_S, are such sets: a round follows another at
    every sensor by the same lag, the gap between their discharge times, to within its picks' error (and a
    sensor's path delay cancels in the lag)."""
    arrivals = [_arrivals(s, picks) for s in shots]
    out: set[int] = set()
    for (x, k), (y, j) in itertools.combinations(_trailing(shots, arrivals), 2):
        if len({x, y, k, j}) < 4:
            continue
        same = _repeated_lags(arrivals[x], arrivals[y], arrivals[k], arrivals[j])
        if len(same) >= MIN_ROUND_SENSORS and np.ptp(same) > ECHO_LAG_SPREAD_S:
            out |= {id(shots[x]), id(shots[y])}
    return out


def echo_burst(rounds: list, shots: list, picks: Picks) -> bool:
    """Whether ``shots`` (of one place) are a burst of echoes of ``rounds`` (a burst at another place).

    A sensor's echoes follow every round at that sensor's own lags (module docstring), so sets of them
    that line up elsewhere line up after each round alike: a ghost burst whose arrivals follow the rounds'
    by a fixed lag at every sensor, each lag positive (an echo comes after its sound) and within
    ECHO_MAX_DELAY_S. Two of its shots after two different rounds, at the same lags within REPEAT_TOL_S
    at MIN_ROUND_SENSORS or more common sensors, mark it (the earliest arrival at each sensor is the
    direct one). Two bursts at fixed places keep their arrival differences at every sensor, so what the
    test checks is that a gap between the shots repeats a gap between the rounds, and that the rounds come
    first at every sensor: for a second shooter's rounds a chance of the order of REPEAT_TOL_S over the gaps.
    """
    first = [_arrivals(s, picks) for s in rounds]
    ghost = [_arrivals(s, picks) for s in shots]
    for (g1, g2), (a1, a2) in itertools.product(itertools.combinations(ghost, 2), itertools.permutations(first, 2)):
        if len(_repeated_lags(g1, g2, a1, a2)) >= MIN_ROUND_SENSORS:
            return True
    return False


def trails(shot, first, picks: Picks) -> bool:
    """Whether ``shot`` follows ``first`` at every sensor they share, MIN_ROUND_SENSORS or more, each
    within ECHO_MAX_DELAY_S: what a set of ``first``'s echoes does (an echo comes after its sound)."""
    late, early = _arrivals(shot, picks), _arrivals(first, picks)
    lags = np.array([late[s] - early[s] for s in set(late) & set(early)])
    return len(lags) >= MIN_ROUND_SENSORS and bool(np.all((lags > 0.0) & (lags <= ECHO_MAX_DELAY_S)))
