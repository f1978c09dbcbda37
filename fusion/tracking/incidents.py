"""Live incidents: locate arriving pulses one anchor window at a time, revise, finalise.

Pulses are swept in time order.  The earliest pulse that no located shot explains (as its
arrival, echo or bullet crack) and no earlier window covers is an *anchor*: if it is a
shot's first arrival, the shot lies near its sensor (within the *anchor range*: the distance
at which a sensor has LOCAL_SENSORS neighbours, or the farthest a shot is heard if less),
and the shot's first arrivals at the sensors within twice that range of the anchor come no
earlier than the anchor (less a slack) and no later than their distance over the slowest
speed of sound.  Those pulses are the anchor's *window*; it is located with
:func:`fusion.locator.locate.locate`, and an incident is kept if its first shot lies within the
anchor range and an earlier window has not kept it already (most of its pulses taken).  So
the work per shot is one location of a few dozen neighbouring sensors, however large the city
and however often its incidents overlap in time (chained groups of a whole city's pulses, as
located before, cost minutes a window at a hundred incidents a minute).  A window reaches
BURST_GAP_S past its last located shot, and grows as long as it finds another: a burst is
one incident.

A window is located as soon as it holds enough sensors for a shot, again whenever it has grown
by RELOCATE_GROWTH since (a window of n pulses is located O(log n) times) or its anchor's
neighbours hear a shot it has not located, and once more when it closes.  A located incident
is held back until a sensor beyond the fewest that fix a shot confirms it (located again at
each new pulse until then), then published ``preliminary`` the first time, ``revised`` when more pulses change it by more
than its error says, ``withdrawn`` (with ``merged_into``) if its shots turn out to be
another's (a burst's round located from its own anchor before the burst's window took it
in), and ``final`` once no pulse has come into its window's reach for one window
(``window_ns``: the time sound needs to cross the window, plus the margin) of wall-clock time
and every earlier window has closed (an earlier window's shots decide what this one may
keep).  It is classified (:func:`fusion.locator.classify.classify`) when first published and when final,
from its arrivals, the pulses around them (its window, its arrivals beyond, its sensors'
pulses just before and after) and the incidents classified shortly before it.

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

import numpy as np
import scipy.spatial

import earwitness
from fusion.locator.attribution import ECHO_WINDOW_S, MATCH_TOLERANCE_S, attribute, shot_arrivals
from fusion.locator.classify import CRACKLE_SPAN_S, MORTAR_FLIGHT_S, classify
from fusion.locator.locate import locate, min_sensors
from fusion.locator.multilaterate import C_MIN
from fusion.locator.pulses import LEVEL_KEYS
from fusion.locator.shockwave import LEVEL_EXCESS_DB, MIN_LEVELS, level_at_1m_db
from fusion.server.registry import Registry
from earwitness.units import NS_PER_S

log = logging.getLogger(__name__)

DEFAULT_MARGIN_S = 1.0
# Two arrivals of one sound differ by at most distance / c plus this: TN098's 40 ms association
# limit for diffracted paths, plus the clock error of a node in holdover.
PAIR_SLACK_S = 0.1
# A located window is located again once it holds this many times the pulses it had then.
RELOCATE_GROWTH = 1.5
# No gunshot is heard (let alone detected) farther than this.
DEFAULT_MAX_RANGE_M = 4000.0
HEARD_BY_BOTH = 2.0   # two sensors hearing one shot near the anchor are at most this many anchor ranges apart
# A shot's first arrival is at one of its nearest sensors, so a window needs only the anchor's
# neighbourhood: this many neighbours within the anchor range (a window of about four times as
# many sensors) locate a shot as well as the whole city does (TN098: six or more sensors give
# 96 % within 15 m), and the association's work grows much faster than the sensor count.
LOCAL_SENSORS = 8
# A window reaches this far past its last located shot (rounds of one burst are closer than
# this); up to MAX_WINDOW_S past its anchor, which bounds the work of one location.
BURST_GAP_S = 2.0
MAX_WINDOW_S = 60.0
# A shot's arrivals farther out than its window and its echoes, up to this long after the
# predicted arrival, are not anchors (the fleet model's echoes lag 0.25 s on average).
ECHO_SKIP_S = 1.0
# A window located before is located again at once when this many sensors near its anchor
# report a pulse none of its shots explains (one alone is too often another incident's or noise).
NEW_SHOT_SENSORS = 2
# An incident most of whose pulses an earlier window's incidents used is one of those again.
DUPLICATE_SHARE = 0.5
# No bullet is faster (Mach 3.5): its crack reaches a sensor no sooner than distance / this.
V_MAX_BULLET_M_S = 1200.0
# An incident goes out once this many sensors beyond the fewest that fix a shot place it: at
# the fewest, its fit has no spare sensor to refute it, and a busy city's echoes and stray
# pulses line up on four sensors often enough to place a ghost (in the fleet benchmark's city:
# ten in two minutes, none of them a real shot); it is published as soon as one more hears it.
SPARE_SENSORS = 1
# Changes smaller than these are not worth a new revision.
POSITION_STEP_M = 0.5
ERROR_STEP_M = 0.5
# nor moves or error changes smaller than this share of the error radius.
REVISION_ERR_SHARE = 0.5
M_PER_DEGREE = 111_320.0
# Pulses within this fraction of the anchor range of an anchor (and as soon after its window
# as sound crosses that) are not anchors again: a shot they would anchor is near it too.
ANCHOR_COVER_FRACTION = 0.75
# Closed windows' pulses are kept this long (a late pulse may still fall into a window before
# it) before they are forgotten.
RETAIN_S = 120.0
# The keys of a pulse the locator reads.
LOCATOR_KEYS = ("sensor", "t_ns", "t_unc_ns", *LEVEL_KEYS, "features")


@dataclasses.dataclass
class Update:
    """One revision to store and publish."""

    incident: dict
    status: str
    used: list[int]
    rejected: dict[int, str]
    meta: dict
    trigger_received_ns: int   # when the latest pulse that led to this revision reached the server


@dataclasses.dataclass(eq=False)
class _Pulse:
    pulse: dict
    id: object
    sensor: str
    t_ns: int
    received_ns: int


@dataclasses.dataclass(eq=False)
class _Tracked:
    incident_id: str
    body: dict
    pulses: list[dict]         # the window it was located in (for attribution and the report)
    received_ns: int           # the latest pulse of that window reached the server then
    published: bool = False
    changed: bool = True
    classified: bool = False   # its body carries the classifier's call
    call: dict = dataclasses.field(default_factory=dict)   # the classifier's last call
    carried: bool = False      # the body carries a call made on an earlier body


@dataclasses.dataclass(eq=False)
class _Window:
    key: frozenset             # ids of the pulses it held when last located
    located_n: int
    kept: list                 # [(incident, ids of the pulses it used)]
    t_end_ns: int              # its last located shot's arrival at the anchor's sensor
    far: set                   # pulses of shots it located far from its anchor (not anchors)
    arrivals: list             # per kept incident, (time it explains pulses until, predicted arrivals)
    continued: bool            # it located more rounds of an earlier window's incident (and left them to it)


@dataclasses.dataclass(eq=False)
class _Swept:
    """One anchor of a sweep: its window now and what was located in it."""

    anchor: _Pulse
    pulses: list[_Pulse]
    kept: list
    skipped: set
    received_ns: int           # the latest pulse within the window's reach reached the server then
    t_end_ns: int              # the window reaches BURST_GAP_S past this
    closing: bool = False
    key: frozenset = frozenset()   # ids of its pulses
    new_shot: bool | None = None   # whether its neighbourhood heard a shot it has not located (once known)

    def __post_init__(self):
        self.key = frozenset(r.id for r in self.pulses)


class IncidentTracker:
    """Turns a stream of stored pulses into incident revisions.

    Parameters
    ----------
    registry : fusion.server.registry.Registry
        Node positions (the frame of the output).
    site : str
        Prefix of incident ids, so ids stay unique across sites sharing a database.
    temperature_c : float, optional
        Air temperature; when None the locator estimates the speed of sound.
    mode : str
        Locator geometry, ``"2d"``, ``"2.5d"`` or ``"3d"``.
    margin_s : float
        Added to the window's propagation time (network delay, clock error, diffraction).
    max_range_m : float
        Farthest a shot is heard: bounds the anchor range and the arrivals a shot explains.
    """

    def __init__(self, registry: Registry, site: str, temperature_c: float | None = None, mode: str = "2d",
                 margin_s: float = DEFAULT_MARGIN_S, max_range_m: float = DEFAULT_MAX_RANGE_M):
        self.registry = registry
        self.site = site
        self.temperature_c = temperature_c
        self.mode = mode
        self.min_sensors = min_sensors(mode)
        self.alert_sensors = self.min_sensors + SPARE_SENSORS
        self.max_range_m = max_range_m
        self._xy = {name: (float(e), float(n)) for name, (e, n, _) in zip(registry.sensors.ids, registry.sensors.enu_m)}
        names = list(self._xy)
        xy = np.array([self._xy[n] for n in names]).reshape(-1, 2)
        self._tree = scipy.spatial.cKDTree(xy) if len(names) else None
        self._names = names
        self.anchor_range_m = min(max_range_m, _neighbourhood_m(self._tree, LOCAL_SENSORS))
        self.window_range_m = HEARD_BY_BOTH * self.anchor_range_m
        self.cover_m = ANCHOR_COVER_FRACTION * self.anchor_range_m
        diameter_m = registry.diameter_m()
        self.pair_slack_ns = int(min(margin_s, PAIR_SLACK_S) * NS_PER_S)
        # A window's pulses come at most this long after its anchor (less the burst it holds).
        self.span_ns = int(min(diameter_m, self.window_range_m) / C_MIN * NS_PER_S) + self.pair_slack_ns
        self.window_ns = self.span_ns + int(margin_s * NS_PER_S)
        # Per sensor: its neighbours within the window range, with their distances.
        self._near: dict[str, dict[str, float]] = {}
        for name in names:
            idx = self._tree.query_ball_point(self._xy[name], self.window_range_m)
            self._near[name] = {names[j]: math.dist(self._xy[name], self._xy[names[j]]) for j in idx}
        # Pulses in time order, and per sensor, from the oldest retained on.
        self._pulses: list[_Pulse] = []
        self._times: list[int] = []
        self._by_sensor: dict[str, tuple[list[int], list[_Pulse]]] = {}
        self._ids: set = set()
        # Anchors before this time are closed; what their windows claimed and skipped stays so.
        self._open_t_ns: int | None = None
        self._done_claimed: set = set()
        self._done_skipped: set = set()
        self._windows: dict[object, _Window] = {}
        self._tracked: dict[object, list[_Tracked]] = {}   # by anchor id
        self._orphans: list[_Tracked] = []                 # published, but no window locates them any more
        self._incident_ids: dict[str, int] = {}            # ids given, with their incident time
        self._recent: dict[str, dict] = {}                 # classified incidents by id (a mortar's launch for its burst)
        self._due_ns: int | None = None                    # the earliest an open window may close
        self._open_anchors = 0

    @property
    def open_windows(self) -> int:
        """Anchor windows and published incidents not yet final."""
        return self._open_anchors + len(self._orphans)

    def open_incidents(self) -> list[dict]:
        """The latest body of every located incident not yet final."""
        return [t.body for ts in list(self._tracked.values()) for t in ts] + [t.body for t in list(self._orphans)]

    def add(self, pulses: list[dict], received_ns: int) -> list[Update]:
        """Add stored pulses (each with ``id``, ``sensor``, ``t_ns``); locate the windows they changed."""
        added = False
        for p in pulses:
            added |= self._insert(p, received_ns)
        return self._sweep(received_ns) if added else []

    def expire(self, now_ns: int) -> list[Update]:
        """Finalise the windows no pulse has come into for one window; returns their final revisions."""
        if self._due_ns is None or now_ns <= self._due_ns:
            return []
        return self._sweep(now_ns)

    def flush(self) -> list[Update]:
        """Finalise every open window now (at shutdown or the end of a replay)."""
        if self._due_ns is None:
            return []
        return self._sweep(None)

    def _insert(self, pulse: dict, received_ns: int) -> bool:
        pid = pulse.get("id", object())
        if pid in self._ids:
            return False   # the same stored pulse again (forwarded through two cells, or redelivered)
        t = int(pulse["t_ns"])
        rec = _Pulse(pulse, pid, pulse["sensor"], t, received_ns)
        self._ids.add(pid)
        at = bisect.bisect_right(self._times, t)
        self._times.insert(at, t)
        self._pulses.insert(at, rec)
        times, recs = self._by_sensor.setdefault(rec.sensor, ([], []))
        at = bisect.bisect_right(times, t)
        times.insert(at, t)
        recs.insert(at, rec)
        # A late pulse (a node's outbox after an outage) reopens the windows it may belong to.
        reopen_ns = t - self.span_ns - self.pair_slack_ns
        if self._open_t_ns is None or reopen_ns < self._open_t_ns:
            self._open_t_ns = reopen_ns
        return True

    def _sweep(self, now_ns: int | None) -> list[Update]:
        """Anchor windows from the oldest open one on; locate those that changed; publish."""
        claimed, skipped = set(self._done_claimed), set(self._done_skipped)
        # The predicted arrivals of the shots kept so far in this sweep that may still explain a pulse.
        active: list[tuple[int, dict]] = []

        def taken(p) -> bool:
            """Whether a pulse is used by a kept incident, or is one's arrival at another sensor."""
            return p["id"] in claimed or _explains(active, p["sensor"], int(p["t_ns"]), p.get("peak_dbfs")) == _ARRIVAL

        def refresh(earlier: _Swept) -> None:
            """Locate again an earlier window that grew since (its own shots of before do not count as taken)."""
            nonlocal active
            for _, used in earlier.kept:
                claimed.difference_update(used)
            mine = self._windows[earlier.anchor.id].arrivals
            active = [a for a in active if all(a is not m for m in mine)]
            earlier.kept = self._located(earlier.anchor, earlier, earlier.closing, taken, force=True)
            self._claim(earlier, claimed, skipped, active)

        def stale(earlier: _Swept) -> bool:
            window = self._windows.get(earlier.anchor.id)
            return window is not None and window.key != earlier.key

        swept: list[_Swept] = []
        windows_of: dict[object, list[_Swept]] = {}   # pulse id -> the windows of this sweep holding it
        start = bisect.bisect_left(self._times, self._open_t_ns) if self._open_t_ns is not None else len(self._times)
        for rec in self._pulses[start:]:
            if rec.id in claimed or rec.id in skipped or rec.sensor not in self._xy:
                continue
            active = [a for a in active if a[0] >= rec.t_ns - self.pair_slack_ns]

            # An earlier window holding this pulse, located before it grew, is located first when
            # its anchor's neighbours hear a new shot, or when this pulse would anchor a shot of
            # its own: the earlier window's shots may explain it (a burst's next round is no incident of its own).
            for earlier in windows_of.get(rec.id, ()):
                if not stale(earlier):
                    continue
                if earlier.new_shot is None:
                    earlier.new_shot = self._new_shot(earlier.anchor, earlier, self._windows[earlier.anchor.id])
                if earlier.new_shot:
                    refresh(earlier)
            if rec.id in claimed or rec.id in skipped or _explains(active, rec.sensor, rec.t_ns, rec.pulse.get("peak_dbfs")):
                continue
            window = self._windows.get(rec.id)
            s = self._window(rec, window.t_end_ns if window else rec.t_ns)
            s.closing = now_ns is None or now_ns - s.received_ns > self.window_ns
            s.kept = self._located(rec, s, s.closing, taken)
            window = self._windows.get(rec.id)
            if (s.kept or (window and window.continued)) and any(stale(e) for e in windows_of.get(rec.id, ())):
                for earlier in windows_of[rec.id]:
                    if stale(earlier):
                        refresh(earlier)
                if rec.id in claimed or rec.id in skipped or _explains(active, rec.sensor, rec.t_ns, rec.pulse.get("peak_dbfs")):
                    self._windows.pop(rec.id, None)
                    continue
                s.kept = self._located(rec, s, s.closing, taken, force=True)
            self._claim(s, claimed, skipped, active)
            for r in s.pulses:
                windows_of.setdefault(r.id, []).append(s)
            swept.append(s)
        return self._publish(swept, now_ns)

    def _claim(self, s: _Swept, claimed: set, skipped: set, active: list) -> None:
        """Mark the pulses a window's incidents used (claimed), its covered pulses and those of shots
        it located far away (skipped: no anchors), and its incidents' arrivals as active."""
        window = self._windows.get(s.anchor.id)
        if window is not None:
            s.skipped |= window.far
            active += window.arrivals
        for _, used in s.kept:
            claimed |= used
        skipped |= s.skipped

    def _window(self, anchor: _Pulse, t_end_ns: int) -> _Swept:
        """The anchor's window, reaching BURST_GAP_S past ``t_end_ns`` (its last shot at the anchor)."""
        t_a = anchor.t_ns
        t_end = min(t_end_ns, t_a + int(MAX_WINDOW_S * NS_PER_S)) + int(BURST_GAP_S * NS_PER_S)
        cover_ns = t_end - t_a + int(self.cover_m / C_MIN * NS_PER_S) + self.pair_slack_ns
        pulses, skipped, received_ns = [], set(), anchor.received_ns
        for name, dist_m in self._near[anchor.sensor].items():
            if name not in self._by_sensor:
                continue
            times, recs = self._by_sensor[name]
            lo = bisect.bisect_left(times, t_a - self.pair_slack_ns)
            hi = bisect.bisect_right(times, t_end + int(dist_m / C_MIN * NS_PER_S) + self.pair_slack_ns)
            for rec in recs[lo:hi]:
                received_ns = max(received_ns, rec.received_ns)
                pulses.append(rec)
                if dist_m <= self.cover_m and rec.t_ns - t_a <= cover_ns:
                    skipped.add(rec.id)
        pulses.sort(key=lambda r: r.t_ns)
        return _Swept(anchor, pulses, [], skipped, received_ns, t_end_ns)

    def _located(self, anchor: _Pulse, s: _Swept, closing: bool, taken, force: bool = False) -> list:
        """The incidents of the anchor's window (from the last location unless it grew enough or
        closes); a window whose last shot came late is widened and located again."""
        window = self._windows.get(anchor.id)
        if len({r.sensor for r in s.pulses}) < self.min_sensors:
            if closing:
                self._windows.pop(anchor.id, None)
                return []
            return window.kept if window else []
        key = s.key
        if window is not None and (window.key == key or (len(s.pulses) < RELOCATE_GROWTH * window.located_n and not force
                                                         and not closing and self._confirmed(window)
                                                         and not self._new_shot(anchor, s, window))):
            return window.kept
        while True:
            pulses = [r.pulse for r in s.pulses]
            kept, far, continued = self._locate(anchor, pulses, taken)
            t_end_ns = max([anchor.t_ns] + [self._arrival_ns(shot, inc, anchor.sensor)
                                             for inc, _ in kept for shot in inc["shots"]])
            self._windows[anchor.id] = _Window(key, len(s.pulses), kept, t_end_ns, far,
                                               [self._arrivals(inc, pulses, used) for inc, used in kept],
                                               continued)
            if t_end_ns <= s.t_end_ns or t_end_ns - anchor.t_ns > MAX_WINDOW_S * NS_PER_S:
                return kept
            wider = self._window(anchor, t_end_ns)   # a burst goes on
            s.pulses, s.skipped, s.received_ns, s.t_end_ns, s.key = wider.pulses, wider.skipped, wider.received_ns, t_end_ns, wider.key
            key = s.key

    def _confirmed(self, window: _Window) -> bool:
        """Whether every incident the window kept may go out (a held-back one is located again
        at each new pulse: the next sensor to hear it confirms it)."""
        return all(len(inc.get("sensors") or ()) >= self.alert_sensors for inc, _ in window.kept)

    def _new_shot(self, anchor: _Pulse, s: _Swept, window: _Window) -> bool:
        """Whether a pulse new to the window, near the anchor, is no arrival or echo of its located
        shots: the next round of a burst, to be located now rather than as an incident of its own."""
        near, heard = self._near[anchor.sensor], set()
        for r in s.pulses:
            if r.id in window.key or near[r.sensor] > self.cover_m or r.sensor in heard:
                continue
            if not _explains(window.arrivals, r.sensor, r.t_ns, r.pulse.get("peak_dbfs")):
                heard.add(r.sensor)
        return len(heard) >= NEW_SHOT_SENSORS

    def _arrival_ns(self, shot: dict, incident: dict, sensor: str) -> int:
        """A shot's straight-line arrival time at a sensor."""
        c_m_s = incident.get("c_mps") or C_MIN
        return shot["t_ns"] + int(math.dist(self.registry.sensors.to_enu(shot)[:2], self._xy[sensor]) / c_m_s * NS_PER_S)

    def _locate(self, anchor: _Pulse, pulses: list[dict], taken) -> tuple[list, set, bool]:
        """Locate a window; keep the incidents whose first shot is near the anchor and that an
        earlier window has not located already (most of their pulses claimed).

        The window holds the claimed pulses too: the locator tells echoes from shots best when it
        sees the shots they echo (left out, their echoes would look like shots of their own)."""
        sensors = self.registry.sensors
        kept, far, continued = [], set(), False
        try:
            for inc in locate(_locator_input(pulses), sensors, self.temperature_c, mode=self.mode,
                              incident_radius_m=self.anchor_range_m):
                first = min(inc["shots"], key=lambda s: s["t_ns"]) if inc.get("shots") else inc
                c_m_s = inc.get("c_mps") or C_MIN
                used, _ = attribute(inc, pulses, sensors, c_m_s)
                xy = sensors.to_enu(first)[:2]
                if math.dist(xy, self._xy[anchor.sensor]) > self.anchor_range_m:
                    # Another anchor is nearer its source: it is found from there.  Its arrivals
                    # beyond the anchor range of it are no first arrival of a shot near them.
                    far.update(p["id"] for p in pulses
                               if p["id"] in used and math.dist(xy, self._xy[p["sensor"]]) > self.anchor_range_m)
                    continue
                if sum(taken(p) for p in pulses if p["id"] in used) > DUPLICATE_SHARE * len(used):
                    continue   # an earlier window's incident, seen again
                first_arrivals = (shot_arrivals(inc, pulses, sensors, c_m_s) or [[]])[0]
                if first_arrivals and sum(taken(p) for p in first_arrivals) > DUPLICATE_SHARE * len(first_arrivals):
                    continued = True   # its first shot is an earlier window's: that window goes on
                    continue
                kept.append((inc, set(used)))
        except Exception:  # noqa: BLE001 - one window the locator chokes on must not stop the others
            log.exception("locating a window of %d pulses failed; it is left unlocated", len(pulses))
        return kept, far, continued

    def _arrivals(self, incident: dict, pulses: list[dict] = (), used: set = frozenset()) -> tuple[int, dict, float | None]:
        """A located incident's predicted arrivals out to the farthest a shot is heard:
        (latest time they explain, {sensor: [(earliest crack, earliest arrival, latest arrival,
        latest echo ns, distance m) per shot]}, loudest level at 1 m its blasts can imply).

        A pulse within MATCH_TOLERANCE_S of one is that shot's arrival (no other window may take
        it); one up to ECHO_SKIP_S later may be its echo (not an anchor of a shot of its own); one
        before the blast, too loud for it at that distance, is its bullet's crack
        (:func:`fusion.locator.shockwave.louder_than_blast`: downrange sensors may hear it alone)."""
        sensors, c_m_s = self.registry.sensors, incident.get("c_mps") or C_MIN
        tolerance_ns, echo_ns = int(MATCH_TOLERANCE_S * NS_PER_S), int(ECHO_SKIP_S * NS_PER_S)
        xy0 = sensors.to_enu(incident)[:2] if "shots" in incident else None
        levels = [float(level_at_1m_db(p["peak_dbfs"], math.dist(xy0, self._xy[p["sensor"]])))
                  for p in pulses if p["id"] in used and p.get("peak_dbfs") is not None and p["sensor"] in self._xy]
        level_max = float(np.median(levels)) + LEVEL_EXCESS_DB if len(levels) >= MIN_LEVELS else None
        table: dict[str, list] = {}
        until_ns = 0
        for shot in incident.get("shots", []):
            xy = sensors.to_enu(shot)[:2]
            near = self._tree.query_ball_point(xy, self.max_range_m)
            if not near:
                continue
            dist_m = np.hypot(*(self._tree.data[near] - xy).T)
            t_pred = shot["t_ns"] + (dist_m / c_m_s * NS_PER_S).astype(np.int64)
            t_crack = shot["t_ns"] + (dist_m / V_MAX_BULLET_M_S * NS_PER_S).astype(np.int64)
            for j, t, tc, d in zip(near, t_pred.tolist(), t_crack.tolist(), dist_m.tolist()):
                table.setdefault(self._names[j], []).append((tc, t - tolerance_ns, t + tolerance_ns, t + echo_ns, d))
            until_ns = max(until_ns, int(t_pred.max()) + echo_ns)
        return until_ns, table, level_max

    def _in_spans(self, table: dict, after_ns: int = 0):
        """(span, pulse record) for every retained pulse from a span's earliest crack to its
        latest echo (plus ``after_ns``), per :meth:`_arrivals`' table."""
        for name, spans in table.items():
            if name not in self._by_sensor:
                continue
            times, recs = self._by_sensor[name]
            for span in spans:
                for rec in recs[bisect.bisect_left(times, span[0]):bisect.bisect_right(times, span[3] + after_ns)]:
                    yield span, rec

    def _explained(self, incident: dict, pulses: list[dict], used: set) -> tuple[set, set]:
        """Ids of the pulses of the buffer that are a located incident's arrivals (or cracks), and
        of those that may be its echoes (see :meth:`_arrivals`)."""
        _, table, level_max = self._arrivals(incident, pulses, used)
        arrivals, echoes = set(), set()
        for span, rec in self._in_spans(table):
            found = _span_explains(span, level_max, rec.t_ns, rec.pulse.get("peak_dbfs"))
            if found == _ARRIVAL:
                arrivals.add(rec.id)
            elif found == _ECHO:
                echoes.add(rec.id)
        return arrivals, echoes

    def _publish(self, swept: list[_Swept], now_ns: int | None) -> list[Update]:
        """Pair located incidents with the tracked ones they revise; publish; close the oldest windows."""
        previous, self._tracked = self._tracked, {}
        loose: list[_Tracked] = []
        unmatched = []
        for s in swept:
            free = previous.pop(s.anchor.id, [])
            mine = []
            for inc, _ in s.kept:
                best = min(free, key=lambda t: abs(t.body["t_ns"] - inc["t_ns"]), default=None)
                if best is not None and abs(best.body["t_ns"] - inc["t_ns"]) <= self.window_ns:
                    free.remove(best)
                    self._revise(best, inc, s)
                    mine.append(best)
                else:
                    unmatched.append((s, inc, mine))
            loose += free
            if mine:
                self._tracked[s.anchor.id] = mine
        for rest in previous.values():
            loose += rest
        loose += self._orphans
        self._orphans = []
        for s, inc, mine in unmatched:   # an incident whose anchor changed keeps its id
            best = min((t for t in loose if self._same_incident(t.body, inc)),
                       key=lambda t: abs(t.body["t_ns"] - inc["t_ns"]), default=None)
            if best is not None:
                loose.remove(best)
                self._revise(best, inc, s)
            else:
                best = _Tracked(self._new_id(inc), inc, [r.pulse for r in s.pulses], s.received_ns)
            mine.append(best)
            self._tracked[s.anchor.id] = mine
        updates = []
        # Two windows may keep one incident (one anchored on a bullet's crack, say): the one with
        # fewer rounds, all of them the other's, goes.
        current = [t for ts in self._tracked.values() for t in ts]
        for tracked in sorted(current, key=lambda t: (t.body.get("rounds", 0), -t.body["t_ns"])):
            into = next((c for c in current if c is not tracked and self._absorbs(c.body, tracked.body)), None)
            if into is not None:
                current.remove(tracked)
                for anchor_id, ts in list(self._tracked.items()):
                    if tracked in ts:
                        ts.remove(tracked)
                        if not ts:
                            del self._tracked[anchor_id]
                if tracked.published:
                    updates.append(self._withdrawal(tracked, into))
        for tracked in (t for t in loose if t.published):
            into = next((c for c in current if self._absorbs(c.body, tracked.body)), None)
            if into is not None:   # its shots are another incident's now: withdrawn in its favour
                updates.append(self._withdrawal(tracked, into))
            else:
                self._orphans.append(tracked)
        closed = 0
        for k, s in enumerate(swept):
            final = s.closing and closed == k   # and every earlier window closed too
            closed += final
            for tracked in self._tracked.get(s.anchor.id, []):
                updates += self._revision(tracked, final)
        for s in swept[:closed]:   # closed in time order: their claims and skips are settled
            self._tracked.pop(s.anchor.id, None)
            self._windows.pop(s.anchor.id, None)
            self._done_skipped |= s.skipped
            for inc, used in s.kept:
                arrivals, echoes = self._explained(inc, [r.pulse for r in s.pulses], used)
                self._done_claimed |= used | arrivals
                self._done_skipped |= echoes
        orphans, self._orphans = self._orphans, []
        for tracked in orphans:
            if now_ns is None or now_ns - tracked.received_ns > self.window_ns:
                updates += self._revision(tracked, True)
            else:
                self._orphans.append(tracked)
        self._open_t_ns = swept[closed].anchor.t_ns if closed < len(swept) else (self._times[-1] + 1 if self._times else None)
        self._open_anchors = len(swept) - closed
        self._due_ns = min((s.received_ns + self.window_ns for s in swept[closed:]), default=None)
        if self._orphans:
            due = min(t.received_ns for t in self._orphans) + self.window_ns
            self._due_ns = due if self._due_ns is None else min(self._due_ns, due)
        self._forget()
        return sorted(updates, key=lambda u: u.incident["t_ns"])

    def _revise(self, tracked: _Tracked, incident: dict, s: _Swept) -> None:
        tracked.changed = tracked.changed or _differs(tracked.body, incident)
        if incident is not tracked.body:
            tracked.body, tracked.classified = incident, False
        tracked.pulses = [r.pulse for r in s.pulses]
        tracked.received_ns = s.received_ns

    def _absorbs(self, incident: dict, other: dict) -> bool:
        """Whether every shot of ``other`` is one of ``incident``'s (as close in time as two
        arrivals of one sound can be, and within the anchor range)."""
        sensors = self.registry.sensors
        mine = [(s["t_ns"], sensors.to_enu(s)[:2]) for s in incident.get("shots", [])]
        return bool(other.get("shots")) and all(
            any(abs(t_ns - shot["t_ns"]) <= self.pair_slack_ns and math.dist(xy, sensors.to_enu(shot)[:2]) <= self.anchor_range_m
                for t_ns, xy in mine)
            for shot in other["shots"])

    def _withdrawal(self, tracked: _Tracked, into: _Tracked) -> Update:
        self._recent.pop(tracked.incident_id, None)
        body = dict(tracked.body, incident=tracked.incident_id, merged_into=into.incident_id)
        return Update(incident=body, status="withdrawn", used=[], rejected={},
                      meta=self._meta(body, tracked.pulses), trigger_received_ns=tracked.received_ns)

    def _same_incident(self, old: dict, new: dict) -> bool:
        """Whether a located incident is one tracked before under another anchor: close in time and place."""
        if abs(old["t_ns"] - new["t_ns"]) > self.window_ns:
            return False
        sensors = self.registry.sensors
        return math.dist(sensors.to_enu(old)[:2], sensors.to_enu(new)[:2]) <= self.anchor_range_m

    def _revision(self, tracked: _Tracked, final: bool) -> list[Update]:
        if not tracked.published and len(tracked.body.get("sensors") or ()) < self.alert_sensors:
            return []   # unconfirmed: kept (a later pulse may confirm it), not published
        status = "final" if final else ("revised" if tracked.published else "preliminary")
        if not final and tracked.published and not tracked.changed:
            return []
        if final and not tracked.published and not tracked.changed:
            return []
        tracked.published, tracked.changed = True, False
        beyond = self._heard_beyond(tracked.body, tracked.pulses)   # the evidence and the classifier read them
        if not tracked.classified or (final and tracked.carried):
            if status == "revised" and tracked.call:
                # Between the first call and the final the call is carried over: the height
                # profile costs more than the location.
                tracked.body.update(tracked.call)
                tracked.carried = True
            else:
                sensors, c_m_s = self.registry.sensors, tracked.body.get("c_mps") or C_MIN
                arrivals = shot_arrivals(tracked.body, tracked.pulses, sensors, c_m_s)
                tracked.call = classify(tracked.body, arrivals, sensors, pulses=self._around(tracked, arrivals, beyond),
                                        recent=self._before(tracked))
                self._recent[tracked.incident_id] = tracked.body
                tracked.body.update(tracked.call)
                tracked.carried = False
            tracked.classified = True
        body = dict(tracked.body, incident=tracked.incident_id)
        evidence = tracked.pulses + beyond
        used, rejected = attribute(body, evidence, self.registry.sensors, body.get("c_mps") or C_MIN)
        return [Update(incident=body, status=status, used=used, rejected=rejected,
                       meta=self._meta(body, evidence), trigger_received_ns=tracked.received_ns)]

    def _around(self, tracked: _Tracked, arrivals: list[list[dict]], beyond: list[dict]) -> list[dict]:
        """What the classifier reads besides the located arrivals: the window's pulses, the
        incident's arrivals beyond it (more sensors for the height fix of an aerial burst, which
        all the city hears) and every pulse its sensors heard from CRACKLE_SPAN_S before its
        first arrival to as long after its last (the pops of a firecracker string its shots
        did not take in, before its anchor or after its window); ``beyond``: :meth:`_heard_beyond`'s."""
        out = tracked.pulses + beyond
        have = {p["id"] for p in out}
        span_ns = int(CRACKLE_SPAN_S * NS_PER_S)
        for name in {p["sensor"] for a in arrivals for p in a}:
            times, recs = self._by_sensor.get(name, ([], []))
            mine = [int(p["t_ns"]) for a in arrivals for p in a if p["sensor"] == name]
            for rec in recs[bisect.bisect_left(times, min(mine) - span_ns):bisect.bisect_right(times, max(mine) + span_ns)]:
                if rec.id not in have:
                    have.add(rec.id)
                    out.append(rec.pulse)
        return out

    def _before(self, tracked: _Tracked) -> list[dict]:
        """The incidents classified before this one that may be its mortar's launch (in time order)."""
        t_ns = tracked.body["t_ns"]
        lo_ns = t_ns - int(MORTAR_FLIGHT_S[1] * NS_PER_S)
        return sorted((b for iid, b in self._recent.items() if iid != tracked.incident_id and lo_ns <= b["t_ns"] < t_ns),
                      key=lambda b: b["t_ns"])

    def _heard_beyond(self, incident: dict, window: list[dict]) -> list[dict]:
        """The pulses outside the incident's window that are its shots' arrivals or echoes (up to
        the attribution's echo window) at sensors out to the farthest a shot is heard: the
        report lists them with the rest of its evidence."""
        _, table, _ = self._arrivals(incident)
        have = {p["id"] for p in window}
        out = []
        for span, rec in self._in_spans(table, int((ECHO_WINDOW_S - ECHO_SKIP_S) * NS_PER_S)):
            if rec.t_ns >= span[1] and rec.id not in have:
                have.add(rec.id)
                out.append(rec.pulse)
        return out

    def _new_id(self, incident: dict) -> str:
        """The site's id of a new incident (the locator's, from its time to the millisecond; made
        unique when two incidents of a busy city fall in the same millisecond)."""
        base = incident_id = f"{self.site}-{incident['incident']}"
        n = 1
        while incident_id in self._incident_ids:
            n += 1
            incident_id = f"{base}-{n}"
        self._incident_ids[incident_id] = incident["t_ns"]
        return incident_id

    def _forget(self) -> None:
        """Drop what lies RETAIN_S before the oldest open window."""
        if self._open_t_ns is None:
            return
        horizon_ns = self._open_t_ns - int(RETAIN_S * NS_PER_S)
        cut = bisect.bisect_left(self._times, horizon_ns)
        if cut == 0:
            return
        gone = self._pulses[:cut]
        del self._pulses[:cut], self._times[:cut]
        for rec in gone:
            self._ids.discard(rec.id)
            self._done_claimed.discard(rec.id)
            self._done_skipped.discard(rec.id)
        for name in {rec.sensor for rec in gone}:
            times, recs = self._by_sensor[name]
            k = bisect.bisect_left(times, horizon_ns)
            del times[:k], recs[:k]
        self._incident_ids = {k: t for k, t in self._incident_ids.items() if t >= horizon_ns}
        self._recent = {k: b for k, b in self._recent.items() if b["t_ns"] >= horizon_ns}

    def _meta(self, incident: dict, pulses: list[dict]) -> dict:
        names = {p["sensor"] for p in pulses} | set(incident.get("sensors", []))
        return {
            "sensors": {n: self.registry.positions[n] for n in sorted(names) if n in self.registry.positions},
            "temperature_c": self.temperature_c,
            "speed_of_sound_m_s": incident.get("c_mps"),
            "mode": self.mode,
            "software": earwitness.__version__,
            "locator": "fusion.locator.locate.locate",
            "window_s": self.window_ns / NS_PER_S,
        }


