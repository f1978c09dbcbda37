"""The fusion server's MQTT connection: a persistent MQTT v5 session, QoS 1, acknowledged by hand.

Messages are taken in batches with their wall-clock arrival time and acknowledged (PUBACK)
only when the caller says so, after it has committed them: the broker keeps an
unacknowledged message in the server's persistent session and delivers it again after a
crash, so nothing accepted is lost to a ``kill -9``.  Publishes and acknowledgements leave
on the one connection in the order they were asked for, so a dead letter or a forwarded
pulse published before the message's PUBACK reaches the broker first.

The library is slow for us: the server must acknowledge after its commit, from its own
thread, and paho-mqtt has no batch acknowledgement: each ack is a packet queued and a
wake-up of paho's network thread.  So used, paho received and acknowledged 5,000-13,000
messages/s on this machine (``make bench`` prints it beside this link's figure), the whole
budget of a worker that must ingest 5,000 pulses/s.  This client does only what the server
needs (:mod:`fusion.transport.mqttwire`: CONNECT with a persistent session, SUBSCRIBE, PUBLISH both
ways at QoS 0/1, PUBACK, PINGREQ), parses a whole received chunk per call and sends a
batch's acknowledgements in one write (about 150,000 messages/s).  One I/O thread owns the
socket (TLS objects must not be read and written from two threads); callers queue bytes for it.

Example::

    link = MqttLink("mqtt://127.0.0.1:1883", client_id="fusion-pgh", topics=["ew/v1/pgh/node/+/pulse"])
    link.start()
    batch = link.take(2000, timeout_s=0.05)     # [(received_ns, msg), ...]
    ...                                          # commit them
    link.ack([msg for _, msg in batch])
"""
from __future__ import annotations

import collections
import logging
import select
import socket
import ssl
import threading
import time
from typing import Iterable

