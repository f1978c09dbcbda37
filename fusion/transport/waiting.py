"""A connect's wait for the broker's answer that a stop ends at once.

A broker that accepts TCP and never answers, or a NATS client going round servers that are not
there, would hold a stopping server for the whole connect timeout; so each of the links' waits
(MQTT CONNACK and SUBACK, NATS's connect and setup) looks at the caller's stop between short slices.

Example::

    outcome = wait_ready(link.subscribed, cancel, time.monotonic() + timeout_s)
    if outcome is not READY: ...   # STOPPED (cancel was set) or TIMED_OUT
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Callable, Union

# A stop ends a wait within about this long.
CANCEL_POLL_S = 0.1
READY, STOPPED, TIMED_OUT = "ready", "stopped", "timed out"

# An event set when ready, a future done when ready, or a function waiting up to the seconds it
# is given and saying whether it is ready.
Readiness = Union[threading.Event, concurrent.futures.Future, Callable[[float], bool]]


def wait_ready(ready: Readiness, cancel: threading.Event | None, deadline: float) -> str:
    """Wait until ``ready``, ``cancel`` is set or ``time.monotonic()`` reaches ``deadline``, whichever
    comes first: READY, STOPPED or TIMED_OUT.  A stop is looked at before each slice of at most
    CANCEL_POLL_S (a slice is never empty: a function given 0 s may not block as asked)."""
    wait_s = _waiter(ready)
    while True:
        if cancel is not None and cancel.is_set():
            return STOPPED
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            return TIMED_OUT
        if wait_s(min(left_s, CANCEL_POLL_S)):
            return READY


def _waiter(ready: Readiness) -> Callable[[float], bool]:
    if isinstance(ready, threading.Event):
        return ready.wait
    if isinstance(ready, concurrent.futures.Future):
        return lambda timeout_s: bool(concurrent.futures.wait([ready], timeout=timeout_s).done)
    return ready
