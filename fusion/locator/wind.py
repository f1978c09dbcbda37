"""A told wind in the locator's travel-time model.

Still air is the default: sound from a source at ``p`` reaches a sensor at ``s`` after
``|s - p| / c``. With a wind ``w`` (east, north, m/s) told (a weather station's, a city's feed),
the sound along the path goes at the effective speed ``c + w.u``, ``u = (s - p) / |s - p|`` the
unit vector from the source to the sensor (the effective-sound-speed approximation, e.g.
Salomons, "Computational Atmospheric Acoustics", 2001, §2.3; the simulator's propagation model).
A 3 m/s wind over 500 m is ~13 ms between upwind and downwind sensors: left out, it moves a
source by about ``d w / c`` (8 m in the simulator's city scenarios), the same for every shot of
the place and invisible in the residuals.

:func:`travel_s` and :func:`travel_gradient` give the travel times and their exact derivatives
by the source's coordinates and by c, for the final fit (:func:`fusion.locator.multilaterate.fit_shots`)
and the error budget's Jacobian (:func:`fusion.locator.uncertainty.arrivals_of_fit`).
"""
from __future__ import annotations

import math

import numpy as np

# Strongest wind taken as told: past a gale (Beaufort 8 starts at 17.2 m/s) sound paths bend and
# the effective-speed model is no longer the air near the ground; a reading this high is a fault.
MAX_WIND_M_S = 40.0
FULL_CIRCLE_DEG = 360.0


def wind_problem(speed_m_s: float, from_deg: float) -> str | None:
    """Why a told wind (speed, the compass bearing it blows FROM) cannot be used, or None."""
    if not (math.isfinite(speed_m_s) and 0.0 <= speed_m_s <= MAX_WIND_M_S):
        return f"wind speed must be 0 to {MAX_WIND_M_S:g} m/s, not {speed_m_s}"
    if not (math.isfinite(from_deg) and 0.0 <= from_deg <= FULL_CIRCLE_DEG):
        return f"wind direction must be a compass bearing 0 to 360 degrees (where it blows from), not {from_deg}"
    return None


def wind_east_north(speed_m_s: float, from_deg: float) -> tuple[float, float]:
    """The wind's velocity (east, north), m/s, from its speed and the bearing it blows FROM (meteorological).

    Raises ValueError on a speed or bearing :func:`wind_problem` refuses.
    """
    problem = wind_problem(speed_m_s, from_deg)
    if problem:
        raise ValueError(problem)
    to = math.radians(from_deg + 180.0)
    return speed_m_s * math.sin(to), speed_m_s * math.cos(to)


def told_wind(speed_m_s: float | None, from_deg: float | None) -> tuple[float, float] | None:
    """:func:`wind_east_north` of a reading (speed, bearing it blows from), None where either is not told."""
    return None if speed_m_s is None or from_deg is None else wind_east_north(speed_m_s, from_deg)


def as_wind(wind_m_s) -> np.ndarray | None:
    """``wind_m_s`` (east, north) as a checked array, or None for still air (None given)."""
    if wind_m_s is None:
        return None
    w = np.asarray(wind_m_s, dtype=float)
    if w.shape != (2,) or not np.all(np.isfinite(w)) or float(np.hypot(*w)) > MAX_WIND_M_S:
        raise ValueError(f"wind must be (east, north) m/s, finite, at most {MAX_WIND_M_S:g} m/s, not {wind_m_s!r}")
    return w


def along_m_s(diff: np.ndarray, dist: np.ndarray, wind: np.ndarray) -> np.ndarray:
    """Per path the wind's component ``w.u`` along it; ``diff`` is source minus sensor (n, 2 or 3)."""
    return -(diff[:, :2] @ wind) / dist


def travel_s(diff: np.ndarray, dist: np.ndarray, c: float, wind: np.ndarray) -> np.ndarray:
    """Travel times ``dist / (c + w.u)``, s."""
    return dist / (c + along_m_s(diff, dist, wind))


def travel_times(diff: np.ndarray, dist: np.ndarray, c: float, wind: np.ndarray | None) -> np.ndarray:
    """:func:`travel_s`, or ``dist / c`` in still air (``wind`` None)."""
    return dist / c if wind is None else travel_s(diff, dist, c, wind)


def travel_and_gradient(diff: np.ndarray, dist: np.ndarray, c: float, wind: np.ndarray | None,
                        dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Travel times and their derivatives by the source's first ``dims`` coordinates and by c; in still air
    (``wind`` None) the plain ``d / c``, ``(p - s) / (d c)`` and ``-d / c^2``."""
    if wind is None:
        return dist / c, diff[:, :dims] / (dist * c)[:, None], -dist / c**2
    by_pos, by_c = travel_gradient(diff, dist, c, wind, dims)
    return travel_s(diff, dist, c, wind), by_pos, by_c


def travel_gradient(diff: np.ndarray, dist: np.ndarray, c: float, wind: np.ndarray,
                    dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact derivatives of :func:`travel_s`: by the source's first ``dims`` coordinates (n, dims) and by c (n,).

    With ``t = d / v``, ``v = c + w.u``, ``u = (s - p) / d``: ``dd/dp = -u`` and
    ``du/dp = -(I - u u^T) / d``, so ``dt/dp = -u / v + (w - (w.u) u) / v^2`` and ``dt/dc = -d / v^2``.
    """
    u = -diff / dist[:, None]
    along = u[:, :2] @ wind
    v = c + along
    w_full = np.zeros(diff.shape[1])
    w_full[:2] = wind
    grad = -u / v[:, None] + (w_full[None, :] - along[:, None] * u) / (v * v)[:, None]
    return grad[:, :dims], -dist / (v * v)


