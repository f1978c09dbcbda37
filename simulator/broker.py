"""The MQTT side of a simulation run, shared with the tests and benchmarks: a mosquitto of its
own on a free loopback port (:class:`Mosquitto`), a client that keeps what it receives and
publishes at QoS 1 (:class:`Collector`), and the polling waits (:func:`wait_until`, :func:`wait_while_moving`).

A live run's broker keeps nothing after it (no persistence): a simulation that wants a broker
that outlives it passes ``--broker mqtt://host:port``.  The tests start the same broker with
``persistence=True``, so that a restart keeps sessions and queued QoS 1 messages as a
production broker does, and with TLS, an ACL or a whole configuration of their own.

Example::

    with Mosquitto(tmpdir) as broker, Collector(broker.url, topics.incident("sim")) as alerts:
        service = mqtt_service(FusionConfig(site="sim", broker=broker.url, ...)).start()
        ...
        wait_until(lambda: alerts.count() >= 1, timeout_s=30)
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from typing import Callable, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
# Every pulse of a busy simulated night may be queued for the fusion server at once.
MAX_QUEUED_MESSAGES = 1_000_000
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 30.0
RECONNECT_DELAY_S = 1
QOS = 1


def wait_until(predicate: Callable[[], object], timeout_s: float, poll_s: float = POLL_S) -> bool:
    """Poll ``predicate`` every ``poll_s`` until it is true or ``timeout_s`` has passed; whether it
    came true (asked once more at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


def wait_while_moving(predicate: Callable[[], object], progress: Callable[[], object], stall_s: float,
                      poll_s: float = POLL_S) -> bool:
    """Poll ``predicate`` until it is true, for as long as ``progress()`` keeps changing: give up once
    it has stood still for ``stall_s``; whether ``predicate`` came true.

    A loaded machine makes a consumer slow, not stuck: a fixed deadline would call what it had not
    yet taken lost, where only a consumer that stopped taking anything is."""
    last, since = progress(), time.monotonic()
    while not predicate():
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            return bool(predicate())
        time.sleep(poll_s)
    return True


class BrokerError(RuntimeError):
    """The embedded broker cannot run (one line, says why)."""


def mosquitto_path() -> str:
    """The mosquitto executable; BrokerError with the remedy if it is not installed."""
    found = shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if pathlib.Path(p).exists()), None)
    if not found:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto), "
                          "or give a running broker with --broker mqtt://HOST:PORT")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Tls(NamedTuple):
    """A TLS listener's files (PEM): the CA that signs client certificates, the broker's own."""

    ca: pathlib.Path | str
    cert: pathlib.Path | str
    key: pathlib.Path | str
    require_certificate: bool = True


