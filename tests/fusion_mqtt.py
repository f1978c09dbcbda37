"""MQTT helpers for the fusion tests: a stand-in node publisher and a collecting subscriber."""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

WAIT_S = 30.0


def client(broker, client_id: str = "") -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def publish_all(broker, items: list[tuple[str, bytes]], client_id: str = "stand-in-nodes",
                chunk: int = 0, pause_s: float = 0.0) -> None:
    """Publish (topic, payload) at QoS 1 and wait until the broker acknowledged every one.

    With ``chunk``, ``pause_s`` goes by after every ``chunk`` messages: a stream, not a burst.
    """
    c = client(broker, client_id)
    infos = []
    for k, (topic, payload) in enumerate(items, 1):
        infos.append(c.publish(topic, payload, qos=1))
        if chunk and k % chunk == 0:
            time.sleep(pause_s)
    for info in infos:
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
    c.disconnect()
    c.loop_stop()


class Collector:
    """Subscribes to topic filters and keeps every message (topic, payload)."""

    def __init__(self, broker, *topics: str):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.c.subscribe([(t, 1) for t in topics])
        assert self._subscribed.wait(WAIT_S)

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def json(self, topic: str) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t == topic]

    def wait_for(self, predicate, timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
