"""What a link's I/O thread delivered, waiting for the worker: batches in, up to N messages out."""
from __future__ import annotations

import queue


class Inbox:
    """Batches of ``(received_ns, msg)`` put by the I/O thread, taken by the worker in pieces."""

    def __init__(self, max_batches: int = 0):
        self.queue: queue.Queue = queue.Queue(max_batches)
        self._leftover: list = []

    def put(self, batch: list) -> None:
        self.queue.put(batch)

    def take(self, max_items: int, timeout_s: float) -> list:
        """Up to ``max_items`` ``(received_ns, msg)``: waits ``timeout_s`` for the first, then takes what is there."""
        items = self._leftover
        if not items:
            try:
                items = self.queue.get(timeout=timeout_s)
            except queue.Empty:
                return []
        items = list(items)
        while len(items) < max_items:
            try:
                items += self.queue.get_nowait()
            except queue.Empty:
                break
        self._leftover = items[max_items:]
        return items[:max_items]
