"""A test subscriber to a real broker: collects what a node publishes, through restarts.

Persistent session (MQTT v5, clean_start False, session expiry) with QoS 1, so that the
broker keeps messages for it while it is reconnecting, as the fusion server does.
"""
from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY_S = 600
POLL_S = 0.05


class Sink:
    def __init__(self, broker, topic: str = "ew/v1/#", client_id: str = "test-sink"):
        self.topic = topic
        self.messages: list[tuple[str, bytes, bool]] = []  # topic, payload, retained
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(1, 1)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(self.topic, qos=1)
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        c.connect_async(broker.host, broker.port, clean_start=False, properties=props)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            raise RuntimeError("test sink could not subscribe")

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(POLL_S)
        return predicate()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
