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


def echo_shots(out_shots: list[dict], enus: np.ndarray, labels: np.ndarray, c_m_s: float) -> np.ndarray:
    """Mask of the located shots (in discharge order) that are another shot's echo.

    A shot within ECHO_PATH_M of an earlier shot that more sensors heard is its echo where it is
    the only shot of another shooter, or, of the same shooter, where so few of its own sensors heard
    the earlier shot that it is an echo set by :func:`fusion.locator.echosets.hearing_log_odds` (a
    later round of the same gun and place is heard where the earlier was, each sensor with P_D; an
    echo reaches sensors the round did not). Counting instead how many of the earlier shot's sensors
    heard it drops real rounds heard less well (Pittsburgh, two 3-round tests merged: rounds exact
    0.917 -> 0.833).
    City_exchange's shooter A: sets 50-80 ms after two rounds, 20-35 m off, heard by 5 sensors, 1
    of them the round's; their 30-60 m errors link A and B into one "shooter". Not against another
    shooter's shot: city_demo (seed 24) has a rifle's rounds placed 20 m apart by two sensor sets.
    """
    counts = np.bincount(labels)
    echo = np.zeros(len(out_shots), dtype=bool)
    for i, shot in enumerate(out_shots):
        for j in range(i):
            lag_s = (shot["t_ns"] - out_shots[j]["t_ns"]) / NS_PER_S
            path_m = float(np.hypot(*(enus[i, :2] - enus[j, :2]))) + c_m_s * lag_s
            parent = out_shots[j]["sensors"]
            if echo[j] or path_m > ECHO_PATH_M or len(parent) <= len(shot["sensors"]):
                continue
            common = len(set(parent) & set(shot["sensors"]))
            other = labels[j] != labels[i]
            # Of the same shooter: its sensors mostly ones that did not hear the earlier shot (a
            # later round of one gun and place is heard where the earlier was, each with P_D).
            if (other and counts[labels[i]] == 1) or (not other and hearing_log_odds(
                    common, len(shot["sensors"]), DETECTION_PROB) + ECHO_LOG_PRIOR_ODDS > 0.0):
                echo[i] = True
                break
    return echo
