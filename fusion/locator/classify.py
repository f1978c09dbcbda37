"""Classify a located incident: gunfire, fireworks or other impulsive noise, with a confidence.

Pipeline stage located shots -> classify -> store/alert. Classes (the ``class`` field):

- ``gunfire``: muzzle blasts of firearms;
- ``fireworks``: firecracker strings and aerial shells;
- ``other``: impulsive noise that is neither (doors, dumpster lids, car backfires, nail guns,
  hammering, bags and balloons popping);
- ``unknown``: no cue speaks (none could be measured, or every one measured moves the odds by
  less than a factor 1.5, MIN_SPEAKING_LOG_ODDS): the even prior would make the call a coin
  flip, so none is made. Its ``confidence`` is then the probability of gunfire (near 0.5). The
  alerts treat it as possible gunfire for an operator to decide (:mod:`fusion.server.alerts`).

``confidence`` is the probability of the class given, it is built from a few independent cues
combined as log-likelihood ratios for gunfire against everything else (a naive-Bayes sum,
as in the evidence combination of Duda, Hart & Stork, "Pattern Classification", 2001,
§2.9): each cue is a physically motivated soft threshold (a logistic of a measured quantity),
clipped so that no single cue decides alone, and a cue that cannot be measured contributes
nothing. Cues:

1. Source level at 1 m: received peak level (``spl_db``, else ``peak_dbfs`` through the
   microphone's sensitivity) back-propagated over the located distance by spherical
   spreading and air absorption (ISO 9613-1 at 1 kHz). Muzzle blasts are 140-165 dB peak
   at 1 m (Maher, "Acoustical characterization of gunshots", IEEE SAFE 2007; Beck, Nakasone
   & Marr, J. Forensic Sci. 56, 2011); doors, tools and popping bags are 110-138 dB.
   Diffraction and clipping only lower a received level, so the upper quartile over sensors
   is used.
2. Height: an aerial shell bursts tens to hundreds of metres up (NFPA 1123 display shells;
   consumer "mortars" some 50 m); a fit of the shot's arrivals that puts the source well
   above the sensors, beyond its own uncertainty, says fireworks. Gunfire comes from the
   ground or a building. The height is profiled (a fit at each height of a grid, the wind
   fitted too: :func:`height_above_sensors_m`), since a free 3D fit over sensors in one plane
   sinks to the plane; and the arrivals the 2D locator left out (an aerial source's ranges
   are not its 2D model's) are gathered back from the incident's pulses when given.
3. Cadence: a firecracker string pops many times at irregular, exponential-like gaps of
   tens of ms as its fuse burns; a firearm's rounds come at least 50 ms apart (1200
   rounds/min, the fastest common cyclic rate) and a shooter's cadence is regular (semi-
   automatic trigger pulls, or an automatic's cyclic rate). Many shots with a coefficient
   of variation of the intervals far above a shooter's, or faster than any firearm, say
   firecrackers.
   A string's pops come too fast for the locator to place more than a few, so the cadence
   is also measured on the crackle: the pops the loudest sensor and the next loudest hear at
   the incident's time differences of arrival (:func:`crackle`; echoes fail that coincidence).
4. Spectrum: a small charge has a short positive phase (0.1-0.35 ms for firecrackers and
   popping bags against 0.4-1.4 ms for muzzle blasts), so its energy reaches higher in
   frequency (the Friedlander spectrum rolls off above about 1/(2 pi T+)); a large share of
   energy above 3 kHz (the detector's ``high_ratio_db``) counts against gunfire. Weak, since
   air absorption and the recorder's rate change it: real gunfire (Pittsburgh, 12 kHz) sits
   near -24 dB, far below the threshold.
5. Launch and burst: a fireworks mortar is a dull launch thump on the ground (its lift
   charge) and, after the shell's time of flight, the burst aloft near the same horizontal
   position: display shells rise about 30 m per inch of calibre in 2-5 s and drift only
   tens of metres in the wind (NFPA 1123, Annex; Kosanke & Kosanke, "Pyrotechnic
   Reference Series" No. 2, "Aerial shell ballistics"). An incident whose first shot
   follows an earlier incident (``recent``) 1.5-6 s before, within 150 m horizontally,
   is that pair, whichever of the two was heard; a firearm's rounds within an incident
   are not split 1.5 s apart and 150 m away from each other.

The level cue speaks for gunfire against household impulses only: aerial bursts (150-165
dB) and firecrackers (135-150 dB) overlap muzzle blasts, so a loud impulse with no other
cue stays a moderate call (its log-odds are capped near 1.4, p ~ 0.8), which is what
keeps the confidences calibrated on a fireworks night.

Example::

    result = classify(incident, arrivals_per_shot, registry.sensors)
    incident.update(result)   # "class", "confidence", "class_cues"
"""
from __future__ import annotations

