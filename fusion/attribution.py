"""Which stored pulses a located incident used, and why each other pulse was rejected.

The locator's output names, per shot, the sensors whose first arrival it used; this module
finds for each such (shot, sensor) the pulse closest to the predicted straight-line arrival
``t_shot + distance / c`` and labels every other pulse of the incident's window by how it
relates to the shots: a late arrival (echo or diffracted path) of a shot, an arrival that no
shot explains, or a pulse from a sensor the registry does not place.
"""
from __future__ import annotations

import numpy as np

NS_PER_S = 1_000_000_000
# Beyond this the closest pulse is not the arrival the locator used.
MATCH_TOLERANCE_S = 0.05
# A pulse this long after a shot's predicted arrival at its sensor is counted as that shot's echo.
ECHO_WINDOW_S = 2.0


def speed_of_sound_m_s(temperature_c: float) -> float:
    """Speed of sound in dry air, c = 20.03 * sqrt(T + 273.15) m/s (as in TN098)."""
    return 20.03 * float(np.sqrt(temperature_c + 273.15))


def _xyz(d: dict) -> np.ndarray:
    return np.array([float(d.get("x", 0.0)), float(d.get("y", 0.0)), float(d.get("z", 0.0))])


def _distance_m(shot: dict, sensor: dict) -> float:
    if "lat" in shot:
        import pymap3d

        e, n, u = pymap3d.geodetic2enu(sensor["lat"], sensor["lon"], sensor.get("alt", 0.0),
                                       shot["lat"], shot["lon"], sensor.get("alt", 0.0))
        return float(np.hypot(e, n))
    # 2D like the default locator: a shooter near the ground, sensors on rooftops at unknown height offsets.
    delta = _xyz(sensor) - _xyz(shot)
    return float(np.hypot(delta[0], delta[1])) if "z" not in shot else float(np.linalg.norm(delta))


def attribute(incident: dict, pulses: list[dict], sensors: dict, c_m_s: float) -> tuple[list[int], dict[int, str]]:
    """Split ``pulses`` (stored, each with ``id``, ``sensor``, ``t_ns``) into used ids and rejected {id: reason}.

    Parameters
    ----------
    incident : dict
        Located incident per the Incidents contract.
    pulses : list of dict
        The pulses of the incident's time window.
    sensors : dict
        Sensor id -> position dict (same frame as the incident).
    c_m_s : float
        Speed of sound used for the predicted arrivals.
    """
    shots = sorted(incident.get("shots", []), key=lambda s: s["t_ns"])
    predicted: dict[tuple[int, str], int] = {}
    for k, shot in enumerate(shots):
        for name in sensors:
            predicted[(k, name)] = int(shot["t_ns"] + _distance_m(shot, sensors[name]) / c_m_s * NS_PER_S)
    used: list[int] = []
    taken: set[int] = set()
    for k, shot in enumerate(shots):
        for name in shot.get("sensors", []):
            cands = [p for p in pulses if p["sensor"] == name and p["id"] not in taken]
            if not cands or (k, name) not in predicted:
                continue
            best = min(cands, key=lambda p: abs(p["t_ns"] - predicted[(k, name)]))
            if abs(best["t_ns"] - predicted[(k, name)]) <= MATCH_TOLERANCE_S * NS_PER_S:
                used.append(best["id"])
                taken.add(best["id"])
    rejected: dict[int, str] = {}
    for p in pulses:
        if p["id"] in taken:
            continue
        name = p["sensor"]
        if name not in sensors:
            rejected[p["id"]] = "sensor not in the registry"
            continue
        lags = [(p["t_ns"] - predicted[(k, name)]) / NS_PER_S for k in range(len(shots))]
        after = [(lag, k) for k, lag in enumerate(lags) if 0 <= lag <= ECHO_WINDOW_S]
        if after:
            lag, k = min(after)
            if lag <= MATCH_TOLERANCE_S:
                rejected[p["id"]] = f"inconsistent with shot {k + 1} (+{lag * 1000:.0f} ms): not a line-of-sight first arrival"
            else:
                rejected[p["id"]] = f"echo or late arrival of shot {k + 1} (+{lag * 1000:.0f} ms after predicted)"
        elif any(lag < 0 for lag in lags) and all(lag < 0 for lag in lags):
            rejected[p["id"]] = f"before any shot could be heard ({min(-lag for lag in lags) * 1000:.0f} ms early): noise"
        else:
            rejected[p["id"]] = "not explained by any located shot"
    return used, rejected
