"""Shots of one place closer in time than a gun fires: the weaker is the other's echoes.

Example::

    shots = rounds_apart(shots, need=4)
"""
from __future__ import annotations

import numpy as np

from fusion.locator.associate import Shot
from fusion.locator.burst import DISTINCT_PLACES_M, MIN_ROUND_GAP_S, PLACE_SETTLED_M
from fusion.locator.shooters import split_by_place


def rounds_apart(shots: list[Shot], need: int) -> list[Shot]:
    """``shots`` less each of ``need`` pulses or fewer that comes within MIN_ROUND_GAP_S of a better-supported one at
    its place (DISTINCT_PLACES_M).

    No gun fires so fast: of two such shots one is a set of the other's echoes, or of its arrivals mixed with
    echoes (with 4-5 sensors hearing, each with dense echoes, 4 of them can fit a place a few metres off
    exactly, 40-50 ms from the shot: audio-like scenes of tests/pittsburgh_like.py, seed 601 scenes 10, 12 and
    87). The better supported is the one with more rounds fitted at its very place (a burst's, within
    PLACE_SETTLED_M), then more pulses, then the earlier: echoes follow the sound that made them (TN098 §II.B).
    A shot of more than ``need`` pulses (association's least: one residual degree of freedom) is checked by its own
    residuals and stays: two guns at one place can fire that close together (the Pittsburgh tests merged two by
    two, bench_association: a round of 12-20 sensors 40 ms after the other gun's). The shots are kept in their order."""
    if len(shots) < 2:
        return shots
    xy = np.array([s.position[:2] for s in shots])
    rounds_here = (np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) <= PLACE_SETTLED_M).sum(axis=1)
    keep: list[int] = []
    for members in split_by_place(xy, DISTINCT_PLACES_M):
        kept_t0_s: list[float] = []
        for i in sorted(members, key=lambda k: (-rounds_here[k], -len(shots[k].pulses), shots[k].t0_s)):
            if len(shots[i].pulses) > need or all(abs(shots[i].t0_s - t0_s) >= MIN_ROUND_GAP_S for t0_s in kept_t0_s):
                kept_t0_s.append(shots[i].t0_s)
                keep.append(i)
    return [shots[i] for i in sorted(keep)]
