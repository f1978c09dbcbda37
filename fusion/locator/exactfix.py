"""A lone shot that three sensors fix exactly: first arrivals, the mirror root, and the area searched.

Three sensors' arrival times are three equations in a shot's place and discharge time (2D, or 2.5D at a known
ground height): solved in closed form (:func:`fusion.locator.triplevote.triple_points`), with no degree of freedom
left to check the pulses taken, so which pulses, which root and where are the whole of the question.

Example::

    shots = single_exact_shot(picks, rows, c, Geometry("2.5d", ground_z_m), array_m)
"""
from __future__ import annotations

import logging

import numpy as np

from fusion.locator.associate import Shot, inside, search_bounds
from fusion.locator.burst import DISTINCT_PLACES_M, EXACT_FIX, EXACT_RESIDUAL_S
from fusion.locator.fewburst import place_by_hearing
from fusion.locator.multilaterate import Geometry, fit_shots
from fusion.locator.picks import Picks
from fusion.locator.triplevote import triple_points

log = logging.getLogger(__name__)


def single_exact_shot(picks: Picks, rows: np.ndarray, c: float, geometry: Geometry,
                      array_m: np.ndarray | None = None) -> list[Shot]:
    """One shot from the first arrivals at d + 1 sensors, the sensors of ``rows``: no degree of freedom to check
    it (``dof`` 0). In 2D or 2.5D (source at a known height) three sensors fix it; both closed-form roots
    (:func:`triple_points`) are refined in ``geometry``, and where both fit (the mirror ambiguity, Schau &
    Robinson 1987) none is given, with the reason logged, unless who heard the shot and who did not tells them
    apart (:func:`fusion.locator.fewburst.place_by_hearing`; ``array_m``: every sensor of the array, (m, 3),
    indexed as the picks' ``sensor``, those that reported nothing too).

    Of a sensor's pulses the earliest is taken: the direct path is the shortest, and what follows it there is
    its echoes (TN098 §II.B). ``rows`` should hold only pulses loud enough to be a shot at their sensor (the
    caller's echo screen): a quiet one before it is noise. (Where the shot's echoes were reported too, 3-6 a
    sensor, only sensors with a single pulse each were taken before: audio-like scenes of
    tests/pittsburgh_like.py, seeds 601-604, rounds exact 0.81/0.84/0.76/0.80 -> 0.84/0.86/0.78/0.84.)
    """
    if geometry.dims != 2 or picks.n_sensors(rows) != geometry.dims + 1:
        return []
    by_sensor = rows[np.lexsort((picks.t_s[rows], picks.sensor[rows]))]
    rows = by_sensor[np.r_[True, np.diff(picks.sensor[by_sensor]) != 0]]
    points, t0s = triple_points(picks.xy[rows][None], picks.t_s[rows][None], c)
    fits = []
    for point, t0 in zip(points, t0s):
        fit = fit_shots([(picks.pos_m[rows], picks.t_s[rows], picks.sigma_s[rows])], c, geometry, [(point, t0)])
        if np.max(np.abs(fit.residuals_s[0])) <= EXACT_RESIDUAL_S:
            fits.append(fit)
    distinct = [f for f in fits if np.hypot(*(f.positions[0][:2] - fits[0].positions[0][:2])) > DISTINCT_PLACES_M]
    if distinct:
        k = place_by_hearing(picks, rows, array_m, [fits[0].positions[0][:2], distinct[0].positions[0][:2]])
        if k is not None:
            fits, distinct = [(fits[0], distinct[0])[k]], []
    # A fix lies in the area association searches (a mirror root anywhere still makes two places: far outside
    # it, the true one's mirror can lie inside).
    if not fits or distinct or not inside(search_bounds(picks.xy[rows]), fits[0].positions[0]):
        if distinct:
            log.warning("one shot heard by 3 sensors fits two places, (%.0f, %.0f) and (%.0f, %.0f) m: not located",
                        *fits[0].positions[0][:2], *distinct[0].positions[0][:2])
        elif fits:
            log.warning("one shot heard by 3 sensors fits a place (%.0f, %.0f) m outside the area searched: not located",
                        *fits[0].positions[0][:2])
        return []
    fit = fits[0]
    return [Shot(np.sort(rows), fit.positions[0], float(fit.t0_s[0]), c, fit.residuals_s[0], EXACT_FIX)]
