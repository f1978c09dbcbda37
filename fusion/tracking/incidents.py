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
neighbours hear a shot it has not located, and once more when it closes.  A located incident is
held back until a sensor beyond the fewest that fix a shot confirms it (located again at each
new pulse until then), then published ``preliminary`` the first time, ``revised`` when more
pulses change it by more than its error says, ``withdrawn`` (with ``merged_into``) if its shots
turn out to be another's (a burst's round located from its own anchor before the burst's window
took it in), and ``final`` once no pulse has come into its window's reach for one window
(``window_ns``: the time sound needs to cross the window, plus the margin) of wall-clock time
and every earlier window has closed (an earlier window's shots decide what this one may keep);
one never published is discarded.  Late pulses of a final incident's shots (a node's outbox
after an outage, a broker's failover pause) revise it under its id: a shot is alerted once.
It is classified (:func:`fusion.locator.classify.classify`)
when first published and when final, from its arrivals, the pulses around them (its window, its
arrivals beyond, its sensors' pulses just before and after) and the incidents classified
shortly before it.

The states and transitions are :mod:`fusion.tracking.lifecycle`'s.  The work is shared by
:mod:`~fusion.tracking.reach` (the sensors' neighbourhoods, a window's ranges and times),
:mod:`~fusion.tracking.buffer` (the pulses held), :mod:`~fusion.tracking.arrivals` (what located
shots explain), :mod:`~fusion.tracking.windows` (locating one window), :mod:`~fusion.tracking.sweep`
(anchoring the windows of a sweep) and :mod:`~fusion.tracking.revisions` (pairing and publishing);
this module holds them together.

Example::

    tracker = IncidentTracker(registry.sensors, site="pgh", temperature_c=4.0, positions=registry.positions)
    for update in tracker.add(stored_pulses, received_ns=time.time_ns()):
        store.save_incident(update.incident, update.status, update.used, update.rejected, update.meta)
    updates = tracker.expire(time.time_ns())
"""
from __future__ import annotations

from earwitness.records import Incident, Position
from earwitness.units import NS_PER_S
from fusion.locator.sensors import Sensors
from fusion.locator.uncertainty import FRAME_TYPICAL_M
from fusion.tracking.arrivals import ArrivalBook
from fusion.tracking.buffer import PulseBuffer
from fusion.tracking.reach import Reach, sensor_positions
from fusion.tracking.revisions import Revisions, Update
from fusion.tracking.sweep import Sweep
from fusion.tracking.windows import Fix, Swept, Windows

__all__ = ["DEFAULT_MARGIN_S", "DEFAULT_MAX_RANGE_M", "IncidentTracker", "Update"]

DEFAULT_MARGIN_S = 1.0
# No gunshot is heard (let alone detected) farther than this.
DEFAULT_MAX_RANGE_M = 4000.0
# Closed windows' pulses are kept this long (a late pulse may still fall into a window before
# it) before they are forgotten.
RETAIN_S = 120.0


class IncidentTracker:
    """Turns a stream of stored pulses into incident revisions.

    Parameters
    ----------
    sensors : fusion.locator.sensors.Sensors
        The site's sensor positions (the frame of the output).
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
    positions : dict, optional
        The sensors' positions as a revision's evidence lists them (the registry's, as
        configured); by default ``sensors``' own, in the frame of the input.
    wind_m_s : (east, north) m/s, optional
        A told wind (a weather reading) for the locator's fit and err_m; None: still air.
    frame_m : float
        err_m's frame term (:func:`fusion.locator.locate.locate`): 0 where places are compared in the
        sensors' own frame (simulation).
    """

    def __init__(self, sensors: Sensors, site: str, temperature_c: float | None = None, mode: str = "2d",  # noqa: PLR0913
                 margin_s: float = DEFAULT_MARGIN_S, max_range_m: float = DEFAULT_MAX_RANGE_M,
                 *, positions: dict[str, Position] | None = None, wind_m_s: tuple[float, float] | None = None,
                 frame_m: float = FRAME_TYPICAL_M):
        self.site = site
        self.fix = Fix(temperature_c, mode, wind_m_s, frame_m)
        self.min_sensors = self.fix.min_sensors
        self.alert_sensors = self.fix.alert_sensors
        self.reach = Reach(sensors, max_range_m, margin_s)
        self.window_ns = self.reach.window_ns
        self._buffer = PulseBuffer()
        book = ArrivalBook(self.reach, self._buffer)
        self._windows = Windows(self.reach, self._buffer, book, self.fix)
        self._revisions = Revisions(site, self.reach, book, self.fix,
                                    positions if positions is not None else sensor_positions(sensors))
        # Anchors before this time are closed; what their windows claimed and skipped stays so.
        self._open_t_ns: int | None = None
        self._done_claimed: set = set()
        self._done_skipped: set = set()
        self._due_ns: int | None = None                    # the earliest an open window may close
        self._open_anchors = 0
        self._received_through_ns: int | None = None       # the latest arrival taken in

    @property
    def open_windows(self) -> int:
        """Anchor windows and published incidents not yet final."""
        return self._open_anchors + len(self._revisions.orphans)

    def open_incidents(self) -> list[Incident]:
        """The latest body of every located incident not yet final."""
        return self._revisions.open_bodies()

    def add(self, pulses: list[dict], received_ns: int) -> list[Update]:
        """Add stored pulses (each with ``id``, ``sensor``, ``t_ns``); locate the windows they changed."""
        if pulses:
            self._received_through_ns = max(self._received_through_ns or received_ns, received_ns)
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

    def checkpoint(self) -> dict:
        """What a restarted tracker needs beside the stored pulses and revisions (JSON-able): where
        the open windows start, what the closed windows after that claimed and skipped, and the
        latest arrival taken in.  Stored with the revisions of the same round, it lets
        :meth:`resume` carry on as if the server had not stopped."""
        return {"open_t_ns": self._open_t_ns, "claimed": sorted(self._done_claimed),
                "skipped": sorted(self._done_skipped), "received_through_ns": self._received_through_ns}

    @staticmethod
    def resume_range(checkpoint: dict) -> tuple[int | None, int | None]:
        """The stored pulses :meth:`resume` needs: (those from this ``t_ns`` on, and those received
        from this ``received_ns`` on); None where none are needed by that rule."""
        open_t_ns = checkpoint.get("open_t_ns")
        from_t_ns = open_t_ns - int(RETAIN_S * NS_PER_S) if open_t_ns is not None else None
        return from_t_ns, checkpoint.get("received_through_ns")

    def resume(self, checkpoint: dict, pulses: list[dict], published: list[tuple[Incident, str, list[dict]]],
               recent: list[Incident], now_ns: int) -> list[Update]:
        """Rebuild the state of a checkpoint (a tracker's :meth:`checkpoint`, stored with its revisions).

        ``pulses``: the stored pulses :meth:`resume_range` names; ``published``: each incident
        published and not yet final or withdrawn, as last published (id, body), its status and the
        pulses of its evidence; ``recent``: the incidents stored from :meth:`resume_range`'s time
        on (their ids stay taken; a burst's launch is classified with them).  Every open window
        is located again as if its pulses had just come in (at ``now_ns``): what the broker kept
        for the server while it was down comes into its window before it closes.  Returns the
        revisions that makes (a published incident pairs with its relocation under its own id).
        """
        from_t_ns, received_from_ns = self.resume_range(checkpoint)
        open_t_ns = checkpoint.get("open_t_ns")
        late = []
        for p in sorted(pulses, key=lambda p: int(p["t_ns"])):
            if self._buffer.insert(p, now_ns) is not None and received_from_ns is not None \
                    and int(p["received_ns"]) >= received_from_ns and (from_t_ns is None or int(p["t_ns"]) < open_t_ns):
                late.append(int(p["t_ns"]))
        self._open_t_ns = open_t_ns
        for t_ns in late:   # taken in after the checkpoint: they reopen their windows as add() would
            reopen_ns = t_ns - self.reach.span_ns - self.reach.pair_slack_ns
            self._open_t_ns = reopen_ns if self._open_t_ns is None else min(self._open_t_ns, reopen_ns)
        self._done_claimed = set(checkpoint.get("claimed", ()))
        self._done_skipped = set(checkpoint.get("skipped", ()))
        self._received_through_ns = now_ns
        self._revisions.restore(published, recent, now_ns)
        return self._sweep(now_ns)

    def _insert(self, pulse: dict, received_ns: int) -> bool:
        rec = self._buffer.insert(pulse, received_ns)
        if rec is None:
            return False
        # A late pulse (a node's outbox after an outage) reopens the windows it may belong to.
        reopen_ns = rec.t_ns - self.reach.span_ns - self.reach.pair_slack_ns
        if self._open_t_ns is None or reopen_ns < self._open_t_ns:
            self._open_t_ns = reopen_ns
        return True

    def _sweep(self, now_ns: int | None) -> list[Update]:
        """Anchor windows from the oldest open one on; locate those that changed; publish; close
        the oldest windows."""
        swept = Sweep(self._windows, self._done_claimed, self._done_skipped).run(self._buffer.since(self._open_t_ns), now_ns)
        closed = next((k for k, s in enumerate(swept) if not s.closing), len(swept))   # and every earlier one
        updates = self._revisions.pair(swept)
        updates += self._revisions.publish(swept, closed)
        self._windows.close(swept[:closed], self._done_claimed, self._done_skipped)
        updates += self._revisions.finalise_orphans(now_ns)
        self._settle(swept, closed)
        self._forget()
        return sorted(updates, key=lambda u: u.incident["t_ns"])

    def _settle(self, swept: list[Swept], closed: int) -> None:
        """Where the next sweep starts, how many windows stay open and when one may close."""
        if closed < len(swept):
            self._open_t_ns = swept[closed].anchor.t_ns
        else:
            last_ns = self._buffer.last_t_ns()
            self._open_t_ns = last_ns + 1 if last_ns is not None else None
        self._open_anchors = len(swept) - closed
        due = [s.received_ns + self.window_ns for s in swept[closed:]]
        orphans_due_ns = self._revisions.orphans_due_ns()
        if orphans_due_ns is not None:
            due.append(orphans_due_ns)
        self._due_ns = min(due, default=None)

    def _forget(self) -> None:
        """Drop what lies RETAIN_S before the oldest open window."""
        if self._open_t_ns is None:
            return
        horizon_ns = self._open_t_ns - int(RETAIN_S * NS_PER_S)
        gone = self._buffer.forget(horizon_ns)
        if not gone:
            return
        for rec in gone:
            self._done_claimed.discard(rec.id)
            self._done_skipped.discard(rec.id)
        self._revisions.forget(horizon_ns)