from earwitness.brokerurls import MQTT_SCHEMES, split_broker_url
from fusion.transport import mqttwire
from fusion.transport.inbox import Inbox
from fusion.transport.mqttwire import Publish
from fusion.transport.waiting import READY, STOPPED, wait_ready

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
# The broker keeps the session (subscriptions, unacknowledged messages) this long while we are away.
SESSION_EXPIRY_S = 7 * 24 * 3600
# As many unacknowledged messages in flight as MQTT v5 allows: acks come after a batch commit.
RECEIVE_MAXIMUM = mqttwire.PACKET_ID_MAX
CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 5.0
QOS_AT_LEAST_ONCE = 1
RECV_BYTES = 1 << 18
SUBSCRIBE_PACKET_ID = 1
# A broker that has sent nothing (not even PINGRESP) for this many keepalives is gone.
SILENT_KEEPALIVES = 1.5
# Another client with our client id takes the session over (a second server on the same
# configuration): each takeover within the window doubles the wait before we take it back,
# so that two servers do not knock each other off the broker many times a second.
TAKEOVER_BACKOFF_S, TAKEOVER_BACKOFF_MAX_S = 2.0, 300.0
TAKEOVER_WINDOW_S = 3600.0
FLAP_S, FLAP_LIMIT = 10.0, 3
# After DISCONNECT, how long to wait for the broker to close its side at the latest.
CLOSE_DRAIN_MIN_S = 1.0


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> (host, port, tls); ValueError if malformed."""
    host, port, scheme = split_broker_url(url, MQTT_SCHEMES, "broker URL")
    return host, port, scheme == "mqtts"


class SessionTakenOver(ConnectionError):
    """The broker dropped us because another client connected with our client id (MQTT 5 reason 0x8E)."""


class Takeovers:
    """Notices that another client keeps taking our session, and says how long to stay away.

    MQTT 5 brokers may say so (DISCONNECT 0x8E); mosquitto just closes the older connection.
    So a takeover is also inferred: the broker closed our connection FLAP_LIMIT times in a
    row, each within FLAP_S of connecting, while connecting again succeeded at once (a broker
    that restarts refuses connections for a while instead).
    """

    def __init__(self, client_id: str):
        self.client_id = client_id
        self.count = 0
        self._flaps = 0
        self._recent: collections.deque = collections.deque()

    def closed(self, lived_s: float, why: object) -> float:
        """The broker closed a connection that had lived ``lived_s``; the wait (s) before reconnecting."""
        if lived_s >= FLAP_S:
            self._flaps = 0
        self._flaps += 1
        if self._flaps >= FLAP_LIMIT:
            self._flaps = 0
            return self.taken_over(f"the broker closed it {FLAP_LIMIT} times in a row, each within {FLAP_S:.0f} s "
                                   "of connecting")
        if self._flaps == 1:   # one line per series, not one per flap
            log.warning("the broker closed the connection (%s); reconnecting", why or "end of stream")
        return 0.0

    def taken_over(self, why: object) -> float:
        """Record one takeover, log it in one line, return the wait (s) before reconnecting."""
        now = time.monotonic()
        self.count += 1
        self._recent.append(now)
        while self._recent[0] < now - TAKEOVER_WINDOW_S:
            self._recent.popleft()
        n = len(self._recent)
        wait_s = min(TAKEOVER_BACKOFF_MAX_S, TAKEOVER_BACKOFF_S * 2 ** (n - 1))
        log.error("MQTT session %r taken over (%s), %d time(s) in the last hour: is a second server running "
                  "with the same client id? backing off %.1f s", self.client_id, why, n, wait_s)
        return wait_s


class Delivery(threading.Event):
    """Set when a publish is done: QoS 1 acknowledged by the broker, QoS 0 written."""


class _Outgoing:
    __slots__ = ("topic", "payload", "qos", "retain", "delivery")

    def __init__(self, topic, payload, qos, retain, delivery):
        self.topic, self.payload, self.qos, self.retain, self.delivery = topic, payload, qos, retain, delivery


class MqttLink:
    """One MQTT v5 client with a persistent session and manual acknowledgements.

    Parameters
    ----------
    url : str
        ``mqtt://host:port`` (``mqtts://`` for TLS).
    client_id : str
        Stable id: the broker finds the session (and the messages queued for it) by it.
    topics : list of str
        Topic filters to subscribe to at QoS 1 (``$share/group/...`` for shared subscriptions);
        none for a link that only publishes.
    tls : dict, optional
        ``ca``, ``cert``, ``key`` file paths for TLS with a client certificate.
    """

    def __init__(self, url: str, client_id: str, topics: list[str], tls: dict | None = None):
        self.host, self.port, use_tls = parse_mqtt_url(url)
        self.client_id = client_id
        self.topics = list(topics)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._ssl = None
        if use_tls or tls:
            tls = tls or {}
            self._ssl = ssl.create_default_context(cafile=tls.get("ca"))
            if tls.get("cert"):
                self._ssl.load_cert_chain(tls["cert"], tls.get("key"))
        self._inbox = Inbox()   # lists of (received_ns, Publish), one per received chunk
        self._lock = threading.Lock()              # guards _out, _generation
        self._out: collections.deque = collections.deque()   # bytes (acks) and _Outgoing, in order
        self._inflight: dict[int, tuple[bytes, Delivery]] = {}   # our QoS 1 publishes not yet acknowledged
        self._next_mid = 0
        self._send_quota = mqttwire.PACKET_ID_MAX  # the broker's Receive Maximum (CONNACK)
        self._generation = 0                       # which TCP connection: acks go only to the one that delivered
        self.takeovers = Takeovers(client_id)
        self._closing = threading.Event()
        self._close_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._woken = False

    # -- the caller's side ------------------------------------------------------------------------
    def start(self, timeout_s: float = CONNECT_TIMEOUT_S, cancel: threading.Event | None = None) -> None:
        """Connect (resuming the session) and start the I/O thread; OSError if the broker is unreachable
        (or ``cancel`` is set before it answers: the caller is stopping)."""
        sock = self._connect(timeout_s, cancel)
        self._thread = threading.Thread(target=self._run, args=(sock,), name="mqtt-io", daemon=True)
        self._thread.start()
        # Subscribed (SUBACK), not just connected: a caller may start publishing right after.
        outcome = wait_ready(self.subscribed, cancel, time.monotonic() + timeout_s)
        if outcome is READY:
            return
        self.stop()
        if outcome is STOPPED:
            raise ConnectionError(f"stopped while subscribing at the broker at {self.host}:{self.port}")
        raise ConnectionError(f"no SUBACK from the broker at {self.host}:{self.port} within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Send what is queued, wait (up to ``timeout_s``) for our QoS 1 publishes' acks, disconnect."""
        self._close_deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._wake()
        if self._thread:
            self._thread.join(timeout_s + CONNECT_TIMEOUT_S)
        self._wake_r.close()
        self._wake_w.close()

    def take(self, max_items: int, timeout_s: float) -> list:
        """Up to ``max_items`` ``(received_ns, msg)``: waits ``timeout_s`` for the first, then takes what is there."""
        return self._inbox.take(max_items, timeout_s)

    def ack(self, msgs: Iterable[Publish]) -> None:
        """Acknowledge QoS 1 messages (one write): the broker may forget them now.

        A message that came on an earlier connection is not acknowledged: the broker sends
        it again on this one, and its packet id may by now name another message.
        """
        with self._lock:
            data = b"".join([mqttwire.encode_puback(m.mid) for m in msgs if m.qos and m.generation == self._generation])
            if data:
                self._out.append(data)
        if data:
            self._wake()

    def publish(self, topic: str, payload: bytes | str, qos: int = QOS_AT_LEAST_ONCE, retain: bool = False) -> Delivery:
        delivery = Delivery()
        item = _Outgoing(topic, payload.encode() if isinstance(payload, str) else bytes(payload), qos, retain, delivery)
        with self._lock:
            self._out.append(item)
        self._wake()
        return delivery

    def _wake(self) -> None:
        if self._woken:   # the I/O thread clears this before it looks at the queue
            return
        self._woken = True
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):   # already woken (buffer full) or closed
            pass

    # -- the I/O thread -------------------------------------------------------------------------
    def _connect(self, timeout_s: float = CONNECT_TIMEOUT_S, cancel: threading.Event | None = None):
        """Open a connection, resume the session and subscribe; returns (socket, reader).  ConnectionError
        soon after ``cancel`` is set while waiting for the broker's CONNACK."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(mqttwire.encode_connect(self.client_id, KEEPALIVE_S, clean_start=False,
                                                 session_expiry_s=SESSION_EXPIRY_S, receive_maximum=RECEIVE_MAXIMUM))
            reader = mqttwire.PacketReader()
            packets: list = []
            deadline = time.monotonic() + timeout_s
            while not packets:
                chunk = self._recv_before(sock, deadline, cancel)
                if not chunk:
                    raise ConnectionError(f"the broker at {self.host}:{self.port} closed the connection before CONNACK")
                packets = reader.feed(chunk)
            connack = packets.pop(0)
            if not isinstance(connack, mqttwire.Ack) or connack.kind != mqttwire.CONNACK:
                raise mqttwire.ProtocolError("the broker's first packet is not CONNACK")
            if connack.failed:
                raise ConnectionRefusedError(f"the broker at {self.host}:{self.port} refused the connection "
                                             f"(reason 0x{connack.reasons[0]:02x})")
            with self._lock:
                self._generation += 1
                self._send_quota = connack.props.get(mqttwire.PROP_RECEIVE_MAXIMUM, mqttwire.PACKET_ID_MAX)
                # Acks meant for the last connection are void; our unacknowledged publishes go again.
                self._out = collections.deque(i for i in self._out if not isinstance(i, bytes))
                resend = [bytes([packet[0] | mqttwire.DUP_FLAG]) + packet[1:] for packet, _ in self._inflight.values()]
            first = b"".join(resend)
            if self.topics:
                first = mqttwire.encode_subscribe(SUBSCRIBE_PACKET_ID, [(t, QOS_AT_LEAST_ONCE) for t in self.topics]) + first
            else:
                self.subscribed.set()
            if first:
                sock.sendall(first)
            sock.settimeout(KEEPALIVE_S)
            self._dispatch(packets, time.time_ns())
        except BaseException:
            sock.close()
            raise
        self.connected.set()
        return sock, reader

    def _recv_before(self, sock, deadline: float, cancel: threading.Event | None) -> bytes:
        """``sock.recv`` waiting at most until ``deadline`` (socket.timeout), in slices so that a
        stop (``cancel``) ends the wait."""
        chunks: list[bytes] = []

        def recv(timeout_s: float) -> bool:
            sock.settimeout(timeout_s)
            try:
                chunks.append(sock.recv(RECV_BYTES))
            except socket.timeout:
                return False
            return True

        outcome = wait_ready(recv, cancel, deadline)
        if outcome is STOPPED:
            raise ConnectionError(f"stopped while waiting for CONNACK from the broker at {self.host}:{self.port}")
        if outcome is not READY:
            raise socket.timeout(f"no CONNACK from the broker at {self.host}:{self.port}")
        return chunks[0]

    def _run(self, connection) -> None:
        try:
            self._loop(connection)
        finally:   # however the thread ends, the link no longer says it is connected
            self.connected.clear()

    def _loop(self, connection) -> None:
        backoff_s = RECONNECT_MIN_S
        while True:
            if connection is None:
                if self._closing.is_set():
                    return
                try:
                    connection = self._connect(cancel=self._closing)
                    backoff_s = RECONNECT_MIN_S
                except Exception as exc:  # noqa: BLE001 - OSError (ProtocolError, refused) or a bug: try again later
                    if self._closing.is_set():   # stopped while connecting
                        return
                    log.warning("cannot reach the broker at %s:%d (%s); retrying in %.1f s", self.host, self.port, exc, backoff_s)
                    self._closing.wait(backoff_s)
                    backoff_s = min(2 * backoff_s, RECONNECT_MAX_S)
                    continue
            sock, reader = connection
            wait_s, since = 0.0, time.monotonic()
            try:
                if self._serve(sock, reader):
                    sock.close()
                    return
                wait_s = self.takeovers.closed(time.monotonic() - since, None)
            except SessionTakenOver as exc:
                wait_s = self.takeovers.taken_over(exc)
            except ConnectionResetError as exc:
                wait_s = self.takeovers.closed(time.monotonic() - since, exc)
            except OSError as exc:
                log.warning("connection to the broker lost (%s); reconnecting", exc)
            except Exception:  # noqa: BLE001 - a bug in handling one packet must not end the I/O thread
                log.exception("MQTT I/O failed; reconnecting")
            self.connected.clear()
            sock.close()
            connection = None
            self._closing.wait(wait_s)

    def _serve(self, sock, reader) -> bool:
        """Move bytes until the connection drops (returns False) or we are closing and done (True)."""
        last_in = last_out = time.monotonic()
        watch = [sock, self._wake_r]
        while True:
            if self._closing.is_set():
                self._flush(sock)
                if (not self._out and not self._inflight) or time.monotonic() > self._close_deadline:
                    sock.sendall(mqttwire.DISCONNECT_PACKET)
                    _drain_until_closed(sock, self._close_deadline)
                    return True
            buffered = self._ssl is not None and sock.pending()
            ready = [sock] if buffered else select.select(watch, [], [], KEEPALIVE_S / 2)[0]
            now = time.monotonic()
            if sock in ready:
                chunk = sock.recv(RECV_BYTES)
                if not chunk:
                    return False
                last_in = now
                self._dispatch(reader.feed(chunk), time.time_ns())
            if self._wake_r in ready:
                self._woken = False
                self._wake_r.recv(RECV_BYTES)
            if self._out and self._flush(sock):
                last_out = now
            if now - last_out >= KEEPALIVE_S / 2:
                sock.sendall(mqttwire.PINGREQ_PACKET)
                last_out = now
            if now - last_in > SILENT_KEEPALIVES * KEEPALIVE_S:
                raise ConnectionError(f"nothing from the broker for {now - last_in:.0f} s")

    def _flush(self, sock) -> bool:
        """Send queued acks and publishes in order, as far as the broker's receive maximum allows."""
        parts, written = [], []
        with self._lock:
            while self._out:
                item = self._out[0]
                if isinstance(item, bytes):
                    parts.append(item)
                elif item.qos:
                    if len(self._inflight) >= self._send_quota:
                        break   # what follows waits, so order is kept
                    mid = self._free_mid()
                    packet = mqttwire.encode_publish(item.topic, item.payload, item.qos, mid, item.retain)
                    self._inflight[mid] = (packet, item.delivery)
                    parts.append(packet)
                else:
                    parts.append(mqttwire.encode_publish(item.topic, item.payload, 0, 0, item.retain))
                    written.append(item.delivery)
                self._out.popleft()
        if parts:
            sock.sendall(b"".join(parts))
        for delivery in written:
            delivery.set()
        return bool(parts)

    def _free_mid(self) -> int:
        while True:
            self._next_mid = self._next_mid % mqttwire.PACKET_ID_MAX + 1
            if self._next_mid not in self._inflight:
                return self._next_mid

    def _dispatch(self, packets: list, received_ns: int) -> None:
        batch = []
        generation = self._generation
        for packet in packets:
            if type(packet) is Publish:
                packet.generation = generation
                batch.append((received_ns, packet))
            elif packet.kind == mqttwire.PUBACK:
                with self._lock:
                    done = self._inflight.pop(packet.mid, None)
                if done is not None:
                    done[1].set()
                    if packet.failed:
                        log.warning("the broker refused a publish (reason 0x%02x)", packet.reasons[0])
            elif packet.kind == mqttwire.SUBACK:
                if packet.failed:
                    log.error("the broker refused subscription(s) to %s (reasons %s)", self.topics, packet.reasons.hex())
                self.subscribed.set()
            elif packet.kind == mqttwire.DISCONNECT:
                if batch:
                    self._inbox.put(batch)
                if packet.reasons == bytes([mqttwire.SESSION_TAKEN_OVER]):
                    raise SessionTakenOver(f"another client connected to {self.host}:{self.port} as {self.client_id!r}")
                raise ConnectionError(f"the broker disconnected us (reason {packet.reasons.hex() or '00'})")
        if batch:
            self._inbox.put(batch)


def _drain_until_closed(sock, deadline: float) -> None:
    """Read (and drop) until the broker closes the connection, after our DISCONNECT.

    Closing a socket with unread received bytes (a redelivery still arriving) makes the
    kernel send RST, and the broker may then drop our last acknowledgements unread: the
    messages would come again.  The broker closes once it has read DISCONNECT, so after
    everything we sent before it.  What arrives meanwhile is unacknowledged and comes again.
    """
    sock.settimeout(max(deadline - time.monotonic(), CLOSE_DRAIN_MIN_S))
    try:
        while sock.recv(RECV_BYTES):
            pass
    except OSError:
        pass
