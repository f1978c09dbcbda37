"""The fusion worker's link to a NATS JetStream cluster: pull from replicated streams, ack after commit.

Nodes publish MQTT 3.1.1 QoS 1 to any server's MQTT gateway.  The gateway stores each QoS 1
message in its own stream (``$MQTT_msgs``, subject ``$MQTT.msgs.`` + the topic as a subject:
``ew/v1/{site}/node/{node}/pulse`` -> ``$MQTT.msgs.ew.v1.{site}.node.{node}.pulse``; replicated on
three servers) before it acknowledges (PUBACK) it, so an accepted pulse is on a majority of the
servers.  Every worker of the site pulls the pulses from one durable consumer of that stream
(``ew-{site}-ingest``): a queue, each message goes to one worker, and a message a worker took and
did not acknowledge within ``ACK_WAIT_S`` (it died) goes to another.  The stream keeps a message
while a consumer has not acknowledged it (interest retention).  A message is acknowledged only
after the worker committed it, and the acknowledgements of a batch leave in one write.  (A
stream of our own capturing the plain subject would not do: the gateway's publish to it is
fire-and-forget, and while that stream elects a new leader after a server died, pulses the
gateway had acknowledged were dropped.)  Node health (QoS 0) and clips go through
``EW_{site}_IN``, which captures their subjects: a report lost in a failover is superseded by the
next, a clip can be asked for again.

Verified pulses forwarded to a worker slot's cells (``ew/v1/{site}/worker/{k}/pulse``) go through
``EW_{site}_WORK``, one durable consumer per slot (``slot-{k}``): whoever holds the slot pulls them,
so a slot taken over after its worker died finds what the dead one left unacknowledged.

What the worker sends (alerts JSON and CAP, dead letters, its health, camera cues, commands to
nodes) is a JetStream publish into ``EW_{site}_OUT``; a publish is done when the stream has stored
it (on a majority of its replicas).  Each carries a ``Nats-Msg-Id`` made from its subject and
bytes, so the same message sent twice (an outbox resent after a crash, by the worker that took
the slot over) is stored once.  MQTT subscribers (dispatch, nodes) get them from the gateway.

The client is nats-py (asyncio), run on a thread of its own; the worker's thread calls
:meth:`NatsLink.take`, :meth:`NatsLink.ack` and :meth:`NatsLink.publish` as on the MQTT link.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import queue
import threading
import time
from typing import Iterable

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

from earwitness.brokerurls import split_broker_url
from fusion.transport.inbox import Inbox
from fusion.transport.waiting import STOPPED, TIMED_OUT, wait_ready

log = logging.getLogger(__name__)

NATS_PORTS = {"nats": 4222, "tls": 4222}  # the scheme and its default port (the NATS server's client port)
NATS_SCHEMES = tuple(NATS_PORTS)
MAX_REPLICAS = 3
# What a worker took and did not acknowledge goes to another worker after this long (it died).
ACK_WAIT_S = 10.0
# Messages out to the workers unacknowledged at once (a few batches each).
MAX_ACK_PENDING = 20_000
FETCH_BATCH = 2000
FETCH_TIMEOUT_S = 0.5
# Streams keep a week, as the MQTT broker keeps a worker's session.
KEEP_S = 7 * 24 * 3600
# The same message (subject and bytes) published again within this window is stored once.
DUPLICATE_WINDOW_S = 600
CONNECT_TIMEOUT_S = 10.0
# Making the streams and consumers waits this long at most: after a server died, their replicas
# elect leaders first (seconds).
SETUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 5.0
RETRY_S = 0.5
# A worker's inbox holds at most this many fetched batches before the fetcher waits.
INBOX_BATCHES = 4
# The MQTT gateway's stream of QoS 1 messages (nats-server's names); made here as the gateway
# makes it when a worker starts before any node connected.
MQTT_MSGS_STREAM = "$MQTT_msgs"
MQTT_MSGS_PREFIX = "$MQTT.msgs."


def parse_nats_urls(url: str) -> list[str]:
    """``nats://host:port[,nats://host:port...]`` -> the server URLs; ValueError if one is malformed."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ValueError("broker URL is empty")
    for u in urls:
        split_nats_url(u)
    return urls


