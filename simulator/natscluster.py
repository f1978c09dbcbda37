"""A NATS JetStream cluster of our own on loopback, for the tests and benchmarks of the cluster engine.

``servers`` nats-server processes (3 by default), each with JetStream (its own store folder),
cluster routes to the others and an MQTT listener (NATS's MQTT gateway speaks MQTT 3.1.1, QoS 0
and 1, and needs JetStream and a ``server_name``), every port a free loopback port kept across
:meth:`NatsCluster.kill` and :meth:`NatsCluster.start_server`, so clients reconnect to a server that comes back.

Example::

    with NatsCluster(tmpdir) as cluster:
        config = FusionConfig(site="sim", broker=cluster.url, ...)     # nats://a,nats://b,nats://c
        node_url = cluster.mqtt_url                                      # mqtt://a,mqtt://b,mqtt://c
        cluster.kill(0)                                                  # kill -9 of one server
"""
from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess

from simulator.broker import LOOPBACK, START_TIMEOUT_S, STOP_TIMEOUT_S, BrokerError, wait_until

NATS_PATHS = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server")
CLUSTER_NAME = "earwitness"
DEFAULT_SERVERS = 3
# JetStream's meta group needs a leader before a stream can be made: this long at most.
READY_TIMEOUT_S = 30.0
# MQTT clients (the nodes) get a session, acks and redeliveries from JetStream: wait this long for one.
MQTT_ACK_WAIT = "5s"
START_ATTEMPTS = 3
# The gateway's own streams (sessions, retained messages, QoS 1 deliveries) on every server of
# three: left to itself it picks as many as it sees at the first MQTT connect (two, early on), and
# one lost server then stalls every MQTT session.
MQTT_REPLICAS = 3
READ_TIMEOUT_S = 5.0
READ_ATTEMPTS = 6


def _urls(scheme: str, ports: list[int]) -> list[str]:
    return [f"{scheme}://{LOOPBACK}:{p}" for p in ports]


def nats_server_path() -> str:
    """The nats-server executable; BrokerError with the remedy if it is not installed."""
    found = shutil.which("nats-server") or next((p for p in NATS_PATHS if pathlib.Path(p).exists()), None)
    if not found:
        raise BrokerError("nats-server is not installed (apt-get install nats-server)")
    return found


