"""Score located incidents against a scenario's truth: what a city would ask of the system.

Detection rate (gunfire incidents found), location error of every true shot, rounds exact,
who fired first and in what order, and false alerts per square mile per day (incidents
where no gun was fired: fireworks, backfires, echoes located as shots elsewhere). Only
incidents classed ``gunfire`` (by the server or ``earwitness locate``; or left unclassified,
as the bare locator leaves them) are alerts; an incident
classed fireworks or other that was gunfire is a missed one. Classification accuracy is
scored over every located incident against the nearest true event of any kind (gunfire or
not; an incident near no event is an artefact, which is right unless classed gunfire).

Matching: a true gunfire incident (truth rows sharing an ``incident``, or one event) is
found by the located incident with a shot within ``match_time_s`` of one of its shots and
``match_radius_m`` of its position; every true shot is then paired with the nearest-in-
time unused located shot of that incident (its location error). The located shooters are
mapped to the true ones by the mean position of their shots.
"""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import numpy as np

from earwitness.units import NS_PER_S
from simulator.arrays import SQ_MI_M2, to_local

MATCH_TIME_S = 2.0
MATCH_RADIUS_M = 150.0
SHOT_TIME_S = 0.1
DAY_S = 86400.0
WITHDRAWN = "withdrawn"   # an alert status: its shots were merged into another incident
CONFOUNDER_CLASSES = ("fireworks", "other")   # fusion.locator.classify's classes other than gunfire
# A located incident is of the true event nearest in time x speed of sound + distance, within this.
CLASS_MATCH_M = 600.0
SOUND_M_PER_S = 343.0
ERROR_THRESHOLDS_M = (15.0, 25.0)


class ScoredShot(NamedTuple):
    """One shot as scored: a true one (no ``err_m``) or a located one (its stated 95 % radius, if any)."""
    t_ns: int
    xy: np.ndarray
    shooter: object
    err_m: float | None = None


def _xy(obj: dict, origin) -> np.ndarray:
    if "x" in obj:
        return np.array([float(obj["x"]), float(obj["y"])])
    if origin is None:
        raise ValueError("an incident in lat/lon needs a WGS84 array to be scored")
    return to_local(obj["lat"], obj["lon"], obj.get("alt", origin[2]), origin)[0, :2]


def truth_incidents(truth: list[dict], origin=None) -> list[dict]:
    """Gunfire truth rows grouped into incidents: ``{"name", "shots": [ScoredShot]}`` in time order."""
    groups = defaultdict(list)
    for row in truth:
        if row.get("gunfire"):
            groups[row.get("incident") or f"event-{row['event']}"].append(
                ScoredShot(int(row["t_ns"]), _xy(row, origin), row.get("shooter") or f"event-{row['event']}"))
    out = [{"name": k, "shots": sorted(v, key=lambda s: s.t_ns)} for k, v in groups.items()]
    return sorted(out, key=lambda inc: inc["shots"][0].t_ns)


