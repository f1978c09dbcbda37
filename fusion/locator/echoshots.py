"""Located shots that are another shot's echo: a wall's image, or a set of echoes off several walls.

A specular echo arrives as from a mirror source behind the wall firing at the same instant (the
image-source method, Allen & Berkley, JASA 65, 1979): :func:`without_images` drops it during
association. Echoes off several walls round a shooter (a courtyard) fit no single image source:
their compromise lands near the shooter, later by up to the walls' round trip, and is located as
a second "shooter" that fewer sensors hear (:func:`echo_shots`).
"""
from __future__ import annotations

import numpy as np

from earwitness.units import NS_PER_S
from fusion.locator.burst import DETECTION_PROB
from fusion.locator.echosets import ECHO_LOG_PRIOR_ODDS, hearing_log_odds
from fusion.locator.multilaterate import C_MAX

# Two shots emitted closer in time than this and nearer than IMAGE_RANGE_M are one shot and
# its image in a reflecting wall: the one fewer sensors agree on is dropped. Rounds of one gun
# come at least 50 ms apart (1200 rounds/min); the slack covers the fits' emission-time errors.
IMAGE_TIME_S = 0.03
IMAGE_RANGE_M = 100.0
# A shot whose distance from another's shot plus the sound's travel in the time between them is
# within this path, and that fewer sensors hear, is that shot's echo (city_demo's rifle: 14-25 m
# away, 33-110 ms later, 36-52 m of path; its exchange's second shooter, 45 m away and 0.35 s
# later, 165 m).
ECHO_PATH_M = IMAGE_RANGE_M + IMAGE_TIME_S * C_MAX


def without_images(shots: list) -> list:
    """The shots (associated, with ``t0_s``, ``position`` and ``pulses``) less those that are
    another's image in a wall (see IMAGE_TIME_S); of two, the one more sensors agree on is kept
    (greedy, largest first)."""
    shots = sorted(shots, key=lambda s: -len(s.pulses))
    kept = []
    for shot in shots:
        if not any(abs(shot.t0_s - k.t0_s) <= IMAGE_TIME_S and
                   np.hypot(*(shot.position[:2] - k.position[:2])) <= IMAGE_RANGE_M for k in kept):
            kept.append(shot)
    return kept


def echo_shots(out_shots: list[dict], enus: np.ndarray, rel_err_m: np.ndarray, labels: np.ndarray,
               c_m_s: float) -> np.ndarray:
    """Mask of the located shots (in discharge order) that are another shot's echo.

    A shot within ECHO_PATH_M of an earlier shot that more sensors heard is its echo where it is
    the only shot of another shooter, or, of the same shooter, where it is an echo set by
    :func:`fusion.locator.echosets.hearing_log_odds` (a later round of one gun and place is heard
    where the earlier was, each sensor with P_D) by either count:
    - few of its own sensors heard the earlier shot (an echo reaches sensors the round did not;
      city_exchange's shooter A: sets 50-80 ms after two rounds, 20-35 m off, heard by 5 sensors, 1
      of them the round's, whose 30-60 m errors link A and B into one "shooter");
    - few of the earlier shot's sensors heard it, and it is not at the earlier shot's place: farther
      from it than their 95 % relative radii (``rel_err_m``) together (city_demo's park rifle: a set 5 m
      off, radii 3.0 and 1.0 m, heard by 5 of the round's 14 sensors). A round of the same place heard
      less well is kept (Pittsburgh, two 3-round tests merged: 0-2.1 m apart within 1.5-3.6 m radii;
      dropping them took rounds exact from 0.917 to 0.833).
    Not against another shooter's shot: city_demo (seed 24) has a rifle's rounds placed 20 m apart
    by two sensor sets.
    """
    counts = np.bincount(labels)
    echo = np.zeros(len(out_shots), dtype=bool)
    for i, shot in enumerate(out_shots):
        for j in range(i):
            lag_s = (shot["t_ns"] - out_shots[j]["t_ns"]) / NS_PER_S
            dist_m = float(np.hypot(*(enus[i, :2] - enus[j, :2])))
            parent = out_shots[j]["sensors"]
            if echo[j] or dist_m + c_m_s * lag_s > ECHO_PATH_M or len(parent) <= len(shot["sensors"]):
                continue
            if labels[j] != labels[i]:
                echo[i] = counts[labels[i]] == 1
            else:
                common = len(set(parent) & set(shot["sensors"]))
                elsewhere = dist_m > float(np.hypot(np.nan_to_num(rel_err_m[i]), np.nan_to_num(rel_err_m[j])))
                echo[i] = _echo_set(common, len(shot["sensors"])) or (elsewhere and _echo_set(common, len(parent)))
            if echo[i]:
                break
    return echo


def _echo_set(heard_n: int, of_n: int) -> bool:
    return hearing_log_odds(heard_n, of_n, DETECTION_PROB) + ECHO_LOG_PRIOR_ODDS > 0.0