def split_nats_url(url: str) -> tuple[str, int, str]:
    """One NATS server's URL as (host, port, scheme); ValueError (one line) if malformed."""
    return split_broker_url(url, NATS_PORTS, "NATS server URL")


def is_nats_url(url: str) -> bool:
    return url.strip().split("://", 1)[0] in NATS_SCHEMES


def subject_of(topic: str) -> str:
    """An MQTT topic or filter as the NATS subject the gateway maps it to (``$share/g/`` dropped)."""
    parts = topic.split("/")
    if parts[0] == "$share":
        parts = parts[2:]
    return ".".join({"+": "*", "#": ">"}.get(p, p) for p in parts)


def topic_of(subject: str) -> str:
    """The MQTT topic of a subject (one of the gateway's stream or a plain one)."""
    return subject.removeprefix(MQTT_MSGS_PREFIX).replace(".", "/")


def streams(site: str, replicas: int) -> dict[str, StreamConfig]:
    """The site's streams: node messages in, forwarded pulses between workers, what the workers send."""
    root = f"ew.v1.{site}"
    common = dict(retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
                  max_age=KEEP_S, duplicate_window=DUPLICATE_WINDOW_S)
    return {
        "in": StreamConfig(name=f"EW_{site}_IN", subjects=[f"{root}.node.*.{k}" for k in ("health", "clip")], **common),
        "work": StreamConfig(name=f"EW_{site}_WORK", subjects=[f"{root}.worker.*.pulse"], **common),
        "out": StreamConfig(name=f"EW_{site}_OUT", subjects=[f"{root}.incident", f"{root}.incident.cap",
                                                            f"{root}.deadletter", f"{root}.fusion.health",
                                                            f"{root}.camera.*.cue", f"{root}.node.*.cmd"], **common),
    }


class NatsMessage:
    """A delivered message: ``topic`` as MQTT spells it, ``payload``; acknowledged through the link.

    ``dup`` is always true: the gateway drops MQTT's DUP flag, and a node that re-sends a pulse
    after failing over to another server puts a second copy into the stream; the same bytes as
    a stored pulse are a redelivery, not a replay.
    """

    __slots__ = ("topic", "payload", "raw")
    dup = True

    def __init__(self, raw):
        self.raw = raw
        self.topic = topic_of(raw.subject)
        self.payload = raw.data


class Published:
    """A JetStream publish on its way: ``wait`` says whether the stream stored it."""

    def __init__(self, future: concurrent.futures.Future):
        self._future = future

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self._future.result(timeout)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return False
        except Exception:  # noqa: BLE001 - failed for good (stopped): not delivered
            return False
        return True


