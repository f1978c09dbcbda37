"""The fusion service: pulses in, verified and stored pulses, live incidents, alerts out.

The messages come and go through a :class:`fusion.server.link.Link` the caller's transport
opens (MQTT: :func:`fusion.transport.mqtt_service`).

Two threads.  The worker loop takes what the broker has delivered (a batch), verifies and
commits it (:class:`fusion.server.ingest.PulseIngest`), acknowledges it and hands the stored pulses
to the locator thread, which feeds them to the incident tracker
(:class:`fusion.tracking.incidents.IncidentTracker`); location can take seconds on a busy group, and
ingest and acks must not wait for it (the C seed search releases the GIL).  The revisions it
makes go back to the worker loop, which stores every revision and publishes it as an
alert: JSON on ``ew/v1/{site}/incident``, CAP 1.2 XML on ``ew/v1/{site}/incident/cap`` and,
if configured, POSTed to a webhook (in a background thread, with retries).  A final incident
asks its nodes for their audio (:mod:`fusion.server.evidence`); verified clips are stored.

A crash loses nothing accepted.  Each locator round's revisions are stored in one transaction
with the tracker's checkpoint and the messages they send (the outbox: alerts, cues, clip
requests, dropped once the broker confirms them); a started service takes back its open
windows from the stored pulses and its published incidents under their ids
(:meth:`fusion.tracking.incidents.IncidentTracker.resume`) and sends what its outbox holds.  A
failed store (database down, disk full) is logged once and retried; its messages stay
unacknowledged meanwhile.  Every alert and reconnect is logged at INFO, and the server's health
(:mod:`fusion.server.health`) goes out every ``health_s``.

With ``workers > 1`` several such processes share a site: ingest through an MQTT v5 shared
subscription, location by spatial cells with a halo (:mod:`fusion.server.partition`), each shot
opened as an incident by one worker slot (:mod:`fusion.server.claims`).

Example::

    service = fusion.transport.mqtt_service(load_config("fusion.toml"))
    service.start()
    ...
    service.stop()
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import pathlib
import queue
import threading
import time

import sqlalchemy as sa

from earwitness import topics
from earwitness.units import NS_PER_S
from fusion.locator.uncertainty import FRAME_TYPICAL_M
from fusion.locator.wind import told_wind
from fusion.server import alerts, evidence
from fusion.server.audit import AuditLog, server_key
from fusion.server.casework import Casework
from fusion.server.claims import ShotClaims
from fusion.server.health import ServerHealth
from fusion.server.ingest import PulseIngest, Rejection
from fusion.server.link import Delivery, LinkFactory
from fusion.server.live import Broadcast
from fusion.server.partition import Partition
from fusion.server.registry import load_registry
from fusion.server.store import Revision, SlotFenced, Store
from fusion.tracking.incidents import DEFAULT_MAX_RANGE_M, IncidentTracker, Update

log = logging.getLogger(__name__)

BATCH_MAX = 2000
DEFAULT_SHARED_GROUP = "fusion"
TICK_S = 0.05
# A failed step (database down, disk full) is tried again this often.
RETRY_S = 0.5
# The server's health goes out on ew/v1/{site}/fusion/health this often.
DEFAULT_HEALTH_S = 10.0
# Pulse ids remembered against a forwarded message delivered again: hours of a city's pulses.
SEEN_IDS_MAX = 2_000_000
# Ids of the incidents a slot opened, which it publishes wherever they move: days of a busy city's.
OPENED_IDS_MAX = 500_000
# A broker unreachable at start is tried again after this long, doubling up to the most (as the MQTT
# link's reconnect loop does once running, fusion.transport.mqttlink).
CONNECT_RETRY_MIN_S, CONNECT_RETRY_MAX_S = 0.5, 5.0


class StartCancelled(Exception):
    """Asked to stop while waiting at start for the broker: the service did not start."""


@dataclasses.dataclass
class FusionConfig:
    """Settings of one fusion worker (see :func:`fusion.cli_fusion.load_config` for the TOML)."""

    site: str
    broker: str
    registry: pathlib.Path
    database: str = "fusion.db"
    schema: str | None = None
    client_id: str | None = None
    shared_group: str | None = None
    temperature_c: float | None = None
    wind_mps: float | None = None             # a weather reading's wind speed (with wind_from_deg): the locator models it
    wind_from_deg: float | None = None        # the compass bearing the wind blows from
    frame_m: float = FRAME_TYPICAL_M          # err_m's frame term (0: places compared in the sensors' frame)
    mode: str = "2d"
    margin_s: float = 1.0
    max_range_m: float = DEFAULT_MAX_RANGE_M
    webhook: str | None = None
    cap_sender: str = "earwitness@localhost"
    cap_status: str = "Actual"
    tls: dict | None = None
    workers: int = 1
    worker_index: int = 0
    cell_m: float = 4000.0
    halo_m: float = 2500.0
    request_clips: bool = True
    health_s: float = DEFAULT_HEALTH_S
    cameras: pathlib.Path | None = None       # Cameras CSV (fusion.forensics.cameras)
    console_listen: str | None = None         # [console] listen = "HOST:PORT": serve the operator console
    console_city: object = None               # [console] layers and basemap (fusion.console.citymap.CityMap)
    console: object | None = None             # [console]'s settings (fusion.console.settings.ConsoleSettings)
    buildings: pathlib.Path | None = None     # building footprints, GeoJSON: what blocks a camera's view
    signing_key: pathlib.Path | None = None   # the server's Ed25519 key (made if absent): audit log; None: no log
    timezone: str | None = None               # the site's time zone (IANA name): local times in reports
    connect_timeout_s: float | None = None    # one connect attempt's limit; None: the link's own


class FusionService:
    """A running fusion worker; :meth:`start` it, :meth:`stop` it, read its counters."""

    def __init__(self, config: FusionConfig, connect: LinkFactory):
        self.config = config
        self.registry = load_registry(config.registry)
        self.store = Store(config.database, schema=config.schema)
        self.audit: AuditLog | None = None   # opened by start()
        site = config.site
        subscribed = self._subscriptions()
        client_id = config.client_id or f"earwitness-fusion-{site}-{config.worker_index}"
        self._open_link = lambda: connect(client_id, subscribed)
        self.link = self._open_link()
        self.ingest = PulseIngest(site, self.registry, self.store, self._publish_deadletter)
        self.tracker = IncidentTracker(self.registry.sensors, site, config.temperature_c, config.mode, config.margin_s,
                                       config.max_range_m, positions=self.registry.positions,
                                       wind_m_s=told_wind(config.wind_mps, config.wind_from_deg), frame_m=config.frame_m)
        self.alert_topic = topics.incident(site)
        self.casework = Casework.for_site(self.registry.sensors, self.store, config.cameras, config.buildings)
        self.latencies_s: list[float] = []
        self.alerts_published = 0
        self.live = Broadcast()   # each published revision, for the operator console
        self.clips_requested = 0
        self.clips_stored = 0
        self._last_sent_ns: dict[str, int] = {}
        self._webhooks = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook")
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._pending: list = []
        self._done: set = set()                # ids of the pending batch's messages stored already
        self._thread: threading.Thread | None = None
        # Stored pulses waiting for the locator thread, and the revisions it made for the worker loop.
        self._to_locate: queue.Queue = queue.Queue()
        self._updates: queue.Queue = queue.Queue()
        # Pulses handed to the locator and taken in by the tracker (each written by one thread only).
        self._handed = self._located = 0
        self._seen = RecentIds(SEEN_IDS_MAX)   # pulse ids handed to the tracker (or taken back at resume)
        self._stop_locator = threading.Event()
        self._locator: threading.Thread | None = None
        # Locator rounds (revisions, tracker checkpoint) not yet stored, oldest first.
        self._rounds: list[tuple[list[Update], dict]] = []
        self._saved_state: dict | None = None
        self._worker_key = f"{site}/{config.worker_index}"
        # One shot, one slot's incident (fusion.server.claims): the same shot as the tracker's own rule has it.
        self.claims = ShotClaims(self.store, self._worker_key, self.tracker.reach.pair_slack_ns,
                                 self.tracker.reach.anchor_range_m, self.tracker.reach.enu_xy)
        self._opened = RecentIds(OPENED_IDS_MAX)   # incidents this slot stored: it publishes them wherever they move
        self.yielded = 0                           # new incidents not opened: another slot had their shot
        self._epoch: int | None = None         # the slot's epoch at our start (Store.take_slot): our writes' fence
        self.fenced = False                    # the slot was started again elsewhere: we store nothing more for it
        self._failing: str | None = None      # the step failure being retried, logged once
        self._unsent: dict[int, Delivery] = {}   # outbox row id -> its publish's delivery handle
        self.server_health = ServerHealth(self.registry.positions, time.time_ns())
        self.reconnects = 0
        self._was_connected = True
        self._health_due = time.monotonic()

    def _subscriptions(self) -> list[str]:
        """The topics this worker reads; with several workers also sets up its Partition of the cells."""
        config, site = self.config, self.config.site
        group = config.shared_group or (DEFAULT_SHARED_GROUP if config.workers > 1 else None)
        subscribed = [kind(site, topics.WILDCARD) for kind in (topics.pulse, topics.health, topics.clip)]
        subscribed = [topics.shared(group, t) for t in subscribed] if group else subscribed
        self.partition = None
        if config.workers > 1:
            self.partition = Partition(self.registry, config.cell_m, config.halo_m, config.workers, config.worker_index)
            subscribed.append(topics.worker_pulses(site, config.worker_index))
        return subscribed

    def start(self, cancel: threading.Event | None = None) -> "FusionService":
        """Take back the stored state, connect, start the threads.

        Without ``cancel`` an unreachable broker raises OSError.  With it the broker is tried
        again, a warning each time, waiting longer each time up to CONNECT_RETRY_MAX_S (a server
        started before its broker, or while it restarts), until it answers or ``cancel`` is set
        (:class:`StartCancelled`).
        """
        self._resume()
        self._connect(cancel)
        self._open_audit()
        self._send_outbox()   # what a crash kept from going out
        self._locator = threading.Thread(target=self._run_locator, name="fusion-locator", daemon=True)
        self._locator.start()
        self._thread = threading.Thread(target=self._run, name="fusion-worker", daemon=True)
        self._thread.start()
        return self

    def _connect(self, cancel: threading.Event | None) -> None:
        wait_s = CONNECT_RETRY_MIN_S
        limit = {} if self.config.connect_timeout_s is None else {"timeout_s": float(self.config.connect_timeout_s)}
        while True:
            try:
                self.link.start(cancel=cancel, **limit)   # a stop meanwhile ends the attempt (a NATS one lasts up to 30 s)
                return
            except OSError as exc:   # ConnectionError, refused, TLS handshake, no SUBACK in time, stopped
                if cancel is None:
                    raise
                if cancel.is_set():
                    raise StartCancelled(f"stopped while waiting for the broker {self.config.broker}") from None
                log.warning("cannot reach the broker %s (%s); trying again in %.1f s", self.config.broker,
                            _one_line(exc), wait_s)
            if cancel.wait(wait_s):
                raise StartCancelled(f"stopped while waiting for the broker {self.config.broker}")
            wait_s = min(2 * wait_s, CONNECT_RETRY_MAX_S)
            self.link = self._open_link()   # a link is started once: a failed one is not reused

    def stop(self, finalise: bool = True) -> None:
        """Stop taking messages; with ``finalise``, publish final revisions of open incidents first."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._stop_locator.set()   # it locates what the worker handed it, then stops
        if self._locator:
            self._locator.join()
        self._rounds += self._take_rounds()
        if finalise and not self.fenced:
            self._rounds.append((self.tracker.flush(), self.tracker.checkpoint()))
        try:
            if not self.fenced:   # its rounds are the slot's new worker's to make
                self._emit_rounds()
        except Exception as exc:  # noqa: BLE001 - stored later: the checkpoint before them is resumed from
            log.error("stopped with %d revision round(s) unstored (%s); the next start resumes them",
                      len(self._rounds), _one_line(exc))
        self.link.stop()
        try:
            self._confirm_outbox()
        except Exception as exc:  # noqa: BLE001 - sent again at the next start
            log.error("outbox not cleared at stop (%s); the next start sends it again", _one_line(exc))
        self.ingest.close()
        self._webhooks.shutdown(wait=True)
        self.store.close()

    def _open_audit(self) -> None:
        """Enter every revision stored from now on in the audit log, signed with the server's key;
        the key is made here if absent, once the broker is reached (a failed start makes none)."""
        if self.config.signing_key is not None:
            self.audit = AuditLog(self.store, server_key(self.config.signing_key))
            self.audit.record_revisions()
            self.audit.note_registry(self.config.registry)

    def run_forever(self) -> None:
        """Work until :meth:`stop` is called from another thread (or a signal handler)."""
        while not self._stop.wait(1.0):
            pass

    def _resume(self) -> None:
        """Take back the tracker's state of before a stop or crash: the open windows' stored pulses
        and the incidents published and not yet final (see IncidentTracker.resume)."""
        self._epoch = self.store.take_slot(self._worker_key)   # first: a stale holder's rounds stop here
        now_ns = time.time_ns()
        state = self.store.tracker_state(self._worker_key)
        if state is None:   # a new database: every pulse from now on is the tracker's
            state = dict(self.tracker.checkpoint(), received_through_ns=now_ns)
            self.store.save_round([], self._worker_key, state, epoch=self._epoch)
            self._saved_state = state
            return
        from_t_ns, from_received_ns = IncidentTracker.resume_range(state)
        pulses = self.store.pulses_since(from_t_ns, from_received_ns)
        published = self.store.open_incidents()
        recent = self.store.incidents(t0_ns=from_t_ns) if from_t_ns is not None else []
        if self.partition is not None:
            owned = set(self.partition.owned_cells())
            pulses = [p for p in pulses if owned.intersection(self.partition.node_cells.get(p["sensor"], ()))]
            ids = [b["incident"] for b in published + recent]
            mine = self.claims.opened(ids)   # this slot's, wherever they lie
            for incident_id in mine:
                self._opened.add(incident_id)
            legacy = set(ids) - self.claims.known(ids)   # stored before slots claimed shots: their owner's
            published = [b for b in published if b["incident"] in mine or (b["incident"] in legacy and self.partition.owns(b))]
        opened = [(b, b["status"], self.store.incident_pulses(b["incident"])) for b in published]
        for pulse in pulses + [p for _, _, ps in opened for p in ps]:
            self._seen.add(pulse["id"])
        updates = self.tracker.resume(state, pulses, opened, recent, now_ns)
        self._saved_state = state
        self._updates.put((updates, self.tracker.checkpoint()))
        log.info("resumed: %d open incident(s) and %d stored pulse(s) taken back, %d revision(s) from them",
                 len(opened), len(pulses), len(updates))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch_link()
            try:
                self.step()
            except SlotFenced as exc:
                self._fence(exc)
            except Exception as exc:  # noqa: BLE001 - a bug or a database outage must not kill the worker
                self._step_failed(exc)
                self._stop.wait(RETRY_S)
            else:
                if self._failing is not None:
                    log.info("fusion worker working again after: %s", self._failing)
                    self._failing = None

    def _fence(self, exc: SlotFenced) -> None:
        """Another worker runs our slot now (we lost its lease and had not noticed): stop working it."""
        log.error("%s; stopping the slot", exc)
        self.fenced = True
        self._stop.set()

    def _watch_link(self) -> None:
        """Count and log the broker connection coming back; publish the server's health when due."""
        event = getattr(self.link, "connected", None)
        connected = event.is_set() if event is not None else True
        if connected and not self._was_connected:
            self.reconnects += 1
            log.info("connected to the broker again (reconnect %d)", self.reconnects)
        self._was_connected = connected
        if time.monotonic() >= self._health_due:
            self._health_due = time.monotonic() + self.config.health_s
            self.publish_health(connected)

    def publish_health(self, connected: bool = True) -> dict:
        """Publish the server's health (:mod:`fusion.server.health`) now; returns it."""
        backlog = {"unstored_messages": len(self._pending), "to_locate": self._handed - self._located,
                   "unstored_rounds": len(self._rounds) + self._updates.qsize(), "open_windows": self.tracker.open_windows}
        report = self.server_health.report(time.time_ns(), self.ingest.accepted, self.ingest.rejected, backlog, connected,
                                           self.reconnects, self._failing, self._worker_key)
        self.link.publish(topics.fusion_health(self.config.site), json.dumps(report, sort_keys=True).encode())
        return report

    def _step_failed(self, exc: Exception) -> None:
        """Log a failing step once (a full disk or a database outage is retried, not logged 20 times a second)."""
        text = _one_line(exc)
        if text == self._failing:
            return
        self._failing = text
        if isinstance(exc, sa.exc.SQLAlchemyError):
            log.error("cannot store (%s): %d message(s) held unacknowledged, %d revision round(s) unstored; retrying",
                      text, len(self._pending), len(self._rounds))
        else:
            log.exception("fusion worker step failed; retrying")

    def _run_locator(self) -> None:
        while True:
            try:
                first = self._to_locate.get(timeout=TICK_S)
            except queue.Empty:
                first = None
                if self._stop_locator.is_set():
                    return
            try:
                updates = self.locate_step(first)
                self._updates.put((updates, self.tracker.checkpoint()))
            except Exception:  # noqa: BLE001 - a locator bug must not stop location for good
                log.exception("fusion locator step failed; going on")

    def locate_step(self, first: list[dict] | None = None) -> list[Update]:
        """Feed every handed-over pulse to the tracker; returns the revisions (the locator thread's round)."""
        pulses = list(first or [])
        while True:
            try:
                pulses += self._to_locate.get_nowait()
            except queue.Empty:
                break
        updates = []
        if pulses:
            updates += self.tracker.add(pulses, received_ns=max(p["received_ns"] for p in pulses))
            self._located += len(pulses)
        updates += self.tracker.expire(time.time_ns())
        if self._flush.is_set():
            self._flush.clear()
            updates += self.tracker.flush()
        return updates

    def _take_rounds(self) -> list[tuple[list[Update], dict]]:
        rounds = []
        while True:
            try:
                rounds.append(self._updates.get_nowait())
            except queue.Empty:
                return rounds

    def step(self) -> None:
        """One round: ingest what arrived, commit, acknowledge, hand over to the locator; store and
        publish its revisions."""
        # A batch that failed (database down, disk full) is retried, never dropped: its messages
        # are unacknowledged and the broker will not send them again on this connection.  What
        # of it was stored already (``_done``) is not stored again.
        if not self._pending:
            self._pending, self._done = self.link.take(BATCH_MAX, TICK_S), set()
        batch = self._pending
        cell_prefix = topics.worker_root(self.config.site)
        todo = [(t, m) for t, m in batch if id(m) not in self._done]
        from_nodes = [(t, m) for t, m in todo if not m.topic.startswith(cell_prefix)]
        pulses_batch = [(t, m) for t, m in from_nodes if not m.topic.endswith(("/health", "/clip"))]
        if pulses_batch:
            self._take_pulses(pulses_batch)
        for received_ns, msg in from_nodes:
            if msg.topic.endswith("/health"):
                seen = self.ingest.health(received_ns, msg)
                if seen is not None:
                    self.server_health.saw_health(*seen, received_ns)
            elif msg.topic.endswith("/clip"):
                self._store_clip(received_ns, msg)
            self._done.add(id(msg))
        if self.partition is not None:
            self._hand([p for _, m in todo if m.topic.startswith(cell_prefix) for p in _cell_pulses(m)])
        self.link.ack([msg for _, msg in batch])   # stored (or dead-lettered): the broker may drop them now
        self._pending = []
        self._rounds += self._take_rounds()
        self._emit_rounds()
        self._confirm_outbox()

    def _take_pulses(self, batch: list) -> None:
        """Verify and commit a batch's pulses; hand them to the locator (through the cells with workers)."""
        accepted = self.ingest.process(batch)
        self._done.update(id(m) for _, m in batch)
        self.server_health.saw_pulses(accepted)
        if self.partition is None:
            self._hand(accepted)
            return
        # Forwarded before the node's message is acknowledged: QoS 1 on one connection, in order.
        # One message per owning worker per batch (a JSON list): a node's pulse goes to the owners
        # of up to four cells, each once.
        by_owner = collections.defaultdict(list)
        for pulse in accepted:
            for owner in sorted({self.partition.owner(cell) for cell in self.partition.node_cells[pulse["sensor"]]}):
                by_owner[owner].append(pulse)
        for owner, pulses in by_owner.items():
            self.link.publish(topics.worker_pulses(self.config.site, owner), json.dumps(pulses).encode())

    def _hand(self, pulses: list[dict]) -> None:
        # A forwarded message comes again after a crash or a slot's takeover (it was not
        # acknowledged), while its pulses were taken back from the store: the tracker gets each once.
        pulses = [p for p in pulses if self._seen.add(p["id"])]
        if pulses:
            self._handed += len(pulses)
            self._to_locate.put(pulses)

    @property
    def locator_idle(self) -> bool:
        """Every pulse handed over is in the tracker and every revision it made is published."""
        # A round taken off the queue is in _rounds until it is stored and sent (its clip requests counted).
        return self._located == self._handed and self._updates.empty() and not self._rounds

    def finalise_open_incidents(self) -> None:
        """Have the locator finalise every open incident at its next round (end of a replay, an operator's call)."""
        self._flush.set()

    def _emit_rounds(self) -> None:
        """Store each locator round (its revisions and checkpoint, one transaction) and publish it, oldest first."""
        while self._rounds:
            updates, state = self._rounds[0]
            self._emit(updates, state)
            self._rounds.pop(0)

    def _emit(self, updates: list[Update], state: dict | None = None) -> None:
        """Store a round's revisions, their outgoing messages and the checkpoint (one transaction); send them."""
        if self.partition is not None:   # another worker opens what lies in its cells; ours stay ours
            into = {u.incident.get("merged_into") for u in updates if u.status == "withdrawn"
                    and u.incident["incident"] in self._opened}   # and what one of ours merged into (or its claimant)
            updates = [u for u in updates if u.incident["incident"] in self._opened or u.incident["incident"] in into
                       or self.partition.owns(u.incident)]
        updates = [dataclasses.replace(u, incident=self.casework.annotate(u.incident)) for u in updates]
        saving = state if state is not None and state != self._saved_state else None
        if not updates and saving is None:
            return
        sent_ns = time.time_ns()
        revisions = [Revision(u.incident, u.status, u.used, u.rejected, u.meta) for u in updates]
        of = {id(r): u for r, u in zip(revisions, updates)}
        numbers = self.store.save_round(revisions, self._worker_key, saving,
                                        lambda number, r: self._messages(of[id(r)], number, sent_ns), epoch=self._epoch,
                                        admit=self.claims.admit)
        if saving is not None:
            self._saved_state = saving
        self._send_outbox()
        for incident_id, rival in self.claims.yielded.items():
            self.yielded += 1
            log.info("incident %s not opened: its shot is %s's, another slot's (claimed first)", incident_id, rival)
        for update, revision in zip(updates, numbers):
            if revision is not None:
                self._opened.add(update.incident["incident"])
                self._alerted(update, revision, sent_ns)

    def _messages(self, update: Update, revision: int, sent_ns: int) -> list[tuple[str, bytes]]:
        """What a revision sends: the alert as JSON and as CAP, cues to the cameras that see it, and for
        a final one the clip requests to every node that took part (their audio around their
        arrivals, answered on .../clip) and to the nearby ones that did not."""
        inc, site = update.incident, self.config.site
        cap = alerts.alert_cap(inc, revision, update.status, sender=self.config.cap_sender, site=site, sent_ns=sent_ns,
                               previous_sent_ns=self._last_sent_ns.get(inc["incident"]), cap_status=self.config.cap_status)
        out = [(self.alert_topic, alerts.alert_json(inc, revision, update.status).encode()),
               (topics.incident_cap(site), cap.encode())]
        out += self.casework.cues(site, alerts.make_alert(inc, revision, update.status))   # to the cameras
        if update.status == "final" and self.config.request_clips:
            used = self.store.pulses(ids=update.used) if update.used else []
            requests = evidence.clip_requests(inc["incident"], used, inc.get("sensors", []))
            requests |= evidence.quiet_clip_requests(inc, self.registry.sensors)   # nearby nodes that did not trigger
            out += [(topics.command(site, node), json.dumps(command).encode()) for node, command in requests.items()]
            self.clips_requested += len(requests)
        return out

    def _send_outbox(self) -> None:
        """Publish what the outbox holds and is not on its way yet."""
        if self.fenced:   # the slot's outbox is its new worker's to send
            return
        for row_id, topic, payload in self.store.outbox(self._worker_key):
            if row_id not in self._unsent:
                self._unsent[row_id] = self.link.publish(topic, payload)

    def _confirm_outbox(self) -> None:
        """Drop from the outbox what the broker has confirmed."""
        delivered = [row_id for row_id, handle in self._unsent.items() if handle.wait(0)]
        if delivered:
            self.store.drop_outbox(delivered)
            for row_id in delivered:
                del self._unsent[row_id]

    def _alerted(self, update: Update, revision: int, sent_ns: int) -> None:
        inc = update.incident
        log.info("alert %s", alerts.alert_line(inc, revision, update.status))
        self._last_sent_ns[inc["incident"]] = sent_ns
        self.alerts_published += 1
        self.live.publish(alerts.make_alert(inc, revision, update.status))
        if update.status not in ("final", "withdrawn"):
            self.latencies_s.append((time.time_ns() - update.trigger_received_ns) / NS_PER_S)
        if self.config.webhook:
            body = alerts.alert_json(inc, revision, update.status).encode()
            self._webhooks.submit(alerts.post_webhook, self.config.webhook, body, alerts.JSON_CONTENT_TYPE)

    def _store_clip(self, received_ns: int, msg) -> None:
        node = topics.node_of(msg.topic, self.config.site, "clip")
        try:
            if node is None:
                raise evidence.ClipRejected("topic", "not ew/v1/{site}/node/{node}/clip")
            incident_id, meta, audio = evidence.verify_clip(node, bytes(msg.payload), self.registry)
        except evidence.ClipRejected as exc:
            self.ingest.dead_letter(Rejection(exc.reason, exc.detail, msg.topic, received_ns, bytes(msg.payload)))
            return
        self.store.add_clip(incident_id, node, meta["t0_ns"], audio, meta)
        self.clips_stored += 1

    def _publish_deadletter(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload)


class RecentIds:
    """The last ``limit`` ids added; :meth:`add` says whether an id is new."""

    def __init__(self, limit: int):
        self.limit = limit
        self._ids: dict[object, None] = {}   # insertion-ordered: the oldest first

    def __contains__(self, key) -> bool:
        return key in self._ids

    def add(self, key) -> bool:
        if key in self._ids:
            return False
        self._ids[key] = None
        if len(self._ids) > self.limit:
            del self._ids[next(iter(self._ids))]
        return True


def _cell_pulses(msg) -> list[dict]:
    """The stored pulses a worker forwarded to a cell (a JSON list); the malformed ones are left out."""
    try:
        pulses = json.loads(msg.payload)
    except ValueError:
        pulses = None
    if not isinstance(pulses, list):
        log.warning("ignored a malformed forwarded message on %s", msg.topic)
        return []
    good = [p for p in pulses if isinstance(p, dict) and isinstance(p.get("id"), int) and isinstance(p.get("sensor"), str)]
    if len(good) < len(pulses):
        log.warning("ignored %d malformed forwarded pulse(s) on %s", len(pulses) - len(good), msg.topic)
    return good


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
