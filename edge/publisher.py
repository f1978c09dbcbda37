"""MQTT publisher: drains the durable outbox to the broker, QoS 1, and speaks for the node.

Topics (DESIGN.md): ``ew/v1/{site}/node/{node}/pulse`` (signed binary, QoS 1),
``.../status`` (retained ``online``; last will ``offline``), ``.../health`` (JSON),
``.../cmd`` (subscribed), ``.../clip`` (JSON answers to clip commands).

``[mqtt] url`` may name several brokers (the servers of a cluster, comma separated): when the
connection drops or cannot be made, the next one is tried, round the list.  MQTT v5 by default;
``protocol = "3.1.1"`` for a NATS cluster's MQTT gateway, which speaks only that (a persistent
session there is ``clean_session = false``).

paho-mqtt's own queue lives in memory, so pulses are handed to it from the outbox at most
``inflight`` at a time and deleted from the outbox only in ``on_publish``, i.e. on the
broker's PUBACK.  paho re-sends those in flight after a reconnect; after a restart of the
node the outbox sends again everything it still holds.  A PUBACK that is lost on the way
makes the broker see a pulse twice: receivers de-duplicate by (node, seq).

Everything here runs on paho's network thread and one sender thread; callers only
``notify()`` after appending, which never waits on the network.
"""
from __future__ import annotations

import collections
import json
import logging
import queue
import ssl
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from earwitness import topics
from edge.config import MqttSection
from edge.outbox import Outbox

log = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE = 1
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
# The broker keeps the node's session (its command subscription and commands sent while
# the node was away) this long after a disconnect.
SESSION_EXPIRY_S = 3600
# How long a pulse the broker refused (PUBACK reason >= 0x80) waits before it is re-sent.
REFUSED_RETRY_S = 30.0
# The sender wakes at least this often to look for acknowledgements and due retries.
SENDER_POLL_S = 0.5


class Topics:
    """The MQTT topics of node ``node`` at ``site``."""

    def __init__(self, site: str, node: str):
        self.pulse = topics.pulse(site, node)
        self.status = topics.status(site, node)
        self.health = topics.health(site, node)
        self.cmd = topics.command(site, node)
        self.clip = topics.clip(site, node)


