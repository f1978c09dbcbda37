"""The pulses the tracker holds: in time order, and per sensor, from the oldest retained on.

Example::

    buffer = PulseBuffer()
    rec = buffer.insert({"id": 7, "sensor": "roof-12", "t_ns": t_ns}, received_ns)
    buffer.of_sensor("roof-12", t_ns - 10**9, t_ns)     # that sensor's pulses in one second
"""
from __future__ import annotations

import bisect
import dataclasses


@dataclasses.dataclass(eq=False)
class PulseRecord:
    """A stored pulse (a dict with ``id``, ``sensor``, ``t_ns``), and when it reached the server."""

    pulse: dict
    id: object
    sensor: str
    t_ns: int
    received_ns: int


class PulseBuffer:
    """Pulses in time order and per sensor; each stored pulse once however often it is added."""

    def __init__(self):
        self._records: list[PulseRecord] = []
        self._times: list[int] = []
        self._by_sensor: dict[str, tuple[list[int], list[PulseRecord]]] = {}
        self._ids: set = set()

    def insert(self, pulse: dict, received_ns: int) -> PulseRecord | None:
        """Add a stored pulse; None if it is held already (forwarded through two cells, or redelivered)."""
        pid = pulse.get("id", object())
        if pid in self._ids:
            return None
        t_ns = int(pulse["t_ns"])
        rec = PulseRecord(pulse, pid, pulse["sensor"], t_ns, received_ns)
        self._ids.add(pid)
        at = bisect.bisect_right(self._times, t_ns)
        self._times.insert(at, t_ns)
        self._records.insert(at, rec)
        times, recs = self._by_sensor.setdefault(rec.sensor, ([], []))
        at = bisect.bisect_right(times, t_ns)
        times.insert(at, t_ns)
        recs.insert(at, rec)
        return rec

    def since(self, t_ns: int | None) -> list[PulseRecord]:
        """The pulses from ``t_ns`` on, in time order (none when ``t_ns`` is None)."""
        start = bisect.bisect_left(self._times, t_ns) if t_ns is not None else len(self._times)
        return self._records[start:]

    def of_sensor(self, sensor: str, lo_ns: int, hi_ns: int) -> list[PulseRecord]:
        """One sensor's pulses from ``lo_ns`` to ``hi_ns`` (both included), in time order."""
        if sensor not in self._by_sensor:
            return []
        times, recs = self._by_sensor[sensor]
        return recs[bisect.bisect_left(times, lo_ns):bisect.bisect_right(times, hi_ns)]

    def last_t_ns(self) -> int | None:
        """The time of the latest pulse held, None when none is."""
        return self._times[-1] if self._times else None

    def forget(self, horizon_ns: int) -> list[PulseRecord]:
        """Drop the pulses before ``horizon_ns``; returns them."""
        cut = bisect.bisect_left(self._times, horizon_ns)
        if cut == 0:
            return []
        gone = self._records[:cut]
        del self._records[:cut], self._times[:cut]
        for rec in gone:
            self._ids.discard(rec.id)
        for name in {rec.sensor for rec in gone}:
            times, recs = self._by_sensor[name]
            k = bisect.bisect_left(times, horizon_ns)
            del times[:k], recs[:k]
        return gone
