"""Says when the node's timing degrades and when it recovers, one log line each.

The clock model (:mod:`edge.clock`) degrades quietly by design: when PPS goes silent it holds
over on the sample clock with a growing uncertainty, and without PPS at all it falls back to
the system clock (hundreds of ms).  Pulses carry that uncertainty, but an operator reading the
node's journal should not have to infer it: :class:`TimingWatch` reads the clock's status and
logs a WARNING on each step down (locked -> holdover -> system clock) and on the way back.

Example::

    watch = TimingWatch()
    watch.update(clock.status())        # about once a second of audio
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

LOCKED, HOLDOVER, SYSTEM = "locked", "holdover", "system clock"
_RANK = {LOCKED: 0, HOLDOVER: 1, SYSTEM: 2}
NS_PER_US = 1000


def timing_state(status: dict) -> str | None:
    """``locked`` (PPS edges recent and labelled), ``holdover`` (PPS fit extrapolated) or
    ``system clock``; None while nothing times the samples yet."""
    if status.get("unc_ns") is None:
        return None
    if status.get("locked"):
        return LOCKED
    return HOLDOVER if status.get("timing") != "system" else SYSTEM


class TimingWatch:
    """Logs the transitions of :func:`timing_state`; ``state`` is the current one, ``degradations`` counts the falls."""

    def __init__(self):
        self.state: str | None = None
        self.degradations = 0
        self._ever_locked = False

    def update(self, status: dict) -> None:
        state = timing_state(status)
        if state is None or state == self.state:
            return
        before, self.state = self.state, state
        unc_us = status["unc_ns"] / NS_PER_US
        if state == LOCKED:
            if self._ever_locked:
                log.warning("timing recovered: PPS back, %s locked again (uncertainty %.1f us)", status.get("timing"), unc_us)
            else:
                log.info("timing: locked to PPS (%s, uncertainty %.1f us)", status.get("timing"), unc_us)
            self._ever_locked = True
            return
        if before is None or _RANK[state] < _RANK[before]:
            if self._ever_locked:
                log.warning("timing improved to %s (%s, uncertainty %.1f us), not locked to PPS yet",
                            state, status.get("timing"), unc_us)
            return
        self.degradations += 1
        age = status.get("edge_age_s")
        silent = f"PPS silent for {age:.1f} s" if age is not None else "no PPS"
        if state == HOLDOVER:
            log.warning("timing degraded: %s, holding over on the audio clock (%s, uncertainty %.1f us and growing)",
                        silent, status.get("timing"), unc_us)
        else:
            log.warning("timing degraded: %s, pulses timed by the system clock (uncertainty %.1f ms)",
                        silent, unc_us / 1000)
