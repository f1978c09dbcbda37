"""Per-sensor static terms (station corrections) on the Pittsburgh firing positions (TN098
supplement, ShotSpotter Inc., CC BY 4.0): can a static delay or position error per sensor explain
each position's common offset from its survey, and would correcting it move the offset?

A station term is a sensor's mean residual over many located shots, an arrival-time error shared
by every shot it hears (a clock delay, a wrong surveyed position, a steady non-line-of-sight
path): joint hypocentre determination (Douglas, "Joint epicentre determination", Nature 215,
1967), and the iterated station terms of Richards-Dinger & Shearer (JGR 105, 2000), subtracted
from the arrivals and the shots located again, the sensors' own data only (no truth).

Located here with the oracle (tests/locator_oracle.py) on the commercial grouping, so that the
question is about the sensors and not about association. Two facts decide it:

- no sensor hears two firing positions (each position has its own ~30 sensors), so terms fitted
  on two positions, with or without their surveys, have nothing to apply to on the third;
- terms fitted on one position's own shots are the residuals its fits leave, orthogonal to what a
  move of the source changes: they shrink the scatter about the offset, not the offset. How large
  an offset such terms could make at all: :func:`static_offset_quantile`.
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import numpy as np

import locator_oracle as oracle
import pittsburgh_pulses as pp
from earwitness.units import NS_PER_S
from locator_scoring import locate_case

WITHIN_M = 25.0     # shots farther from the survey are misplaced, not offset (as the scoring's)
MIN_SHOTS = 3       # a sensor's term from fewer shots is one shot's residual, not a static one


@dataclass(frozen=True)
class Shot:
    """One shot of the commercial grouping: its sensors, their 2D positions (m), arrival times (s
    from the first), the speed of sound (m/s) and the surveyed firing position (x, y)."""

    ids: tuple[str, ...]
    xy_m: np.ndarray
    t_s: np.ndarray
    c_m_s: float
    survey_xy: np.ndarray


def position_shots(tests: list[pathlib.Path]) -> dict[str, list[Shot]]:
    """{firing position: its shots with at least the oracle's MIN_PULSES pulses}."""
    out: dict[str, list[Shot]] = {}
    for test in tests:
        positions, _ = pp.all_pulses(test)
        survey, _ = pp.survey(test)
        c_m_s = pp.speed_of_sound(pp.temperature_c(test))
        for group in pp.commercial_shots(test):
            if len(group) < oracle.MIN_PULSES:
                continue
            t_ns = np.array([p["t_ns"] for p in group], dtype=np.int64)
            out.setdefault(test.parent.name, []).append(Shot(
                tuple(p["sensor"] for p in group), np.array([positions[p["sensor"]][:2] for p in group]),
                (t_ns - t_ns.min()) / NS_PER_S, c_m_s, np.array(survey[:2])))
    return out


def shared_sensors(by_position: dict[str, list[Shot]]) -> set[str]:
    """Sensors that hear more than one firing position (where a term fitted on one could apply to another)."""
    seen: dict[str, set[str]] = {}
    for fp, shots in by_position.items():
        for shot in shots:
            for sid in shot.ids:
                seen.setdefault(sid, set()).add(fp)
    return {sid for sid, fps in seen.items() if len(fps) > 1}


def _fit(shot: Shot, terms_m: dict[str, float]) -> tuple[np.ndarray, float]:
    """The oracle's position and emission time (s) with each sensor's term (m of path) taken off its arrival."""
    t_s = shot.t_s - np.array([terms_m.get(sid, 0.0) for sid in shot.ids]) / shot.c_m_s
    xy, t0_s, _ = oracle.fit(np.column_stack([shot.xy_m, np.zeros(len(t_s))]), t_s, shot.c_m_s)
    return xy, t0_s


def oracle_xy(shots: list[Shot], terms_m: dict[str, float] | None = None) -> np.ndarray:
    """The oracle's fitted positions (n, 2) of ``shots``, with station terms (m of path) if given."""
    return np.array([_fit(shot, terms_m or {})[0] for shot in shots]).reshape(-1, 2)


def _residuals_m(shot: Shot, xy: np.ndarray, t0_s: float) -> np.ndarray:
    """Path residuals (m) of the raw arrivals at a fitted position and emission time."""
    return (shot.t_s - t0_s) * shot.c_m_s - np.hypot(*(shot.xy_m - xy).T)


def _centred_medians(by_sensor: dict[str, list]) -> dict[str, float]:
    """Each sensor's median residual (of at least MIN_SHOTS shots) less the median over sensors (a
    delay common to all is the emission time's, not a sensor's)."""
    medians = {sid: float(np.median(v)) for sid, v in by_sensor.items() if len(v) >= MIN_SHOTS}
    common = float(np.median(list(medians.values())))
    return {sid: v - common for sid, v in medians.items()}


def self_calibrate(shots: list[Shot], iterations: int) -> list[tuple[dict[str, float], np.ndarray]]:
    """Iterated station terms from the shots alone: per round, (terms in m of path, fitted positions).

    Round 0 is the plain fit (no terms). Each next round's term of a sensor is its median residual
    over the previous round's fits (of shots within WITHIN_M of the fits' median), centred.
    """
    terms: dict[str, float] = {}
    rounds = []
    for _ in range(iterations + 1):
        fits = [_fit(shot, terms) for shot in shots]
        xy = np.array([f[0] for f in fits])
        rounds.append((dict(terms), xy))
        centre = np.median(xy, axis=0)
        by_sensor: dict[str, list[float]] = {}
        for shot, (p, t0) in zip(shots, fits):
            if np.hypot(*(p - centre)) <= WITHIN_M:
                for sid, r in zip(shot.ids, _residuals_m(shot, p, t0)):
                    by_sensor.setdefault(sid, []).append(float(r))
        terms = _centred_medians(by_sensor)
    return rounds


def offset_and_scatter(vectors: np.ndarray) -> tuple[float, float]:
    """Shots' common offset (m) from the survey, given their error vectors (x, y; those within WITHIN_M
    of it), and their RMS scatter about it."""
    vectors = np.asarray(vectors, dtype=float).reshape(-1, 2)
    vectors = vectors[np.hypot(*vectors.T) <= WITHIN_M]
    mean = vectors.mean(axis=0)
    return float(np.hypot(*mean)), float(np.sqrt(np.mean(np.sum((vectors - mean) ** 2, axis=1))))


def static_offset_quantile(shots: list[Shot], terms_m: dict[str, float], q: float, trials: int,
                           seed: int) -> float:
    """The ``q`` quantile of the common offset that static terms as large as ``terms_m`` make.

    Each trial draws every sensor of the position a value of the terms at random, with a random sign
    (inflated by sqrt(n / (n - 3)) for the part of a static error the fits absorb), and moves every
    shot's least-squares fit by the linearised response to them (unknowns x, y, emission time;
    unit vectors from the survey); the offset is the mean move over the shots.
    """
    ids = sorted({sid for s in shots for sid in s.ids})
    index = {sid: i for i, sid in enumerate(ids)}
    response = np.zeros((2, len(ids)))   # mean (x, y) move per metre of path on each sensor
    for s in shots:
        away = s.xy_m - s.survey_xy
        unit = away / np.hypot(*away.T)[:, None]
        gain = np.linalg.pinv(np.column_stack([-unit, np.ones(len(unit))]))[:2]
        for k, sid in enumerate(s.ids):
            response[:, index[sid]] += gain[:, k] / len(shots)
    values = np.array(list(terms_m.values()))
    values = values * np.sqrt(len(values) / (len(values) - 3))
    rng = np.random.default_rng(seed)
    draws = np.array([rng.choice(values, len(ids)) * rng.choice((-1.0, 1.0), len(ids)) for _ in range(trials)])
    return float(np.quantile(np.hypot(*(response @ draws.T)), q))


def _locate_shifted(tests, workdir: pathlib.Path, delays_ns: dict[str, int]):
    """`earwitness locate` on every reported pulse of ``tests``, each sensor's pulses ``delays_ns`` earlier."""
    cases = []
    for test in tests:
        positions, pulses = pp.all_pulses(test)
        survey, rounds = pp.survey(test)
        folder = workdir / test.name
        folder.mkdir(parents=True, exist_ok=True)
        sensors = pp.write_sensors_csv(positions, folder / "sensors.csv")
        path = folder / "pulses.jsonl"
        path.write_text("".join(json.dumps({**p, "t_ns": p["t_ns"] - delays_ns.get(p["sensor"], 0)}) + "\n"
                                for p in pulses))
        cases.append(locate_case(test.name, sensors, path, survey, rounds,
                                 ["--temperature-c", str(pp.temperature_c(test))]))
    return cases


def _locator_terms_ns(tests, cases, delays_ns: dict[str, int]) -> dict[str, int]:
    """Next round's station terms (ns) from the located shots: per sensor, the median over the shots it
    is in of (its pulse nearest the predicted arrival) - (shot time + 2D distance / c), less the median."""
    by_sensor: dict[str, list[int]] = {}
    for test, case in zip(tests, cases):
        positions, pulses = pp.all_pulses(test)
        c_m_s = pp.speed_of_sound(pp.temperature_c(test))
        times: dict[str, list[int]] = {}
        for p in pulses:
            times.setdefault(p["sensor"], []).append(p["t_ns"] - delays_ns.get(p["sensor"], 0))
        for shot in (s for inc in case.incidents for s in inc["shots"]):
            for sid in shot["sensors"]:
                due = shot["t_ns"] + np.hypot(positions[sid][0] - shot["x"], positions[sid][1] - shot["y"]) / c_m_s * NS_PER_S
                t = np.array(times[sid])
                by_sensor.setdefault(sid, []).append(int(t[np.argmin(abs(t - due))] - due))
    return {sid: delays_ns.get(sid, 0) + int(round(v)) for sid, v in _centred_medians(by_sensor).items()}


def locator_self_calibration(tests, workdir: pathlib.Path, iterations: int) -> list[tuple[dict[str, int], list]]:
    """The same iteration through `earwitness locate` from all reported pulses: per round, (terms in
    ns, the scored cases); round 0 is the locator as it is. Terms come from the located shots alone."""
    delays_ns: dict[str, int] = {}
    rounds = []
    for k in range(iterations + 1):
        cases = _locate_shifted(tests, workdir / f"round{k}", delays_ns)
        rounds.append((dict(delays_ns), cases))
        delays_ns = _locator_terms_ns(tests, cases, delays_ns)
    return rounds


def error_vectors(shots: list[Shot], xy: np.ndarray) -> np.ndarray:
    """Fitted positions less the shots' surveys."""
    return np.asarray(xy) - np.array([s.survey_xy for s in shots])


def case_error_vectors(cases) -> np.ndarray:
    """Located shots of scored cases less their surveys."""
    return np.array([[s["x"] - c.truth_xy[0], s["y"] - c.truth_xy[1]]
                     for c in cases for inc in c.incidents for s in inc["shots"]])
