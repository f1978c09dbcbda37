"""Locate: from unassociated pulses to incidents with located, counted, ordered shots.

The public entry point is :func:`locate`; ``earwitness locate`` and the fusion server call it. Steps: split
the pulses at quiet gaps; associate first arrivals into shots (:mod:`fusion.locator.associate`), bullet shock
waves kept out (:mod:`fusion.locator.shockwave`), then the rounds of bursts fixed jointly
(:mod:`fusion.locator.burst`); fit every shot of an incident in the chosen geometry, with the speed of sound
from the temperature or estimated jointly for the incident (:mod:`fusion.locator.multilaterate`); group shots
into incidents and shooters and order them by discharge time (:mod:`fusion.locator.shooters`).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import replace

import numpy as np

from earwitness.units import NS_PER_S
from fusion.locator.associate import (
    DENSE_PULSES,
    MAD_TO_SIGMA,
    SELECTION_GEOMETRY,
    SearchConfig,
    find_shots_in_stretch,
    search_bounds,
)
from fusion.locator.burst import complete_bursts, located, place_dof, places_of
from fusion.locator.directsound import direct_sounds
from fusion.locator.echorepeats import without_repeated_echoes
from fusion.locator.echosets import CLIPPED_DBFS, received_levels
from fusion.locator.echoshots import echo_shots, without_images
from fusion.locator.exactfix import single_exact_shot
from fusion.locator.fewburst import JOINT_HEARING_MAX_PULSES, burst_or_found, few_sensor_burst
from fusion.locator.mixedsets import without_mixed_sets
from fusion.locator.multilaterate import (
    C_MAX,
    C_MIN,
    DEFAULT_TEMPERATURE_C,
    Geometry,
    fit_shots,
    radius95_m,
    solve_dims,
    speed_of_sound,
)
from fusion.locator.picks import Picks
from fusion.locator.pulses import Pulses, parse_pulses
from fusion.locator.roundgap import rounds_apart
from fusion.locator.sensors import Sensors, read_sensors
from fusion.locator.shockwave import louder_than_blast, screen, shock_like
from fusion.locator.shooters import cluster_shooters, split_by_place, split_incidents
from fusion.locator.uncertainty import (
    BUDGET,
    FRAME_TYPICAL_M,
    Budget,
    arrivals_of_fit,
    on_grid,
    shot_uncertainties,
    told_budget,
)
from fusion.locator.wind import as_wind

log = logging.getLogger(__name__)

# Timing sigma assumed for a pulse that states none (ms-resolution reports, as in TN098).
DEFAULT_T_UNC_S = 1e-3
# Smallest timing sigma used (a stated zero would weigh one arrival infinitely).
MIN_SIGMA_S = 1e-6
# Largest |measured - predicted| arrival time kept in a shot. TN098 §II.C accepts up to 40 ms; diffraction over
# rooftops delays near line-of-sight arrivals by several ms.
TOLERANCE_S = 0.02
# Tolerance of a second try where none agree within TOLERANCE_S (TN098 §II.C's limit).
RETRY_TOLERANCE_S = 0.04
# Never tighter than this: ms-resolution reports, sensor survey error, short diffractions.
MIN_TOLERANCE_S = 3e-3
# Temperatures tried for the first shot when the speed of sound is unknown (the shot's own fit then estimates c
# within the plausible range), 5 degC (about 3 m/s, a few ms over the ranges of one shot) apart, from the usual
# outward so it sets a high bar early.
TRIAL_STEP_C = 5.0
TRIAL_TEMPERATURES_C = tuple(sorted(np.arange(-30.0, 45.1, TRIAL_STEP_C), key=lambda t: abs(t - DEFAULT_TEMPERATURE_C)))
# How far the air along the paths may differ from a stated temperature, during association.
TEMPERATURE_SLACK_C = 4.0
# Speed of sound used where it is unknown and cannot be estimated.
FALLBACK_TEMPERATURE_C = DEFAULT_TEMPERATURE_C
# Fewest residual degrees of freedom for the final fit to estimate the speed of sound.
MIN_DOF_FOR_C = 3
# Outlier rejection before the final fit (residuals beyond this many robust sigmas, never tighter than the floor,
# which also scales the robust loss).
OUTLIER_SIGMAS = 5.0
OUTLIER_FLOOR_S = 5e-4
# Pulses this much below their sensor's best SNR in a stretch are taken for echoes ...
ECHO_SNR_DROP_DB = 6.0
# ... unless their peak is within this of the sensor's highest, where that is not clipped ...
ECHO_PEAK_DROP_DB = 3.0
# ... or they come at most this long before a kept pulse of their sensor and at least this long after any
# louder one (an echo follows what it echoes): behind a muzzle, 10-20 dB quieter than in front, a wall near
# the shooter returns the front blast louder than the direct sound. 0.12 s is 41 m of extra path, a wall
# within about 20 m; city_demo's park rifle (fleet pulses, told the exact wind) had its 4 rounds 19-22 m
# off, built on such reflections; with it 0.0-0.7 m (0.06 s: still off; the walls there lag 100-112 ms).
PRECURSOR_LAG_S = 0.12
# ... where this many sensors heard the stretch, and it is not dense: with the 4-5 sensors of the
# Pittsburgh audio, a kept quiet pulse made a chance set 91 m off (FP2 test_021), and among a city's
# thousands of pulses (a dense stretch) other shots' echoes precede its rounds (22 of 68 lost).
PRECURSOR_MIN_SENSORS = 8
# Shots at one place with at most this many pulses in the typical round (or found only within the retry
# tolerance) are weighed against a burst fewer sensors heard elsewhere (fewburst.burst_or_found): a set
# of 8 may be chance's among a burst's arrivals (seed 605 scene 61 of tests/pittsburgh_like.py: 8 sensors,
# 5 of the burst's far ones and 3 unrelated, 205 m off a 5-round burst 6 sensors heard). Weighing every
# stretch costs the Pittsburgh tests (12-21 sensors a round) 8 -> 106 ms median to locate, for no change.
WEAK_SHOT_PULSES = 8
# Whether locate (and the live tracker, through it) completes bursts unless told. On: on the Pittsburgh
# audio it takes rounds located from 0.50, 0.42, 0.50 to 0.97, 0.72, 0.92 (FP1, FP2, FP3; each held out for
# the burst model's constants), and echosets.py keeps echo sets out (by levels and by which sensors heard
# them: the seed city's exchange keeps its 3 rounds).
COMPLETE_BURSTS_DEFAULT = True
CLASS_UNCLASSIFIED = "impulsive"
ERR_DECIMALS = 2
ID_FORMAT = "%Y%m%dT%H%M%S"


def min_sensors(mode: str) -> int:
    """Fewest sensors a shot needs in ``mode``: d + 2, so the solution is unique (TN098 §II.D)."""
    return solve_dims(mode) + 1 + 1


def min_burst_sensors(mode: str) -> int:
    """Fewest sensors that locate anything in ``mode``: d + 1, a burst of rounds sharing one place
    (three sensors and two rounds: 6 arrivals for 4 unknowns; :mod:`fusion.locator.burst`)."""
    return solve_dims(mode) + 1


def _as_sensors(sensors) -> Sensors:
    if isinstance(sensors, Sensors):
        return sensors
    if isinstance(sensors, (str, os.PathLike)):
        return read_sensors(sensors)
    if isinstance(sensors, dict):
        return Sensors.from_local(sensors)
    raise TypeError("sensors must be a Sensors, a Sensors CSV path or a {id: (x, y, z)} dict")


def _segments(t_s: np.ndarray, quiet_s: float) -> list[np.ndarray]:
    """Indices of pulses per stretch of activity: a gap longer than ``quiet_s`` splits (single linkage in time)."""
    order = np.argsort(t_s, kind="stable")
    breaks = np.flatnonzero(np.diff(t_s[order]) > quiet_s) + 1
    return np.split(order, breaks)


def _loud_enough(sensor: np.ndarray, snr_db: np.ndarray, peak_dbfs: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    """Mask of pulses not far quieter than the loudest of their sensor in the stretch.

    A sensor's echoes and reverberation come weaker than the muzzle blast that caused them; pulses more than
    ECHO_SNR_DROP_DB below the sensor's best SNR are left out of association, which on small arrays is what
    keeps chance sets of echoes from outnumbering the shots. SNR alone would also drop the later rounds of a
    burst: the detector's noise floor rises in the reverberation of the first, so the next comes with a lower
    SNR at the same level. So a pulse within ECHO_PEAK_DROP_DB of its sensor's highest peak is kept too, unless
    that peak is clipped (at or above CLIPPED_DBFS), where the peak cannot rank pulses; and, on an array that
    heard the stretch widely, a quieter pulse shortly before a kept one (:func:`_precursors`). Pulses without
    ``snr_db`` are always kept.
    """
    def best(values):
        top = np.full(int(sensor.max()) + 1 if len(sensor) else 0, -np.inf)
        known = np.isfinite(values)
        np.maximum.at(top, sensor[known], values[known])
        return top[sensor]

    top_peak = best(peak_dbfs)
    by_peak = (top_peak < CLIPPED_DBFS) & (peak_dbfs >= top_peak - ECHO_PEAK_DROP_DB)
    kept = ~np.isfinite(snr_db) | (snr_db >= best(snr_db) - ECHO_SNR_DROP_DB) | by_peak
    if len(sensor) < DENSE_PULSES and len(np.unique(sensor)) >= PRECURSOR_MIN_SENSORS:
        kept |= _precursors(sensor, t_s, snr_db, kept)
    return kept


def _precursors(sensor: np.ndarray, t_s: np.ndarray, snr_db: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Mask of the pulses left out by loudness that may be a direct sound whose reflection came louder:
    at most PRECURSOR_LAG_S before a kept pulse of their sensor, and no louder pulse of it within
    PRECURSOR_LAG_S before them (then they may be that one's echo)."""
    out = np.zeros(len(sensor), dtype=bool)
    left_out = ~kept & np.isfinite(snr_db)
    for s in np.unique(sensor[left_out]):   # a sensor's few pulses against each other, not the stretch's
        rows = np.flatnonzero(sensor == s)
        lag_s = t_s[rows][None, :] - t_s[rows][:, None]   # [i, j]: how long after pulse i pulse j came
        followed = (kept[rows][None, :] & (lag_s > 0) & (lag_s <= PRECURSOR_LAG_S)).any(axis=1)
        louder = snr_db[rows][None, :] > snr_db[rows][:, None]
        echo_of = (louder & (lag_s < 0) & (lag_s >= -PRECURSOR_LAG_S)).any(axis=1)
        out[rows] = left_out[rows] & followed & ~echo_of
    return out