_ARRIVAL, _ECHO = 1, 2


def _explains(active: list, sensor: str, t_ns: int, peak_dbfs: float | None) -> int:
    """_ARRIVAL if a pulse is an active incident's predicted arrival or its bullet's crack, _ECHO if
    it may be one's echo, else 0 (``active``: :meth:`IncidentTracker._arrivals` of each)."""
    found = 0
    for _, table, level_max in active:
        for span in table.get(sensor, ()):
            state = _span_explains(span, level_max, t_ns, peak_dbfs)
            if state == _ARRIVAL:
                return _ARRIVAL
            found = found or state
    return found


def _span_explains(span: tuple, level_max: float | None, t_ns: int, peak_dbfs: float | None) -> int:
    """What a pulse at ``t_ns`` is to one shot's predicted arrival at its sensor (a span of
    :meth:`IncidentTracker._arrivals`): _ARRIVAL (or its crack), _ECHO, or 0."""
    crack, lo, mid, hi, dist_m = span
    if lo <= t_ns <= mid:
        return _ARRIVAL
    if mid < t_ns <= hi:
        return _ECHO
    if (crack <= t_ns < lo and level_max is not None and peak_dbfs is not None
            and level_at_1m_db(peak_dbfs, dist_m) > level_max):
        return _ARRIVAL
    return 0


