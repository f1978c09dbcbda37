"""Live revisions for watchers in the same process (the operator console): a thread-safe fan-out.

The service publishes each alert it sends; every subscriber's callback gets it, on the
publishing thread, so a callback must only hand the item on (``loop.call_soon_threadsafe``)
and never block.  A failing callback is logged and does not stop the others.

Example::

    live = Broadcast()
    unsubscribe = live.subscribe(print)
    live.publish({"incident": "pgh-1", "revision": 1})
    unsubscribe()
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Broadcast:
    """Items published from any thread, delivered to every current subscriber."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, Callable[[dict], None]] = {}
        self._next = 0

    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``callback(item)`` for each item published from now on; returns the unsubscribe function."""
        with self._lock:
            key = self._next
            self._next += 1
            self._subscribers[key] = callback
        return lambda: self._drop(key)

    def _drop(self, key: int) -> None:
        with self._lock:
            self._subscribers.pop(key, None)

    def publish(self, item: dict) -> None:
        with self._lock:
            callbacks = list(self._subscribers.values())
        for callback in callbacks:
            try:
                callback(item)
            except Exception:  # noqa: BLE001 - one broken watcher must not stop the alerts
                log.exception("live subscriber failed")

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)