def score(incidents: list[dict], truth: list[dict], area_m2: float, duration_s: float, origin=None) -> dict:
    """Score ``incidents`` (Incidents JSONL contract) against ``truth`` (render/fleet truth rows).

    Returns a dict: ``incidents`` (true gunfire incidents), ``detected``, ``detection_rate``,
    ``shots``, ``shots_located``, ``errors_m`` (per located true shot), ``error_median_m``,
    ``error_p90_m``, ``within_15m``, ``within_25m``, ``within_err_m`` (fraction of located shots
    whose true place is inside the shot's stated ``err_m``, its 95% radius; None where no shot
    states one), ``err_m_median_m``, ``rounds_exact`` (fraction of detected
    incidents), ``first_shooter_right`` and ``order_right`` (fractions of detected
    incidents with two or more true shooters; None without any), ``false_alerts`` and
    ``false_alerts_per_sq_mi_day``.
    """
    incidents = [i for i in incidents if i.get("status") != WITHDRAWN]   # merged into another: not an incident
    true = truth_incidents(truth, origin)
    classes = classification(incidents, truth, origin)
    located = []
    for inc in (i for i in incidents if is_alert(i)):
        shots = [ScoredShot(int(s["t_ns"]), _xy(s, origin), s.get("shooter", 0), s.get("err_m"))
                 for s in inc.get("shots") or []]
        if not shots:
            shots = [ScoredShot(int(inc["t_ns"]), _xy(inc, origin), 0, inc.get("err_m"))]
        located.append({"inc": inc, "shots": sorted(shots, key=lambda s: s.t_ns), "used": False})
    errors, stated, rounds_ok, first_ok, order_ok, detected = [], [], [], [], [], 0
    for t in true:
        best, best_d = None, np.inf
        for cand in located:
            if cand["used"]:
                continue
            d = min((np.linalg.norm(ls.xy - ts.xy) for ls in cand["shots"] for ts in t["shots"]
                     if abs(ls.t_ns - ts.t_ns) <= MATCH_TIME_S * NS_PER_S), default=np.inf)
            if d < best_d and d <= MATCH_RADIUS_M:
                best, best_d = cand, d
        if best is None:
            continue
        best["used"] = True
        detected += 1
        rounds_ok.append(int(best["inc"].get("rounds", len(best["shots"]))) == len(t["shots"]))
        free = list(range(len(best["shots"])))
        for ts in t["shots"]:
            near = [k for k in free if abs(best["shots"][k].t_ns - ts.t_ns) <= SHOT_TIME_S * NS_PER_S]
            if not near:
                continue
            k = min(near, key=lambda k: abs(best["shots"][k].t_ns - ts.t_ns))
            free.remove(k)
            got = best["shots"][k]
            errors.append(float(np.linalg.norm(got.xy - ts.xy)))
            stated.append(np.nan if got.err_m is None else float(got.err_m))
        names = sorted({ts.shooter for ts in t["shots"]})
        if len(names) >= 2:
            label = _map_shooters(best["shots"], t["shots"])
            seq_true = [ts.shooter for ts in t["shots"]]
            seq_got = [label.get(ls.shooter) for ls in best["shots"]]
            first_ok.append(bool(seq_got) and seq_got[0] == seq_true[0])
            order_ok.append(seq_got == seq_true)
    false = sum(1 for c in located if not c["used"])
    err, err_m = np.array(errors), np.array(stated)
    told = np.isfinite(err_m)
    n_shots = sum(len(t["shots"]) for t in true)
    area_sq_mi = area_m2 / SQ_MI_M2
    return {
        "incidents": len(true), "detected": detected,
        "detection_rate": detected / len(true) if true else None,
        "shots": n_shots, "shots_located": len(errors), "errors_m": errors,
        "error_median_m": float(np.median(err)) if len(err) else None,
        "error_p90_m": float(np.percentile(err, 90)) if len(err) else None,
        **{f"within_{int(m)}m": float(np.mean(err <= m)) if len(err) else None for m in ERROR_THRESHOLDS_M},
        "within_err_m": float(np.mean(err[told] <= err_m[told])) if told.any() else None,
        "err_m_median_m": float(np.median(err_m[told])) if told.any() else None,
        "rounds_exact": float(np.mean(rounds_ok)) if rounds_ok else None,
        "first_shooter_right": float(np.mean(first_ok)) if first_ok else None,
        "order_right": float(np.mean(order_ok)) if order_ok else None,
        "false_alerts": false,
        "false_alerts_per_sq_mi_day": false / area_sq_mi / (duration_s / DAY_S),
        **classes,
    }


def is_alert(incident: dict) -> bool:
    """Whether a located incident is a gunfire alert: anything not classed a confounder (an
    unclassified ``impulsive`` incident, as :func:`fusion.locator.locate.locate` alone gives, alerts)."""
    return incident.get("class") not in CONFOUNDER_CLASSES


