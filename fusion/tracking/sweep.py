"""One sweep over the held pulses: anchor windows from the oldest open one on, and locate them.

Pulses are swept in time order.  The earliest pulse that no located shot explains (as its
arrival, echo or bullet crack) and no earlier window covers is an *anchor*; its window is
located (:class:`fusion.tracking.windows.Windows`), and what its incidents used is *claimed*
and what it covers *skipped* (no anchors), for the later anchors of the sweep.  An earlier
window holding a pulse, located before it grew, is located first when its anchor's neighbours
hear a new shot, or when the pulse would anchor a shot of its own: the earlier window's shots
may explain it (a burst's next round is no incident of its own).

Example::

    swept = Sweep(windows, done_claimed, done_skipped).run(buffer.since(open_t_ns), now_ns)
"""
from __future__ import annotations

from fusion.tracking.arrivals import ARRIVAL, Predicted, explains
from fusion.tracking.buffer import PulseRecord
from fusion.tracking.windows import Swept, Windows


class Sweep:
    """The claims, skips and active predicted arrivals of one sweep, and the windows it anchored."""

    def __init__(self, windows: Windows, done_claimed: set, done_skipped: set):
        self.windows = windows
        self.reach = windows.reach
        self.claimed, self.skipped = set(done_claimed), set(done_skipped)
        # The predicted arrivals of the shots kept so far in this sweep that may still explain a pulse.
        self.active: list[Predicted] = []
        self.swept: list[Swept] = []
        self.windows_of: dict[object, list[Swept]] = {}   # pulse id -> the windows of this sweep holding it

    def run(self, records: list[PulseRecord], now_ns: int | None) -> list[Swept]:
        """Anchor and locate the windows of ``records`` (in time order); ``now_ns`` None closes every one."""
        for rec in records:
            if rec.id in self.claimed or rec.id in self.skipped or rec.sensor not in self.reach.xy:
                continue
            self.active = [a for a in self.active if a.until_ns >= rec.t_ns - self.reach.pair_slack_ns]
            self._relocate_if_new_shot(rec)
            if self._covered(rec):
                continue
            s = self._anchor(rec, now_ns)
            if s is None:
                continue
            self._claim(s)
            for r in s.pulses:
                self.windows_of.setdefault(r.id, []).append(s)
            self.swept.append(s)
        return self.swept

    def taken(self, p: dict) -> bool:
        """Whether a pulse is used by a kept incident, or is one's arrival at another sensor."""
        return p["id"] in self.claimed or explains(self.active, p["sensor"], int(p["t_ns"]), p.get("peak_dbfs")) == ARRIVAL

    def _covered(self, rec: PulseRecord) -> bool:
        """Whether a pulse is no anchor: claimed, skipped, or explained by an active shot."""
        return bool(rec.id in self.claimed or rec.id in self.skipped
                    or explains(self.active, rec.sensor, rec.t_ns, rec.pulse.get("peak_dbfs")))

    def _stale(self, earlier: Swept) -> bool:
        """Whether an earlier window of the sweep grew since it was located."""
        window = self.windows.located.get(earlier.anchor.id)
        return window is not None and window.key != earlier.key

    def _relocate_if_new_shot(self, rec: PulseRecord) -> None:
        """Locate again the earlier windows holding the pulse that grew and heard a new shot."""
        for earlier in self.windows_of.get(rec.id, ()):
            if not self._stale(earlier):
                continue
            if earlier.new_shot is None:
                earlier.new_shot = self.windows.new_shot(earlier.anchor, earlier, self.windows.located[earlier.anchor.id])
            if earlier.new_shot:
                self._refresh(earlier)

    def _anchor(self, rec: PulseRecord, now_ns: int | None) -> Swept | None:
        """The pulse's window, located; None if, once the earlier windows holding it are located
        again, their shots explain it."""
        windows = self.windows
        window = windows.located.get(rec.id)
        s = windows.window(rec, window.t_end_ns if window else rec.t_ns)
        s.closing = now_ns is None or now_ns - s.received_ns > self.reach.window_ns
        s.kept = windows.locate(rec, s, s.closing, self.taken)
        window = windows.located.get(rec.id)
        earlier = self.windows_of.get(rec.id, ())
        if (s.kept or (window and window.continued)) and any(self._stale(e) for e in earlier):
            for e in earlier:
                if self._stale(e):
                    self._refresh(e)
            if self._covered(rec):
                windows.located.pop(rec.id, None)
                return None
            s.kept = windows.locate(rec, s, s.closing, self.taken, force=True)
        return s

    def _refresh(self, earlier: Swept) -> None:
        """Locate again an earlier window that grew since (its own shots of before do not count as taken)."""
        for _, used in earlier.kept:
            self.claimed.difference_update(used)
        mine = self.windows.located[earlier.anchor.id].arrivals
        self.active = [a for a in self.active if all(a is not m for m in mine)]
        earlier.kept = self.windows.locate(earlier.anchor, earlier, earlier.closing, self.taken, force=True)
        self._claim(earlier)

    def _claim(self, s: Swept) -> None:
        """Mark the pulses a window's incidents used (claimed), its covered pulses and those of shots
        it located far away (skipped: no anchors), and its incidents' arrivals as active."""
        window = self.windows.located.get(s.anchor.id)
        if window is not None:
            s.skipped |= window.far
            self.active += window.arrivals
        for _, used in s.kept:
            self.claimed |= used
        self.skipped |= s.skipped