def _span_m(sensors: Sensors) -> float:
    """Largest horizontal extent of the array along x or y, metres (its bounding box's longer side)."""
    return float(np.max(np.ptp(sensors.enu_m[:, :2], axis=0))) if len(sensors) > 1 else 0.0


def shock_waves(pulses: Pulses, sensors: Sensors) -> np.ndarray:
    """Mask of the pulses taken for supersonic bullet cracks (:func:`fusion.locator.shockwave.screen`).

    A crack comes from the bullet's path, not the muzzle, so it is kept out of the
    association of muzzle blasts; at a sensor it leads the blast by at most the array's
    propagation span (the bullet outruns its sound over at most that path).
    """
    f = pulses.features
    if not f or len(pulses) == 0:
        return np.zeros(len(pulses), dtype=bool)
    shock = shock_like(f["low_ratio_db"], f["high_ratio_db"])
    return screen(pulses.sensor, (pulses.t_ns - pulses.t_ns.min()) / NS_PER_S, shock, f["duration_ms"],
                  _span_m(sensors) / C_MIN)


def _utc(t_ns: int) -> str:
    """ISO 8601 UTC to the millisecond, for messages."""
    when = dt.datetime.fromtimestamp(t_ns // NS_PER_S, tz=dt.timezone.utc)
    return f"{when.strftime('%Y-%m-%dT%H:%M:%S')}.{(t_ns % NS_PER_S) // 1_000_000:03d}Z"


def _incident_id(t_ns: int) -> str:
    when = dt.datetime.fromtimestamp(t_ns // NS_PER_S, tz=dt.timezone.utc)
    return f"{when.strftime(ID_FORMAT)}.{(t_ns % NS_PER_S) // 1_000_000:03d}Z"


def locate(pulses, sensors, temperature_c: float | None = None, *, mode: str = "2d",  # noqa: PLR0913 (keyword-only)
           ground_z_m: float | None = None, incident_radius_m: float | None = None,
           complete_bursts: bool = COMPLETE_BURSTS_DEFAULT, wind_m_s=None,
           frame_m: float = FRAME_TYPICAL_M) -> list[dict]:
    """Associate, locate, count and order shots among unassociated pulses.

    Parameters
    ----------
    pulses : list of dict or Pulses
        Pulses ``{"sensor": str, "t_ns": int, ...}`` (optional ``t_unc_ns``, and ``snr_db``
        and ``peak_dbfs``, by which echoes are told from shots) in any order:
        any mix of shots, echoes and noise. Pulses that cannot be used (unknown sensor, NaN,
        malformed) are left out and logged; exact repeats are dropped.
    sensors : Sensors, path of a Sensors CSV, or dict {id: (x, y, z)}
        Sensor positions (local metres or WGS84); output positions use the same frame.
    temperature_c : float, optional
        Air temperature; speed of sound c = 20.03 sqrt(T + 273.15). When omitted, c is
        estimated from the shots of each incident.
    mode : {"2d", "2.5d", "3d"}
        Geometry of the final fit (TN098 §II.E); association is always 2D.
    ground_z_m : float, optional
        Source height (local z / ENU up, metres) held in ``"2.5d"``; default: the lowest
        participating sensor's.
    incident_radius_m : float, optional
        Shots close in time are one incident only where they lie within this of each other
        (single linkage); default: time alone decides (one scene, as in a test range).
    complete_bursts : bool
        Add the rounds of a burst that association missed (:func:`fusion.locator.burst.complete_bursts`),
        telling a burst's echo sets from its rounds by their levels (:mod:`fusion.locator.echosets`):
        on the Pittsburgh audio rounds located 0.47 -> 0.88. Default: COMPLETE_BURSTS_DEFAULT.
    wind_m_s : (east, north) m/s, optional
        A told wind (a weather reading; :func:`fusion.locator.wind.wind_east_north` from speed and
        the bearing it blows from): the final fit's travel times are ``d / (c + w.u)`` along each path,
        and err_m states the wind as told (:data:`fusion.locator.uncertainty.TOLD_WIND_SD_M_S`).
        Default: still air, the wind left to the error budget (WIND_SD_M_S).
    frame_m : float
        The error budget's frame term (h), the typical distance between the sensors' surveyed frame and
        the one places are compared in (a phone's GPS, a map); 0 where the places you compare against
        are in the sensors' own frame (simulation). Default FRAME_TYPICAL_M, 2.5 m.

    Returns
    -------
    list of dict
        Incidents in time order, per the Incidents JSONL contract of DESIGN.md::

            {"incident": str, "t_ns": int, "x", "y", "z" (or "lat", "lon", "alt"),
             "err_m": float, "rounds": int, "shooters": int, "class": str,
             "confidence": float, "c_mps": float,
             "ellipse": {"semi_major_m", "semi_minor_m", "orientation_deg"},
             "shots": [{"t_ns", "x", "y", "z" (or lat/lon/alt), "err_m", "ellipse",
                        "shooter", "sensors"}, ...],
             "sensors": [str, ...]}

        ``t_ns`` of a shot is its estimated discharge time at the source; shots are in
        discharge order; ``shooter`` numbers shooters in order of their first shot;
        ``err_m`` is the radius of the circle holding the true horizontal position with
        95 % probability and ``ellipse`` the 95 % ellipse (semi-axes in metres, the major
        axis' orientation in degrees clockwise from north), from the error budget of
        :mod:`fusion.locator.uncertainty`. The incident's position and ``err_m`` are those
        of its main shooter's shots (mean position, median error, with that shot's
        ellipse): the shooter with the most shots, ties going to the one who fired first.

    Examples
    --------
    >>> incidents = locate(pulses, "sensors.csv", temperature_c=10.0)
    >>> [(s["t_ns"], s["x"], s["y"]) for s in incidents[0]["shots"]]
    """
    sensors = _as_sensors(sensors)
    if not isinstance(pulses, Pulses):
        pulses = parse_pulses(pulses, sensors)
        for message in pulses.problems + pulses.duplicates:
            log.warning(message)
    return locate_pulses(pulses, sensors, temperature_c, mode=mode, ground_z_m=ground_z_m,
                         complete_bursts=complete_bursts, incident_radius_m=incident_radius_m,
                         wind_m_s=wind_m_s, frame_m=frame_m)


def locate_pulses(pulses: Pulses, sensors: Sensors, temperature_c: float | None = None, *,  # noqa: PLR0913
                  mode: str = "2d", ground_z_m: float | None = None,
                  incident_radius_m: float | None = None,
                  complete_bursts: bool = COMPLETE_BURSTS_DEFAULT, wind_m_s=None,
                  frame_m: float = FRAME_TYPICAL_M) -> list[dict]:
    """:func:`locate` on already validated :class:`fusion.locator.pulses.Pulses`."""
    need = min_sensors(mode)
    told = {"wind": as_wind(wind_m_s), "budget": told_budget(wind_m_s is not None, frame_m)}
    if temperature_c is not None and not (math.isfinite(temperature_c) and
                                          C_MIN <= speed_of_sound(temperature_c) <= C_MAX):
        raise ValueError(f"temperature {temperature_c} degC is outside the plausible range for air")
    if len(pulses) == 0:
        return []
    t_ref_ns = int(pulses.t_ns.min())
    t_s = (pulses.t_ns - t_ref_ns) / NS_PER_S
    unc_s = np.where(np.isfinite(pulses.t_unc_ns), pulses.t_unc_ns / NS_PER_S, DEFAULT_T_UNC_S)
    picks = Picks(pulses.sensor, t_s, np.maximum(unc_s, MIN_SIGMA_S), sensors.enu_m[pulses.sensor])
    quiet_s = _span_m(sensors) / C_MIN + TOLERANCE_S
    blast = ~shock_waves(pulses, sensors)
    c_known = speed_of_sound(temperature_c) if temperature_c is not None else None
    if c_known is None:
        trial_speeds = tuple(speed_of_sound(t) for t in TRIAL_TEMPERATURES_C)
    else:
        # A stated temperature (an airport's, say) is not the air along every path: the first shot is grown with
        # c free within +-TEMPERATURE_SLACK_C of it, the rest associated at that c; the final fit uses it as stated.
        trial_speeds = (c_known,)
    c_bounds = None if c_known is None else (speed_of_sound(temperature_c - TEMPERATURE_SLACK_C),
                                             speed_of_sound(temperature_c + TEMPERATURE_SLACK_C))
    # A told wind enters the final fit only: association and burst completion stay in still air, whose
    # positions their tolerances are consistent with (growing shots in the wind alone lost city_house
    # 5 of 20 rounds found, completion then predicting still-air arrivals at the wind-corrected place).
    config = SearchConfig(c_known or speed_of_sound(FALLBACK_TEMPERATURE_C), tol_s=TOLERANCE_S,
                          min_tol_s=MIN_TOLERANCE_S, min_sensors=need, speeds=trial_speeds, c_bounds=c_bounds,
                          array_m=sensors.enu_m)

    incidents = []
    for seg in _segments(t_s, quiet_s):
        # Cracks first: louder than the blast at sensors near the trajectory, they would
        # otherwise also make the blast that follows look like their echo.
        seg = seg[blast[seg]]
        shots = _stretch_shots(picks, seg, pulses, config, (quiet_s, t_ref_ns), mode, complete_bursts)
        shots = without_mixed_sets(picks, rounds_apart(shots, need), need, seg)
        if not shots:
            continue
        t0 = np.array([s.t0_s for s in shots])
        groups = split_incidents(t0)
        if incident_radius_m is not None:   # a busy city: shots close in time, far apart, are separate incidents
            xy = np.array([s.position[:2] for s in shots]).reshape(-1, 2)
            groups = [members[part] for members in groups for part in split_by_place(xy[members], incident_radius_m)]
        for members in sorted(groups, key=lambda m: t0[m].min()):
            incident = _incident([shots[i] for i in members], picks, pulses, sensors, c_known, mode, ground_z_m,
                                 t_ref_ns, **told)
            if incident is not None:
                incidents.append(incident)
    return incidents


def _stretch_shots(picks: Picks, seg: np.ndarray, pulses: Pulses, config: SearchConfig, span, mode: str,
                   complete: bool = True) -> list:
    """The shots of one stretch (rows ``seg`` of ``picks``, cracks left out): association, then bursts.

    Shots that ``config.min_sensors`` agree on (:func:`fusion.locator.associate.find_shots_in_stretch`), then the
    rounds of their bursts association missed (:func:`fusion.locator.burst.complete_bursts`), shots at one place weighed
    against a burst fewer sensors heard elsewhere (:func:`fusion.locator.fewburst.burst_or_found`); where none
    is found, a burst fixed jointly by fewer sensors (:func:`fusion.locator.fewburst.few_sensor_burst`), its rounds
    completed as association's are. What cannot be located is said in one line (logged at warning). ``span``
    is (quiet_s, t_ref_ns): the gap that splits stretches, and the time origin of ``picks``; ``complete``: whether
    bursts are completed (see :func:`locate`).
    """
    quiet_s, t_ref_ns = span
    heard = picks.n_sensors(seg)
    when = _utc(t_ref_ns + int(round(picks.t_s[seg].min() * NS_PER_S))) if len(seg) else "a stretch"
    if heard < min_burst_sensors(mode):
        log.warning("%s: %d sensors heard it, a position needs %d", when, heard, min_burst_sensors(mode))
        return []
    loud = seg[_loud_enough(pulses.sensor[seg], pulses.snr_db[seg], pulses.peak_dbfs[seg], picks.t_s[seg])]
    shots, tol_s, bounds = [], TOLERANCE_S, search_bounds(picks.xy[seg])
    if picks.n_sensors(loud) >= config.min_sensors:
        # A stretch where nothing agrees within TOLERANCE_S is tried once more within
        # TN098's limit: few sensors with clocks off by tens of ms can leave no tighter set.
        for tol_s in (TOLERANCE_S, RETRY_TOLERANCE_S):
            search = replace(config, tol_s=tol_s, array_sensors=picks.n_sensors(loud), listeners=picks.take(seg))
            shots = find_shots_in_stretch(picks, loud, search, quiet_s)
            if shots:
                break
    shots = without_images(shots)
    # Shots few sensors agree on (WEAK_SHOT_PULSES or fewer in the typical round), or only within the
    # retry tolerance, may be chance's sets, of unrelated pulses or of a burst's rounds mixed.
    weak = bool(shots) and (tol_s > TOLERANCE_S or np.median([len(s.pulses) for s in shots]) <= WEAK_SHOT_PULSES)
    # Completion scores every pulse against every candidate time (quadratic in the stretch):
    # a dense stretch (a city-wide burst) keeps association's shots, found chunk by chunk.
    completing = complete and len(seg) < DENSE_PULSES

    def completed(found: list) -> list:
        """``found`` and the rounds of their bursts association missed (``found`` as it is where not completing)."""
        if not (completing and found):
            return found
        return found + complete_bursts(picks, seg, found, SELECTION_GEOMETRY, min_sensors(mode),
                                       received_levels(pulses.spl_db, pulses.peak_dbfs))

    if shots:
        if not completing:
            return shots
        shots = completed(shots)
        # Weak shots, at one place or several, are weighed against a burst fewer sensors heard elsewhere
        # (burst_or_found); so is a lone shot with no further round at its place, however large: it can be mixed
        # from a burst's rounds (seed 612 scene 111 of tests/pittsburgh_like.py: 9 pulses 452 m off 3 rounds of 7).
        if (weak or len(shots) == 1) and len(loud) <= JOINT_HEARING_MAX_PULSES:
            kept = burst_or_found(picks, loud, shots, config.c, bounds, SELECTION_GEOMETRY, config.array_m)
            # The pulses of shots let go are free again for rounds at the kept shots' places (seed 601 scene 62
            # audio-like: a set 365 m off let go, the second round's 3 arrivals are found at the first's place).
            shots = completed(kept) if kept and {id(s) for s in kept} < {id(s) for s in shots} else kept
        return direct_sounds(picks, seg, shots, SELECTION_GEOMETRY, tol_s, bounds)
    # Rounds the few-sensor search left out are completion's to find, as for association's shots (seed 612 scene 152
    # of tests/pittsburgh_like.py: with path terms the burst's 5-sensor rounds came out without the round three heard).
    shots = completed(few_sensor_burst(picks, seg, config.c, bounds, SELECTION_GEOMETRY, config.array_m, loud))
    shots = direct_sounds(picks, seg, shots, SELECTION_GEOMETRY, TOLERANCE_S, bounds)
    if not shots and mode != "3d":
        shots = single_exact_shot(picks, loud, config.c, Geometry(mode, float(picks.pos_m[seg, 2].min())), config.array_m)
    if not shots:
        log.warning("%s: %d sensors heard it, but no %d agree on one shot and no burst of rounds from %d fixes one place",
                    when, heard, config.min_sensors, min_burst_sensors(mode))
    return shots


def _inliers(residuals_s: list, need: int) -> list[np.ndarray]:
    """Per shot, which pulses to keep: within OUTLIER_SIGMAS robust sigmas of the shot's median.

    The sigma is 1.4826 x the median absolute deviation of all the incident's residuals
    (Rousseeuw & Croux 1993), floored at OUTLIER_FLOOR_S; a shot keeps at least ``need``.
    """
    pooled = np.concatenate([r - np.median(r) for r in residuals_s])
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(pooled))), OUTLIER_FLOOR_S)
    keep = []
    for r in residuals_s:
        dev = np.abs(r - np.median(r))
        ok = dev <= OUTLIER_SIGMAS * sigma
        if ok.sum() < need:
            ok = np.zeros(len(r), dtype=bool)
            ok[np.argsort(dev)[:need]] = True
        keep.append(ok)
    return keep