def classification(incidents: list[dict], truth: list[dict], origin=None) -> dict:
    """Gunfire-or-not accuracy of the located incidents' classes against the nearest true event.

    Returns ``classified`` (located incidents), ``class_accuracy`` (None without any),
    ``class_by_kind`` {true kind (or "none"): {class: count}}.
    """
    rows = [(int(r["t_ns"]), _xy(r, origin), r.get("kind", "?"), bool(r.get("gunfire"))) for r in truth]
    right, by_kind = [], defaultdict(lambda: defaultdict(int))
    for inc in incidents:
        # The incident's position (its main shooter's) and the median of its shot times: a
        # stray shot of the incident does not decide what it was.
        t, xy = int(np.median([int(s["t_ns"]) for s in inc.get("shots") or [inc]])), _xy(inc, origin)
        cost = [abs(t - rt) / NS_PER_S * SOUND_M_PER_S + float(np.linalg.norm(rxy - xy)) for rt, rxy, _, _ in rows]
        k = int(np.argmin(cost)) if cost else -1
        kind, gunfire = (rows[k][2], rows[k][3]) if k >= 0 and cost[k] <= CLASS_MATCH_M else ("none", False)
        by_kind[kind][inc.get("class", "?")] += 1
        right.append(is_alert(inc) == gunfire)
    return {"classified": len(right), "class_accuracy": float(np.mean(right)) if right else None,
            "class_by_kind": {k: dict(v) for k, v in by_kind.items()}}


def _map_shooters(located: list[ScoredShot], true: list[ScoredShot]) -> dict:
    """Located shooter id -> true shooter name, matching the shooters' mean positions one to
    one at least total distance (the assignment problem, scipy's linear_sum_assignment)."""
    from scipy.optimize import linear_sum_assignment

    def centres(shots):
        by = defaultdict(list)
        for shot in shots:
            by[shot.shooter].append(shot.xy)
        return list(by), np.array([np.mean(v, axis=0) for v in by.values()])

    got_ids, got_xy = centres(located)
    true_ids, true_xy = centres(true)
    rows, cols = linear_sum_assignment(np.linalg.norm(got_xy[:, None] - true_xy[None], axis=2))
    return {got_ids[r]: true_ids[c] for r, c in zip(rows, cols)}


def format_table(s: dict) -> str:
    """The score as a two-column text table."""
    def fmt(v, unit=""):
        if v is None:
            return "-"
        return f"{v:.3g}{unit}" if isinstance(v, float) else f"{v}{unit}"

    rows = [
        ("gunfire incidents detected", f"{s['detected']}/{s['incidents']} ({fmt(s['detection_rate'])})"),
        ("shots located", f"{s['shots_located']}/{s['shots']}"),
        ("location error median / p90", f"{fmt(s['error_median_m'], ' m')} / {fmt(s['error_p90_m'], ' m')}"),
        ("within 15 m / 25 m", f"{fmt(s['within_15m'])} / {fmt(s['within_25m'])}"),
        ("within err_m (95%) / err_m median",
         f"{fmt(s.get('within_err_m'))} / {fmt(s.get('err_m_median_m'), ' m')}"),
        ("rounds exact", fmt(s["rounds_exact"])),
        ("first shooter right / order right", f"{fmt(s['first_shooter_right'])} / {fmt(s['order_right'])}"),
        ("false alerts (per sq mi per day)", f"{s['false_alerts']} ({fmt(s['false_alerts_per_sq_mi_day'])})"),
        ("classified right (gunfire or not)", f"{fmt(s.get('class_accuracy'))} over {s.get('classified', 0)} incidents: "
         + ", ".join(f"{kind} -> " + "/".join(f"{c} {n}" for c, n in sorted(got.items()))
                     for kind, got in sorted(s.get("class_by_kind", {}).items()))),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
