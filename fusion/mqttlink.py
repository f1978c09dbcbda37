"""The fusion server's MQTT connection: a persistent MQTT v5 session, QoS 1, acknowledged by hand.

Messages are queued by the network thread with their wall-clock arrival time and
acknowledged (PUBACK) only when the caller says so, after it has committed them: the broker
keeps an unacknowledged message in the server's persistent session and delivers it again
after a crash, so nothing accepted is lost to a ``kill -9``.

Example::

    link = MqttLink("mqtt://127.0.0.1:1883", client_id="fusion-pgh", topics=["ew/v1/pgh/node/+/pulse"])
    link.start()
    received_ns, msg = link.queue.get()
    ...                     # commit it
    link.ack(msg)
"""
from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

DEFAULT_PORT, DEFAULT_TLS_PORT = 1883, 8883
KEEPALIVE_S = 30
# The broker keeps the session (subscriptions, unacknowledged messages) this long while we are away.
SESSION_EXPIRY_S = 7 * 24 * 3600
# As many unacknowledged messages in flight as MQTT v5 allows: acks come after a batch commit.
RECEIVE_MAXIMUM = 65535
CONNECT_TIMEOUT_S = 10.0
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 5.0
QOS_AT_LEAST_ONCE = 1


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> (host, port, tls)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker URL must be mqtt://host[:port] or mqtts://host[:port], not {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    except ValueError:
        raise ValueError(f"bad port in broker URL {url!r}") from None
    return parts.hostname, port, tls


class MqttLink:
    """One MQTT v5 client with a persistent session and manual acknowledgements.

    Parameters
    ----------
    url : str
        ``mqtt://host:port`` (``mqtts://`` for TLS).
    client_id : str
        Stable id: the broker finds the session (and the messages queued for it) by it.
    topics : list of str
        Topic filters to subscribe to at QoS 1 (``$share/group/...`` for shared subscriptions).
    tls : dict, optional
        ``ca``, ``cert``, ``key`` file paths for TLS with a client certificate.
    """

    def __init__(self, url: str, client_id: str, topics: list[str], tls: dict | None = None):
        self.host, self.port, use_tls = parse_mqtt_url(url)
        self.topics = list(topics)
        self.queue: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if use_tls or tls:
            tls = tls or {}
            self.client.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"),
                                cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect (resuming the session) and start the network thread; OSError if the broker is unreachable."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect(self.host, self.port, KEEPALIVE_S, clean_start=False, properties=props)
        self.client.loop_start()
        # Subscribed (SUBACK), not just connected: a caller may start publishing right after.
        if not (self.connected.wait(timeout_s) and self.subscribed.wait(timeout_s)):
            self.stop()
            raise ConnectionError(f"no CONNACK/SUBACK from the broker at {self.host}:{self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        """Acknowledge a QoS 1 message: the broker may forget it now."""
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = QOS_AT_LEAST_ONCE, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        # Subscribing again on a resumed session is harmless and covers a session the broker lost.
        client.subscribe([(t, SubscribeOptions(qos=QOS_AT_LEAST_ONCE)) for t in self.topics])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if reason_code != 0:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        self.queue.put((time.time_ns(), msg))


def drain(q: queue.Queue, max_items: int, timeout_s: float) -> list:
    """Up to ``max_items`` from ``q``: waits ``timeout_s`` for the first, then takes what is there."""
    try:
        items = [q.get(timeout=timeout_s)]
    except queue.Empty:
        return []
    while len(items) < max_items:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            break
    return items
