"""The fusion service: MQTT in, verified and stored pulses, live incidents, alerts out.

One worker loop: take what the broker has delivered (a batch), verify and commit it
(:class:`fusion.ingest.PulseIngest`), acknowledge it, feed it to the incident tracker
(:class:`fusion.incidents.IncidentTracker`), store every revision and publish it as an
alert: JSON on ``ew/v1/{site}/incident``, CAP 1.2 XML on ``ew/v1/{site}/incident/cap`` and,
if configured, POSTed to a webhook (in a background thread, with retries).

Example::

    service = FusionService(load_config("fusion.toml"))
    service.start()
    ...
    service.stop()
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import pathlib
import threading
import time

from fusion import alerts
from fusion.incidents import IncidentTracker, Update
from fusion.ingest import PulseIngest
from fusion.mqttlink import MqttLink, drain
from fusion.registry import load_registry
from fusion.store import Store

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
BATCH_MAX = 2000
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
    webhook: str | None = None
    cap_sender: str = "earwitness@localhost"
    cap_status: str = "Actual"
    tls: dict | None = None


class FusionService:
    """A running fusion worker; :meth:`start` it, :meth:`stop` it, read its counters."""

    def __init__(self, config: FusionConfig):
        self.config = config
        self.registry = load_registry(config.registry)
        self.store = Store(config.database, schema=config.schema)
        site = config.site
        prefix = f"$share/{config.shared_group}/" if config.shared_group else ""
        self.link = MqttLink(config.broker, config.client_id or f"earwitness-fusion-{site}",
                             [f"{prefix}ew/v1/{site}/node/+/pulse", f"{prefix}ew/v1/{site}/node/+/health"],
                             tls=config.tls)
        self.ingest = PulseIngest(site, self.registry, self.store, self._publish_deadletter)
        self.tracker = IncidentTracker(self.registry, site, config.temperature_c, config.mode, config.margin_s)
        self.alert_topic = f"ew/v1/{site}/incident"
        self.latencies_s: list[float] = []
        self.alerts_published = 0
        self._last_sent_ns: dict[str, int] = {}
        self._webhooks = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook")
        self._stop = threading.Event()
        self._pending: list = []
        self._thread: threading.Thread | None = None

    def start(self) -> "FusionService":
        self.link.start()
        self._thread = threading.Thread(target=self._run, name="fusion-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, finalise: bool = True) -> None:
        """Stop taking messages; with ``finalise``, publish final revisions of open incidents first."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        if finalise:
            self._emit(self.tracker.flush())
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

    def step(self) -> None:
        """One round: ingest what arrived, commit, acknowledge, locate, publish; finalise closed incidents."""
        # A batch that failed (database down) is retried, never dropped: its messages are
        # unacknowledged and the broker will not send them again on this connection.
        batch = self._pending or drain(self.link.queue, BATCH_MAX, TICK_S)
        self._pending = batch
        pulses_batch = [(t, m) for t, m in batch if m.topic.endswith("/pulse")]
        accepted = self.ingest.process(pulses_batch) if pulses_batch else []
        for received_ns, msg in batch:
            if msg.topic.endswith("/health"):
                self.ingest.health(received_ns, msg)
        for _, msg in batch:   # committed (or dead-lettered): the broker may drop them now
            self.link.ack(msg)
        self._pending = []
        updates = []
        if accepted:
            updates += self.tracker.add(accepted, received_ns=max(p["received_ns"] for p in accepted))
        updates += self.tracker.expire(time.time_ns())
        self._emit(updates)

    def _emit(self, updates: list[Update]) -> None:
        for update in updates:
            inc = update.incident
            revision = self.store.save_incident(inc, update.status, update.used, update.rejected, update.meta)
            sent_ns = time.time_ns()
            body = alerts.alert_json(inc, revision, update.status)
            cap = alerts.alert_cap(inc, revision, update.status, sender=self.config.cap_sender, site=self.config.site,
                                   sent_ns=sent_ns, previous_sent_ns=self._last_sent_ns.get(inc["incident"]),
                                   cap_status=self.config.cap_status)
            self.link.publish(self.alert_topic, body.encode())
            self.link.publish(f"{self.alert_topic}/cap", cap.encode())
            self._last_sent_ns[inc["incident"]] = sent_ns
            self.alerts_published += 1
            if update.status != "final":
                self.latencies_s.append((time.time_ns() - update.trigger_received_ns) / NS_PER_S)
            if self.config.webhook:
                self._webhooks.submit(alerts.post_webhook, self.config.webhook, body.encode(), alerts.JSON_CONTENT_TYPE)

    def _publish_deadletter(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload)

