"""The audio stream against the host clock: host time of a sample, sample at a host time.

The node's clock model (:mod:`edge.clock`) reaches UTC through the host clock when PPS comes
from the kernel (``pps-kernel``) or not at all (``system``): each audio callback gives a
(last sample, host time) point, and a straight line through the recent ones maps one onto
the other.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

MIN_HOST_POINTS = 8                 # callbacks needed before the line is trusted


class HostMap:
    """Least-squares line host_ns = c + d * sample over recent audio callbacks.

    Callback times jitter by milliseconds; the straight-line fit over many callbacks
    averages that out (ordinary least squares, the jitter assumed zero-mean about the
    stated latency)."""

    def __init__(self, max_points: int):
        self.points: deque[tuple[float, int]] = deque(maxlen=max_points)
        self._fit: tuple[int, float, float, float, float, int, float] | None = None

    def add(self, sample: float, host_ns: int) -> None:
        self.points.append((float(sample), int(host_ns)))
        self._fit = None

    def clear(self) -> None:
        self.points.clear()
        self._fit = None

    def ready(self) -> bool:
        return len(self.points) >= MIN_HOST_POINTS

    def fit(self) -> tuple[int, float, float, float, float, int, float]:
        """(h0, mean sample, c, d, sxx, points, residual sigma) of the line, cached."""
        if self._fit is None:
            s = np.array([p[0] for p in self.points])
            h0 = self.points[0][1]
            h = np.array([p[1] - h0 for p in self.points], dtype=float)
            sm = float(s.mean())
            sxx = float(((s - sm) ** 2).sum())
            d = float(((s - sm) * (h - h.mean())).sum() / sxx)
            c = float(h.mean())
            res = h - (c + d * (s - sm))
            sigma = float(np.sqrt((res ** 2).sum() / max(len(s) - 2, 1)))
            self._fit = (h0, sm, c, d, sxx, len(s), sigma)
        return self._fit

    def host_ns(self, sample: float) -> tuple[int, float]:
        """Host time of a sample and its standard uncertainty (ns)."""
        h0, sm, c, d, sxx, n, sigma = self.fit()
        dx = sample - sm
        return h0 + int(round(c + d * dx)), sigma * math.sqrt(1.0 / n + dx * dx / sxx)

    def sample_at(self, host_ns: int) -> tuple[float, float]:
        """Sample index at a host time and its standard uncertainty (samples)."""
        h0, sm, c, d, sxx, n, sigma = self.fit()
        sample = sm + (host_ns - h0 - c) / d
        _, unc_ns = self.host_ns(sample)
        return sample, unc_ns / d
