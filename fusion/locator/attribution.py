"""Which stored pulses a located incident used, and why each other pulse was rejected.

The locator's output names, per shot, the sensors whose first arrival it used; this module
finds for each such (shot, sensor) the pulse closest to the predicted straight-line arrival
``t_shot + distance / c`` and labels every other pulse of the incident's window by how it
relates to the shots: a late arrival (echo or diffracted path) of a shot, an arrival that no
shot explains, or a pulse from a sensor the registry does not place.
"""
from __future__ import annotations

import numpy as np

from earwitness.units import NS_PER_S
from fusion.locator.sensors import Sensors

# Beyond this the closest pulse is not the arrival the locator used.
MATCH_TOLERANCE_S = 0.05
# A pulse this long after a shot's predicted arrival at its sensor is counted as that shot's echo.
ECHO_WINDOW_S = 2.0


def _distance_m(shot: dict, sensor_enu: np.ndarray, sensors: Sensors) -> float:
    # Horizontal distance, as the default 2D locator: the shooter near the ground, sensors on roofs.
    delta = sensor_enu[:2] - sensors.to_enu(shot)[:2]
    return float(np.hypot(delta[0], delta[1]))


def _predicted(shots: list[dict], pulses: list[dict], sensors: Sensors, c_m_s: float) -> dict[tuple[int, str], int]:
    """Straight-line arrival time of every shot k at every sensor of ``pulses``, by (k, sensor name).

    Only the pulses' sensors: a city registry has a thousand, an incident's window a few dozen.
    """
    names = {p["sensor"] for p in pulses if p["sensor"] in sensors.index}
    return {(k, name): int(shot["t_ns"] + _distance_m(shot, sensors.enu_m[sensors.index[name]], sensors) / c_m_s * NS_PER_S)
            for k, shot in enumerate(shots) for name in names}


def _shot_arrivals(shots: list[dict], pulses: list[dict], predicted: dict) -> list[list[dict]]:
    """Per shot, the pulse of each of its sensors closest to the predicted arrival (each used once)."""
    out, taken = [], set()
    for k, shot in enumerate(shots):
        arrivals = []
        for name in shot.get("sensors", []):
            cands = [p for p in pulses if p["sensor"] == name and p["id"] not in taken]
            if not cands or (k, name) not in predicted:
                continue
            best = min(cands, key=lambda p: abs(p["t_ns"] - predicted[(k, name)]))
            if abs(best["t_ns"] - predicted[(k, name)]) <= MATCH_TOLERANCE_S * NS_PER_S:
                arrivals.append(best)
                taken.add(best["id"])
        out.append(arrivals)
    return out


def shot_arrivals(incident: dict, pulses: list[dict], sensors: Sensors, c_m_s: float) -> list[list[dict]]:
    """The pulses (each with ``id``) a located incident used, per shot, in the order of ``incident["shots"]``
    sorted by time (the contract's discharge order)."""
    shots = sorted(incident.get("shots", []), key=lambda s: s["t_ns"])
    return _shot_arrivals(shots, pulses, _predicted(shots, pulses, sensors, c_m_s))


def attribute(incident: dict, pulses: list[dict], sensors: Sensors, c_m_s: float) -> tuple[list[int], dict[int, str]]:
    """Split ``pulses`` (stored, each with ``id``, ``sensor``, ``t_ns``) into used ids and rejected {id: reason}.

    Parameters
    ----------
    incident : dict
        Located incident per the Incidents contract.
    pulses : list of dict
        The pulses of the incident's time window.
    sensors : fusion.locator.sensors.Sensors
        Sensor positions (the frame the incident is in).
    c_m_s : float
        Speed of sound used for the predicted arrivals.
    """
    shots = sorted(incident.get("shots", []), key=lambda s: s["t_ns"])
    predicted = _predicted(shots, pulses, sensors, c_m_s)
    used = [p["id"] for arrivals in _shot_arrivals(shots, pulses, predicted) for p in arrivals]
    taken = set(used)
    rejected: dict[int, str] = {}
    for p in pulses:
        if p["id"] in taken:
            continue
        name = p["sensor"]
        if name not in sensors.index:
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
