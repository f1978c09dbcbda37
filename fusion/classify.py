"""Classify a located incident: gunfire, fireworks or other impulsive noise, with a confidence.

Pipeline stage located shots -> classify -> store/alert. Classes (the ``class`` field):

- ``gunfire``: muzzle blasts of firearms;
- ``fireworks``: firecracker strings and aerial shells;
- ``other``: impulsive noise that is neither (doors, dumpster lids, car backfires, nail guns,
  hammering, bags and balloons popping).

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
   consumer "mortars" some 50 m); a 3D fit of the shot's arrivals that puts the source well
   above the sensors, beyond its own uncertainty, says fireworks. Gunfire comes from the
   ground or a building.
3. Cadence: a firecracker string pops many times at irregular, exponential-like gaps of
   tens of ms as its fuse burns; a firearm's rounds come at least 50 ms apart (1200
   rounds/min, the fastest common cyclic rate) and a shooter's cadence is regular (semi-
   automatic trigger pulls, or an automatic's cyclic rate). Many shots with a coefficient
   of variation of the intervals far above a shooter's, or faster than any firearm, say
   firecrackers.
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
from scipy.optimize import least_squares

from fusion.multilaterate import C_MAX, C_MIN, Geometry, fit_shots
from fusion.sensors import Sensors

NS_PER_S = 1_000_000_000
GUNFIRE, FIREWORKS, OTHER = "gunfire", "fireworks", "other"
CLASSES = (GUNFIRE, FIREWORKS, OTHER)

# The reference node's microphone: full scale at 130 dB SPL (simulator.sensors' MEMS model).
REFERENCE_SENSITIVITY_DBFS_PER_PA = -36.0
SPL_AT_1_PA_DB = 94.0             # dB re 20 uPa of 1 Pa
CLIPPED_DBFS = -3.0               # a peak this near full scale may be clipped: a lower bound only
# Air absorption at 1 kHz, 20 degC, 70 % RH (ISO 9613-1:1993, Table 1): about 5 dB/km.
ABSORPTION_DB_PER_M = 0.005
MIN_DISTANCE_M = 1.0
LEVEL_QUANTILE = 75               # percentile over sensors (diffraction and clipping only lower levels)
# Log-odds of gunfire per dB of source level about the boundary between the loudest household
# impulses (slams, bag pops: up to ~138 dB) and muzzle blasts (140 dB and up); clipped.
LEVEL_BOUNDARY_DB = 137.0
LEVEL_SCALE_DB = 2.5
LEVEL_MAX_LOG_ODDS = 3.0          # below the boundary: household impulses are far quieter
# Above the boundary only this much: fireworks bursts and firecrackers are as loud as guns.
LEVEL_MAX_GUNFIRE_LOG_ODDS = 1.4
# Aerial bursts: this far above the sensors, and at least HEIGHT_SIGMAS of the fit's sigma.
# With rooftop sensors in one plane a 3D fit's height is loose (it trades against the speed
# of sound), so one sigma: the level and cadence cues still weigh in against a wrong call.
AERIAL_HEIGHT_M = 45.0
HEIGHT_SIGMAS = 1.0
HEIGHT_START_M = 100.0            # the 3D fit starts above the sensors (the plane's mirror is ambiguous)
MIN_SENSORS_3D = 5                # x, y, z, t0 and one to spare
# Wind. Over a city's ranges a light wind shifts arrivals by tens of ms (3 m/s over 1 km: about
# 25 ms), downwind early, upwind late; a still-air 3D fit reads part of that as height
# (city_demo's rifle on the ground: 44 m from exact arrivals in 3 m/s of wind, -22 m without).
# So an aerial reading is checked by a fit that estimates the wind too, in the effective-sound-
# speed model c + w.u along each path (Salomons, "Computational Atmospheric Acoustics", 2001,
# §2.3), when enough sensors hear the shot for two more unknowns; each component within the
# strongest wind considered.
MIN_SENSORS_WIND = 8                # x, y, z, t0, c, two wind components and one to spare
MAX_WIND_MPS = 20.0
WIND_FIT_FTOL = 1e-6              # relative change of cost where the fit stops: the height settles within cm
DEFAULT_T_UNC_S = 1e-3
ROBUST_SCALE_S = 5e-4             # residual scale of the robust loss: a few samples of timing
AERIAL_LOG_ODDS = -6.0
# Cadence: firecrackers.
MIN_SHOTS_CADENCE = 4
MIN_FIREARM_INTERVAL_S = 0.05     # 1200 rounds/min
FAST_SHARE = 0.25                 # share of intervals faster than any firearm
IRREGULAR_CV = 0.6                # exponential gaps have CV ~1; a shooter's well under 0.5
FAST_MEDIAN_S = 0.15              # string pops come tens of ms apart
CADENCE_LOG_ODDS = -4.0
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
    """Peak level at 1 m of one shot: received level + 20 log10(r) + absorption * r, upper quartile over sensors."""
    src = sensors.to_enu(shot)
    levels = []
    for p in arrivals:
        spl = received_spl_db(p, sensitivity_dbfs_per_pa)
        if spl is None or p["sensor"] not in sensors.index:
            continue
        r = max(float(np.linalg.norm(sensors.enu_m[sensors.index[p["sensor"]]] - src)), MIN_DISTANCE_M)
        levels.append(spl + 20.0 * math.log10(r) + ABSORPTION_DB_PER_M * r)
    return float(np.percentile(levels, LEVEL_QUANTILE)) if levels else None


def height_above_sensors_m(shot: dict, arrivals: list[dict], sensors: Sensors, c_m_s: float) -> tuple[float, float] | None:
    """Height of the source above the highest of its sensors and its sigma, from a 3D fit; None if underdetermined.

    Above the highest, not the median: in hilly cities (Pittsburgh's sensors span 40 m of
    height) a shooter on a hillside is well above the sensors in the valley.
    """
    known = [p for p in arrivals if p["sensor"] in sensors.index]
    if len(known) < MIN_SENSORS_3D:
        return None
    pos = sensors.enu_m[[sensors.index[p["sensor"]] for p in known]]
    t_ref = min(int(p["t_ns"]) for p in known)
    t_s = np.array([(int(p["t_ns"]) - t_ref) / NS_PER_S for p in known])
    sigma = np.array([(p.get("t_unc_ns") or DEFAULT_T_UNC_S * NS_PER_S) / NS_PER_S for p in known])
    plane_z = float(np.max(pos[:, 2]))
    xy = sensors.to_enu(shot)[:2]
    start = np.array([xy[0], xy[1], plane_z + HEIGHT_START_M])
    t0 = float(np.median(t_s - np.linalg.norm(pos - start, axis=1) / c_m_s))
    try:
        # Robust (soft L1), so a late diffracted arrival left in the set does not lift the source;
        # c free (within the plausible range), since far sensors trade a height for a speed of sound.
        fit = fit_shots([(pos, t_s, sigma)], c_m_s, Geometry("3d"), [(start, t0)], loss="soft_l1",
                        scale_s=ROBUST_SCALE_S, fit_c=len(known) > MIN_SENSORS_3D, c_bounds=(C_MIN, C_MAX))
        height = _height(float(fit.positions[0][2]) - plane_z,
                         fit.cov[0][2, 2] if fit.cov and fit.cov[0] is not None else math.inf, fit.variance_factor)
        # An aerial reading is checked with the wind estimated too (from the still-air solution):
        # only there can the wind's shift of the arrivals make the call, and gunfire rarely gets there.
        if len(known) >= MIN_SENSORS_WIND and _aerial(*height):
            z, z_var, factor = _fit_with_wind(pos, t_s, sigma, fit.positions[0], float(fit.t0_s[0]), fit.c)
            height = _height(z - plane_z, z_var, factor)
    except (ValueError, np.linalg.LinAlgError):
        return None
    return height


def _height(h_m: float, z_var: float, factor: float) -> tuple[float, float]:
    """Height and its sigma from a fit's z variance (scaled by its variance factor) and that factor.

    The covariance is scaled by the a-posteriori variance factor; a fit better than the stated
    timing errors must not claim more than they allow (the a-priori sigma is a floor:
    Mikhail & Ackermann, "Observations and Least Squares", 1976, §4.7), and an exact fit
    (factor 0) says nothing about its height.
    """
    z_var = z_var / factor if 0.0 < factor < 1.0 else (math.inf if factor <= 0.0 else z_var)
    return h_m, float(np.sqrt(max(z_var, 0.0)))


def _aerial(h_m: float, h_sigma_m: float) -> bool:
    return h_m >= AERIAL_HEIGHT_M and h_m >= HEIGHT_SIGMAS * h_sigma_m


def _fit_with_wind(pos: np.ndarray, t_s: np.ndarray, sigma: np.ndarray, start: np.ndarray, t0: float,
                   c_m_s: float) -> tuple[float, float, float]:
    """Source height, its variance (scaled by the variance factor) and that factor, from a 3D fit with wind.

    Unknowns x, y, z, t0, c and the horizontal wind (w_e, w_n); arrival t0 + r / (c + w.d_h / r)
    for a sensor at offset d (r = |d|, d_h its horizontal part): the effective sound speed along
    the straight path (Salomons 2001, §2.3). Robust soft-L1 least squares
    (:func:`scipy.optimize.least_squares`, trust-region reflective within the bounds on c and
    the wind); covariance s^2 (J^T J)^-1 at the solution, as :func:`fusion.multilaterate.fit_shots`.
    """
    def paths(p):
        d = pos - p[:3]
        r = np.maximum(np.linalg.norm(d, axis=1), MIN_DISTANCE_M)
        return d, r, p[4] + d[:, :2] @ p[5:7] / r

    def residuals(p):
        _, r, speed = paths(p)
        return (t_s - p[3] - r / speed) / sigma

    def jacobian(p):
        # Travel time g = r / v, v = c + w.d_h / r; d/dp of r is -d / r, of v is -(w / r) + (w.d_h) d / r^3.
        d, r, speed = paths(p)
        w3 = np.array([p[5], p[6], 0.0])
        dr = -d / r[:, None]
        dv = -w3[None, :] / r[:, None] + ((d[:, :2] @ p[5:7]) / r ** 3)[:, None] * d
        dg_pos = (dr * speed[:, None] - r[:, None] * dv) / (speed ** 2)[:, None]
        jac = np.empty((len(r), 7))
        jac[:, :3] = dg_pos
        jac[:, 3] = 1.0
        jac[:, 4] = -r / speed ** 2
        jac[:, 5:7] = -d[:, :2] / (speed ** 2)[:, None]
        return -jac / sigma[:, None]

    c0 = min(max(c_m_s, C_MIN), C_MAX)
    lo = [-np.inf] * 4 + [C_MIN, -MAX_WIND_MPS, -MAX_WIND_MPS]
    hi = [np.inf] * 4 + [C_MAX, MAX_WIND_MPS, MAX_WIND_MPS]
    sol = least_squares(residuals, np.array([*start, t0, c0, 0.0, 0.0]), jac=jacobian, bounds=(lo, hi),
                        loss="soft_l1", f_scale=ROBUST_SCALE_S / float(np.median(sigma)), x_scale="jac", ftol=WIND_FIT_FTOL)
    dof = len(t_s) - len(sol.x)
    factor = float(sol.fun @ sol.fun) / dof
    z_var = float(np.linalg.inv(sol.jac.T @ sol.jac)[2, 2]) * factor
    return float(sol.x[2]), z_var, factor


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
             recent: list[dict] | None = None) -> dict:
    """Class, confidence and the cues behind them for one located incident.

    Parameters
    ----------
    incident : dict
        Located incident (Incidents contract; ``c_mps`` if known).
    arrivals : list of list of dict
        Per shot (in discharge order), the pulses it used: ``sensor``, ``t_ns`` and whatever
        of ``t_unc_ns``, ``spl_db``, ``peak_dbfs`` and ``features`` they carry
        (:func:`fusion.attribution.shot_arrivals`).
    sensors : fusion.sensors.Sensors
        Sensor positions, in the incident's frame.
    sensitivity_dbfs_per_pa : float or None
        Microphone sensitivity turning ``peak_dbfs`` into SPL; None: use ``spl_db`` only.
    recent : list of dict or None
        Incidents located shortly before this one (the last ten seconds suffice), for the
        launch-and-burst cue; None: that cue is not used.

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
    heights = [h for h in (height_above_sensors_m(s, a, sensors, c_m_s) for s, a in zip(shots, arrivals)) if h]
    if heights:
        h, h_sigma = max(heights, key=lambda hs: hs[0] - HEIGHT_SIGMAS * hs[1])
        aerial = _aerial(h, h_sigma)
        lo = AERIAL_LOG_ODDS if aerial else 0.0
        cues["height"] = {"height_m": round(h, 1), "sigma_m": round(h_sigma, 1), "log_odds": lo}
        log_odds += lo

    pattern = cadence([s["t_ns"] for s in shots])
    string = _firecracker_cadence(pattern)
    if pattern is not None:
        lo = CADENCE_LOG_ODDS if string else 0.0
        cues["cadence"] = {**{k: round(v, 3) for k, v in pattern.items()}, "log_odds": lo}
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
    if p_gunfire >= 0.5:
        label, confidence = GUNFIRE, p_gunfire
    else:
        label, confidence = (FIREWORKS if aerial or string or partner else OTHER), 1.0 - p_gunfire
    return {"class": label, "confidence": round(confidence, DECIMALS), "class_cues": cues}