class NatsLink:
    """A fusion worker's connection to the cluster (see the module's docstring).

    Parameters
    ----------
    url : str
        ``nats://host:port`` of one or more servers, comma separated; the client fails over among them.
    site : str
        Names the streams.
    client_id : str
        The connection's name (what the servers' monitoring shows).
    topics : list of str
        The MQTT topic filters the worker would subscribe to: node topics come from the shared
        ``ingest`` consumer, ``ew/v1/{site}/worker/{k}/pulse`` from slot ``k``'s consumer.
    """

    def __init__(self, url: str, site: str, client_id: str, topics: list[str]):
        self.servers = parse_nats_urls(url)
        self.site, self.client_id = site, client_id
        self.replicas = min(MAX_REPLICAS, len(self.servers))
        self.consumers = _consumers(site, topics)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._inbox = Inbox(INBOX_BATCHES * max(1, len(self.consumers)))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-io", daemon=True)
        self._nc = None
        self._js = None
        self._fetchers: list[asyncio.Task] = []
        self._publishing: set = set()   # publishes not stored yet: given a while at stop
        self._closing = False

    # -- the caller's side --------------------------------------------------------------------
    def start(self, timeout_s: float = SETUP_TIMEOUT_S, cancel: threading.Event | None = None) -> None:
        """Connect, make the streams and consumers (if absent) and start pulling; ConnectionError if no
        server answers within ``timeout_s``, or at once when ``cancel`` is set meanwhile (the caller is
        stopping: the attempt is cancelled, its socket closed)."""
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        # One attempt may take all of timeout_s (the client goes round the servers until one
        # answers): a stop must not wait for it.
        outcome = wait_ready(started, cancel, time.monotonic() + timeout_s)
        if outcome is STOPPED:
            self._abort(started)
            raise ConnectionError(f"stopped while connecting to NATS at {','.join(self.servers)}")
        if outcome is TIMED_OUT:
            self._abort(started)
            raise ConnectionError(f"no NATS server of {','.join(self.servers)} answered within {timeout_s:.0f} s")
        try:
            started.result()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            self.stop()
            raise ConnectionError(f"NATS at {','.join(self.servers)}: {type(exc).__name__} {exc}".strip()) from None

    def _abort(self, started: concurrent.futures.Future) -> None:
        started.cancel()   # cancels the connect's task on the I/O thread
        self.stop()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop pulling, send what is queued (acks, publishes), close."""
        if not self._thread.is_alive():
            return
        self._closing = True
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout_s)
        except Exception as exc:  # noqa: BLE001 - closing anyway
            log.warning("NATS link did not close cleanly (%s)", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)

    def take(self, max_items: int, timeout_s: float) -> list:
        """Up to ``max_items`` ``(received_ns, msg)``: waits ``timeout_s`` for the first, then takes what is there."""
        return self._inbox.take(max_items, timeout_s)

    def ack(self, msgs: Iterable[NatsMessage]) -> None:
        """Acknowledge (one write for the lot): the consumer will not deliver them again."""
        raws = [m.raw for m in msgs]
        if raws:
            asyncio.run_coroutine_threadsafe(self._ack(raws), self._loop)

    def publish(self, topic: str, payload: bytes | str) -> Published:
        """Store ``payload`` on ``topic``'s subject in the site's output stream (retried until stored or stopped)."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        subject = subject_of(topic)
        msg_id = hashlib.sha256(subject.encode() + b"\0" + data).hexdigest()
        return Published(asyncio.run_coroutine_threadsafe(self._publish(subject, data, msg_id), self._loop))

    # -- the I/O thread ---------------------------------------------------------------------------
    async def _start(self) -> None:
        # Ours before it connects: a stop during the attempt closes its socket (_stop).
        self._nc = nats.NATS()
        await self._nc.connect(servers=self.servers, name=self.client_id, max_reconnect_attempts=-1,
                               reconnect_time_wait=RETRY_S, connect_timeout=CONNECT_TIMEOUT_S,
                               allow_reconnect=True, disconnected_cb=self._disconnected,
                               reconnected_cb=self._reconnected, error_cb=self._error)
        self.connected.set()
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        while True:
            try:
                await self._setup()
                break
            # electing leaders, or a stream made a moment ago not known everywhere yet
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError, nats.js.errors.NotFoundError) as exc:
                log.warning("streams not ready (%s); again", type(exc).__name__)
                for task in self._fetchers:
                    task.cancel()
                self._fetchers = []
                await asyncio.sleep(RETRY_S)
        self.subscribed.set()

    async def _setup(self) -> None:
        for config in streams(self.site, self.replicas).values():
            await _ensure_stream(self._js, config)
        await _ensure_stream(self._js, StreamConfig(name=MQTT_MSGS_STREAM, subjects=[MQTT_MSGS_PREFIX + ">"],
                                                    retention=RetentionPolicy.INTEREST, storage=StorageType.FILE,
                                                    num_replicas=self.replicas), update=False)
        for stream, durable, subject in self.consumers:
            config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                                    max_ack_pending=MAX_ACK_PENDING, deliver_policy=DeliverPolicy.ALL,
                                    filter_subject=subject)
            await _ensure_consumer(self._js, stream, config)
            sub = await self._js.pull_subscribe_bind(durable, stream=stream)
            self._fetchers.append(asyncio.ensure_future(self._fetch(sub)))

    async def _fetch(self, sub) -> None:
        while not self._closing:
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                return
            except Exception as exc:  # noqa: BLE001 - a server went away: the client reconnects
                log.debug("fetch failed (%s); again", exc)
                await asyncio.sleep(RETRY_S)
                continue
            now = time.time_ns()
            batch = [(now, NatsMessage(m)) for m in msgs]
            while not self._closing:
                try:
                    self._inbox.queue.put_nowait(batch)
                    break
                except queue.Full:   # the worker is behind: fetch no more meanwhile
                    await asyncio.sleep(FETCH_TIMEOUT_S / 10)

    async def _ack(self, raws: list) -> None:
        try:
            for raw in raws:
                await raw.ack()
            await self._nc.flush(PUBLISH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - not acknowledged: delivered again, and refused as a replay
            log.warning("acknowledgement of %d message(s) failed (%s); they come again", len(raws), exc)

    async def _publish(self, subject: str, data: bytes, msg_id: str):
        task = asyncio.current_task()
        self._publishing.add(task)
        try:
            return await self._publish_until_stored(subject, data, msg_id)
        finally:
            self._publishing.discard(task)

    async def _publish_until_stored(self, subject: str, data: bytes, msg_id: str):
        while True:
            try:
                return await self._js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
            except (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError) as exc:
                if self._closing:
                    raise
                log.debug("publish on %s not stored yet (%s); again", subject, exc)
                await asyncio.sleep(RETRY_S)

    async def _stop(self) -> None:
        for task in self._fetchers:
            task.cancel()
        await asyncio.gather(*self._fetchers, return_exceptions=True)
        # No server reached: nothing can be stored or flushed now, so a stop does not wait for it
        # (it took PUBLISH_TIMEOUT_S more with every server down).
        reachable = self._nc is not None and self._nc.is_connected
        if self._publishing and reachable:
            await asyncio.wait(list(self._publishing), timeout=PUBLISH_TIMEOUT_S)
        for task in list(self._publishing):   # not stored: the outbox sends them at the next start
            task.cancel()
        await asyncio.gather(*self._publishing, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            try:
                if reachable:
                    await self._nc.flush(PUBLISH_TIMEOUT_S)   # the last acknowledgements
            finally:
                await self._nc.close()
        self.connected.clear()

    async def _disconnected(self) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("NATS connection lost; reconnecting to another server")

    async def _reconnected(self) -> None:
        self.connected.set()
        log.info("NATS connection to %s", self._nc.connected_url.netloc if self._nc and self._nc.connected_url else "?")

    async def _error(self, exc: Exception) -> None:
        log.debug("NATS: %s", exc)


def _consumers(site: str, topics: list[str]) -> list[tuple[str, str, str | None]]:
    """(stream, durable, filter subject) for a worker's topic filters: one shared ingest consumer for
    the node topics, one consumer per worker slot for the forwarded pulses."""
    names = streams(site, 1)
    out: list[tuple[str, str, str | None]] = []
    for topic in topics:
        subject = subject_of(topic)
        parts = subject.split(".")
        if parts[3:4] == ["node"] and parts[-1] == "pulse":
            entry = (MQTT_MSGS_STREAM, f"ew-{site}-ingest", MQTT_MSGS_PREFIX + subject)
        elif parts[3:4] == ["node"]:
            entry = (names["in"].name, "ingest", None)
        elif parts[3:4] == ["worker"] and len(parts) == 6:
            entry = (names["work"].name, f"slot-{parts[4]}", subject)
        else:
            raise ValueError(f"no stream of the site {site!r} holds {topic!r}")
        if entry not in out:
            out.append(entry)
    return out


async def _ensure_stream(js, config: StreamConfig, update: bool = True) -> None:
    """Make the stream if absent; if it exists with other settings, take ours (``update``) or leave it."""
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        if update:
            await js.update_stream(config)


async def _ensure_consumer(js, stream: str, config: ConsumerConfig) -> None:
    try:
        await js.add_consumer(stream, config)
    except nats.js.errors.BadRequestError:   # there, made by another worker: use it as it is
        pass
