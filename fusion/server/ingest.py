"""Ingest: verify pulse messages, de-duplicate, store, and send every rejection to the dead letter.

A pulse message arrives on ``ew/v1/{site}/node/{node}/pulse``.  It is accepted when the topic
is well formed, the payload decodes (:func:`earwitness.wire.decode`: length, version, fields, a
node in the registry, the topic's node, the Ed25519 signature) and its (node, sequence) is
new (the sequence is the message's stream sequence, epoch and seq: a re-flashed node numbers
from 1 again in a new epoch, which is logged as a warning and accepted).  Accepted pulses are
committed to the store in one transaction per batch *before* the caller acknowledges them to
the broker.  Anything else is published to
``ew/v1/{site}/deadletter`` as JSON with its reason and counted; nothing a node (or an
attacker) sends can stop the server.

A QoS 1 message redelivered after a crash of the server (MQTT DUP flag set) whose bytes
match the stored ones is already accepted: it is acknowledged quietly, not dead-lettered.

Example::

    ingest = PulseIngest(site="pgh", registry=registry, store=store, publish=link.publish)
    accepted = ingest.process([(received_ns, msg), ...])   # stored pulse dicts
    link.ack([msg for _, msg in batch])
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
from typing import Callable

from earwitness import topics, wire
from fusion.server.registry import Registry
from fusion.server.store import PulseRecord, Store, sha256_hex

log = logging.getLogger(__name__)

# Dead-letter records carry at most this much of a rejected payload (hex), for diagnosis.
DEADLETTER_PAYLOAD_BYTES = 256
REASON_TOPIC = "topic"
REASON_REPLAY = "replay"
REASON_HEALTH = "health"
# Ed25519 verification (libsodium through cffi) releases the GIL: batches are split among threads.
VERIFY_THREADS = 2


@dataclasses.dataclass
class Rejection:
    reason: str
    detail: str
    topic: str
    received_ns: int
    payload: bytes


def pulse_dict(name: str, msg: wire.PulseMessage) -> dict:
    """A decoded message as a pulse of the Pulses JSONL contract."""
    pulse = {"sensor": name, "t_ns": msg.t_ns, "t_unc_ns": msg.t_unc_ns, "timing": msg.timing}
    features = dict(msg.features)
    for top in ("snr_db", "peak_dbfs"):
        if top in features:
            pulse[top] = features.pop(top)
    if features:
        pulse["features"] = features
    return pulse


class PulseIngest:
    """Verification, de-duplication, storage and dead-lettering of one site's pulse messages.

    Parameters
    ----------
    site : str
        The site name in the topics.
    registry : fusion.server.registry.Registry
        Known nodes and their keys.
    store : fusion.server.store.Store
        Where accepted pulses are committed.
    publish : callable(topic, payload)
        Sends a dead-letter record (the MQTT link's publish, QoS 1).
    """

    def __init__(self, site: str, registry: Registry, store: Store, publish: Callable[[str, bytes], object]):
        self.site = site
        self.registry = registry
        self.store = store
        self.publish = publish
        self.deadletter_topic = topics.deadletter(site)
        self.accepted = 0
        self.redelivered = 0
        self.rejected: collections.Counter = collections.Counter()
        self.epochs: dict[str, int] = {}   # the last epoch accepted per node, this run
        self._verifiers = concurrent.futures.ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="verify")

    def close(self) -> None:
        self._verifiers.shutdown(wait=True)

    def process(self, batch: list[tuple[int, object]]) -> list[dict]:
        """Handle a batch of ``(received_ns, message)`` (message: ``.topic``, ``.payload``, ``.dup``).

        Returns the newly stored pulses (contract pulse plus ``id``, ``node``, ``seq``,
        ``received_ns``), committed when this returns.
        """
        records, sources, rejections = [], [], []
        chunk = max(1, -(-len(batch) // VERIFY_THREADS))
        parts = [batch[i:i + chunk] for i in range(0, len(batch), chunk)]
        for part in self._verifiers.map(self._verify, parts) if len(parts) > 1 else map(self._verify, parts):
            for item in part:
                if isinstance(item, Rejection):
                    rejections.append(item)
                else:
                    records.append(item[0])
                    sources.append(item[1])
        ids = self.store.add_pulses(records)
        accepted = []
        for record, msg, row_id in zip(records, sources, ids):
            if row_id is not None:
                accepted.append(dict(record.pulse, id=row_id, node=record.node, seq=record.seq,
                                     received_ns=record.received_ns))
            elif getattr(msg, "dup", False) and self.store.pulse_sha256(record.node, record.seq) == sha256_hex(record.raw):
                self.redelivered += 1
            else:
                epoch, seq = divmod(record.seq, wire.SEQ_SPAN)
                rejections.append(Rejection(REASON_REPLAY, f"node {record.node} epoch {epoch} seq {seq} already received",
                                            msg.topic, record.received_ns, record.raw))
        self.accepted += len(accepted)
        for pulse in accepted:
            self._note_epoch(pulse["node"], pulse["seq"])
        for rejection in rejections:
            self.dead_letter(rejection)
        return accepted

    def _note_epoch(self, node: str, stream_seq: int) -> None:
        """Warn when a node starts a new sequence epoch (a re-flash, a new data folder, a new key)."""
        epoch, seq = divmod(stream_seq, wire.SEQ_SPAN)
        before = self.epochs.get(node)
        self.epochs[node] = epoch
        if epoch and (seq == 1 or (before is not None and before != epoch)):
            log.warning("node %s started a new sequence: epoch %d (%s) seq %d, after epoch %s; a re-flashed node "
                        "or a new data folder: its pulses are accepted", node, epoch, wire.epoch_utc(epoch), seq,
                        "unknown this run" if before is None else before)

    def _verify(self, batch: list[tuple[int, object]]) -> list:
        """Decode and verify messages: per message a (PulseRecord, message) or a Rejection."""
        out = []
        for received_ns, msg in batch:
            payload = bytes(msg.payload)
            name = topics.node_of(msg.topic, self.site, "pulse")
            if name is None:
                out.append(Rejection(REASON_TOPIC, "not ew/v1/{site}/node/{node}/pulse", msg.topic, received_ns, payload))
                continue
            try:
                decoded = wire.decode(payload, self.registry.keyring, topic_node=name)
            except wire.WireError as exc:
                out.append(Rejection(exc.reason, exc.detail, msg.topic, received_ns, payload))
                continue
            out.append((PulseRecord(name, decoded.stream_seq, pulse_dict(name, decoded), payload, received_ns), msg))
        return out

    def dead_letter(self, rejection: Rejection) -> None:
        """Count a rejection and publish it on the dead-letter topic."""
        self.rejected[rejection.reason] += 1
        record = {"reason": rejection.reason, "detail": rejection.detail, "topic": rejection.topic,
                  "received_ns": rejection.received_ns, "size": len(rejection.payload),
                  "payload_hex": rejection.payload[:DEADLETTER_PAYLOAD_BYTES].hex()}
        log.info("dead letter: %s (%s) on %s", rejection.reason, rejection.detail, rejection.topic)
        self.publish(self.deadletter_topic, json.dumps(record, sort_keys=True).encode())

    def health(self, received_ns: int, msg) -> tuple[str, dict] | None:
        """Store a node's health report (JSON object on ``.../node/{node}/health``); dead-letter it if
        malformed.  Returns (node, report) once stored, None if dead-lettered."""
        payload = bytes(msg.payload)
        name = topics.node_of(msg.topic, self.site, "health")
        try:
            body = json.loads(payload)
            if name is None or name not in self.registry.positions or not isinstance(body, dict):
                raise ValueError("not a JSON object from a registered node")
        except ValueError as exc:
            self.dead_letter(Rejection(REASON_HEALTH, str(exc), msg.topic, received_ns, payload))
            return None
        t_ns = body.get("t_ns")
        self.store.record_health(name, t_ns if isinstance(t_ns, int) else received_ns, body)
        return name, body
