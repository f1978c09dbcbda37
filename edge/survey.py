"""Survey-in: a fixed node's long-term position from hours of GPS fixes, kept across restarts.

Method: 3D fixes (mode 3, HDOP under a limit) are grouped into one-minute buckets, each
reduced to its per-axis median in ECEF (a robust location estimate that ignores a burst of
multipath within the minute).  The position is the mean of the bucket medians after
rejecting buckets beyond ``OUTLIER_SIGMAS`` robust standard deviations (1.4826 x MAD) on any
local east/north/up axis: the usual survey-in of timing receivers, with the averaging over
hourly-and-longer spans that commercial acoustic sensors use.  GPS errors are correlated
for minutes, so the uncertainty divides the scatter by the root of the number of distinct
``CORRELATION_S`` spans, not of the number of fixes.

State (closed buckets) is saved as JSON by atomic replace (temporary file, fsync, rename),
so a crash or power cut leaves either the old or the new file, never a torn one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import cast

import numpy as np
import pymap3d

from earwitness.units import MAD_TO_SIGMA, NS_PER_S

BUCKET_S = 60
CORRELATION_S = 900
MAX_HDOP = 5.0
OUTLIER_SIGMAS = 4.0
MIN_SIGMA_M = 0.5            # never reject on a spread tighter than this
GROSS_ERROR_M = 300.0        # a fix this far from an established survey is discarded outright
ESTABLISHED_BUCKETS = 10
MAX_BUCKETS = 7 * 24 * 60    # a week of minutes
SAVE_EVERY_BUCKETS = 5
FILE_VERSION = 1


@dataclass(frozen=True)
class SurveyPosition:
    """Surveyed WGS84 position, its horizontal and vertical standard uncertainty (m), and
    how much went into it."""

    lat: float
    lon: float
    alt: float
    err_h_m: float
    err_v_m: float
    buckets: int
    rejected_buckets: int
    span_s: float


class Survey:
    """Long-term position average of a fixed node.

    Parameters
    ----------
    path : str or None
        JSON state file (created, loaded if present); None keeps everything in memory.
    max_hdop : float, optional
        Fixes with a larger HDOP are not used.

    ``add(fix)`` takes ``edge.nmea.Fix`` objects; ``position()`` returns a
    ``SurveyPosition`` or None; ``close()`` saves.  A corrupt state file is moved aside
    (``.corrupt``) and the survey starts afresh; ``warning`` then says so.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, max_hdop: float = MAX_HDOP):
        self.path = os.fspath(path) if path is not None else None
        self.max_hdop = max_hdop
        self.buckets: list[list[float]] = []      # [t_start_s, x, y, z, n]
        self.counts: Counter = Counter()
        self.warning: str | None = None
        self._open_t: int | None = None
        self._open: list[tuple[float, float, float]] = []
        self._unsaved = 0
        self._cache: SurveyPosition | None = None
        if self.path and os.path.exists(self.path):
            self._load(self.path)

    def add(self, fix) -> bool:
        """Takes one fix; returns True if it was used."""
        if fix.mode != 3 or fix.t_ns is None or fix.lat is None or fix.alt is None:
            self.counts["not_3d"] += 1
            return False
        if fix.hdop is not None and fix.hdop > self.max_hdop:
            self.counts["high_hdop"] += 1
            return False
        xyz = pymap3d.geodetic2ecef(fix.lat, fix.lon, fix.alt)
        if len(self.buckets) >= ESTABLISHED_BUCKETS:
            ref = self._reference()
            if math.dist(xyz, ref) > GROSS_ERROR_M:
                self.counts["gross"] += 1
                return False
        t_bucket = fix.t_ns // NS_PER_S // BUCKET_S * BUCKET_S
        if self._open_t is not None and t_bucket != self._open_t:
            self._close_bucket()
        self._open_t = t_bucket
        self._open.append(xyz)
        self.counts["used"] += 1
        return True

    def position(self) -> SurveyPosition | None:
        """The surveyed position so far (closed buckets only), or None before the first."""
        if not self.buckets:
            return None
        if self._cache is None:
            self._cache = self._estimate()
        return self._cache

    def close(self) -> None:
        """Closes the current minute and saves."""
        if self._open:
            self._close_bucket()
        self.save()

    def save(self) -> None:
        """Writes the state file atomically (no-op without a path)."""
        if not self.path:
            return
        state = {"version": FILE_VERSION, "bucket_s": BUCKET_S, "saved_s": time.time(),
                 "buckets": self.buckets}
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".survey-", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._unsaved = 0

    # --- internals ----------------------------------------------------------------------

    def _load(self, path: str) -> None:
        try:
            with open(path) as f:
                state = json.load(f)
            if state.get("version") != FILE_VERSION:
                raise ValueError(f"unknown version {state.get('version')!r}")
            buckets = [[float(v) for v in b] for b in state["buckets"]]
            if any(len(b) != 5 or not all(map(math.isfinite, b)) for b in buckets):
                raise ValueError("bad bucket")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = path + ".corrupt"
            os.replace(path, aside)
            self.warning = f"survey file {path} unreadable ({exc}); moved to {aside}, starting afresh"
            return
        self.buckets = buckets[-MAX_BUCKETS:]

    def _close_bucket(self) -> None:
        med = np.median(np.array(self._open), axis=0)
        self.buckets.append([float(cast(int, self._open_t)), *map(float, med), float(len(self._open))])
        del self.buckets[:-MAX_BUCKETS]
        self._open = []
        self._open_t = None
        self._cache = None
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY_BUCKETS:
            self.save()

    def _reference(self):
        if self._cache is None:
            self._cache = self._estimate()
        return pymap3d.geodetic2ecef(self._cache.lat, self._cache.lon, self._cache.alt)

    def _estimate(self) -> SurveyPosition:
        b = np.array(self.buckets)
        xyz = b[:, 1:4]
        med = np.median(xyz, axis=0)
        lat0, lon0, alt0 = pymap3d.ecef2geodetic(*med)
        enu = np.column_stack(pymap3d.ecef2enu(xyz[:, 0], xyz[:, 1], xyz[:, 2], lat0, lon0, alt0))
        centre = np.median(enu, axis=0)
        sigma = np.maximum(MAD_TO_SIGMA * np.median(np.abs(enu - centre), axis=0), MIN_SIGMA_M)
        keep = (np.abs(enu - centre) <= OUTLIER_SIGMAS * sigma).all(axis=1)
        mean = enu[keep].mean(axis=0)
        spread = enu[keep].std(axis=0, ddof=1) if keep.sum() > 1 else sigma
        spans = len(set((b[keep, 0] // CORRELATION_S).astype(int)))
        lat, lon, alt = pymap3d.enu2geodetic(*mean, lat0, lon0, alt0)
        return SurveyPosition(
            lat=float(lat), lon=float(lon), alt=float(alt),
            err_h_m=float(math.hypot(spread[0], spread[1]) / math.sqrt(spans)),
            err_v_m=float(spread[2] / math.sqrt(spans)),
            buckets=int(keep.sum()), rejected_buckets=int((~keep).sum()),
            span_s=float(b[:, 0].max() - b[:, 0].min() + BUCKET_S))