def _incident(shots, picks: Picks, pulses: Pulses, sensors: Sensors, c_known, mode, ground_z_m,  # noqa: PLR0913
              t_ref_ns: int, *, wind=None, budget: Budget = BUDGET) -> dict | None:
    """Final fit of an incident's shots (shared c when estimated) and its contract dict (None: no shot left).

    Sets of echoes that recur after their place's other rounds are dropped first
    (:func:`fusion.locator.echorepeats.without_repeated_echoes`). The fit is :func:`_final_fit` (in the told
    ``wind``; None: still air), err_m from ``budget``; shots are then grouped into shooters (single linkage,
    :func:`fusion.locator.shooters.cluster_shooters`) and echo shots dropped (:func:`fusion.locator.echoshots.echo_shots`).
    """
    shots = without_repeated_echoes(shots, picks)
    used = np.concatenate([s.pulses for s in shots])
    z_m = ground_z_m if ground_z_m is not None else float(picks.pos_m[used, 2].min())
    geometry = Geometry(mode, z_m)
    final = _final_fit(shots, picks, pulses.peak_dbfs, c_known, geometry, wind)
    if final is None:
        return None
    shots, fit = final
    out_shots = _shot_records(shots, fit, picks, pulses.t_unc_ns / NS_PER_S, sensors, geometry, t_ref_ns,
                              wind=wind, budget=budget)
    out_shots.sort(key=lambda s: s["t_ns"])
    enus = np.array([s["_enu"] for s in out_shots])
    rel_err_m = np.array([s["_rel_err_m"] for s in out_shots])
    labels = cluster_shooters(enus[:, :2], rel_err_m)
    echo = echo_shots(out_shots, enus, rel_err_m, labels, fit.c)
    if echo.any():
        out_shots = [s for s, e in zip(out_shots, echo) if not e]
        enus, rel_err_m = enus[~echo], rel_err_m[~echo]
        labels = cluster_shooters(enus[:, :2], rel_err_m)
    for shot, label in zip(out_shots, labels):
        shot["shooter"] = int(label)
        del shot["_enu"], shot["_rel_err_m"]
    # The incident is placed at its main shooter: the one with most shots (ties: who fired first).
    first = labels == int(np.argmax(np.bincount(labels)))
    main = [s for s, f in zip(out_shots, first) if f]
    # Its error: the main shooter's shots' median (their errors share sensors and paths, so
    # the mean position is hardly surer than one shot), with that shot's ellipse.
    median_shot = sorted(main, key=lambda s: s["err_m"])[(len(main) - 1) // 2]
    participating = sorted({sid for s in out_shots for sid in s["sensors"]})
    t_s = picks.t_s
    reporting = len(np.unique(picks.sensor[(t_s >= t_s[used].min()) & (t_s <= t_s[used].max())]))
    t_ns = out_shots[0]["t_ns"]
    return {
        "incident": _incident_id(t_ns),
        "t_ns": t_ns,
        **sensors.to_output(enus[first].mean(axis=0)),
        "err_m": median_shot["err_m"],
        "ellipse": dict(median_shot["ellipse"]),
        "rounds": len(out_shots),
        "shooters": int(labels.max()) + 1,
        "class": CLASS_UNCLASSIFIED,
        # Share of the sensors reporting during the incident that agree with a located shot.
        "confidence": round(len(participating) / max(reporting, 1), 3),
        "c_mps": round(fit.c, 2),
        "shots": out_shots,
        "sensors": participating,
    }


def _final_fit(shots, picks: Picks, peak_dbfs: np.ndarray, c_known, geometry: Geometry, wind=None):
    """The incident's shots fitted together in ``geometry``: (shots kept, their Fit), or None if none is left.

    A robust fit first (soft-L1 M-estimator, Huber 1964; Levenberg-Marquardt,
    :func:`fusion.locator.multilaterate.fit_shots`), c shared and estimated when unknown and
    there are degrees of freedom to spare; arrivals it marks as outliers (the MAD rule,
    :func:`_inliers`) or as too loud for the muzzle (:func:`louder_than_blast`) are dropped,
    then a plain least-squares fit gives the covariance. The shots' pulses are narrowed in place. Both
    fits' travel times are in the told ``wind`` (:mod:`fusion.locator.wind`; None: still air).
    """
    pos, t_s, sigma_s = picks.pos_m, picks.t_s, picks.sigma_s
    groups = [(pos[s.pulses], t_s[s.pulses], sigma_s[s.pulses]) for s in shots]
    starts = []
    for s in shots:
        start = s.position[:2]
        if geometry.dims == 3:
            start = np.append(start, np.median(pos[s.pulses, 2]))
        starts.append((start, s.t0_s))
    # Estimate c only with residual degrees of freedom to spare; else keep the association's.
    n_used = sum(len(s.pulses) for s in shots)
    fit_c = c_known is None and n_used - len(shots) * (geometry.dims + 1) - 1 >= MIN_DOF_FOR_C
    c = c_known if c_known is not None else float(np.median([s.c for s in shots]))
    # Robust fit first; arrivals it marks as outliers (late, non-line-of-sight within the
    # association tolerance) are left out of the plain fit the covariance comes from.
    places = places_of(shots)
    robust = fit_shots(groups, c, geometry, starts, fit_c=fit_c, loss="soft_l1", scale_s=OUTLIER_FLOOR_S,
                       places=places, wind_m_s=wind)
    need = min_sensors(geometry.mode)
    keep = _inliers(robust.residuals_s, need)
    starts = []
    for shot, k, p, t0 in zip(shots, keep, robust.positions, robust.t0_s):
        # Cracks neither the shape nor the lead gave away (downrange, no blast heard): too loud for the muzzle.
        dist_m = np.hypot(*(pos[shot.pulses, :2] - p[:2]).T)
        shot.pulses = shot.pulses[k & ~louder_than_blast(peak_dbfs[shot.pulses], dist_m)]
        starts.append((p, t0))
    # A shot left with too few sensors was the cracks' own (they agree on a point of the bullet's path).
    kept = located(shots, places, picks, need, geometry.dims)
    if not kept:
        return None
    shots, starts = [shots[i] for i in kept], [starts[i] for i in kept]
    groups = [(pos[s.pulses], t_s[s.pulses], sigma_s[s.pulses]) for s in shots]
    places = places_of(shots)
    n_unknowns = (len(set(places)) * geometry.dims + len(shots))
    fit_c = fit_c and sum(len(s.pulses) for s in shots) - n_unknowns - 1 >= MIN_DOF_FOR_C
    return shots, fit_shots(groups, robust.c, geometry, starts, fit_c=fit_c, places=places, wind_m_s=wind)


def _shot_records(shots, fit, picks: Picks, stated_unc_s: np.ndarray, sensors: Sensors, geometry: Geometry,  # noqa: PLR0913
                  t_ref_ns: int, *, wind=None, budget: Budget = BUDGET) -> list[dict]:
    """Per fitted shot its contract dict (``t_ns``, position, ``err_m``, ``ellipse``, ``sensors``), ``_enu``, ``_rel_err_m``.

    In ``shots``' order. ``err_m`` and ``ellipse`` are the 95 % circle and ellipse of the error
    budget propagated through the fit (:mod:`fusion.locator.uncertainty`); ``stated_unc_s`` is
    every pick's stated timing uncertainty (NaN: none stated). ``_rel_err_m`` is the 95 % radius of the
    fit's own covariance (residual scatter, F-corrected): how well shots of one incident are placed
    against each other, which shooters are told apart by; the budget's common errors (survey, air)
    move them together.
    """
    groups = [(picks.pos_m[s.pulses], picks.t_s[s.pulses], picks.sigma_s[s.pulses]) for s in shots]
    arrivals = arrivals_of_fit(fit, groups, [stated_unc_s[s.pulses] for s in shots], geometry,
                               rounded=on_grid(np.concatenate([picks.t_s[s.pulses] for s in shots])), wind_m_s=wind,
                               sensor_ids=[picks.sensor[s.pulses] for s in shots])
    # What each position rests on: its sensors, and the residual degrees of freedom of its place.
    dofs = place_dof(shots, fit.places, geometry.dims)
    out_shots = []
    for k, (s, unc) in enumerate(zip(shots, shot_uncertainties(arrivals, budget))):
        solved = fit.positions[k]
        if geometry.mode == "2d":
            z = float(np.median(picks.pos_m[s.pulses, 2]))  # the plane of the sensors (TN098 §V.B)
        elif geometry.mode == "2.5d":
            z = geometry.z_m
        else:
            z = float(solved[2])
        enu = np.array([solved[0], solved[1], z])
        t_ns = t_ref_ns + int(round(fit.t0_s[k] * NS_PER_S))
        out_shots.append({"t_ns": t_ns, **sensors.to_output(enu),
                          "err_m": round(unc["err_m"], ERR_DECIMALS), "ellipse": unc["ellipse"],
                          "sensors": sorted(sensors.ids[i] for i in picks.sensor[s.pulses]),
                          "sensors_n": picks.n_sensors(s.pulses), "dof": dofs[k],
                          "_enu": enu, "_rel_err_m": radius95_m(fit.cov[k], fit.dof if fit.dof > 0 else None)})
    return out_shots
