"""The fit's residuals per sensor: how far each used arrival lies from what the located shot predicts.

For shot k at position p_k, discharged at t_k, and a sensor s at q_s that heard it at a_s, the
residual is ``a_s - (t_k + |p_k - q_s| / c)`` with the speed of sound ``c`` the locator used
(the revision's ``speed_of_sound_m_s``, else the one of its temperature) and the distance
measured as the locator measures it: horizontal in ``2d`` mode (the shot lies in the sensors'
plane), in 3D otherwise.  The arrival of sensor s for shot k is the used pulse of s closest to
its predicted time.  A positive residual is an arrival later than the straight path predicts.

Example::

    rows = residuals(incident, pulses, meta)   # [{"shot", "sensor", "arrival_ns", "dist_m", "residual_ms"}]
"""
from __future__ import annotations

import numpy as np

from earwitness.units import NS_PER_S, speed_of_sound
from fusion.locator.sensors import Sensors
from fusion.locator.wind import travel_times

MS_PER_S = 1000.0
MIN_DIST_M = 1e-6   # a shot placed on a sensor: the path has no direction to take the wind along
RESIDUAL_HEADER = ["shot", "sensor", "arrival time", "distance (m)", "predicted travel (ms)", "residual (ms)"]


def _sensors(positions: dict) -> Sensors | None:
    if not positions:
        return None
    first = next(iter(positions.values()))
    if "lat" in first:
        return Sensors.from_wgs84({n: (p["lat"], p["lon"], p.get("alt", 0.0)) for n, p in positions.items()})
    return Sensors.from_local({n: (p["x"], p["y"], p.get("z", 0.0)) for n, p in positions.items()})


def speed_used(incident: dict, meta: dict) -> float | None:
    """The speed of sound (m/s) the revision was located with."""
    c = meta.get("speed_of_sound_m_s") or incident.get("c_mps")
    if c is None and meta.get("temperature_c") is not None:
        c = speed_of_sound(float(meta["temperature_c"]))
    return None if c is None else float(c)


def residuals(incident: dict, pulses: list[dict], meta: dict) -> list[dict]:
    """Per shot (numbered 1.. in discharge order) and sensor it names: the residual of its arrival."""
    sensors = _sensors(meta.get("sensors", {}))
    c = speed_used(incident, meta)
    if sensors is None or c is None:
        return []
    horizontal = meta.get("mode", "2d") == "2d"
    wind = np.asarray(meta.get("wind_m_s") or (0.0, 0.0), dtype=float)   # the told wind the fit modelled
    used: dict[str, list[int]] = {}
    for p in pulses:
        if p["used"]:
            used.setdefault(p.get("sensor", p["node"]), []).append(int(p["t_ns"]))
    rows = []
    for k, shot in enumerate(sorted(incident.get("shots", []), key=lambda s: s["t_ns"]), 1):
        at = sensors.to_enu(shot)
        for name in shot.get("sensors", []):
            if name not in sensors.index or name not in used:
                continue
            diff = at - sensors.enu_m[sensors.index[name]]
            dist_m = max(float(np.hypot(diff[0], diff[1]) if horizontal else np.linalg.norm(diff)), MIN_DIST_M)
            travel_s = float(travel_times(diff[None], np.array([dist_m]), c, wind)[0])
            predicted_ns = shot["t_ns"] + travel_s * NS_PER_S
            arrival_ns = min(used[name], key=lambda t: abs(t - predicted_ns))
            rows.append({"shot": k, "sensor": name, "arrival_ns": arrival_ns, "dist_m": dist_m,
                         "travel_ms": travel_s * MS_PER_S,
                         "residual_ms": (arrival_ns - predicted_ns) / NS_PER_S * MS_PER_S})
    return rows


def rms_by_sensor(rows: list[dict]) -> dict[str, float]:
    """Root mean square residual (ms) of each sensor over the shots it heard."""
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r["sensor"], []).append(r["residual_ms"])
    return {n: float(np.sqrt(np.mean(np.square(v)))) for n, v in out.items()}
