"""Harder inputs made from the Pittsburgh pulse reports (FP1-FP3; TN098 supplement by ShotSpotter,
Inc., CC BY 4.0), to check that association generalises beyond the tests it passes as they are.

- thinned: a test's pulses from only k (3-8) of the sensors the commercial system located with,
  every pulse of those sensors kept (echoes and noise included);
- merged: two 3-round tests of one firing position as one input, the second burst shifted to
  start 0.1-0.4 s after the first, so that the two bursts' arrivals interleave (6 rounds);
- nlos: a quarter of the sensors' pulses delayed by an exponential NLOS-like excess (mean 5 ms,
  a fifth of them five times as much).

Each case is (name, firing position, sensors {id: (x, y, z)}, pulses, rounds fired, temperature).
Seeded, so the same cases come out every time.
"""
from __future__ import annotations

import math

import numpy as np

import pittsburgh_pulses as pp

WITHIN_M = 25.0
SEED = 14


def _fp(test) -> str:
    return test.parent.name


def thinned(tests, per_test: int = 2, seed: int = SEED):
    rng = np.random.default_rng(seed)
    for test in tests:
        positions, pulses = pp.all_pulses(test)
        survey, rounds = pp.survey(test)
        used = sorted({p["sensor"] for shot in pp.commercial_shots(test) for p in shot})
        for _ in range(per_test):
            k = int(rng.integers(3, 9))
            keep = set(rng.choice(used, size=min(k, len(used)), replace=False).tolist())
            yield (_fp(test), survey, {s: positions[s] for s in keep}, [p for p in pulses if p["sensor"] in keep],
                   rounds, pp.temperature_c(test))


def thinned_shots(tests, index: int) -> tuple[str, tuple, int, int, list[dict]]:
    """Thinned case ``index`` through ``locate``: its firing position, survey, sensors kept, rounds fired and every
    shot put out."""
    from fusion.locator.locate import locate
    from fusion.locator.sensors import Sensors

    fp, survey, positions, pulses, rounds, temperature = list(thinned(tests))[index]
    incidents = locate(pulses, Sensors.from_local(positions), temperature)
    return fp, survey, len(positions), rounds, [s for inc in incidents for s in inc["shots"]]


def nlos(tests, seed: int = SEED):
    rng = np.random.default_rng(seed)
    for test in tests:
        positions, pulses = pp.all_pulses(test)
        survey, rounds = pp.survey(test)
        delayed = rng.choice(sorted(positions), size=max(1, len(positions) // 4), replace=False).tolist()
        delay_s = {s: float(rng.exponential(0.005) * (1 + 4 * (rng.random() < 0.2))) for s in delayed}
        moved = [dict(p, t_ns=p["t_ns"] + int(delay_s.get(p["sensor"], 0.0) * 1e9)) for p in pulses]
        yield _fp(test), survey, positions, moved, rounds, pp.temperature_c(test)


def merged(tests, seed: int = SEED):
    rng = np.random.default_rng(seed)
    by_fp: dict[str, list] = {}
    for test in tests:
        by_fp.setdefault(_fp(test), []).append(test)
    for fp, group in by_fp.items():
        bursts = [t for t in group if pp.survey(t)[1] == 3]
        for a, b in zip(bursts, bursts[1:]):
            pos_a, pulses_a = pp.all_pulses(a)
            pos_b, pulses_b = pp.all_pulses(b)
            first_a = min(p["t_ns"] for p in pp.commercial_shots(a)[0])
            first_b = min(p["t_ns"] for p in pp.commercial_shots(b)[0])
            shift = first_a - first_b + int(rng.uniform(0.1, 0.4) * 1e9)
            later = [dict(p, t_ns=p["t_ns"] + shift, id=f"{p['id']}b") for p in pulses_b]
            yield fp, pp.survey(a)[0], {**pos_a, **pos_b}, pulses_a + later, 6, pp.temperature_c(a)


def score(incidents: list[dict], survey, rounds: int) -> dict:
    """One case: located (the incident with most rounds within WITHIN_M), rounds found within
    WITHIN_M (at most those fired), whether the rounds reported equal those fired, their errors."""
    best = max(incidents, key=lambda i: (i["rounds"], len(i["sensors"])), default=None)
    dists = sorted(math.hypot(s["x"] - survey[0], s["y"] - survey[1]) for i in incidents for s in i["shots"])
    near = [d for d in dists if d <= WITHIN_M][:rounds]
    return {"located": best is not None and math.hypot(best["x"] - survey[0], best["y"] - survey[1]) <= WITHIN_M,
            "found": len(near), "fired": rounds, "exact": sum(i["rounds"] for i in incidents) == rounds,
            "errors": near, "false": len(dists) - len([d for d in dists if d <= WITHIN_M])}


def figures(rows: list[dict]) -> dict:
    """Tests within WITHIN_M, rounds located, rounds exact, median error, false shots, over ``rows``."""
    errors = [e for r in rows for e in r["errors"]]
    return {"cases": len(rows), "located_25m": round(float(np.mean([r["located"] for r in rows])), 3),
            "rounds_located": round(sum(r["found"] for r in rows) / max(sum(r["fired"] for r in rows), 1), 3),
            "rounds_exact": round(float(np.mean([r["exact"] for r in rows])), 3),
            "median_err_m": round(float(np.median(errors)), 2) if errors else None,
            "false_shots": sum(r["false"] for r in rows)}
