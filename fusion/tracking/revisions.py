"""Publishing revisions: the incidents the windows keep, paired with those tracked before, and
the revisions they make as they move through their lifecycle (:mod:`fusion.tracking.lifecycle`).

A located incident is the revision of the tracked one its anchor kept before, nearest in time;
one whose anchor changed keeps its id if it is close in time and place to a tracked one.  It
is held back until a sensor beyond the fewest that fix a shot confirms it, then published
``preliminary`` the first time, ``revised`` when more pulses change it by more than its error
says, ``withdrawn`` (with ``merged_into``) if its shots turn out to be another's, and ``final``
when its window closes (a published incident no window locates any more, an *orphan*, once
no pulse has come into its reach for one window).  A final incident is remembered for as long
as its pulses are held: late pulses of its shots (a node's outbox after an outage, a broker's
failover pause) that a later window locates revise it, under its id, rather than alerting the
shot a second time.  It is classified
(:func:`fusion.locator.classify.classify`) when first published and when final, from its
arrivals, the pulses around them and the incidents classified shortly before it.

Example::

    revisions = Revisions("pgh", reach, book, fix, registry.positions)
    updates = revisions.pair(swept) + revisions.publish(swept, closed)
"""
from __future__ import annotations

import dataclasses
import enum
import math

import earwitness
from earwitness.records import Incident, Position
from earwitness.units import NS_PER_S
from fusion.locator.attribution import attribute, shot_arrivals
from fusion.locator.classify import MORTAR_FLIGHT_S, classify
from fusion.tracking import lifecycle
from fusion.tracking.arrivals import ArrivalBook
from fusion.tracking.lifecycle import Status
from fusion.tracking.reach import Reach, incident_c_m_s
from fusion.tracking.windows import Fix, Swept

# Changes smaller than these are not worth a new revision.
POSITION_STEP_M = 0.5
ERROR_STEP_M = 0.5
# nor moves or error changes smaller than this share of the error radius.
REVISION_ERR_SHARE = 0.5
M_PER_DEGREE = 111_320.0
# What the classifier adds to a body (fusion.locator.classify.classify), and what a stored
# revision adds beside the incident.
CALL_KEYS = ("class", "confidence", "class_cues")
RESTORED_KEYS = ("revision", "status", "merged_into")


@dataclasses.dataclass
class Update:
    """One revision to store and publish."""

    incident: dict
    status: str
    used: list[int]
    rejected: dict[int, str]
    meta: dict
    trigger_received_ns: int   # when the latest pulse that led to this revision reached the server


class Call(enum.Enum):
    """The classifier's call a tracked incident's body carries."""

    NONE = "none"          # none: the body is new since the last call
    OWN = "own"            # one made on this body
    CARRIED = "carried"    # one made on an earlier body (the height profile costs more than the location)


@dataclasses.dataclass(eq=False)
class Tracked:
    """A located incident as the tracker follows it from revision to revision."""

    incident_id: str
    body: Incident
    pulses: list[dict]         # the window it was located in (for attribution and the report)
    received_ns: int           # the latest pulse of that window reached the server then
    status: Status = Status.HELD_BACK
    # Whether it changed enough to be news since it was last published: accumulated over
    # relocations, each against the one before (not derivable from the bodies at hand).
    changed: bool = True
    call: dict = dataclasses.field(default_factory=dict)   # the classifier's last call
    carries: Call = Call.NONE
    # Final once, and taken back for late pulses of its shots: only those revise it (an incident
    # merely close in time and place, as an orphan pairs with, is another one).
    reopened: bool = False

    @property
    def published(self) -> bool:
        """Whether a revision of it went out."""
        return self.status in lifecycle.PUBLISHED

    def advance(self, to: Status) -> None:
        """Move it to ``to`` (TransitionError if its lifecycle does not allow that)."""
        self.status = lifecycle.advance(self.status, to)


def differs(old: Incident, new: Incident) -> bool:
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


def heard_by_more(old: Incident, new: Incident) -> bool:
    """Whether a new location rests on more sensors than the old one: news for a final incident,
    whose last revision is the record its report and clip requests are made from (a relocation
    of as many, as after a takeover's resume, is not)."""
    return len(new.get("sensors") or ()) > len(old.get("sensors") or ())


