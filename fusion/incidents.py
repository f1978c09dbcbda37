"""Live incidents: group arriving pulses in space and time, locate as they come, revise, finalise.

A pulse joins a *group* when it could be the same sound as one of the group's pulses: their
sensors are close enough to hear one shot (at most twice the farthest a shot is heard) and
their times differ by at most the sensors' distance over the slowest plausible speed of
sound, plus a slack for timing errors and diffraction (PAIR_SLACK_S).  So incidents far apart in a city stay separate groups of bounded
size, however often they overlap in time.  A group is located with :func:`fusion.locate.locate`
as soon as it could hold a shot, and again whenever it has grown by RELOCATE_GROWTH since it was
last located (so a group of n pulses is located O(log n) times, not n times: a burst's
group of hundreds of pulses costs the locator seconds each time), and once more when final;
each located incident is classified (:func:`fusion.classify.classify`);
a located incident is published ``preliminary`` the first time (as soon as enough mutually
consistent sensors report for the locator to give a shot), ``revised`` when more pulses
change it, and ``final`` once no pulse has joined the group for one window (the time sound
needs to cross the array, or the farthest a shot is heard if less, plus the margin) of wall-clock
time, so no first arrival of its shots can still be on its way.

Example::

    tracker = IncidentTracker(registry, site="pgh", temperature_c=4.0)
    for update in tracker.add(stored_pulses, received_ns=time.time_ns()):
        store.save_incident(update.incident, update.status, update.used, update.rejected, update.meta)
    updates = tracker.expire(time.time_ns())
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
import math

import earwitness
from fusion.attribution import attribute, shot_arrivals
from fusion.classify import classify
from fusion.locate import locate, min_sensors
from fusion.multilaterate import C_MIN
from fusion.pulses import LEVEL_KEYS
from fusion.registry import Registry

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
DEFAULT_MARGIN_S = 1.0
# Two arrivals of one sound differ by at most distance / c plus this: TN098's 40 ms association
# limit for diffracted paths, plus the clock error of a node in holdover.
PAIR_SLACK_S = 0.1
# A located group is located again once it holds this many times the pulses it had then.
RELOCATE_GROWTH = 1.5
# No gunshot is heard (let alone detected) farther than this: a site wider than it gets a
# window for this distance, not for its diameter.
DEFAULT_MAX_RANGE_M = 4000.0
HEARD_BY_BOTH = 2.0   # two sensors hearing one shot are at most this many ranges apart
# Changes smaller than these are not worth a new revision.
POSITION_STEP_M = 0.5
ERROR_STEP_M = 0.5
# Work per location stays bounded: a group this full takes no more pulses (a pulse it would
# take starts or joins another group).  At a hundred incidents a minute across a city,
# neighbouring incidents chain into groups of thousands of pulses, and the association cost
# grows much faster than the pulse count (a 2,500-pulse, 40-sensor group took 35 s); one
# incident's group (a 40-round burst heard by a dozen sensors, with echoes) stays below it.
MAX_GROUP_PULSES = 600
M_PER_DEGREE = 111_320.0
# Pulses within this fraction of the range of an anchor (and as soon after it as sound
# crosses that) are not anchors again: a shot they would anchor lies within range of it.
ANCHOR_COVER_FRACTION = 0.75   # of latitude; an upper bound for longitude
# The keys of a pulse the locator reads.
LOCATOR_KEYS = ("sensor", "t_ns", "t_unc_ns", *LEVEL_KEYS)


@dataclasses.dataclass
class Update:
    """One revision to store and publish."""

    incident: dict
    status: str
    used: list[int]
    rejected: dict[int, str]
    meta: dict
    trigger_received_ns: int   # when the latest pulse that led to this revision reached the server


@dataclasses.dataclass
class _Tracked:
    incident_id: str
    body: dict
    published: bool = False
    changed: bool = True


@dataclasses.dataclass
class _Group:
    pulses: list[dict]
    first_t_ns: int
    last_t_ns: int
    last_received_ns: int
    dirty: bool = True
    located_n: int = 0     # pulses the group had when last located
    tracked: list[_Tracked] = dataclasses.field(default_factory=list)
    sensors: set = dataclasses.field(default_factory=set)
    ids: set = dataclasses.field(default_factory=set)
    # Anchor windows located before, by their pulse ids: a window no pulse has joined since
    # (most of a long group's, all at its final) is not located again.
    windows: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.sensors = {p["sensor"] for p in self.pulses}
        self.ids = {p.get("id") for p in self.pulses}


class IncidentTracker:
    """Turns a stream of stored pulses into incident revisions.

    Parameters
    ----------
    registry : fusion.registry.Registry
        Node positions (the frame of the output).
    site : str
        Prefix of incident ids, so ids stay unique across sites sharing a database.
    temperature_c : float, optional
        Air temperature; when None the locator estimates the speed of sound.
    mode : str
        Locator geometry, ``"2d"``, ``"2.5d"`` or ``"3d"``.
    margin_s : float
        Added to the propagation window (network delay, clock error, diffraction).
    max_range_m : float
        Farthest a shot is heard; the window is for min(array diameter, this).
    max_group_pulses : int
        A group this full takes no more pulses (bounds the work of one location).
    """

    def __init__(self, registry: Registry, site: str, temperature_c: float | None = None, mode: str = "2d",
                 margin_s: float = DEFAULT_MARGIN_S, max_range_m: float = DEFAULT_MAX_RANGE_M,
                 max_group_pulses: int = MAX_GROUP_PULSES):
        self.registry = registry
        self.max_group_pulses = max_group_pulses
        self.site = site
        self.temperature_c = temperature_c
        self.mode = mode
        diameter_m = registry.diameter_m()
        self.window_ns = int((min(diameter_m, max_range_m) / C_MIN + margin_s) * NS_PER_S)
        self.margin_ns = int(margin_s * NS_PER_S)
        self.pair_slack_ns = int(min(margin_s, PAIR_SLACK_S) * NS_PER_S)
        # Two sensors that hear one shot are at most twice its range apart.
        self.max_range_m = max_range_m
        self.pair_range_m = HEARD_BY_BOTH * max_range_m
        # The largest time difference of two pulses of one sound: bounds the groups to search.
        self.reach_ns = int(min(diameter_m, self.pair_range_m) / C_MIN * NS_PER_S) + self.pair_slack_ns
        self._xy = {name: (float(e), float(n)) for name, (e, n, _) in zip(registry.sensors.ids, registry.sensors.enu_m)}
        self.min_sensors = min_sensors(mode)
        # Open groups sorted by first_t_ns, with their first times beside them for bisection.
        # Groups may overlap in time (far apart in space): a pulse's candidates are those that
        # start at most reach + the longest open group's span before it.
        self.groups: list[_Group] = []
        self._firsts: list[int] = []
        self._max_span_ns = 0
        # Groups that gained pulses since the last relocation, and the earliest wall-clock time
        # any open group can expire: a step touches only these, not every open group.
        self._changed: list[_Group] = []
        self._expiry_due_ns: int | None = None

    def add(self, pulses: list[dict], received_ns: int) -> list[Update]:
        """Add stored pulses (each with ``id``, ``sensor``, ``t_ns``); locate the groups they changed."""
        for p in pulses:
            self._join(p, received_ns)
        return self._relocate(received_ns)

    def expire(self, now_ns: int) -> list[Update]:
        """Finalise the groups no pulse has joined for one window; returns their final revisions."""
        if self._expiry_due_ns is None or now_ns <= self._expiry_due_ns:
            return []
        closed = [g for g in self.groups if now_ns - g.last_received_ns > self.window_ns]
        self.groups = [g for g in self.groups if now_ns - g.last_received_ns <= self.window_ns]
        self._firsts = [g.first_t_ns for g in self.groups]
        self._max_span_ns = max((g.last_t_ns - g.first_t_ns for g in self.groups), default=0)
        self._expiry_due_ns = min((g.last_received_ns for g in self.groups), default=None)
        if self._expiry_due_ns is not None:
            self._expiry_due_ns += self.window_ns
        updates = []
        for group in closed:
            updates += self._locate_group(group, group.last_received_ns, final=True)
        return updates

    def flush(self) -> list[Update]:
        """Finalise every open group now (at shutdown or the end of a replay)."""
        updates = []
        for group in self.groups:
            updates += self._locate_group(group, group.last_received_ns, final=True)
        self.groups, self._firsts, self._max_span_ns = [], [], 0
        self._changed, self._expiry_due_ns = [], None
        return updates

    def _join(self, pulse: dict, received_ns: int) -> None:
        t = int(pulse["t_ns"])
        xy = self._xy.get(pulse["sensor"])
        lo = bisect.bisect_left(self._firsts, t - self.reach_ns - self._max_span_ns)
        hi = bisect.bisect_right(self._firsts, t + self.reach_ns)
        near = [i for i in range(lo, hi) if self.groups[i].last_t_ns + self.reach_ns >= t]
        if "id" in pulse and any(pulse["id"] in self.groups[i].ids for i in near):
            return   # the same stored pulse again (forwarded through two cells, or redelivered)
        joined = [i for i in near if len(self.groups[i].pulses) < self.max_group_pulses
                  and self._heard_with(self.groups[i], xy, t)]
        room = self.max_group_pulses - 1
        for k, i in enumerate(joined):   # bridge groups only as far as the result stays bounded
            room -= len(self.groups[i].pulses)
            if room < 0:
                joined = joined[:max(k, 1)]
                break
        if not joined:
            at = bisect.bisect_right(self._firsts, t)
            group = _Group([pulse], t, t, received_ns)
            self.groups.insert(at, group)
            self._firsts.insert(at, t)
            self._changed.append(group)
            due = received_ns + self.window_ns
            self._expiry_due_ns = due if self._expiry_due_ns is None else min(self._expiry_due_ns, due)
            return
        group = self.groups[joined[0]]
        if not group.dirty:
            self._changed.append(group)
        for i in reversed(joined[1:]):  # the pulse bridges groups: they are one
            other = self.groups.pop(i)
            del self._firsts[i]
            other.dirty = False   # located as part of ``group`` from now on
            group.pulses += other.pulses
            group.tracked += other.tracked
            group.windows.update(other.windows)
            group.sensors |= other.sensors
            group.ids |= other.ids
            group.last_t_ns = max(group.last_t_ns, other.last_t_ns)
            group.last_received_ns = max(group.last_received_ns, other.last_received_ns)
        group.pulses.append(pulse)
        group.ids.add(pulse.get("id"))
        group.sensors.add(pulse["sensor"])
        if t < group.first_t_ns:   # it starts earlier now: keep the list sorted
            i = self.groups.index(group)
            del self.groups[i], self._firsts[i]
            group.first_t_ns = t
            at = bisect.bisect_right(self._firsts, t)
            self.groups.insert(at, group)
            self._firsts.insert(at, t)
        group.last_t_ns = max(group.last_t_ns, t)
        group.last_received_ns = max(group.last_received_ns, received_ns)
        group.dirty = True
        self._max_span_ns = max(self._max_span_ns, group.last_t_ns - group.first_t_ns)

    def _heard_with(self, group: _Group, xy: tuple[float, float] | None, t_ns: int) -> bool:
        """Whether a pulse at sensor position ``xy`` and time ``t_ns`` can be a sound one of the group's pulses is."""
        for other in group.pulses:
            other_xy = self._xy.get(other["sensor"])
            if xy is None or other_xy is None:   # position unknown: time alone decides
                if abs(t_ns - int(other["t_ns"])) <= self.window_ns:
                    return True
                continue
            dist_m = math.hypot(xy[0] - other_xy[0], xy[1] - other_xy[1])
            if dist_m <= self.pair_range_m and abs(t_ns - int(other["t_ns"])) <= dist_m / C_MIN * NS_PER_S + self.pair_slack_ns:
                return True
        return False

    def _relocate(self, received_ns: int) -> list[Update]:
        changed = sorted((g for g in self._changed if g.dirty), key=lambda g: g.first_t_ns)
        # A group that has not grown enough waits (still dirty) for more pulses or for its final.
        self._changed = [g for g in changed if len(g.pulses) < RELOCATE_GROWTH * g.located_n]
        changed = [g for g in changed if len(g.pulses) >= RELOCATE_GROWTH * g.located_n]
        updates = []
        for group in changed:
            updates += self._locate_group(group, received_ns, final=False)
        return updates

    def _locate_group(self, group: _Group, trigger_ns: int, final: bool) -> list[Update]:
        if group.dirty and len(group.sensors) < self.min_sensors:
            group.dirty = False   # too few sensors for any shot: the locator would find none
        if group.dirty:
            group.dirty = False
            group.located_n = len(group.pulses)
            try:
                located = self._locate_windows(group)
                for inc in located:
                    arrivals = shot_arrivals(inc, group.pulses, self.registry.sensors, inc.get("c_mps") or C_MIN)
                    # The group's pulses: the classifier's height fix and crackle read the arrivals left out.
                    inc.update(classify(inc, arrivals, self.registry.sensors, pulses=group.pulses))
            except Exception:  # noqa: BLE001 - one group the locator chokes on must not stop the others
                log.exception("locating a group of %d pulses failed; it keeps its last result", len(group.pulses))
                located = [t.body for t in group.tracked]
            self._match(group, located)
        updates = []
        for tracked in group.tracked:
            status = "final" if final else ("revised" if tracked.published else "preliminary")
            if not final and tracked.published and not tracked.changed:
                continue
            if final and not tracked.published and not tracked.changed:
                continue
            tracked.published, tracked.changed = True, False
            body = dict(tracked.body, incident=tracked.incident_id)
            c_m_s = body.get("c_mps") or C_MIN
            used, rejected = attribute(body, group.pulses, self.registry.sensors, c_m_s)
            updates.append(Update(incident=body, status=status, used=used, rejected=rejected,
                                  meta=self._meta(body, group), trigger_received_ns=trigger_ns))
        return updates

    def _locate_windows(self, group: _Group) -> list[dict]:
        """Locate a group one anchor window at a time, so the work grows with the group, not faster.

        The earliest unclaimed pulse is the anchor: if it is a shot's first arrival, the shot
        lies within range of its sensor, and every first arrival of it comes from a sensor at
        most twice the range away, no earlier than the anchor (less the slack) and no later
        than their distance over c.  That window is located; incidents whose first shot lies
        within range of the anchor (their whole sound is in the window) are kept and their
        pulses claimed; the others are found again from a later anchor.  Pulses near the
        anchor in space and time are not anchors again: a shot whose first arrival they are
        lies within range of this anchor too.  A group within one window is located whole.
        """
        pulses = sorted(group.pulses, key=lambda p: int(p["t_ns"]))
        if not self._spans_windows(pulses):
            return locate(_locator_input(pulses), self.registry.sensors, self.temperature_c, mode=self.mode)
        times = [int(p["t_ns"]) for p in pulses]
        reach_ns = int(self.pair_range_m / C_MIN * NS_PER_S) + self.pair_slack_ns
        cover_m = self.max_range_m * ANCHOR_COVER_FRACTION
        claimed: set[int] = set()
        skip: set[int] = set()
        located = []
        for k, anchor in enumerate(pulses):
            if k in claimed or k in skip:
                continue
            a_xy, t_a = self._xy.get(anchor["sensor"]), times[k]
            lo = bisect.bisect_left(times, t_a - self.pair_slack_ns)
            hi = bisect.bisect_right(times, t_a + reach_ns)
            window = []
            for j in range(lo, hi):
                if j in claimed:
                    continue
                dist_m = self._dist_m(a_xy, pulses[j]["sensor"])
                if dist_m <= self.pair_range_m and abs(times[j] - t_a) <= dist_m / C_MIN * NS_PER_S + self.pair_slack_ns:
                    window.append(j)
                    if dist_m <= cover_m and times[j] - t_a <= cover_m / C_MIN * NS_PER_S:
                        skip.add(j)
            if len({pulses[j]["sensor"] for j in window}) < self.min_sensors:
                continue
            win = [pulses[j] for j in window]
            key = (anchor.get("id"), frozenset(p.get("id") for p in win))
            if key not in group.windows:
                kept = []
                for inc in locate(_locator_input(win), self.registry.sensors, self.temperature_c, mode=self.mode):
                    if self._source_dist_m(inc, a_xy) <= self.max_range_m:   # else not wholly in this window
                        used, _ = attribute(inc, win, self.registry.sensors, inc.get("c_mps") or C_MIN)
                        kept.append((inc, set(used)))
                group.windows[key] = kept
            for inc, used in group.windows[key]:
                claimed.update(j for j, p in zip(window, win) if p.get("id") in used)
                located.append(inc)
        return located

    def _spans_windows(self, pulses: list[dict]) -> bool:
        """Whether the group reaches beyond one anchor window (of its earliest pulse)."""
        a_xy, t_a = self._xy.get(pulses[0]["sensor"]), int(pulses[0]["t_ns"])
        if a_xy is None:
            return False
        reach_ns = int(self.pair_range_m / C_MIN * NS_PER_S) + self.pair_slack_ns
        return any(int(p["t_ns"]) - t_a > reach_ns or self._dist_m(a_xy, p["sensor"]) > self.pair_range_m
                   for p in pulses)

    def _dist_m(self, a_xy, sensor: str) -> float:
        xy = self._xy.get(sensor)
        if a_xy is None or xy is None:
            return 0.0   # position unknown: time alone decides
        return math.hypot(xy[0] - a_xy[0], xy[1] - a_xy[1])

    def _source_dist_m(self, incident: dict, a_xy) -> float:
        """Distance from ``a_xy`` to the centre of the sensors of the incident's first shot (near its source)."""
        pts = [self._xy[n] for n in incident["shots"][0].get("sensors", []) if n in self._xy] if incident.get("shots") else []
        if a_xy is None or not pts:
            return 0.0
        return math.hypot(sum(p[0] for p in pts) / len(pts) - a_xy[0], sum(p[1] for p in pts) / len(pts) - a_xy[1])

    def _match(self, group: _Group, located: list[dict]) -> None:
        """Pair each located incident with the tracked one it revises (closest in time), or track it anew."""
        free = list(group.tracked)
        for inc in located:
            best = min(free, key=lambda t: abs(t.body["t_ns"] - inc["t_ns"]), default=None)
            if best is not None and abs(best.body["t_ns"] - inc["t_ns"]) <= self.window_ns:
                free.remove(best)
                best.changed = best.changed or _differs(best.body, inc)
                best.body = inc
            else:
                group.tracked.append(_Tracked(f"{self.site}-{inc['incident']}", inc))

    def _meta(self, incident: dict, group: _Group) -> dict:
        names = {p["sensor"] for p in group.pulses} | set(incident.get("sensors", []))
        return {
            "sensors": {n: self.registry.positions[n] for n in sorted(names) if n in self.registry.positions},
            "temperature_c": self.temperature_c,
            "speed_of_sound_m_s": incident.get("c_mps"),
            "mode": self.mode,
            "software": earwitness.__version__,
            "locator": "fusion.locate.locate",
            "window_s": self.window_ns / NS_PER_S,
        }


def _locator_input(pulses: list[dict]) -> list[dict]:
    """The group's pulses as the locator reads them, one per (sensor, t_ns).

    A node may report the same arrival twice under two sequence numbers (a resend after a
    restart); both are stored, but the locator would drop and warn about the second copy at
    every relocation of the group, so it is left out here, once.
    """
    seen, out = set(), []
    for p in pulses:
        key = (p["sensor"], p["t_ns"])
        if key not in seen:
            seen.add(key)
            out.append({k: p[k] for k in LOCATOR_KEYS if k in p})
    return out


def _differs(old: dict, new: dict) -> bool:
    if any(old.get(k) != new.get(k) for k in ("rounds", "sensors", "class")):
        return True
    if abs(float(old.get("err_m", 0)) - float(new.get("err_m", 0))) >= ERROR_STEP_M:
        return True
    keys = ("x", "y") if "x" in new else ("lat", "lon")
    if keys[0] == "lat":
        return any(abs(float(old[k]) - float(new[k])) >= POSITION_STEP_M / M_PER_DEGREE for k in keys)
    return any(abs(float(old[k]) - float(new[k])) >= POSITION_STEP_M for k in keys)
