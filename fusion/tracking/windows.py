"""Anchor windows: the pulses an anchor's window holds, when it is located, what it keeps.

A window holds its anchor's neighbours' pulses from the anchor (less a slack) to as long
after it as sound needs to cross the window range, reaching BURST_GAP_S past its last located
shot (up to MAX_WINDOW_S past its anchor).  It is located with
:func:`fusion.locator.locate.locate` as soon as it holds enough sensors for a shot, again
whenever it has grown by RELOCATE_GROWTH since (a window of n pulses is located O(log n)
times), while an incident it keeps is held back, when its anchor's neighbours hear a shot it
has not located, and once more when it closes.  It keeps the incidents whose first shot lies
within the anchor range and that an earlier window has not kept already (most of their
pulses taken).

Example::

    windows = Windows(reach, buffer, book, Fix(temperature_c=4.0, mode="2d"))
    s = windows.window(anchor, anchor.t_ns)
    s.kept = windows.locate(anchor, s, closing=False, taken=lambda p: False)
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

from earwitness.records import Incident
from earwitness.units import NS_PER_S
from fusion.locator.attribution import attribute, shot_arrivals
from fusion.locator.locate import locate, min_sensors
from fusion.locator.multilaterate import C_MIN
from fusion.locator.pulses import LEVEL_KEYS
from fusion.locator.uncertainty import FRAME_TYPICAL_M
from fusion.tracking.arrivals import ArrivalBook, Predicted, explains
from fusion.tracking.buffer import PulseBuffer, PulseRecord
from fusion.tracking.reach import Reach, incident_c_m_s

log = logging.getLogger(__name__)

# A located window is located again once it holds this many times the pulses it had then.
RELOCATE_GROWTH = 1.5
# A window reaches this far past its last located shot (rounds of one burst are closer than
# this); up to MAX_WINDOW_S past its anchor, which bounds the work of one location.
BURST_GAP_S = 2.0
MAX_WINDOW_S = 60.0
# A window located before is located again at once when this many sensors near its anchor
# report a pulse none of its shots explains (one alone is too often another incident's or noise).
NEW_SHOT_SENSORS = 2
# An incident most of whose pulses an earlier window's incidents used is one of those again.
DUPLICATE_SHARE = 0.5
# An incident goes out once this many sensors beyond the fewest that fix a shot place it: at
# the fewest, its fit has no spare sensor to refute it, and a busy city's echoes and stray
# pulses line up on four sensors often enough to place a ghost (in the fleet benchmark's city:
# ten in two minutes, none of them a real shot); it is published as soon as one more hears it.
SPARE_SENSORS = 1
# The keys of a pulse the locator reads.
LOCATOR_KEYS = ("sensor", "t_ns", "t_unc_ns", *LEVEL_KEYS, "features")

# What a window makes of an incident located in it (see Windows._verdict).
_KEPT, _FAR, _SEEN, _CONTINUED = "kept", "far", "seen", "continued"
# An incident a window keeps, with the ids of the pulses it used.
Kept = tuple[Incident, set]
# Whether a pulse is taken already: used by a kept incident, or one's arrival at another sensor.
Taken = Callable[[dict], bool]


@dataclasses.dataclass(frozen=True)
class Fix:
    """How windows are located: the air temperature (None: the locator estimates the speed of
    sound), the geometry, ``"2d"``, ``"2.5d"`` or ``"3d"``, the told wind (east, north m/s; None:
    still air) and err_m's frame term (m; see :func:`fusion.locator.locate.locate`)."""

    temperature_c: float | None
    mode: str
    wind_m_s: tuple[float, float] | None = None
    frame_m: float = FRAME_TYPICAL_M

    @property
    def min_sensors(self) -> int:
        """The fewest sensors that fix a shot."""
        return min_sensors(self.mode)

    @property
    def alert_sensors(self) -> int:
        """The fewest sensors that confirm an incident (it goes out)."""
        return self.min_sensors + SPARE_SENSORS

    def confirms(self, incident: Incident) -> bool:
        """Whether enough sensors place an incident for it to go out."""
        return len(incident.get("sensors") or ()) >= self.alert_sensors


@dataclasses.dataclass(eq=False)
class Window:
    """An anchor's window as last located."""

    key: frozenset             # ids of the pulses it held when last located
    located_n: int
    kept: list[Kept]
    t_end_ns: int              # its last located shot's arrival at the anchor's sensor
    far: set                   # pulses of shots it located far from its anchor (not anchors)
    arrivals: list[Predicted]  # per kept incident
    continued: bool            # it located more rounds of an earlier window's incident (and left them to it)


