"""A table of picks: the arrivals (pulses) association and the final fit work on, as NumPy columns.

One row per pulse: which sensor heard it, when, how sure the time is, and where that sensor
stands. The locator passes one table instead of four parallel arrays; a subset of rows is
another table (:meth:`Picks.take`), so a chunk of a stretch or the pulses not yet explained
are searched exactly as the whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Picks:
    """Per-pulse columns, all of one length n (rows in the caller's order).

    Attributes
    ----------
    sensor : ndarray of int, shape (n,)
        Sensor index of each pulse (rows of one sensor share it).
    t_s : ndarray, shape (n,)
        Arrival times, seconds on the caller's time origin.
    sigma_s : ndarray, shape (n,)
        Timing sigma of each arrival, seconds.
    pos_m : ndarray, shape (n, 3) or (n, 2)
        Position of each pulse's sensor, local metres (x east, y north[, z up]).
    """

    sensor: np.ndarray
    t_s: np.ndarray
    sigma_s: np.ndarray
    pos_m: np.ndarray

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def xy(self) -> np.ndarray:
        """Horizontal sensor positions, shape (n, 2): association works in the plane."""
        return self.pos_m[:, :2]

    def take(self, rows) -> Picks:
        """The table of the rows ``rows`` (indices, in their order, or a boolean mask)."""
        return Picks(self.sensor[rows], self.t_s[rows], self.sigma_s[rows], self.pos_m[rows])

    def n_sensors(self, rows=slice(None)) -> int:
        """Number of distinct sensors among the rows ``rows`` (default: all)."""
        return len(np.unique(self.sensor[rows]))
