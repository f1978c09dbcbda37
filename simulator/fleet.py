"""Fleet mode: the pulses a city of sensors would report, without rendering any audio.

For thousands of sensors and hundreds of incidents per minute, rendering audio is too slow
and not the point: the broker, the fusion workers and the locator only see pulses. Here the
same arrivals as the renderer's (:func:`simulator.render.group_arrivals`: direct or NLOS
first arrival, wall echoes; plus a few strong late echoes) become pulses through a model of
the node's detector: a detection probability that rises with SNR (logistic), a picking
error that grows as SNR falls, a re-arm time that merges arrivals closer than it, the clock
model's uncertainty, and random impulsive false pulses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earwitness.units import NS_PER_S
from simulator import propagation
from simulator.render import group_arrivals, groups
from simulator.scenario import STREAM_FLEET, Scenario

LEVEL_FREQ_HZ = 1000.0      # a muzzle blast's energy peaks near here at range


@dataclass
class DetectorModel:
    """How the node's detector turns arrivals into pulses (SNR in dB of peak over background Leq).

    Background noise peaks some 10 dB over its Leq, so a detector that is not to fire on it
    every few seconds needs a peak about 20 dB over the Leq.

    ``detect_snr_db``: 50 % detection; ``detect_width_db``: the logistic's scale.
    ``pick_sd_us`` at and above ``pick_ref_snr_db``, growing 1/amplitude below it, capped
    at ``pick_max_us``. ``rearm_s``: arrivals closer than this after a pulse merge into it.
    ``clock_sd_us``: the PPS clock model's error. ``echoes_per_arrival``: mean number of
    strong late echoes (besides the walls) heard as separate pulses; ``false_per_h``:
    impulsive false pulses per sensor-hour.
    """

    detect_snr_db: float = 20.0
    detect_width_db: float = 2.0
    pick_sd_us: float = 20.0
    pick_ref_snr_db: float = 30.0
    pick_max_us: float = 1000.0
    rearm_s: float = 0.03
    clock_sd_us: float = 5.0
    echoes_per_arrival: float = 1.5
    echo_mean_lag_s: float = 0.25
    echo_loss_db: tuple[float, float] = (3.0, 20.0)
    false_per_h: float = 6.0
    false_snr_db: tuple[float, float] = (12.0, 30.0)


def pulses(scn: Scenario, model: DetectorModel | None = None, progress=None):
    """All pulses of the scenario, sorted by time: (pulses, labels).

    ``pulses`` are dicts in the DESIGN.md contract: ``{"sensor", "t_ns", "t_unc_ns", "snr_db",
    "spl_db", "timing"}``; ``labels[i]`` says what pulse i really is: ``{"event", "round",
    "path"}`` with path one of direct, nlos, wall, diffuse, false (event -1 for false pulses).
    ``progress``, if given, is called with (groups done, groups total).
    """
    m = model or DetectorModel()
    n = len(scn.array)
    models = scn.sensor_models()
    noise_db = np.array([scn.noise_level_db(sm) for sm in models])
    cols = {k: [] for k in ("rcv", "t_s", "snr", "spl", "event", "round", "path")}
    gs = groups(scn)
    for done, g in enumerate(gs, 1):
        rng = scn.rng(STREAM_FLEET, g.event.index, g.key)
        arr = group_arrivals(scn, g)
        arr = arr.select(arr.kind != propagation.GROUND)   # within the detector's re-arm of the direct
        gain_db = propagation.level_change_db(arr, scn.atmosphere, LEVEL_FREQ_HZ)
        # Strong late echoes, relative to each sensor's first arrival.
        first = arr.kind <= propagation.NLOS
        counts = rng.poisson(m.echoes_per_arrival, int(first.sum()))
        e_rcv = np.repeat(arr.rcv[first], counts)
        e_delay = np.repeat(arr.delay_s[first], counts) + rng.exponential(m.echo_mean_lag_s, counts.sum()) + 0.01
        e_gain = np.repeat(gain_db[first], counts) - rng.uniform(*m.echo_loss_db, counts.sum())
        rcv = np.concatenate([arr.rcv, e_rcv])
        delay = np.concatenate([arr.delay_s, e_delay])
        gdb = np.concatenate([gain_db, e_gain])
        path = np.concatenate([arr.kind, np.full(len(e_rcv), propagation.DIFFUSE)])
        g_t0 = g.emissions[0].t_s
        for k, em in enumerate(g.emissions):
            spl = em.peak_db + gdb
            snr = spl - noise_db[rcv]
            audible = snr > m.detect_snr_db - 6.0 * m.detect_width_db
            cols["rcv"].append(rcv[audible])
            cols["t_s"].append(g.t_s + (em.t_s - g_t0) + delay[audible])
            cols["snr"].append(snr[audible])
            cols["spl"].append(spl[audible])
            cols["event"].append(np.full(int(audible.sum()), g.event.index))
            cols["round"].append(np.full(int(audible.sum()), _round_number(scn, g, k)))
            cols["path"].append(path[audible])
        if progress:
            progress(done, len(gs))
    rng = scn.rng(STREAM_FLEET, 1 << 30)
    n_false = rng.poisson(m.false_per_h * scn.duration_s / 3600.0 * n)
    cols["rcv"].append(rng.integers(0, n, n_false))
    cols["t_s"].append(rng.uniform(0.0, scn.duration_s, n_false))
    cols["snr"].append(rng.uniform(*m.false_snr_db, n_false))
    cols["spl"].append(noise_db[cols["rcv"][-1]] + cols["snr"][-1])
    cols["event"].append(np.full(n_false, -1))
    cols["round"].append(np.zeros(n_false, int))
    cols["path"].append(np.full(n_false, -1))
    a = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    return _detect(scn, m, a, rng)


def _round_number(scn: Scenario, g, k: int) -> int:
    em = g.emissions[k]
    return next(j for j, e in enumerate(scn.emissions(g.event)) if e is em) + 1


PATH_NAMES = {-1: "false", **dict(enumerate(propagation.KIND_NAMES))}


def _detect(scn: Scenario, m: DetectorModel, a: dict, rng: np.random.Generator):
    """Apply detection probability, re-arm merging, picking and clock errors; build the records."""
    p_detect = 1.0 / (1.0 + np.exp(-(a["snr"] - m.detect_snr_db) / m.detect_width_db))
    keep = rng.random(len(p_detect)) < p_detect
    a = {k: v[keep] for k, v in a.items()}
    order = np.lexsort((a["t_s"], a["rcv"]))
    a = {k: v[order] for k, v in a.items()}
    # Re-arm: per sensor, drop an arrival within rearm_s of the last kept one.
    keep = np.ones(len(a["t_s"]), bool)
    last_rcv, last_t = -1, -np.inf
    for i, (r, t) in enumerate(zip(a["rcv"], a["t_s"])):
        if r == last_rcv and t - last_t < m.rearm_s:
            keep[i] = False
            continue
        last_rcv, last_t = r, t
    a = {k: v[keep] for k, v in a.items()}
    pick_us = np.minimum(m.pick_sd_us * 10.0 ** ((m.pick_ref_snr_db - np.minimum(a["snr"], m.pick_ref_snr_db)) / 20.0),
                         m.pick_max_us)
    err_s = (rng.standard_normal(len(pick_us)) * pick_us + rng.standard_normal(len(pick_us)) * m.clock_sd_us) * 1e-6
    unc_ns = np.round(np.sqrt(pick_us ** 2 + m.clock_sd_us ** 2) * 1000.0).astype(np.int64)
    t_ns = scn.start_ns + np.round((a["t_s"] + err_s) * NS_PER_S).astype(np.int64)
    order = np.argsort(t_ns, kind="stable")
    ids = scn.array.ids
    out, labels = [], []
    for i in order:
        out.append({"sensor": ids[int(a["rcv"][i])], "t_ns": int(t_ns[i]), "t_unc_ns": int(unc_ns[i]),
                    "snr_db": round(float(a["snr"][i]), 1), "spl_db": round(float(a["spl"][i]), 1),
                    "timing": "pps-audio"})
        labels.append({"event": int(a["event"][i]), "round": int(a["round"][i]),
                       "path": PATH_NAMES[int(a["path"][i])],
                       "t_true_ns": scn.start_ns + int(round(float(a["t_s"][i]) * NS_PER_S))})
    return out, labels