import math

import numpy as np

from earwitness.units import NS_PER_S
from fusion.locator.multilaterate import C_MAX, C_MIN
from fusion.locator.sensors import Sensors
from fusion.locator.shockwave import MIN_DISTANCE_M, level_at_1m_db

GUNFIRE, FIREWORKS, OTHER, UNKNOWN = "gunfire", "fireworks", "other", "unknown"
CLASSES = (GUNFIRE, FIREWORKS, OTHER, UNKNOWN)
# A cue speaks when it moves the odds by at least a factor 1.5 (its |log-odds| >= log 1.5): real
# gunfire's spectrum cue (-0.001 at -24 dB) and a level within 1 dB of the boundary do not.
MIN_SPEAKING_LOG_ODDS = math.log(1.5)

# The reference node's microphone: full scale at 130 dB SPL (simulator.sensors' MEMS model).
REFERENCE_SENSITIVITY_DBFS_PER_PA = -36.0
SPL_AT_1_PA_DB = 94.0             # dB re 20 uPa of 1 Pa
CLIPPED_DBFS = -3.0               # a peak this near full scale may be clipped: a lower bound only
LEVEL_QUANTILE = 75               # percentile over sensors (diffraction and clipping only lower levels)
# Log-odds of gunfire per dB of source level about the boundary between the loudest household
# impulses (slams, bag pops: up to ~138 dB) and muzzle blasts (140 dB and up); clipped.
LEVEL_BOUNDARY_DB = 137.0
LEVEL_SCALE_DB = 2.5
LEVEL_MAX_LOG_ODDS = 3.0          # below the boundary: household impulses are far quieter
# Above the boundary only this much: fireworks bursts and firecrackers are as loud as guns.
LEVEL_MAX_GUNFIRE_LOG_ODDS = 1.4
# Aerial bursts: this far above the sensors, and at least HEIGHT_SIGMAS of the profile's sigma
# (a likelihood ratio against a source in the sensors' plane of HEIGHT_SIGMAS^2).
AERIAL_HEIGHT_M = 45.0
HEIGHT_SIGMAS = 3.0
# Profile of the height: display shells burst up to ~300 m (NFPA 1123); 20 m steps resolve the
# 45 m boundary.
HEIGHT_GRID_M = np.arange(0.0, 320.0, 20.0)
HEIGHT_REFINE_M = 10.0
WIND_FIT_UNKNOWNS = 6             # x, y, t0, c, wind east and north (the height is profiled)
MIN_SENSORS_3D = WIND_FIT_UNKNOWNS + 1   # one to spare
MAX_WIND_M_S = 15.0               # a gale: no fireworks night is windier
WIND_FIT_ITERATIONS = 20          # warm-started from the last height: a few steps suffice
WIND_FIT_TOL_M = 1e-3
GATHER_TOLERANCE_S = 0.15         # an aerial burst's arrivals lag a ground model's by up to h^2 / 2dc
MAX_HEIGHT_SHOTS = 3              # the shots with most arrivals: a long string's work stays bounded
MIN_DELTA_CHI2 = 1e-6             # a flat profile: the sigma is huge but finite (it goes out as JSON)
DEFAULT_T_UNC_S = 1e-3
ROBUST_SCALE_S = 5e-4             # residual scale of the robust loss: a few samples of timing,
ROBUST_SCALE_SIGMAS = 2.0         # and never under this many sigmas (the quadratic core of the loss)
# A node's surveyed position errs by a couple of metres (consumer GPS averaged for hours:
# multipath biases do not average out), which the height fit's free source position, speed of
# sound and wind absorb in part; what is left, some metres of path or ms of time, is far above
# a pick's stated uncertainty (microseconds), and stated alone, it made every arrival an
# outlier of the robust loss. 1 m of path, with the simulator's 2.5 m survey error: no ground
# shot of the fleet city lifted aloft, more of the fireworks night's bursts found aloft
# (2 m lost two bursts of the whole-night test in tests/test_classify.py).
POSITION_SD_M = 1.0
AERIAL_LOG_ODDS = -6.0
# Cadence: firecrackers.
MIN_SHOTS_CADENCE = 4
MIN_FIREARM_INTERVAL_S = 0.05     # 1200 rounds/min
FAST_SHARE = 0.25                 # share of intervals faster than any firearm
IRREGULAR_CV = 0.5                # exponential gaps have CV ~1; a shooter's well under 0.5 (SHOOTER_CV):
                                  # FP1-FP3's 27 bursts (3 rounds, 0.38-1.17 s apart) median 0.056, max 0.32