class Publisher:
    """Publishes the outbox's pulses, the node's status, health and clip answers.

    Parameters
    ----------
    mqtt_cfg : edge.config.MqttSection
        Broker url, credentials, TLS files, timings.
    site, node : str
        Names used in the topics and the client id.
    outbox : edge.outbox.Outbox
        Where the pulses wait; the publisher deletes them on PUBACK.
    on_command : callable(dict), optional
        Called on paho's network thread with each JSON object received on the cmd topic;
        it should only queue the work.
    """

    def __init__(self, mqtt_cfg: MqttSection, site: str, node: str, outbox: Outbox,
                 on_command: Callable[[dict], None] | None = None):
        self.cfg = mqtt_cfg
        self.topics = Topics(site, node)
        self.outbox = outbox
        self.on_command = on_command
        self.published = 0  # pulses acknowledged by the broker since start
        self.refused = 0  # PUBACKs with a failure reason code
        self.bad_commands = 0
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._inflight_seqs: set[int] = set()
        self._retry: collections.deque[tuple[float, int]] = collections.deque()
        self._cursor = 0  # highest seq handed to paho
        self._broker = 0  # which of the configured brokers the client connects to
        self._sender: threading.Thread | None = None
        self.client = self._make_client(f"ew-{site}-{node}")

    def _make_client(self, client_id: str) -> mqtt.Client:
        if self.cfg.protocol == "3.1.1":
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                            clean_session=False)
        else:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(self.cfg.inflight)
        c.reconnect_delay_set(min_delay=max(1, round(self.cfg.reconnect_min_s)),
                              max_delay=max(1, round(self.cfg.reconnect_max_s)))
        c.will_set(self.topics.status, STATUS_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        if self.cfg.username is not None:
            c.username_pw_set(self.cfg.username, self.cfg.password)
        if self.cfg.tls:
            # edge.config.load read each file (an unreadable one is named there, with its setting)
            c.tls_set(ca_certs=str(self.cfg.ca) if self.cfg.ca else None,
                      certfile=str(self.cfg.cert) if self.cfg.cert else None,
                      keyfile=str(self.cfg.cert_key) if self.cfg.cert_key else None,
                      cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Publisher":
        """Connect in the background (never blocks on the network) and start sending."""
        host, port = self.cfg.brokers[0]
        if self.cfg.protocol == "3.1.1":
            self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="ew-publisher", daemon=True)
        self._sender.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say ``offline`` (retained), disconnect cleanly and stop the threads."""
        self._stop.set()
        self._wake.set()
        if self._sender:
            self._sender.join(timeout_s)
        if self.client.is_connected():
            info = self.client.publish(self.topics.status, STATUS_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass  # the connection went meanwhile: the broker publishes the will instead
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def notify(self) -> None:
        """A pulse was appended to the outbox: send it when the window allows."""
        self._wake.set()

    def inflight(self) -> int:
        return len(self._inflight)

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        log.info("connected to %s:%s", client.host, client.port)
        client.publish(self.topics.status, STATUS_ONLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.subscribe(self.topics.cmd, qos=QOS_AT_LEAST_ONCE)
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); pulses wait in the outbox", reason_code)
            self._next_broker(client)

    def _on_connect_fail(self, client, userdata):
        # paho tries again after reconnect_min_s, doubling up to reconnect_max_s
        if not self._stop.is_set():
            log.warning("cannot reach the broker at %s:%s; trying again, pulses wait in the outbox",
                        client.host, client.port)
        self._next_broker(client)

    def _next_broker(self, client: mqtt.Client) -> None:
        """Connect to the next configured broker from now on (one broker: the same again)."""
        brokers = self.cfg.brokers
        if len(brokers) < 2 or self._stop.is_set():
            return
        self._broker = (self._broker + 1) % len(brokers)
        # paho's host/port setters refuse while the state is "connection lost", which is when
        # its loop reconnects: so its attributes are set (paho 2.x keeps them there; pinned <3).
        client._host, client._port = brokers[self._broker]
        log.info("next broker: %s:%s", *brokers[self._broker])

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.put((mid, reason_code.is_failure if reason_code is not None else False))
        self._wake.set()

    def _on_message(self, client, userdata, msg):
        if msg.topic != self.topics.cmd or self.on_command is None:
            return
        try:
            command = json.loads(msg.payload)
            if not isinstance(command, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.bad_commands += 1
            log.warning("ignored a malformed command: %s", exc)
            return
        self.on_command(command)

    # -- sender thread ---------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SENDER_POLL_S)
            self._wake.clear()
            try:
                self._take_acks()
                self._send_due_retries()
                self._fill_window()
            except Exception:  # keep sending whatever one bad pass did; the outbox holds the data
                log.exception("publisher pass failed")
                time.sleep(SENDER_POLL_S)

    def _take_acks(self) -> None:
        while True:
            try:
                mid, failed = self._acks.get_nowait()
            except queue.Empty:
                return
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # status, health or clip
            self._inflight_seqs.discard(seq)
            if failed:
                self.refused += 1
                self._retry.append((time.monotonic() + REFUSED_RETRY_S, seq))
            else:
                self.outbox.ack(seq)
                self.published += 1

    def _send_due_retries(self) -> None:
        now = time.monotonic()
        due = []
        while self._retry and self._retry[0][0] <= now:
            due.append(self._retry.popleft()[1])
        if due:
            wanted = set(due)
            for seq, payload in self.outbox.pending(after_seq=min(due) - 1, limit=max(due) - min(due) + 1):
                if seq in wanted:
                    self._publish_pulse(seq, payload)

    def _fill_window(self) -> None:
        room = self.cfg.inflight - len(self._inflight)
        if room <= 0:
            return
        for seq, payload in self.outbox.pending(after_seq=self._cursor, limit=room):
            self._publish_pulse(seq, payload)
            self._cursor = seq

    def _publish_pulse(self, seq: int, payload: bytes) -> None:
        if seq in self._inflight_seqs:
            return
        info = self.client.publish(self.topics.pulse, payload, qos=QOS_AT_LEAST_ONCE)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._retry.append((time.monotonic() + SENDER_POLL_S, seq))
            return
        # Queued by paho even when disconnected (rc NO_CONN): it goes out on reconnect.
        self._inflight[info.mid] = seq
        self._inflight_seqs.add(seq)

    # -- status, health, clips -----------------------------------------------------------------

    def publish_json(self, topic: str, obj: dict, qos: int = 0) -> bool:
        """Publish ``obj`` as JSON if connected; False (dropped) otherwise.

        Only pulses are worth keeping through an outage: health is superseded by the next
        report, and a clip can be asked for again.  Dropping keeps memory bounded.
        """
        if not self.client.is_connected():
            return False
        self.client.publish(topic, json.dumps(obj, separators=(",", ":")), qos=qos)
        return True