def _neighbourhood_m(tree, k: int) -> float:
    """Median distance from a sensor to its k-th nearest neighbour (inf with k or fewer others)."""
    if tree is None or tree.n <= k:
        return math.inf
    dist_m, _ = tree.query(tree.data, k=k + 1)
    return float(np.median(dist_m[:, k]))


def _locator_input(pulses: list[dict]) -> list[dict]:
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


def _differs(old: dict, new: dict) -> bool:
    """Whether a new location is worth a revision: more or fewer rounds or shooters, or a move or
    an error change that matters beside the error itself (more sensors alone are not news)."""
    if any(old.get(k) != new.get(k) for k in ("rounds", "shooters")):   # the class is made when published
        return True
    err_m = float(old.get("err_m", 0))
    if abs(err_m - float(new.get("err_m", 0))) >= max(ERROR_STEP_M, REVISION_ERR_SHARE * err_m):
        return True
    keys = ("x", "y") if "x" in new else ("lat", "lon")
    scale = M_PER_DEGREE if keys[0] == "lat" else 1.0
    move_m = math.hypot(*(scale * (float(old[k]) - float(new[k])) for k in keys))   # lon degrees shorter: an upper bound
    return move_m >= max(POSITION_STEP_M, REVISION_ERR_SHARE * err_m)