FAST_MEDIAN_S = 0.15              # string pops come tens of ms apart
CADENCE_LOG_ODDS = -4.0
# Crackle: pulses this long either side of the located arrivals (a string burns for a few
# seconds and the located pops may be any of them), heard by the loudest sensors at the
# incident's TDOAs within the larger of COINCIDENCE_S (a few picking errors and the wind's
# change over seconds) and COINCIDENCE_SIGMAS of the pulse's stated timing uncertainty.
CRACKLE_SPAN_S = 2.0
COINCIDENCE_S = 2e-3
COINCIDENCE_SIGMAS = 3.0
CRACKLE_PARTNERS = 3              # the loud sensors that may confirm a pop of the loudest one:
FARTHER_CONFIRMATIONS = 2         # the second loudest alone, or this many of the others (an echo seldom fits two)
MIN_CRACKLE_POPS = 8              # a string's pops are many; a lone double report is not a crackle
POPS_PER_SHOT = 2                 # pops per located shot beyond which the locator missed most
SHOOTER_CV = 0.3                  # a shooter's cadence is more regular than this
# The incident's window of pulses: the farthest a shot is heard (fusion.tracking.incidents' default range,
# which imports this module) and a slack.
MAX_HEARD_M = 4000.0
WINDOW_SLACK_S = 0.1
# Spectrum: energy above 3 kHz relative to all (dB) beyond which the pulse is a small charge.
HIGH_SHARE_BOUNDARY_DB = -10.0
HIGH_SHARE_SCALE_DB = 2.0
HIGH_SHARE_MAX_LOG_ODDS = 1.5
# Launch and burst of one mortar (cue 5): the shell's time of flight and horizontal drift.
MORTAR_FLIGHT_S = (1.5, 6.0)
MORTAR_DRIFT_M = 150.0
PAIR_LOG_ODDS = -4.0
# Before any cue: even odds (and a tie is called gunfire, the costlier miss).
PRIOR_LOG_ODDS = 0.0
DECIMALS = 3


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def received_spl_db(pulse: dict, sensitivity_dbfs_per_pa: float | None) -> float | None:
    """The pulse's peak level in dB SPL: ``spl_db``, else ``peak_dbfs`` through the sensitivity; None if
    unknown or possibly clipped."""
    if pulse.get("spl_db") is not None:
        return float(pulse["spl_db"])
    peak = pulse.get("peak_dbfs")
    if peak is None or sensitivity_dbfs_per_pa is None or not math.isfinite(peak) or peak >= CLIPPED_DBFS:
        return None
    return float(peak) - sensitivity_dbfs_per_pa + SPL_AT_1_PA_DB


