"""fusion.transport.waiting: a connect's wait ends when its answer comes, when the caller stops, or
at its deadline, for each kind of readiness the links wait on (an event, a future, a socket read).
The links' own waits, on the real process: tests/test_fusion_broker_wait.py."""
from __future__ import annotations

import concurrent.futures
import socket
import threading
import time

import pytest

from fusion.transport.waiting import READY, STOPPED, TIMED_OUT, wait_ready

LATER_S = 0.3     # the answer or the stop comes this long after the wait began
DEADLINE_S = 60.0  # far beyond LATER_S: an outcome other than TIMED_OUT did not wait for it


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while OPEN:
        OPEN.pop().close()


OPEN: list[socket.socket] = []


def _event():
    event = threading.Event()
    return event, event.set


def _future():
    future: concurrent.futures.Future = concurrent.futures.Future()
    return future, lambda: future.set_result(None)


def _socket_read():
    """A function reading a real loopback socket in slices, and the peer's send that answers it."""
    ours, peer = socket.socketpair()
    OPEN.extend((ours, peer))
    got = []

    def read(timeout_s: float) -> bool:
        ours.settimeout(timeout_s)
        try:
            got.append(ours.recv(16))
        except socket.timeout:
            return False
        return True

    return read, lambda: peer.send(b"CONNACK")


KINDS = {"event": _event, "future": _future, "socket read": _socket_read}


@pytest.mark.parametrize("kind", KINDS)
def test_the_answer_ends_the_wait(kind):
    ready, answer = KINDS[kind]()
    threading.Timer(LATER_S, answer).start()
    assert wait_ready(ready, threading.Event(), time.monotonic() + DEADLINE_S) == READY


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_ends_the_wait_long_before_its_deadline(kind):
    ready, _ = KINDS[kind]()
    cancel = threading.Event()
    threading.Timer(LATER_S, cancel.set).start()
    assert wait_ready(ready, cancel, time.monotonic() + DEADLINE_S) == STOPPED


@pytest.mark.parametrize("kind", KINDS)
def test_no_answer_and_no_stop_ends_at_the_deadline(kind):
    ready, _ = KINDS[kind]()
    deadline = time.monotonic() + LATER_S
    assert wait_ready(ready, None, deadline) == TIMED_OUT
    assert time.monotonic() >= deadline
