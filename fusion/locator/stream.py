"""Stretches: a long stream of pulses cut into independent stretches, holding only the open ones.

``earwitness locate`` reads hours of pulses; locating them all at once holds them all. But
two pulses further apart in time than sound takes to cross the array (plus what the
classifier reads around an incident) can never belong to one incident, so the stream is
cut at such quiet gaps (single linkage in time, as :func:`fusion.locator.locate.locate_pulses`
cuts its own, shorter, segments) and each stretch is located on its own: the same incidents
as locating the whole input, in bounded memory, each printed as soon as its stretch closes.

Input must be in time order, or nearly: a pulse may come up to ``max_disorder_s`` before the
latest one read (per-node files concatenated, a broker's redeliveries). A stretch is closed
only once a pulse ``max_disorder_s`` past its quiet gap has been read, so no pulse within that
bound can still fall into it; a pulse that falls into a stretch already located raises
:class:`OutOfOrder`. A stretch with no quiet gap for ``max_stretch_s`` (a busy city) is cut at
its longest gap, with a note: a shot heard across that cut may be lost, which is what bounds
memory there.
"""
from __future__ import annotations

import math

import numpy as np

from earwitness.units import NS_PER_S
from fusion.locator.classify import CRACKLE_SPAN_S, GATHER_TOLERANCE_S, MAX_HEARD_M, WINDOW_SLACK_S
from fusion.locator.locate import RETRY_TOLERANCE_S
from fusion.locator.multilaterate import C_MIN
from fusion.locator.sensors import Sensors

# How far before the latest pulse read another may come (seconds) by default: ten minutes,
# far more than a broker's redelivery or a merge of live per-node logs, and a few thousand
# pulses of a 64-sensor city to hold.
DEFAULT_MAX_DISORDER_S = 600.0
# Longest stretch held without a quiet gap before it is cut at its longest gap anyway.
MAX_STRETCH_S = 600.0


def quiet_gap_s(sensors: Sensors) -> float:
    """Shortest silence that separates independent stretches for ``sensors``, seconds.

    The longest travel across the array (its bounding box's diagonal at the slowest sound,
    C_MIN) plus the classifier's reach around an incident (CRACKLE_SPAN_S before its first
    shot, GATHER_TOLERANCE_S about a predicted arrival), or the classifier's window after
    the last shot (MAX_HEARD_M), whichever is longer; plus the association's widest
    tolerance. It is longer than the locator's own segment gap, so each stretch holds whole
    segments of :func:`fusion.locator.locate.locate_pulses`.
    """
    diagonal_m = float(np.linalg.norm(np.ptp(sensors.enu_m, axis=0))) if len(sensors) else 0.0
    around_s = diagonal_m / C_MIN + max(CRACKLE_SPAN_S + WINDOW_SLACK_S, GATHER_TOLERANCE_S)
    return max(around_s, MAX_HEARD_M / C_MIN + WINDOW_SLACK_S) + RETRY_TOLERANCE_S


class OutOfOrder(ValueError):
    """A pulse came too far out of time order: its stretch was located already."""