def source_level_db(shot: dict, arrivals: list[dict], sensors: Sensors,
                    sensitivity_dbfs_per_pa: float | None) -> float | None:
    """Peak level at 1 m of one shot: received level + 20 log10(r) + absorption * r, upper quartile over sensors.

    Spherical spreading and ISO 9613-1 air absorption added back (:func:`fusion.locator.shockwave.level_at_1m_db`);
    the upper quartile (LEVEL_QUANTILE) because diffraction and clipping only lower a sensor's level.
    """
    src = sensors.to_enu(shot)
    levels = []
    for p in arrivals:
        spl = received_spl_db(p, sensitivity_dbfs_per_pa)
        if spl is None or p["sensor"] not in sensors.index:
            continue
        levels.append(float(level_at_1m_db(spl, np.linalg.norm(sensors.enu_m[sensors.index[p["sensor"]]] - src))))
    return float(np.percentile(levels, LEVEL_QUANTILE)) if levels else None


def gather_arrivals(shot: dict, arrivals: list[dict], pulses: list[dict] | None, sensors: Sensors,
                    c_m_s: float) -> list[dict]:
    """The shot's arrivals plus, from ``pulses`` (the incident's window), the pulse nearest to the
    shot's ground-level arrival at each other sensor, within GATHER_TOLERANCE_S.

    The locator keeps only the sensors its 2D model explains; an aerial burst, whose ranges
    exceed the horizontal ones by about h^2 / 2d, loses many of them, and with them its height
    fix. The robust fit of :func:`height_above_sensors_m` rejects a wrong pick among them.
    """
    if not pulses:
        return arrivals
    have = {p["sensor"] for p in arrivals}
    xy = sensors.to_enu(shot)[:2]
    t_shot = int(shot["t_ns"])
    tol_ns = GATHER_TOLERANCE_S * NS_PER_S
    best: dict[str, tuple[float, dict]] = {}
    for p in pulses:
        name = p["sensor"]
        if name in have or name not in sensors.index:
            continue
        d_m = float(np.linalg.norm(sensors.enu_m[sensors.index[name]][:2] - xy))
        miss = abs(int(p["t_ns"]) - t_shot - d_m / c_m_s * NS_PER_S)
        if miss <= tol_ns and miss < best.get(name, (math.inf, None))[0]:
            best[name] = (miss, p)
    return list(arrivals) + [p for _, p in best.values()]


def _wind_fit(pos: np.ndarray, t_s: np.ndarray, sigma: np.ndarray, z_m: float, start: np.ndarray):
    """Robust fit of x, y, t0, c and the wind (east, north) for a source held at height ``z_m``.

    Arrival times t_i = t0 + R_i / (c + w . u_i), with R_i the slant range and u_i the unit
    vector from the source to sensor i (the effective-sound-speed approximation: Salomons,
    "Computational Atmospheric Acoustics", 2001, section 2.3), by iteratively reweighted
    Gauss-Newton with soft-L1 weights (Huber 1964; Holland & Welsch 1977), c and the wind
    clipped to their plausible ranges. Returns the parameters and the robust cost (as
    ``fusion.locator.multilaterate.LOSSES["soft_l1"]``'s, in squared normalised residuals).
    """
    v = start.astype(float).copy()
    scale = np.maximum(ROBUST_SCALE_S / sigma, ROBUST_SCALE_SIGMAS)
    for _ in range(WIND_FIT_ITERATIONS):
        d = pos - np.array([v[0], v[1], z_m])
        r = np.maximum(np.linalg.norm(d, axis=1), MIN_DISTANCE_M)
        along = (d[:, :2] @ v[4:6]) / r
        c_eff = v[3] + along
        res = (t_s - v[2] - r / c_eff) / sigma
        # Derivatives of the travel time r / c_eff by x, y (the source moves against d), c, wind.
        dr = -d[:, :2] / r[:, None]
        dalong = -v[4:6][None, :] / r[:, None] - along[:, None] * dr / r[:, None]
        dtt_xy = dr / c_eff[:, None] - r[:, None] * dalong / c_eff[:, None] ** 2
        jac = -np.column_stack([dtt_xy, np.ones(len(r)), -r / c_eff ** 2, -d[:, :2] / c_eff[:, None] ** 2]) / sigma[:, None]
        w = 1.0 / np.sqrt(np.sqrt(1.0 + (res / scale) ** 2))   # square root of the soft-L1 weight
        step, *_ = np.linalg.lstsq(jac * w[:, None], -res * w, rcond=None)
        v += step
        v[3] = min(max(v[3], C_MIN), C_MAX)
        v[4:6] = np.clip(v[4:6], -MAX_WIND_M_S, MAX_WIND_M_S)
        if np.all(np.abs(step[:2]) < WIND_FIT_TOL_M):
            break
    d = pos - np.array([v[0], v[1], z_m])
    r = np.maximum(np.linalg.norm(d, axis=1), MIN_DISTANCE_M)
    res = (t_s - v[2] - r / (v[3] + (d[:, :2] @ v[4:6]) / r)) / sigma
    z = (res / scale) ** 2
    return v, float(np.sum(2.0 * (np.sqrt(1.0 + z) - 1.0) * scale ** 2))