class NatsCluster:
    """``servers`` nats-server processes clustered on loopback, JetStream and MQTT on each."""

    def __init__(self, workdir: str | pathlib.Path, servers: int = DEFAULT_SERVERS):
        self.workdir = pathlib.Path(workdir)
        self.n = servers
        self._pick_ports()
        self.procs: list[subprocess.Popen | None] = [None] * servers

    def _pick_ports(self) -> None:
        socks = []
        for _ in range(3 * self.n):   # held open together: no port picked twice
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            socks.append(sock)
        ports = [sock.getsockname()[1] for sock in socks]
        for sock in socks:
            sock.close()
        self.client_ports, self.route_ports, self.mqtt_ports = ports[:self.n], ports[self.n:2 * self.n], ports[2 * self.n:]
        # Every server's client URL and MQTT gateway URL; comma separated: a fusion worker's
        # ``broker`` and a node's ``[mqtt] url`` settings.
        self.urls, self.mqtt_urls = _urls("nats", self.client_ports), _urls("mqtt", self.mqtt_ports)
        self.url, self.mqtt_url = ",".join(self.urls), ",".join(self.mqtt_urls)

    def _conf(self, i: int) -> str:
        routes = ", ".join(f"nats-route://{LOOPBACK}:{p}" for k, p in enumerate(self.route_ports) if k != i)
        store = self.workdir / f"n{i}" / "js"
        return (f'server_name: "n{i}"\nlisten: "{LOOPBACK}:{self.client_ports[i]}"\n'
                f'jetstream {{ store_dir: "{store}" }}\n'
                f'cluster {{ name: "{CLUSTER_NAME}", listen: "{LOOPBACK}:{self.route_ports[i]}", routes: [{routes}] }}\n'
                f'mqtt {{ listen: "{LOOPBACK}:{self.mqtt_ports[i]}", ack_wait: "{MQTT_ACK_WAIT}", '
                f'stream_replicas: {min(MQTT_REPLICAS, self.n)} }}\n')

    def start_server(self, i: int) -> None:
        """Start server ``i`` (again, on its ports and with its store)."""
        folder = self.workdir / f"n{i}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "nats.conf"
        conf.write_text(self._conf(i))
        log = open(folder / "nats.log", "ab")
        self.procs[i] = subprocess.Popen([nats_server_path(), "-c", str(conf)], stdout=log, stderr=log)
        log.close()

    def _listening(self, i: int) -> bool:
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            raise BrokerError(f"nats-server n{i} exited at start (see {self.workdir / f'n{i}' / 'nats.log'})")
        for port in (self.client_ports[i], self.mqtt_ports[i]):
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.05).close()
            except OSError:
                return False
        return True

    def wait_listening(self, i: int) -> None:
        if not wait_until(lambda: self._listening(i), START_TIMEOUT_S):
            raise BrokerError(f"nats-server n{i} did not listen within {START_TIMEOUT_S:.0f} s")

    def _meta_leader(self) -> bool:
        """Whether JetStream's cluster has elected a meta leader (streams can be made)."""
        return any("JetStream cluster new metadata leader" in (self.workdir / f"n{i}" / "nats.log").read_text()
                   or "Self is new JetStream cluster metadata leader" in (self.workdir / f"n{i}" / "nats.log").read_text()
                   for i in range(self.n) if (self.workdir / f"n{i}" / "nats.log").exists())

    def start(self) -> "NatsCluster":
        for attempt in range(START_ATTEMPTS):
            for i in range(self.n):
                self.start_server(i)
            try:
                for i in range(self.n):
                    self.wait_listening(i)
                break
            except BrokerError:   # a port taken meanwhile by another program: new ports, again
                self.stop()
                if attempt == START_ATTEMPTS - 1:
                    raise
                self._pick_ports()
        if not wait_until(self._meta_leader, READY_TIMEOUT_S):
            raise BrokerError(f"the NATS cluster elected no JetStream leader within {READY_TIMEOUT_S:.0f} s")
        return self

    def kill(self, i: int) -> None:
        """SIGKILL server ``i``, as a machine that dies."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self.procs[i] = None

    def restart(self, i: int) -> None:
        self.start_server(i)
        self.wait_listening(i)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.procs[i] = None

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def __enter__(self) -> "NatsCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_stream(url: str, stream: str, timeout_s: float = READ_TIMEOUT_S,
                attempts: int = READ_ATTEMPTS) -> list[tuple[str, bytes, int]]:
    """Every message ``stream`` holds now: (subject, data, stored at ns), oldest first.

    Read by sequence from the stream's leader, not through a consumer: an ephemeral consumer is
    placed on one replica, and after a server's kill that can be the dead one (its fetch then
    times out; measured, 2 of 8 consumers on a 3-server cluster). ``attempts`` reads of
    ``timeout_s`` each at most: a stream whose leader died needs a few seconds to elect another."""
    import asyncio

    import nats
    import nats.errors
    import nats.js.errors

    async def read_once(js) -> list[tuple[str, bytes, int]]:
        state = (await js.stream_info(stream)).state
        out: list[tuple[str, bytes, int]] = []
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:   # deleted from the middle of the stream
                continue
            out.append((msg.subject, msg.data, int(msg.time.timestamp() * 1e9)))
        return out

    async def read() -> list[tuple[str, bytes, int]]:
        nc = await nats.connect(servers=url.split(","), connect_timeout=timeout_s, error_cb=_quiet)
        try:
            js = nc.jetstream(timeout=timeout_s)
            for attempt in range(attempts):
                try:
                    return await read_once(js)
                except nats.errors.TimeoutError:
                    if attempt == attempts - 1:
                        raise
            return []
        finally:
            await nc.close()

    return asyncio.run(read())


def stream_leader(url: str, stream: str) -> str:
    """The server name (``n0``...) leading ``stream``'s replicas."""
    import asyncio

    import nats

    async def leader() -> str:
        nc = await nats.connect(servers=url.split(","), error_cb=_quiet)
        try:
            info = await nc.jetstream().stream_info(stream)
            return info.cluster.leader
        finally:
            await nc.close()

    return asyncio.run(leader())


async def _quiet(exc: Exception) -> None:
    """A server of the list that is down (killed by the test) is no error worth a traceback."""