class Mosquitto:
    """mosquitto on ``127.0.0.1:port``, configured and logging in ``workdir``; the port is kept
    across :meth:`stop`/:meth:`start`, so clients reconnect to a restarted broker.

    ``persistence``: keep sessions and queued messages in ``workdir/mosquitto.db`` (written at
    a clean stop and every second).  ``tls``: a second listener, TLS, on ``tls_port``.
    ``acl_file``: an ACL for every listener.  ``extra_conf``: lines added to the configuration.
    ``conf``: a whole configuration to run instead (it must listen on ``port``, so pass one).
    """

    def __init__(self, workdir: str | pathlib.Path, *, port: int | None = None, persistence: bool = False,
                 tls: Tls | None = None, acl_file: str | pathlib.Path | None = None, extra_conf: str = "",
                 conf: str | None = None):
        if conf is not None and port is None:
            raise ValueError("a whole configuration must name its port: pass port=")
        self.host = LOOPBACK
        self.workdir = pathlib.Path(workdir)
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        if conf is None:
            lines = [f"listener {self.port} {LOOPBACK}", "allow_anonymous true",
                     f"persistence {'true' if persistence else 'false'}"]
            if persistence:
                lines += [f"persistence_location {self.workdir}/", "autosave_interval 1"]
            lines += [f"log_dest file {self.log}", f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                      "max_inflight_messages 0"]
            if acl_file:
                lines.append(f"acl_file {acl_file}")
            if tls:
                lines += [f"listener {self.tls_port} {LOOPBACK}", f"cafile {tls.ca}", f"certfile {tls.cert}",
                          f"keyfile {tls.key}", f"require_certificate {'true' if tls.require_certificate else 'false'}"]
            conf = "\n".join(lines) + "\n" + extra_conf + "\n"
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot write its log or
        # persistence file into a private (0700) temporary folder: a restart would then silently
        # lose sessions and queued messages.  Stay root there.
        self.conf = ("user root\n" if os.geteuid() == 0 else "") + conf

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://{self.host}:{self.tls_port}"

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            tail = self.log.read_text().strip().splitlines()[-1:] if self.log.exists() else []
            raise BrokerError(f"mosquitto exited at start{': ' + tail[0] if tail else ''}")
        for port in filter(None, (self.port, self.tls_port)):
            try:
                socket.create_connection((self.host, port), timeout=POLL_S).close()
            except OSError:
                return False
        return True

    def start(self) -> "Mosquitto":
        """Start (or start again, on the same port); returns once it listens."""
        exe = mosquitto_path()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.conf)
        self.proc = subprocess.Popen([exe, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            if wait_until(self._listening, START_TIMEOUT_S):
                return self
        except BrokerError:
            self.proc = None
            raise
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: a persistent broker writes its sessions and queued messages)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut: only what was saved before survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Message(NamedTuple):
    topic: str
    payload: bytes
    retained: bool
    at_s: float          # time.monotonic() when it arrived


class Collector:
    """An MQTT v5 client that keeps every message of its subscriptions, and publishes at QoS 1.

    ``url``: ``mqtt://host:port`` or ``mqtts://host:port`` (then ``tls``: a dict with ``ca`` and,
    for a client certificate, ``cert`` and ``key``).  ``persistent``: a session the broker keeps
    (clean_start off, ``session_expiry_s``), so messages published while it is away reach it
    once it is back; it reconnects every second.  ``on_message(collector, message)``, if given,
    is called for each message (in the network thread: publish from it without waiting).

    :meth:`start` connects, subscribes and waits for both; a refused connection raises
    ConnectionError (:attr:`connected` stays False).  Used as a context manager it starts and
    closes itself.
    """

    def __init__(self, url: str, *topics: str, client_id: str = "", persistent: bool = False,
                 session_expiry_s: int = 600, tls: dict | None = None,
                 on_message: Callable[["Collector", Message], None] | None = None):
        from fusion.transport.mqttlink import parse_mqtt_url

        self.host, self.port, use_tls = parse_mqtt_url(url)
        self.topics = list(topics)
        self.connected = False
        self._messages: list[Message] = []
        self._lock = threading.Condition()
        self._subacks: dict[int, list[bool]] = {}
        self._connect_done = threading.Event()
        self._on_message_cb = on_message
        self._persistent, self._session_expiry_s = persistent, session_expiry_s
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if use_tls or tls:
            tls = tls or {}
            c.tls_set(ca_certs=str(tls["ca"]) if tls.get("ca") else None,
                      certfile=str(tls["cert"]) if tls.get("cert") else None,
                      keyfile=str(tls["key"]) if tls.get("key") else None, cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(RECONNECT_DELAY_S, RECONNECT_DELAY_S)
        c.on_connect = self._on_connect
        c.on_connect_fail = lambda *_: self._connect_done.set()
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        self._first_mid: int | None = None

    # -- network thread --------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, props):
        self.connected = not reason.is_failure
        if self.connected and self.topics:
            # Again at every reconnect: a session the broker lost (or never kept) comes back.
            _, mid = client.subscribe([(t, QOS) for t in self.topics])
            if self._first_mid is None:
                self._first_mid = mid
        self._connect_done.set()

    def _on_disconnect(self, *_):
        self.connected = False
        self._connect_done.set()     # refused after the TLS handshake

    def _on_subscribe(self, client, userdata, mid, reasons, props):
        with self._lock:
            self._subacks[mid] = [not r.is_failure for r in reasons]
            self._lock.notify_all()

    def _on_message(self, client, userdata, msg):
        m = Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
        with self._lock:
            self._messages.append(m)
        if self._on_message_cb is not None:
            self._on_message_cb(self, m)

    # -- caller ------------------------------------------------------------------------------

    def _suback(self, mid: int, timeout_s: float) -> list[bool]:
        with self._lock:
            if not self._lock.wait_for(lambda: mid in self._subacks, timeout_s):
                raise ConnectionError(f"no SUBACK from {self.host}:{self.port}")
            return self._subacks.pop(mid)

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> "Collector":
        props = Properties(PacketTypes.CONNECT)
        if self._persistent:
            props.SessionExpiryInterval = self._session_expiry_s
        self.client.connect_async(self.host, self.port, clean_start=not self._persistent, properties=props)
        self.client.loop_start()
        try:
            if not self._connect_done.wait(timeout_s) or not self.connected:
                raise ConnectionError(f"not connected to {self.host}:{self.port}")
            if self.topics:
                wait_until(lambda: self._first_mid is not None, timeout_s)
                if not all(self._suback(self._first_mid, timeout_s)):
                    raise ConnectionError(f"subscription to {self.topics} refused")
        except ConnectionError:
            self.close()     # no reconnect attempts left behind
            raise
        return self

    def subscribe(self, topic: str, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Subscribe (also after reconnects); whether the broker granted it."""
        self.topics.append(topic)
        _, mid = self.client.subscribe(topic, qos=QOS)
        return self._suback(mid, timeout_s)[0]

    def publish(self, topic: str, payload: bytes | str, retain: bool = False,
                timeout_s: float = PUBLISH_TIMEOUT_S) -> bool:
        """Publish at QoS 1; whether the broker acknowledged it within ``timeout_s``."""
        info = self.client.publish(topic, payload, qos=QOS, retain=retain)
        info.wait_for_publish(timeout_s)
        return info.is_published()

    def publish_all(self, items, chunk: int = 0, pause_s: float = 0.0, timeout_s: float = PUBLISH_TIMEOUT_S) -> bool:
        """Publish (topic, payload) pairs at QoS 1, then wait for every acknowledgement; with
        ``chunk``, ``pause_s`` goes by after every ``chunk`` messages (a stream, not a burst)."""
        infos = []
        for k, (topic, payload) in enumerate(items, 1):
            infos.append(self.client.publish(topic, payload, qos=QOS))
            if chunk and k % chunk == 0:
                time.sleep(pause_s)
        for info in infos:
            info.wait_for_publish(timeout_s)
        return all(info.is_published() for info in infos)

    def received(self, topic_filter: str = "#") -> list[Message]:
        """The messages so far whose topic matches ``topic_filter`` (MQTT wildcards), in order."""
        with self._lock:
            return [m for m in self._messages if mqtt.topic_matches_sub(topic_filter, m.topic)]

    def payloads(self, topic_filter: str = "#") -> list[bytes]:
        return [m.payload for m in self.received(topic_filter)]

    def json(self, topic_filter: str = "#") -> list:
        return [json.loads(m.payload) for m in self.received(topic_filter)]

    def has(self, topic: str, payload: bytes, retained: bool | None = None) -> bool:
        return any(m.payload == payload and (retained is None or m.retained == retained)
                   for m in self.received(topic))

    def count(self, topic_filter: str = "#") -> int:
        return len(self.received(topic_filter))

    def close(self) -> None:
        self.client.disconnect()     # first: ends a refused client's reconnect attempts
        self.client.loop_stop()

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def publish_all(url: str, items, client_id: str = "stand-in-nodes", chunk: int = 0, pause_s: float = 0.0) -> None:
    """Publish (topic, payload) pairs at QoS 1 from a client of their own; raises unless the
    broker acknowledged every one (see :meth:`Collector.publish_all`)."""
    with Collector(url, client_id=client_id) as c:
        if not c.publish_all(items, chunk, pause_s):
            raise ConnectionError(f"the broker at {url} did not acknowledge every message")