def height_above_sensors_m(shot: dict, arrivals: list[dict], sensors: Sensors, c_m_s: float) -> tuple[float, float] | None:
    """Height of the source above the highest of its sensors and its sigma, from a 3D fit; None if underdetermined.

    Above the highest, not the median: in hilly cities (Pittsburgh's sensors span 40 m of
    height) a shooter on a hillside is well above the sensors in the valley.

    A profile likelihood over height (Pawitan, "In All Likelihood", 2001, section 2.9): at each
    height of HEIGHT_GRID_M the rest (x, y, t0, c and the wind, :func:`_wind_fit`) is fitted,
    and the height is the grid's best. With sensors in one plane a free-height fit is drawn to
    the plane, where the height's gradient vanishes (a saddle); the profile is not, and the
    wind, which a plain fit must absorb by tilting the source, is modelled. The sigma is the
    Gaussian-equivalent one of the likelihood ratio against the plane: h / sqrt(delta cost /
    s^2), with s^2 the best fit's robust cost per degree of freedom, floored at 1 (a fit better
    than the stated timing errors claims no more than they allow: Mikhail & Ackermann,
    "Observations and Least Squares", 1976, section 4.7).
    """
    known = [p for p in arrivals if p["sensor"] in sensors.index]
    if len(known) < MIN_SENSORS_3D:
        return None
    pos = sensors.enu_m[[sensors.index[p["sensor"]] for p in known]]
    t_ref = min(int(p["t_ns"]) for p in known)
    t_s = np.array([(int(p["t_ns"]) - t_ref) / NS_PER_S for p in known])
    sigma = np.hypot([(p.get("t_unc_ns") or DEFAULT_T_UNC_S * NS_PER_S) / NS_PER_S for p in known],
                     POSITION_SD_M / c_m_s)
    plane_z = float(np.max(pos[:, 2]))
    xy = sensors.to_enu(shot)[:2]
    t0 = float(np.median(t_s - np.linalg.norm(pos[:, :2] - xy, axis=1) / c_m_s))
    v = np.array([xy[0], xy[1], t0, c_m_s, 0.0, 0.0])
    heights, costs, fits = [], [], []
    try:
        for h in HEIGHT_GRID_M:   # warm-started upwards: each height's fit starts from the last
            v, cost = _wind_fit(pos, t_s, sigma, plane_z + h, v)
            heights.append(float(h))
            costs.append(cost)
            fits.append(v)
        # Then halfway to the grid's neighbours of its best, each from that best's fit.
        best = int(np.argmin(costs))
        for h in (heights[best] - HEIGHT_REFINE_M, heights[best] + HEIGHT_REFINE_M):
            if h > 0.0:
                heights.append(h)
                costs.append(_wind_fit(pos, t_s, sigma, plane_z + h, fits[best])[1])
    except (ValueError, np.linalg.LinAlgError):
        return None
    best = int(np.argmin(costs))
    # The scale from the robust cost (its sum of squares would let a few wrong picks drown the
    # height the inliers fix), floored at the stated timing errors.
    s2 = max(costs[best] / (len(known) - WIND_FIT_UNKNOWNS), 1.0)
    delta = (costs[0] - costs[best]) / s2
    h = heights[best]
    return h, h / math.sqrt(max(delta, MIN_DELTA_CHI2))