class Revisions:
    """The tracked incidents (by the anchor whose window keeps them, and the orphans) and their revisions.

    ``positions``: the sensors' positions as the evidence lists them (the registry's).
    """

    def __init__(self, site: str, reach: Reach, book: ArrivalBook, fix: Fix, positions: dict[str, Position]):
        self.site = site
        self.reach = reach
        self.book = book
        self.fix = fix
        self.positions = positions
        self.tracked: dict[object, list[Tracked]] = {}   # by anchor id
        self.orphans: list[Tracked] = []                 # published, but no window locates them any more
        self.finals: list[Tracked] = []                  # final, and late pulses of their shots may revise them
        self._incident_ids: dict[str, int] = {}          # ids given, with their incident time
        self._recent: dict[str, dict] = {}               # classified incidents by id (a mortar's launch for its burst)

    def open_bodies(self) -> list[Incident]:
        """The latest body of every tracked incident."""
        return [t.body for ts in list(self.tracked.values()) for t in ts] + [t.body for t in list(self.orphans)]

    def pair(self, swept: list[Swept]) -> list[Update]:
        """Pair the incidents the sweep's windows keep with the tracked ones they revise; withdraw
        those whose shots are another's now, and discard those never published."""
        previous, self.tracked = self.tracked, {}
        loose, unmatched = self._pair_by_anchor(swept, previous)
        for rest in previous.values():
            loose += rest
        loose += self.orphans
        self.orphans = []
        self._pair_moved(unmatched, loose)
        updates, current = self._drop_duplicates()
        for tracked in loose:
            if not tracked.published:
                tracked.advance(Status.DISCARDED)   # no window locates it any more
                continue
            into = next((c for c in current if self._absorbs(c.body, tracked.body)), None)
            if into is not None:   # its shots are another incident's now: withdrawn in its favour
                updates.append(self._withdrawal(tracked, into))
            else:
                self.orphans.append(tracked)
        return updates

    def _pair_by_anchor(self, swept: list[Swept], previous: dict) -> tuple[list[Tracked], list]:
        """Each kept incident as the revision of the tracked one of its anchor nearest in time; the
        tracked ones left (loose) and the incidents left (unmatched: window, incident, its anchor's list)."""
        loose, unmatched = [], []
        for s in swept:
            free = previous.pop(s.anchor.id, [])
            mine = []
            for inc, _ in s.kept:
                best = min(free, key=lambda t: abs(t.body["t_ns"] - inc["t_ns"]), default=None)
                if best is not None and abs(best.body["t_ns"] - inc["t_ns"]) <= self.reach.window_ns:
                    free.remove(best)
                    self._revise(best, inc, s)
                    mine.append(best)
                else:
                    unmatched.append((s, inc, mine))
            loose += free
            if mine:
                self.tracked[s.anchor.id] = mine
        return loose, unmatched

    def _pair_moved(self, unmatched: list, loose: list[Tracked]) -> None:
        """An incident whose anchor changed keeps its id (taken from ``loose``); one sharing a shot
        with a final incident is that one's late pulses and revises it; else it is new."""
        for s, inc, mine in unmatched:
            best = min((t for t in loose if self._same_incident(t.body, inc)
                        and (not t.reopened or self._shares_shot(t.body, inc))),
                       key=lambda t: abs(t.body["t_ns"] - inc["t_ns"]), default=None)
            if best is not None:
                loose.remove(best)
            else:
                best = next((t for t in self.finals if self._shares_shot(t.body, inc)), None)
                if best is not None:
                    self.finals.remove(best)
                    best.reopened = True
            if best is not None:
                self._revise(best, inc, s)
            else:
                best = Tracked(self._new_id(inc), inc, [r.pulse for r in s.pulses], s.received_ns)
            mine.append(best)
            self.tracked[s.anchor.id] = mine

    def _drop_duplicates(self) -> tuple[list[Update], list[Tracked]]:
        """Two windows may keep one incident (one anchored on a bullet's crack, say): the one with
        fewer rounds, all of them the other's, goes.  Returns the withdrawals and those kept."""
        updates = []
        current = [t for ts in self.tracked.values() for t in ts]
        for tracked in sorted(current, key=lambda t: (t.body.get("rounds", 0), -t.body["t_ns"])):
            into = next((c for c in current if c is not tracked and self._absorbs(c.body, tracked.body)), None)
            if into is None:
                continue
            current.remove(tracked)
            for anchor_id, ts in list(self.tracked.items()):
                if tracked in ts:
                    ts.remove(tracked)
                    if not ts:
                        del self.tracked[anchor_id]
            if tracked.published:
                updates.append(self._withdrawal(tracked, into))
            else:
                tracked.advance(Status.DISCARDED)
        return updates, current

    def publish(self, swept: list[Swept], closed: int) -> list[Update]:
        """The revisions of the sweep's incidents; final for those of its first ``closed`` windows
        (closed, as every window before them), which are forgotten."""
        updates = []
        for k, s in enumerate(swept):
            for tracked in self.tracked.get(s.anchor.id, []):
                updates += self._finalised(tracked) if k < closed else self._revision(tracked, False)
        for s in swept[:closed]:
            self.tracked.pop(s.anchor.id, None)
        return updates

    def finalise_orphans(self, now_ns: int | None) -> list[Update]:
        """Final revisions of the orphans no pulse has come into the reach of for one window (all
        when ``now_ns`` is None)."""
        orphans, self.orphans = self.orphans, []
        updates = []
        for tracked in orphans:
            if now_ns is None or now_ns - tracked.received_ns > self.reach.window_ns:
                updates += self._finalised(tracked)
            else:
                self.orphans.append(tracked)
        return updates

    def _finalised(self, tracked: Tracked) -> list[Update]:
        """The final revision of a tracked incident whose window closed (none if it is final as it
        stands); a final one is remembered for its late pulses."""
        updates = self._revision(tracked, True)
        if tracked.status is Status.FINAL:
            self.finals.append(tracked)
        return updates

    def orphans_due_ns(self) -> int | None:
        """The earliest an orphan may go final, None without orphans."""
        return min(t.received_ns for t in self.orphans) + self.reach.window_ns if self.orphans else None

    def restore(self, published: list[tuple[Incident, str, list[dict]]], recent: list[Incident], now_ns: int) -> None:
        """Take back, after a restart, the incidents published and not yet final (each as last
        published, its status and its evidence pulses) as orphans a relocation pairs with, and
        the ids and classifications of the ``recent`` ones (and the final ones among them, which
        late pulses of their shots revise)."""
        for body in recent:
            self._incident_ids[body["incident"]] = body["t_ns"]
            if body.get("status") != Status.WITHDRAWN.value and "class" in body:
                self._recent[body["incident"]] = body
            if body.get("status") == Status.FINAL.value and body.get("shots"):
                incident = {k: v for k, v in body.items() if k not in RESTORED_KEYS}
                self.finals.append(Tracked(body["incident"], incident, [], now_ns, status=Status.FINAL, changed=False,
                                           call={k: body[k] for k in CALL_KEYS if k in body}, carries=Call.CARRIED))
        for body, status, pulses in published:
            incident = {k: v for k, v in body.items() if k not in RESTORED_KEYS}
            # A preliminary's call was made on the body it went out with; a revision carries an earlier one.
            carries = Call.OWN if status == Status.PRELIMINARY.value else Call.CARRIED
            tracked = Tracked(body["incident"], incident, pulses, now_ns, status=Status(status), changed=False,
                              call={k: body[k] for k in CALL_KEYS if k in body}, carries=carries)
            self._incident_ids[tracked.incident_id] = body["t_ns"]
            self.orphans.append(tracked)

    def forget(self, horizon_ns: int) -> None:
        """Drop the ids given and the incidents classified before ``horizon_ns``."""
        self._incident_ids = {k: t for k, t in self._incident_ids.items() if t >= horizon_ns}
        self._recent = {k: b for k, b in self._recent.items() if b["t_ns"] >= horizon_ns}
        self.finals = [t for t in self.finals if t.body["t_ns"] >= horizon_ns]

    def _revise(self, tracked: Tracked, incident: Incident, s: Swept) -> None:
        tracked.changed = tracked.changed or differs(tracked.body, incident) or (
            tracked.status is Status.FINAL and heard_by_more(tracked.body, incident))
        if incident is not tracked.body:
            tracked.body, tracked.carries = incident, Call.NONE
        tracked.pulses = [r.pulse for r in s.pulses]
        tracked.received_ns = s.received_ns

    def _absorbs(self, incident: Incident, other: Incident) -> bool:
        """Whether every shot of ``other`` is one of ``incident``'s (see _one_shot)."""
        mine = self._shots(incident)
        return bool(other.get("shots")) and all(any(self._one_shot(shot, m) for m in mine) for shot in other["shots"])

    def _shares_shot(self, incident: Incident, other: Incident) -> bool:
        """Whether a shot of ``other`` is one of ``incident``'s (see _one_shot): a busy city's
        incidents this close in time lie farther apart (in the fleet city, 1.9 km or more)."""
        mine = self._shots(incident)
        return any(self._one_shot(shot, m) for shot in other.get("shots", []) for m in mine)

    def _shots(self, incident: Incident) -> list[tuple[int, object]]:
        """An incident's shots as (t_ns, (east, north) metres)."""
        return [(s["t_ns"], self.reach.enu_xy(s)) for s in incident.get("shots", [])]

    def _one_shot(self, shot: dict, mine: tuple[int, object]) -> bool:
        """Whether a shot is one located as ``mine`` (t_ns, xy): as close in time as two arrivals of
        one sound can be, and within the anchor range (a shot located from part of its pulses
        may lie tens of metres off, farther than its error says)."""
        t_ns, xy = mine
        reach = self.reach
        return abs(t_ns - shot["t_ns"]) <= reach.pair_slack_ns and math.dist(xy, reach.enu_xy(shot)) <= reach.anchor_range_m

    def _same_incident(self, old: Incident, new: Incident) -> bool:
        """Whether a located incident is one tracked before under another anchor: close in time and place."""
        if abs(old["t_ns"] - new["t_ns"]) > self.reach.window_ns:
            return False
        return math.dist(self.reach.enu_xy(old), self.reach.enu_xy(new)) <= self.reach.anchor_range_m

    def _withdrawal(self, tracked: Tracked, into: Tracked) -> Update:
        tracked.advance(Status.WITHDRAWN)
        self._recent.pop(tracked.incident_id, None)
        body = dict(tracked.body, incident=tracked.incident_id, merged_into=into.incident_id)
        return Update(incident=body, status=Status.WITHDRAWN.value, used=[], rejected={},
                      meta=self._meta(body, tracked.pulses), trigger_received_ns=tracked.received_ns)

    def _next_status(self, tracked: Tracked, final: bool) -> Status | None:
        """The status of the tracked incident's next revision; None when it has none to publish."""
        if not tracked.published and not self.fix.confirms(tracked.body):
            if final:
                tracked.advance(Status.DISCARDED)   # its window closed unconfirmed: it never goes out
            return None   # unconfirmed: kept (a later pulse may confirm it), not published
        if final:   # a final one late pulses did not change is final as it stands
            return None if tracked.status is Status.FINAL and not tracked.changed else Status.FINAL
        if not tracked.published:
            return Status.PRELIMINARY
        return Status.REVISED if tracked.changed else None

    def _revision(self, tracked: Tracked, final: bool) -> list[Update]:
        status = self._next_status(tracked, final)
        if status is None:
            return []
        tracked.advance(status)
        tracked.changed = False
        beyond = self.book.heard_beyond(tracked.body, tracked.pulses)   # the evidence and the classifier read them
        self._classify(tracked, beyond)
        body = dict(tracked.body, incident=tracked.incident_id)
        evidence = tracked.pulses + beyond
        used, rejected = attribute(body, evidence, self.reach.sensors, incident_c_m_s(body))
        return [Update(incident=body, status=status.value, used=used, rejected=rejected,
                       meta=self._meta(body, evidence), trigger_received_ns=tracked.received_ns)]

    def _classify(self, tracked: Tracked, beyond: list[dict]) -> None:
        """Give the body the classifier's call: a new one on a new body or when final, else the
        last one carried over (between the first call and the final: the height profile costs
        more than the location)."""
        final = tracked.status is Status.FINAL
        if tracked.carries is Call.OWN or (tracked.carries is Call.CARRIED and not final):
            return
        if tracked.status is Status.REVISED and tracked.call:
            tracked.body.update(tracked.call)
            tracked.carries = Call.CARRIED
            return
        sensors = self.reach.sensors
        arrivals = shot_arrivals(tracked.body, tracked.pulses, sensors, incident_c_m_s(tracked.body))
        tracked.call = classify(tracked.body, arrivals, sensors, pulses=self.book.around(tracked.pulses, arrivals, beyond),
                                recent=self._before(tracked))
        self._recent[tracked.incident_id] = tracked.body
        tracked.body.update(tracked.call)
        tracked.carries = Call.OWN

    def _before(self, tracked: Tracked) -> list[dict]:
        """The incidents classified before this one that may be its mortar's launch (in time order)."""
        t_ns = tracked.body["t_ns"]
        lo_ns = t_ns - int(MORTAR_FLIGHT_S[1] * NS_PER_S)
        return sorted((b for iid, b in self._recent.items() if iid != tracked.incident_id and lo_ns <= b["t_ns"] < t_ns),
                      key=lambda b: b["t_ns"])

    def _new_id(self, incident: Incident) -> str:
        """The site's id of a new incident (the locator's, from its time to the millisecond; made
        unique when two incidents of a busy city fall in the same millisecond)."""
        base = incident_id = f"{self.site}-{incident['incident']}"
        n = 1
        while incident_id in self._incident_ids:
            n += 1
            incident_id = f"{base}-{n}"
        self._incident_ids[incident_id] = incident["t_ns"]
        return incident_id

    def _meta(self, incident: Incident, pulses: list[dict]) -> dict:
        names = {p["sensor"] for p in pulses} | set(incident.get("sensors", []))
        return {
            "sensors": {n: self.positions[n] for n in sorted(names) if n in self.positions},
            "temperature_c": self.fix.temperature_c,
            "speed_of_sound_m_s": incident.get("c_mps"),
            "mode": self.fix.mode,
            "wind_m_s": list(self.fix.wind_m_s) if self.fix.wind_m_s is not None else None,
            "frame_m": self.fix.frame_m,
            "software": earwitness.__version__,
            "locator": "fusion.locator.locate.locate",
            "window_s": self.reach.window_ns / NS_PER_S,
        }