@dataclasses.dataclass(eq=False)
class Swept:
    """One anchor of a sweep: its window now and what was located in it."""

    anchor: PulseRecord
    pulses: list[PulseRecord]
    kept: list[Kept]
    skipped: set
    received_ns: int           # the latest pulse within the window's reach reached the server then
    t_end_ns: int              # the window reaches BURST_GAP_S past this
    closing: bool = False
    key: frozenset = frozenset()   # ids of its pulses
    new_shot: bool | None = None   # whether its neighbourhood heard a shot it has not located (once known)

    def __post_init__(self):
        self.key = frozenset(r.id for r in self.pulses)


def locator_input(pulses: list[dict]) -> list[dict]:
    """A window's pulses as the locator reads them, one per (sensor, t_ns).

    A node may report the same arrival twice under two sequence numbers (a resend after a
    restart); both are stored, but the locator would drop and warn about the second copy at
    every relocation of the window, so it is left out here, once.
    """
    seen, out = set(), []
    for p in pulses:
        key = (p["sensor"], p["t_ns"])
        if key not in seen:
            seen.add(key)
            out.append({k: p[k] for k in LOCATOR_KEYS if k in p})
    return out


class Windows:
    """The anchors' windows as last located (``located``, by anchor id), and locating them."""

    def __init__(self, reach: Reach, buffer: PulseBuffer, book: ArrivalBook, fix: Fix):
        self.reach = reach
        self.buffer = buffer
        self.book = book
        self.fix = fix
        self.located: dict[object, Window] = {}

    def window(self, anchor: PulseRecord, t_end_ns: int) -> Swept:
        """The anchor's window, reaching BURST_GAP_S past ``t_end_ns`` (its last shot at the anchor)."""
        reach, t_a = self.reach, anchor.t_ns
        t_end = min(t_end_ns, t_a + int(MAX_WINDOW_S * NS_PER_S)) + int(BURST_GAP_S * NS_PER_S)
        cover_ns = t_end - t_a + int(reach.cover_m / C_MIN * NS_PER_S) + reach.pair_slack_ns
        pulses, skipped, received_ns = [], set(), anchor.received_ns
        for name, dist_m in reach.near[anchor.sensor].items():
            hi_ns = t_end + int(dist_m / C_MIN * NS_PER_S) + reach.pair_slack_ns
            for rec in self.buffer.of_sensor(name, t_a - reach.pair_slack_ns, hi_ns):
                received_ns = max(received_ns, rec.received_ns)
                pulses.append(rec)
                if dist_m <= reach.cover_m and rec.t_ns - t_a <= cover_ns:
                    skipped.add(rec.id)
        pulses.sort(key=lambda r: r.t_ns)
        return Swept(anchor, pulses, [], skipped, received_ns, t_end_ns)

    def locate(self, anchor: PulseRecord, s: Swept, closing: bool, taken: Taken, force: bool = False) -> list[Kept]:
        """The incidents of the anchor's window (from the last location unless it grew enough or
        closes); a window whose last shot came late is widened and located again."""
        window = self.located.get(anchor.id)
        if len({r.sensor for r in s.pulses}) < self.fix.min_sensors:
            if closing:
                self.located.pop(anchor.id, None)
                return []
            return window.kept if window else []
        if window is not None and self._current(window, anchor, s, closing or force):
            return window.kept
        while True:
            pulses = [r.pulse for r in s.pulses]
            kept, far, continued = self._locate(anchor, pulses, taken)
            t_end_ns = max([anchor.t_ns] + [self.reach.arrival_ns(shot, inc, anchor.sensor)
                                             for inc, _ in kept for shot in inc["shots"]])
            self.located[anchor.id] = Window(s.key, len(s.pulses), kept, t_end_ns, far,
                                             [self.book.predict(inc, pulses, used) for inc, used in kept], continued)
            if t_end_ns <= s.t_end_ns or t_end_ns - anchor.t_ns > MAX_WINDOW_S * NS_PER_S:
                return kept
            wider = self.window(anchor, t_end_ns)   # a burst goes on
            s.pulses, s.skipped, s.received_ns = wider.pulses, wider.skipped, wider.received_ns
            s.t_end_ns, s.key = t_end_ns, wider.key

    def _current(self, window: Window, anchor: PulseRecord, s: Swept, must: bool) -> bool:
        """Whether the window's last location stands: it holds the same pulses, or it need not be
        located again (not ``must``, not grown enough, its incidents confirmed, no new shot)."""
        if window.key == s.key:
            return True
        return (len(s.pulses) < RELOCATE_GROWTH * window.located_n and not must
                and self.confirmed(window) and not self.new_shot(anchor, s, window))

    def confirmed(self, window: Window) -> bool:
        """Whether every incident the window kept may go out (a held-back one is located again
        at each new pulse: the next sensor to hear it confirms it)."""
        return all(self.fix.confirms(inc) for inc, _ in window.kept)

    def new_shot(self, anchor: PulseRecord, s: Swept, window: Window) -> bool:
        """Whether a pulse new to the window, near the anchor, is no arrival or echo of its located
        shots: the next round of a burst, to be located now rather than as an incident of its own."""
        near, heard = self.reach.near[anchor.sensor], set()
        for r in s.pulses:
            if r.id in window.key or near[r.sensor] > self.reach.cover_m or r.sensor in heard:
                continue
            if not explains(window.arrivals, r.sensor, r.t_ns, r.pulse.get("peak_dbfs")):
                heard.add(r.sensor)
        return len(heard) >= NEW_SHOT_SENSORS

    def _locate(self, anchor: PulseRecord, pulses: list[dict], taken: Taken) -> tuple[list[Kept], set, bool]:
        """Locate a window; keep the incidents whose first shot is near the anchor and that an
        earlier window has not located already (most of their pulses claimed).

        The window holds the claimed pulses too: the locator tells echoes from shots best when it
        sees the shots they echo (left out, their echoes would look like shots of their own)."""
        kept, far, continued = [], set(), False
        try:
            # Burst completion as locate's default (COMPLETE_BURSTS_DEFAULT; with it on, make demo keeps 12/12 shots
            # and rounds exact 1: the seed city's house-front echo sets are told from rounds by their levels).
            for inc in locate(locator_input(pulses), self.reach.sensors, self.fix.temperature_c, mode=self.fix.mode,
                              incident_radius_m=self.reach.anchor_range_m, wind_m_s=self.fix.wind_m_s,
                              frame_m=self.fix.frame_m):
                used, _ = attribute(inc, pulses, self.reach.sensors, incident_c_m_s(inc))
                verdict = self._verdict(anchor, inc, pulses, used, taken)
                if verdict == _FAR:
                    far |= self._far_arrivals(inc, pulses, used)
                elif verdict == _CONTINUED:
                    continued = True
                elif verdict == _KEPT:
                    kept.append((inc, set(used)))
        except Exception:  # noqa: BLE001 - one window the locator chokes on must not stop the others
            log.exception("locating a window of %d pulses failed; it is left unlocated", len(pulses))
        return kept, far, continued

    def _verdict(self, anchor: PulseRecord, inc: Incident, pulses: list[dict], used: list, taken: Taken) -> str:
        """What the anchor's window makes of an incident located in it (``used``: the ids of its
        pulses): _KEPT; _FAR (another anchor is nearer its source: it is found from there);
        _SEEN (an earlier window's incident, seen again); _CONTINUED (its first shot is an
        earlier window's: that window goes on)."""
        if math.dist(_first_xy(self.reach, inc), self.reach.xy[anchor.sensor]) > self.reach.anchor_range_m:
            return _FAR
        if sum(taken(p) for p in pulses if p["id"] in used) > DUPLICATE_SHARE * len(used):
            return _SEEN
        first_arrivals = (shot_arrivals(inc, pulses, self.reach.sensors, incident_c_m_s(inc)) or [[]])[0]
        if first_arrivals and sum(taken(p) for p in first_arrivals) > DUPLICATE_SHARE * len(first_arrivals):
            return _CONTINUED
        return _KEPT

    def _far_arrivals(self, inc: Incident, pulses: list[dict], used: list) -> set:
        """Ids of the pulses an incident located far from the anchor used beyond the anchor range
        of its first shot: no first arrival of a shot near them."""
        xy = _first_xy(self.reach, inc)
        return {p["id"] for p in pulses
                if p["id"] in used and math.dist(xy, self.reach.xy[p["sensor"]]) > self.reach.anchor_range_m}

    def close(self, closed: list[Swept], claimed: set, skipped: set) -> None:
        """Forget closed windows (in time order: their claims and skips are settled); add what
        their incidents used or explain to ``claimed``, their covered pulses and their
        incidents' echoes to ``skipped``."""
        for s in closed:
            self.located.pop(s.anchor.id, None)
            skipped |= s.skipped
            for inc, used in s.kept:
                arrivals, echoes = self.book.explained(inc, [r.pulse for r in s.pulses], used)
                claimed |= used | arrivals
                skipped |= echoes


def _first_xy(reach: Reach, incident: Incident):
    """Where an incident's first shot was fired, (east, north) metres."""
    first = min(incident["shots"], key=lambda s: s["t_ns"]) if incident.get("shots") else incident
    return reach.enu_xy(first)