def cadence(shot_times_ns: list[int]) -> dict | None:
    """Intervals of the shots (sorted): count, share faster than any firearm, median, coefficient of variation."""
    if len(shot_times_ns) < MIN_SHOTS_CADENCE:
        return None
    dt = np.diff(np.sort(np.asarray(shot_times_ns, dtype=np.int64))) / NS_PER_S
    mean = float(dt.mean())
    return {"shots": len(shot_times_ns), "fast_share": float(np.mean(dt < MIN_FIREARM_INTERVAL_S)),
            "median_s": float(np.median(dt)), "cv": float(dt.std() / mean) if mean > 0 else 0.0}


def _firecracker_cadence(c: dict | None) -> bool:
    if c is None:
        return False
    return c["fast_share"] >= FAST_SHARE or (c["cv"] >= IRREGULAR_CV and c["median_s"] <= FAST_MEDIAN_S)


def _level_db(pulse: dict) -> float | None:
    level = pulse.get("spl_db", pulse.get("peak_dbfs"))
    return float(level) if level is not None and math.isfinite(level) else None


def _window(pulses: list[dict], shots: list[dict], c_m_s: float) -> list[dict]:
    """The pulses that can be arrivals of the shots, or pops of a string around them: from
    CRACKLE_SPAN_S before the first shot to the last one's farthest hearing."""
    lo = int(shots[0]["t_ns"]) - int((CRACKLE_SPAN_S + WINDOW_SLACK_S) * NS_PER_S)
    hi = int(shots[-1]["t_ns"]) + int((MAX_HEARD_M / c_m_s + WINDOW_SLACK_S) * NS_PER_S)
    return [p for p in pulses if lo <= int(p["t_ns"]) <= hi]


def crackle(shots: list[dict], arrivals: list[list[dict]], near: list[dict] | None) -> dict | None:
    """Cadence (:func:`cadence`) of the pops the incident's loudest sensors hear from its place; None if unmeasured.

    A firecracker string's pops come tens of ms apart, too fast and too many for the locator
    to place each one, so its located shots are a few, any cadence; the sensors nearest to it
    hear nearly every pop. A pop from the incident's place reaches each of the next loudest
    sensors the located shots' time difference of arrival (TDOA) after the loudest (within
    COINCIDENCE_S); an echo takes its own path to each sensor and so does not (the
    coincidence test of TDOA association, e.g. Knapp & Carter, IEEE Trans. ASSP 24, 1976, for
    the delay; Bar-Shalom & Fortmann, "Tracking and Data Association", 1988, for the gate).
    The loudest sensor's pulses from CRACKLE_SPAN_S before its first located arrival to as
    long after its last that the second loudest confirms, or two of the next (one sensor's
    detector misses or merges pops; an echo seldom fits two TDOAs), are the crackle.
    """
    heard: dict[str, float] = {}
    for a in arrivals:
        for p in a:
            lv = _level_db(p)
            if lv is not None:
                heard[p["sensor"]] = max(lv, heard.get(p["sensor"], -math.inf))
    if not near or len(heard) < 2:
        return None
    first, *partners = sorted(heard, key=heard.get, reverse=True)[:1 + CRACKLE_PARTNERS]
    at_first = [int(p["t_ns"]) for a in arrivals for p in a if p["sensor"] == first]
    # Per partner: its TDOA to the loudest (from the located shots) and its pulses' times; a
    # partner that no located shot reached along with the loudest confirms nothing.
    gates = []
    for other in partners:
        tdoa = [int(pb["t_ns"]) - int(pa["t_ns"]) for a in arrivals
                for pa in a if pa["sensor"] == first for pb in a if pb["sensor"] == other]
        times = np.sort([int(p["t_ns"]) for p in near if p["sensor"] == other]) if tdoa else np.zeros(0, np.int64)
        gates.append((float(np.median(tdoa)) if tdoa else 0.0, times))
    if not any(times.size for _, times in gates):
        return None
    lo = min(at_first) - int(CRACKLE_SPAN_S * NS_PER_S)
    hi = max(at_first) + int(CRACKLE_SPAN_S * NS_PER_S)
    pops = []
    for p in near:
        t = int(p["t_ns"])
        if p["sensor"] != first or not lo <= t <= hi:
            continue
        gate_ns = max(COINCIDENCE_S * NS_PER_S, COINCIDENCE_SIGMAS * (p.get("t_unc_ns") or 0))
        hits = [any(abs(times[j] - t - tdoa_ns) <= gate_ns for j in (k - 1, k) if 0 <= j < len(times))
                for tdoa_ns, times in gates for k in (int(np.searchsorted(times, t + tdoa_ns)),)]
        if hits[0] or sum(hits[1:]) >= FARTHER_CONFIRMATIONS:
            pops.append(t)
    return cadence(pops)


