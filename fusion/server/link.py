"""What the server needs of a message transport, so the server does not depend on one.

:class:`fusion.transport.mqttlink.MqttLink` is the implementation for MQTT; the transport
layer hands the service a :data:`LinkFactory` that opens one.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable, Protocol


class Message(Protocol):
    """A message delivered by the transport; acknowledged once handled."""

    topic: str
    payload: bytes


class Delivery(Protocol):
    """A publish on its way: ``wait`` says whether the broker has confirmed it (QoS 1 PUBACK)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Whether it was delivered, waiting at most ``timeout`` seconds."""


class Link(Protocol):
    """A connection that delivers the subscribed messages and publishes ours, QoS 1."""

    def start(self, timeout_s: float = ..., cancel: threading.Event | None = None) -> None:
        """Connect and subscribe; raises OSError when the broker cannot be reached (within ``timeout_s``,
        each link has its default), and soon after ``cancel`` is set (the caller is stopping) if that
        happens while it tries."""

    def stop(self) -> None:
        """Disconnect once what was published is delivered (or a timeout passes)."""

    def take(self, max_items: int, timeout_s: float) -> list[tuple[int, Message]]:
        """Up to ``max_items`` delivered messages with their receive times (ns), waiting at most ``timeout_s``."""

    def ack(self, msgs: Iterable[Message]) -> None:
        """Tell the broker these messages are handled (committed or dead-lettered)."""

    def publish(self, topic: str, payload: bytes) -> Delivery:
        """Publish at QoS 1; returns a handle whose ``wait(timeout_s)`` says it was delivered."""


# (client_id, subscribed topics) -> a Link, not yet started
LinkFactory = Callable[[str, "list[str]"], Link]
