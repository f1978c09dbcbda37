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

With ``workers > 1`` several such processes share a site: ingest through an MQTT v5 shared
subscription, location by spatial cells with a halo (:mod:`fusion.server.partition`).

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

from earwitness import topics
from earwitness.units import NS_PER_S
from fusion.server import alerts, evidence
from fusion.server.casework import Casework
from fusion.server.ingest import PulseIngest, Rejection
from fusion.server.link import LinkFactory
from fusion.server.partition import Partition
from fusion.server.registry import load_registry
from fusion.server.store import Store
from fusion.tracking.incidents import DEFAULT_MAX_RANGE_M, IncidentTracker, Update

log = logging.getLogger(__name__)

BATCH_MAX = 2000
DEFAULT_SHARED_GROUP = "fusion"
TICK_S = 0.05


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
    cameras: pathlib.Path | None = None       # Cameras CSV (fusion.forensics.cameras)
    buildings: pathlib.Path | None = None     # building footprints, GeoJSON: what blocks a camera's view


class FusionService:
    """A running fusion worker; :meth:`start` it, :meth:`stop` it, read its counters."""

    def __init__(self, config: FusionConfig, connect: LinkFactory):
        self.config = config
        self.registry = load_registry(config.registry)
        self.store = Store(config.database, schema=config.schema)
        site = config.site
        group = config.shared_group or (DEFAULT_SHARED_GROUP if config.workers > 1 else None)
        subscribed = [kind(site, topics.WILDCARD) for kind in (topics.pulse, topics.health, topics.clip)]
        subscribed = [topics.shared(group, t) for t in subscribed] if group else subscribed
        self.partition = None
        if config.workers > 1:
            self.partition = Partition(self.registry, config.cell_m, config.halo_m, config.workers, config.worker_index)
            subscribed += [self._cell_topic(c) for c in self.partition.owned_cells()]
        client_id = config.client_id or f"earwitness-fusion-{site}-{config.worker_index}"
        self.link = connect(client_id, subscribed)
        self.ingest = PulseIngest(site, self.registry, self.store, self._publish_deadletter)
        self.tracker = IncidentTracker(self.registry.sensors, site, config.temperature_c, config.mode, config.margin_s,
                                       config.max_range_m, positions=self.registry.positions)
        self.alert_topic = topics.incident(site)
        self.casework = Casework.for_site(self.registry.sensors, self.store, config.cameras, config.buildings)
        self.latencies_s: list[float] = []
        self.alerts_published = 0
        self.clips_requested = 0
        self.clips_stored = 0
        self._last_sent_ns: dict[str, int] = {}
        self._webhooks = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook")
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._pending: list = []
        self._thread: threading.Thread | None = None
        # Stored pulses waiting for the locator thread, and the revisions it made for the worker loop.
        self._to_locate: queue.Queue = queue.Queue()
        self._updates: queue.Queue = queue.Queue()
        # Pulses handed to the locator and taken in by the tracker (each written by one thread only).
        self._handed = self._located = 0
        self._stop_locator = threading.Event()
        self._locator: threading.Thread | None = None

    def start(self) -> "FusionService":
        self.link.start()
        self._locator = threading.Thread(target=self._run_locator, name="fusion-locator", daemon=True)
        self._locator.start()
        self._thread = threading.Thread(target=self._run, name="fusion-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, finalise: bool = True) -> None:
        """Stop taking messages; with ``finalise``, publish final revisions of open incidents first."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._stop_locator.set()   # it locates what the worker handed it, then stops
        if self._locator:
            self._locator.join()
        updates = self._take_updates()
        if finalise:
            updates += self.tracker.flush()
        self._emit(updates)
        self.link.stop()
        self.ingest.close()
        self._webhooks.shutdown(wait=True)
        self.store.close()

    def run_forever(self) -> None:
        """Work until :meth:`stop` is called from another thread (or a signal handler)."""
        while not self._stop.wait(1.0):
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a bug or a database outage must not kill the worker silently
                log.exception("fusion worker step failed; retrying")
                time.sleep(TICK_S)

    def _run_locator(self) -> None:
        while True:
            try:
                first = self._to_locate.get(timeout=TICK_S)
            except queue.Empty:
                first = None
                if self._stop_locator.is_set():
                    return
            try:
                self._updates.put(self.locate_step(first))
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

    def _take_updates(self) -> list[Update]:
        updates = []
        while True:
            try:
                updates += self._updates.get_nowait()
            except queue.Empty:
                return updates

    def step(self) -> None:
        """One round: ingest what arrived, commit, acknowledge, hand over to the locator; publish its revisions."""
        # A batch that failed (database down) is retried, never dropped: its messages are
        # unacknowledged and the broker will not send them again on this connection.
        batch = self._pending or self.link.take(BATCH_MAX, TICK_S)
        self._pending = batch
        cell_prefix = topics.cell_root(self.config.site)
        from_nodes = [(t, m) for t, m in batch if not m.topic.startswith(cell_prefix)]
        pulses_batch = [(t, m) for t, m in from_nodes if not m.topic.endswith(("/health", "/clip"))]
        accepted = self.ingest.process(pulses_batch) if pulses_batch else []
        for received_ns, msg in from_nodes:
            if msg.topic.endswith("/health"):
                self.ingest.health(received_ns, msg)
            elif msg.topic.endswith("/clip"):
                self._store_clip(received_ns, msg)
        if self.partition is None:
            to_locate = accepted
        else:
            # Forwarded before the node's message is acknowledged: QoS 1 on one connection, in order.
            # One message per cell per batch (a JSON list): a node's pulse goes to up to four cells.
            by_cell = collections.defaultdict(list)
            for pulse in accepted:
                for cell in self.partition.node_cells[pulse["sensor"]]:
                    by_cell[cell].append(pulse)
            for cell, pulses in by_cell.items():
                self.link.publish(self._cell_topic(cell), json.dumps(pulses).encode())
            to_locate = [p for _, m in batch if m.topic.startswith(cell_prefix) for p in _cell_pulses(m)]
        self.link.ack([msg for _, msg in batch])   # committed (or dead-lettered): the broker may drop them now
        self._pending = []
        if to_locate:
            self._handed += len(to_locate)
            self._to_locate.put(to_locate)
        self._emit(self._take_updates())

    @property
    def locator_idle(self) -> bool:
        """Every pulse handed over is in the tracker and every revision it made is published."""
        return self._located == self._handed and self._updates.empty()

    def finalise_open_incidents(self) -> None:
        """Have the locator finalise every open incident at its next round (end of a replay, an operator's call)."""
        self._flush.set()

    def _cell_topic(self, cell) -> str:
        return topics.cell_pulses(self.config.site, Partition.cell_name(cell))

    def _emit(self, updates: list[Update]) -> None:
        if self.partition is not None:   # another worker publishes what lies in its cells
            updates = [u for u in updates if self.partition.owns(u.incident)]
        for update in updates:
            inc = self.casework.annotate(update.incident)
            revision = self.store.save_incident(inc, update.status, update.used, update.rejected, update.meta)
            sent_ns = time.time_ns()
            body = alerts.alert_json(inc, revision, update.status)
            cap = alerts.alert_cap(inc, revision, update.status, sender=self.config.cap_sender, site=self.config.site,
                                   sent_ns=sent_ns, previous_sent_ns=self._last_sent_ns.get(inc["incident"]),
                                   cap_status=self.config.cap_status)
            self.link.publish(self.alert_topic, body.encode())
            self.link.publish(topics.incident_cap(self.config.site), cap.encode())
            for topic, payload in self.casework.cues(self.config.site, alerts.make_alert(inc, revision, update.status)):
                self.link.publish(topic, payload)
            self._last_sent_ns[inc["incident"]] = sent_ns
            self.alerts_published += 1
            if update.status not in ("final", "withdrawn"):
                self.latencies_s.append((time.time_ns() - update.trigger_received_ns) / NS_PER_S)
            if self.config.webhook:
                self._webhooks.submit(alerts.post_webhook, self.config.webhook, body.encode(), alerts.JSON_CONTENT_TYPE)
            if update.status == "final" and self.config.request_clips:
                self._request_clips(inc, update.used)

    def _request_clips(self, incident: dict, used_ids: list[int]) -> None:
        """Ask every node that took part for its audio around its arrivals (answers on .../clip)."""
        used = self.store.pulses(ids=used_ids) if used_ids else []
        for node, command in evidence.clip_requests(incident["incident"], used, incident.get("sensors", [])).items():
            self.link.publish(topics.command(self.config.site, node), json.dumps(command).encode())
            self.clips_requested += 1

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