def mortar_partner(shots: list[dict], recent: list[dict], sensors: Sensors) -> dict | None:
    """The earlier incident that with this one makes a mortar's launch and burst (cue 5), or None.

    ``recent``: incidents located (and classified) before this one. The pair: this
    incident's first shot 1.5-6 s after the other's single shot (the shell's time of
    flight), within 150 m of it horizontally (drift and location error), the other quieter
    at 1 m than any muzzle blast (a lift charge, 125-135 dB): so a shooter's two bursts a
    few seconds apart, both loud, are never taken for a launch and its burst.
    """
    if not shots or not recent:
        return None
    first = shots[0]
    xy = sensors.to_enu(first)[:2]
    for other in reversed(recent):
        level = (other.get("class_cues") or {}).get("level", {}).get("source_db")
        if level is None or level >= LEVEL_BOUNDARY_DB or len(other.get("shots") or []) != 1:
            continue
        for s in other["shots"]:
            dt_s = (int(first["t_ns"]) - int(s["t_ns"])) / NS_PER_S
            if MORTAR_FLIGHT_S[0] <= dt_s <= MORTAR_FLIGHT_S[1] and \
                    float(np.linalg.norm(sensors.to_enu(s)[:2] - xy)) <= MORTAR_DRIFT_M:
                return {"lag_s": round(dt_s, 2), "t_ns": int(s["t_ns"])}
    return None