class Stretcher:
    """Pulse rows (``(sensor index, t_ns, ...)``, :func:`fusion.locator.pulses.pulse_row`) in, closed stretches out.

    Parameters
    ----------
    quiet_s : float
        Silence that separates stretches (:func:`quiet_gap_s`).
    max_disorder_s : float
        How far before the latest pulse read another may come; ``math.inf``: hold everything
        until :meth:`finish` (the whole input in memory).
    max_stretch_s : float
        Longest stretch held without a quiet gap.
    """

    def __init__(self, quiet_s: float, max_disorder_s: float = DEFAULT_MAX_DISORDER_S,
                 max_stretch_s: float = MAX_STRETCH_S):
        self.quiet_ns = int(quiet_s * NS_PER_S)
        self.unbounded = math.isinf(max_disorder_s)
        self.disorder_ns = 0 if self.unbounded else int(max_disorder_s * NS_PER_S)
        self.max_stretch_ns = int(max_stretch_s * NS_PER_S)
        self.rows: list[tuple] = []        # the open pulses, in input order
        self.times: list[int] = []
        self.seen: set[tuple[int, int]] = set()
        self.latest_ns: int | None = None
        self.latest_where = ""
        self.closed_until_ns: int | None = None   # a pulse at or before this falls in a located stretch
        self.next_check_ns: int | None = None
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: tuple, where: str) -> list[list[tuple]] | None:
        """Take one pulse; the stretches it closes (each in input order), or None if it repeats an open one.

        Raises
        ------
        OutOfOrder
            When the pulse falls in a stretch already closed.
        """
        key = (row[0], row[1])
        if key in self.seen:
            return None
        t_ns = row[1]
        if self.closed_until_ns is not None and t_ns <= self.closed_until_ns:
            raise OutOfOrder(f"{where}: t_ns {t_ns} is {(self.latest_ns - t_ns) / NS_PER_S:.1f} s before "
                             f"{self.latest_where}'s, in a stretch already located")
        self.seen.add(key)
        self.rows.append(row)
        self.times.append(t_ns)
        if self.latest_ns is None or t_ns > self.latest_ns:
            self.latest_ns, self.latest_where = t_ns, where
        if self.unbounded:
            return []
        settled_ns = self.latest_ns - self.disorder_ns   # no pulse to come is earlier than this
        if self.next_check_ns is None:
            self.next_check_ns = t_ns + self.quiet_ns
        if settled_ns < self.next_check_ns:
            return []
        # Look for closed gaps once per half a quiet gap of progress: a sort of the open pulses each time.
        self.next_check_ns = settled_ns + self.quiet_ns // 2
        return self._cut(settled_ns)

    def finish(self) -> list[list[tuple]]:
        """Every stretch still open (the input has ended)."""
        if not self.rows:
            return []
        return self._cut(max(self.times) + self.quiet_ns + 1)

    def _cut(self, settled_ns: int) -> list[list[tuple]]:
        times = np.array(self.times, dtype=np.int64)
        order = np.argsort(times, kind="stable")
        t_sorted = times[order]
        gaps = np.diff(t_sorted)
        # After sorted pulse k a stretch ends if the gap to the next (or, for the last one, to
        # any pulse still to come) is quiet, and settled.
        ends = np.flatnonzero(gaps > self.quiet_ns)
        ends = ends[t_sorted[ends] + self.quiet_ns < settled_ns]
        if t_sorted[-1] + self.quiet_ns < settled_ns:
            ends = np.append(ends, len(t_sorted) - 1)
        if not len(ends) and settled_ns - t_sorted[0] > self.max_stretch_ns:
            ends = self._forced_end(t_sorted, gaps, settled_ns)
        if not len(ends):
            return []
        last = int(ends[-1])
        stretches = [np.sort(part) for part in np.split(order[:last + 1], ends[:-1] + 1)]
        self.closed_until_ns = int(t_sorted[last]) + (self.quiet_ns if last + 1 == len(t_sorted)
                                                      or gaps[last] > self.quiet_ns else 0)
        out = [[self.rows[i] for i in part] for part in stretches]
        keep = np.sort(order[last + 1:])
        for i in order[:last + 1]:
            self.seen.discard((self.rows[i][0], self.rows[i][1]))
        self.rows = [self.rows[i] for i in keep]
        self.times = [self.times[i] for i in keep]
        return out

    def _forced_end(self, t_sorted: np.ndarray, gaps: np.ndarray, settled_ns: int) -> np.ndarray:
        """Where to cut a stretch that has no quiet gap: at its longest settled gap (a note says so)."""
        settled = np.flatnonzero(t_sorted[1:] <= settled_ns)
        if not len(settled):
            return settled
        k = int(settled[np.argmax(gaps[settled])])
        self.notes.append(f"no quiet gap of {self.quiet_ns / NS_PER_S:.1f} s in "
                          f"{(settled_ns - t_sorted[0]) / NS_PER_S:.0f} s of pulses: cut at the longest "
                          f"({gaps[k] / NS_PER_S:.2f} s); a shot heard across the cut may be missed")
        return np.array([k])
