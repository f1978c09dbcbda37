"""Rounds, shooters and sequence: group located shots into incidents and shooters.

Shots are ordered by their estimated discharge time at the source (not by arrival, which
differs per sensor); shots closer in time than :data:`INCIDENT_GAP_S` form one incident; the
shots of an incident are grouped into shooters by location.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy

# Shots further apart in discharge time than this belong to separate incidents.
INCIDENT_GAP_S = 4.0
# Two shots are one shooter when closer than this, or than their combined 95 % errors allow.
SAME_SHOOTER_M = 10.0


def split_incidents(t0_s: np.ndarray, gap_s: float = INCIDENT_GAP_S) -> list[np.ndarray]:
    """Indices of shots per incident, each in discharge order, incidents in time order.

    A new incident starts where the discharge times of consecutive shots differ by more
    than ``gap_s`` (single-linkage in time).
    """
    order = np.argsort(t0_s, kind="stable")
    if len(order) == 0:
        return []
    breaks = np.flatnonzero(np.diff(np.asarray(t0_s)[order]) > gap_s) + 1
    return np.split(order, breaks)


def split_by_place(xy_m: np.ndarray, radius_m: float) -> list[np.ndarray]:
    """Indices of the shots per place: single-linkage clusters (:func:`scipy.cluster.hierarchy.linkage`)
    of shots within ``radius_m`` of another of the cluster, in order of their first index."""
    xy_m = np.asarray(xy_m, dtype=float).reshape(-1, 2)
    if len(xy_m) < 2:
        return [np.arange(len(xy_m))]
    labels = hierarchy.fcluster(hierarchy.linkage(xy_m, method="single"), radius_m, criterion="distance")
    _, first = np.unique(labels, return_index=True)
    return [np.flatnonzero(labels == labels[i]) for i in sorted(first)]


def cluster_shooters(xy_m: np.ndarray, err_m: np.ndarray) -> np.ndarray:
    """Shooter label per shot (0 = the shooter who fired first; shots given in discharge order).

    Single-linkage agglomerative clustering (:func:`scipy.cluster.hierarchy.linkage`) on the
    horizontal distance between shots, normalised so that two shots merge when they are
    within ``max(SAME_SHOOTER_M, hypot(err_a, err_b))`` of each other.
    """
    xy_m = np.asarray(xy_m, dtype=float).reshape(-1, 2)
    k = len(xy_m)
    if k < 2:
        return np.zeros(k, dtype=int)
    err = np.nan_to_num(np.asarray(err_m, dtype=float), nan=0.0, posinf=0.0)
    i, j = np.triu_indices(k, 1)
    dist = np.hypot(*(xy_m[i] - xy_m[j]).T)
    allowed = np.maximum(SAME_SHOOTER_M, np.hypot(err[i], err[j]))
    labels = hierarchy.fcluster(hierarchy.linkage(dist / allowed, method="single"), 1.0, criterion="distance")
    # Renumber in order of each shooter's first shot.
    _, first = np.unique(labels, return_index=True)
    rank = {labels[f]: r for r, f in enumerate(sorted(first))}
    return np.array([rank[label] for label in labels], dtype=int)