def classify(incident: dict, arrivals: list[list[dict]], sensors: Sensors, *,
             sensitivity_dbfs_per_pa: float | None = REFERENCE_SENSITIVITY_DBFS_PER_PA,
             recent: list[dict] | None = None, pulses: list[dict] | None = None) -> dict:
    """Class, confidence and the cues behind them for one located incident.

    Parameters
    ----------
    incident : dict
        Located incident (Incidents contract; ``c_mps`` if known).
    arrivals : list of list of dict
        Per shot (in discharge order), the pulses it used: ``sensor``, ``t_ns`` and whatever
        of ``t_unc_ns``, ``spl_db``, ``peak_dbfs`` and ``features`` they carry
        (:func:`fusion.locator.attribution.shot_arrivals`).
    sensors : fusion.locator.sensors.Sensors
        Sensor positions, in the incident's frame.
    sensitivity_dbfs_per_pa : float or None
        Microphone sensitivity turning ``peak_dbfs`` into SPL; None: use ``spl_db`` only.
    recent : list of dict or None
        Incidents located shortly before this one (the last ten seconds suffice), for the
        launch-and-burst cue; None: that cue is not used.
    pulses : list of dict or None
        The pulses of the incident's window (any sensors; the located ones among them), each
        with ``sensor``, ``t_ns`` and its level: more arrivals for the height fix
        (:func:`gather_arrivals`) and the crackle cue; None: only ``arrivals`` are used.

    Returns
    -------
    dict
        ``{"class": str, "confidence": float, "class_cues": {...}}``: the class (one of
        :data:`CLASSES`), its probability, and each cue's measurement and log-odds.
    """
    shots = sorted(incident.get("shots") or [], key=lambda s: s["t_ns"])
    c_m_s = float(incident.get("c_mps") or 343.0)
    cues: dict[str, dict] = {}
    log_odds = PRIOR_LOG_ODDS

    levels = [source_level_db(s, a, sensors, sensitivity_dbfs_per_pa) for s, a in zip(shots, arrivals)]
    levels = [v for v in levels if v is not None]
    if levels:
        level = float(np.median(levels))
        lo = float(np.clip((level - LEVEL_BOUNDARY_DB) / LEVEL_SCALE_DB, -LEVEL_MAX_LOG_ODDS, LEVEL_MAX_GUNFIRE_LOG_ODDS))
        cues["level"] = {"source_db": round(level, 1), "log_odds": round(lo, 2)}
        log_odds += lo

    aerial = False
    near = _window(pulses, shots, c_m_s) if pulses else None
    fixable = sorted(zip(shots, arrivals), key=lambda sa: -len(sa[1]))[:MAX_HEIGHT_SHOTS]
    # Each shot's height from its located arrivals and from those plus the gathered ones (a wrong
    # pick among these can blur a fix the located ones give).
    heights = [h for h in (height_above_sensors_m(s, aa, sensors, c_m_s) for s, a in fixable
                           for aa in ((a, gather_arrivals(s, a, near, sensors, c_m_s)) if near else (a,))) if h]
    if heights:
        h, h_sigma = max(heights, key=lambda hs: hs[0] - HEIGHT_SIGMAS * hs[1])
        aerial = h >= AERIAL_HEIGHT_M and h >= HEIGHT_SIGMAS * h_sigma
        lo = AERIAL_LOG_ODDS if aerial else 0.0
        cues["height"] = {"height_m": round(h, 1), "sigma_m": round(h_sigma, 1), "log_odds": lo}
        log_odds += lo

    pattern = cadence([s["t_ns"] for s in shots])
    pops = crackle(shots, arrivals, near)
    # Many pops from the incident's place: a string if their cadence is (fast or irregular), or
    # if they far outnumber the located shots at an irregular cadence (a firearm's unlocated
    # rounds, an automatic's, come at its regular cyclic rate).
    string = _firecracker_cadence(pattern) or (pops is not None and pops["shots"] >= MIN_CRACKLE_POPS and (
        _firecracker_cadence(pops) or (pops["shots"] >= POPS_PER_SHOT * len(shots) and pops["cv"] >= SHOOTER_CV)))
    if pattern is not None or pops is not None:
        # One cue, measured two ways (the located shots; the pops the loudest sensors hear).
        lo = CADENCE_LOG_ODDS if string else 0.0
        cues["cadence"] = {**{k: round(v, 3) for k, v in (pattern or {}).items()},
                           **({"crackle": {k: round(v, 3) for k, v in pops.items()}} if pops else {}), "log_odds": lo}
        log_odds += lo

    partner = mortar_partner(shots, recent or [], sensors)
    if partner is not None:
        cues["mortar"] = {**partner, "log_odds": PAIR_LOG_ODDS}
        log_odds += PAIR_LOG_ODDS

    shares = [p["features"]["high_ratio_db"] for a in arrivals for p in a
              if isinstance(p.get("features"), dict) and p["features"].get("high_ratio_db") is not None]
    if shares:
        share = float(np.median(shares))
        lo = -HIGH_SHARE_MAX_LOG_ODDS * _logistic((share - HIGH_SHARE_BOUNDARY_DB) / HIGH_SHARE_SCALE_DB)
        cues["spectrum"] = {"high_ratio_db": round(share, 1), "log_odds": round(lo, 2)}
        log_odds += lo

    p_gunfire = _logistic(log_odds)
    if all(abs(cue["log_odds"]) < MIN_SPEAKING_LOG_ODDS for cue in cues.values()):
        label, confidence = UNKNOWN, p_gunfire
    elif p_gunfire >= 0.5:
        label, confidence = GUNFIRE, p_gunfire
    else:
        label, confidence = (FIREWORKS if aerial or string or partner else OTHER), 1.0 - p_gunfire
    return {"class": label, "confidence": round(confidence, DECIMALS), "class_cues": cues}
