"""The cluster engine beside the single mosquitto: ingest throughput with 1, 2 and 3 fusion worker
processes, and the failover gaps.

Throughput: a backlog of signed noise pulses (bench_fusion's synthetic site: they load ingest, not
the locator) is queued at the broker, then ``earwitness fusion`` worker processes on one
PostgreSQL store drain it (verify, de-duplicate, commit, acknowledge; with several workers, forward
to the slot owning the pulses' cells).  The rate is pulses stored per second from the first stored
to the last.  On the cluster (3 NATS servers on loopback, the nodes' MQTT 3.1.1 QoS 1 through the
gateways, stored on three replicas before acknowledged) with 1, 2 and 3 workers; on a single
mosquitto with 1 worker.  The rate at which the gateways accept the backlog is printed too.

Failover gap: one worker storing a steady stream (the fleet publisher at ``STEADY_RATE``) when the
server leading the pulses' stream is killed (SIGKILL): the longest pause in stored pulses from
the kill on.  And with three workers, one killed: how long until another worker took its slot over.

Shutdown with the whole cluster down: every NATS server killed, the worker's link seeing it
gone and its health published since (a publish no server takes), the seconds from SIGTERM to
the worker process's exit (a supervisor's stop, or a machine going down with its network): one
worker on SQLite, and one process running three slots on PostgreSQL (its own and, after its
first 10 s, the two free ones).  Printed beside the figures
measured when a stop stopped waiting for publishes and a flush no server could take (b16de22).
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa

from bench.bench_fusion import SITE, synthetic_site
from earwitness import topics
from fusion.server.store import Store
from fusion.transport.natslink import MQTT_MSGS_STREAM, NatsLink
from simulator.broker import Mosquitto, wait_until
from simulator.cityfleet import FleetPublisher
from simulator.natscluster import NatsCluster, stream_leader

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKLOG_PULSES = 20_000
STEADY_RATE = 500.0          # pulses/s offered while a server is killed
STEADY_S = 16.0
KILL_AT_S = 6.0
WAIT_S = 120.0
POLL_S = 0.05
TAKEOVER_WAIT_S = 60.0
# SIGTERM with no server reachable, seconds to exit as measured at b16de22: (after, before it).
SIGTERM_REFERENCE_S = {1: (1.3, 5.8), 3: (0.8, 5.2)}
SIGTERM_HEALTH_S = 0.5   # each slot publishes its health this often: a publish is under way when the SIGTERM comes


def _config(tmp: pathlib.Path, name: str, broker: str, registry: pathlib.Path, schema: str, workers: int, k: int,
            database: str = POSTGRES_URL) -> pathlib.Path:
    path = tmp / f"{name}-{k}.toml"
    shared = f"workers = {workers}\nworker_index = {k}\n" if workers > 1 else ""
    path.write_text(f'site = "{SITE}"\nbroker = "{broker}"\nregistry = "{registry}"\ndatabase = "{database}"\n'
                    f'schema = "{schema}"\nclient_id = "bench-{name}-{k}"\ntemperature_c = 10.0\nrequest_clips = false\n'
                    f'{shared}')
    return path


def _start_workers(tmp, name, broker, registry, schema, workers) -> tuple[list[subprocess.Popen], list[pathlib.Path]]:
    procs, logs = [], []
    for k in range(workers):
        logs.append(tmp / f"{name}-{k}.log")
        procs.append(_spawn(_config(tmp, name, broker, registry, schema, workers, k), logs[-1]))
    if not wait_until(lambda: all("running" in log.read_text() for log in logs), WAIT_S):
        tails = "; ".join(log.read_text().strip().splitlines()[-1][:300] for log in logs if log.read_text().strip())
        for proc in procs:   # those that did start must not outlive the benchmark
            proc.kill()
            proc.wait()
        raise RuntimeError(f"{name}: the workers did not start: {tails}")
    return procs, logs


def _spawn(config: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)


def _stop(procs) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(WAIT_S)


def _drop(schema: str) -> None:
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _drain_rate(schema: str, n: int) -> float:
    """Pulses stored per second, from the first seen stored (polled) until all ``n`` are."""
    with Store(POSTGRES_URL, schema=schema) as store:
        if not wait_until(lambda: store.count_pulses() > 0, WAIT_S, POLL_S):
            raise RuntimeError("no pulse stored")
        first, start = store.count_pulses(), time.perf_counter()
        if not wait_until(lambda: store.count_pulses() >= n, WAIT_S, POLL_S):
            raise RuntimeError(f"only {store.count_pulses()} of {n} pulses stored")
        return (n - first) / max(time.perf_counter() - start, POLL_S)


def _publish_backlog(urls: list[str], protocol: str, items) -> float:
    nodes = FleetPublisher(urls, protocol=protocol, name=f"bench-{uuid.uuid4().hex[:6]}").start()
    start = time.perf_counter()
    for topic, payload in items:
        nodes.publish(topic, payload)
    if not wait_until(lambda: nodes.accepted >= len(items), WAIT_S, POLL_S):
        raise RuntimeError(f"the broker accepted {nodes.accepted} of {len(items)}")
    took = time.perf_counter() - start
    nodes.close()
    return len(items) / took


def backlog_rate(tmp: pathlib.Path, cluster: NatsCluster | None, workers: int, items, registry) -> tuple[float, float]:
    """(broker accept rate, worker drain rate) for a backlog through the cluster, or a mosquitto if None."""
    schema = f"b_{uuid.uuid4().hex[:10]}"
    name = f"{'nats' if cluster else 'mosq'}{workers}"
    try:
        if cluster is not None:
            setup = NatsLink(cluster.url, SITE, "bench-setup", [topics.pulse(SITE, "+")])
            setup.start()   # the shared consumer: the gateway's stream keeps the backlog for it
            setup.stop()
            accept = _publish_backlog(cluster.mqtt_urls, "3.1.1", items)
            procs, _ = _start_workers(tmp, name, cluster.url, registry, schema, workers)
        else:
            broker = Mosquitto(tmp / "mosquitto").start()
            procs, _ = _start_workers(tmp, name, broker.url, registry, schema, 1)
            _stop(procs)   # its persistent session now queues the backlog
            accept = _publish_backlog([broker.url], "5", items)
            procs, _ = _start_workers(tmp, name, broker.url, registry, schema, 1)
        try:
            return accept, _drain_rate(schema, len(items))
        finally:
            _stop(procs)
            if cluster is None:
                broker.stop()
    finally:
        _drop(schema)


def server_failover_gap(tmp: pathlib.Path, items, registry) -> tuple[float, float]:
    """One worker on a steady stream; the pulses' stream leader killed: (normal, failover) longest pause, s."""
    schema = f"b_{uuid.uuid4().hex[:10]}"
    with NatsCluster(tmp / "nats-gap") as cluster:
        procs, _ = _start_workers(tmp, "gap", cluster.url, registry, schema, 1)
        try:
            nodes = FleetPublisher(cluster.mqtt_urls, protocol="3.1.1", name="bench-gap").start()
            n = int(STEADY_RATE * STEADY_S)
            start, killed_ns = time.monotonic(), None
            for i, (topic, payload) in enumerate(items[:n]):
                due = start + i / STEADY_RATE
                while time.monotonic() < due:
                    time.sleep(max(0.0, min(due - time.monotonic(), POLL_S / 5)))
                if killed_ns is None and time.monotonic() - start >= KILL_AT_S:
                    killed_ns = time.time_ns()
                    cluster.kill(int(stream_leader(cluster.url, MQTT_MSGS_STREAM)[1:]))
                nodes.publish(topic, payload)
            wait_until(lambda: nodes.accepted >= n, WAIT_S)
            nodes.close()
            with Store(POSTGRES_URL, schema=schema) as store:
                wait_until(lambda: store.count_pulses() >= n, WAIT_S, POLL_S * 4)
                received = sorted(p["received_ns"] for p in store.pulses())
        finally:
            _stop(procs)
            _drop(schema)
    before = [t for t in received if t < killed_ns]
    after = [killed_ns] + [t for t in received if t >= killed_ns]
    pause = lambda ts: max((b - a for a, b in zip(ts, ts[1:])), default=0) / 1e9   # noqa: E731
    return pause(before), pause(after)


def worker_takeover_s(tmp: pathlib.Path, registry) -> float:
    """Three workers; worker 0 killed: seconds until another logs that it took slot 0 over."""
    schema = f"b_{uuid.uuid4().hex[:10]}"
    with NatsCluster(tmp / "nats-takeover") as cluster:
        procs, logs = _start_workers(tmp, "takeover", cluster.url, registry, schema, 3)
        try:
            time.sleep(11.0)   # past the time a worker waits before taking over others' slots
            killed = time.monotonic()
            procs[0].kill()
            if not wait_until(lambda: any("took over slot 0" in log.read_text() for log in logs[1:]), TAKEOVER_WAIT_S):
                raise RuntimeError("no worker took slot 0 over")
            return time.monotonic() - killed
        finally:
            _stop(procs)
            _drop(schema)


def sigterm_exit_s(tmp: pathlib.Path, registry, slots: int) -> float:
    """Seconds from SIGTERM to the exit of a worker process whose every NATS server was killed: one
    worker on SQLite (``slots`` 1), or one process running ``slots`` slots on PostgreSQL."""
    schema, name = f"b_{uuid.uuid4().hex[:10]}", f"sigterm{slots}"
    database = POSTGRES_URL if slots > 1 else str(tmp / f"{name}.db")
    with NatsCluster(tmp / f"nats-{name}") as cluster:
        log = tmp / f"{name}.log"
        config = _config(tmp, name, cluster.url, registry, schema, slots, 0, database)
        config.write_text(config.read_text() + f"health_s = {SIGTERM_HEALTH_S}\n")
        proc = _spawn(config, log)
        try:
            if not wait_until(lambda: all(f"took over slot {k}" in log.read_text() for k in range(1, slots))
                              and "running" in log.read_text(), TAKEOVER_WAIT_S):
                raise RuntimeError(f"{name}: the process did not run its {slots} slot(s)")
            for i in range(len(cluster.procs)):
                cluster.kill(i)
            # Each slot's link has seen its server go (a stop with a link still connected waits for it).
            if not wait_until(lambda: log.read_text().count("NATS connection lost") >= slots, WAIT_S):
                raise RuntimeError(f"{name}: the links did not notice the servers gone")
            time.sleep(2 * SIGTERM_HEALTH_S)   # each slot has published its health into the outage
            start = time.perf_counter()
            proc.terminate()
            proc.wait(WAIT_S)
            return time.perf_counter() - start
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if slots > 1:
                _drop(schema)


def main(workers_counts=(1, 2, 3)) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = pathlib.Path(tmp)
        registry, items = synthetic_site(tmp, BACKLOG_PULSES)
        accept_m, rate_m = backlog_rate(tmp, None, 1, items, registry)
        print(f"single mosquitto, 1 worker (PostgreSQL): broker accepts {accept_m:,.0f} pulses/s; worker drains "
              f"{rate_m:,.0f} pulses/s", flush=True)
        rates = {}
        for workers in workers_counts:
            with NatsCluster(tmp / f"nats-{workers}") as cluster:
                rates[workers] = backlog_rate(tmp, cluster, workers, items, registry)
            print(f"NATS cluster (3 servers, R3), {workers} worker(s): gateways accept {rates[workers][0]:,.0f} "
                  f"pulses/s; workers drain {rates[workers][1]:,.0f} pulses/s", flush=True)
        print("throughput side by side (pulses/s): mosquitto 1 worker {:,.0f} | cluster 1 {:,.0f} | 2 {:,.0f} | "
              "3 {:,.0f}".format(rate_m, *(rates[w][1] if w in rates else float("nan") for w in (1, 2, 3))))
        normal_s, gap_s = server_failover_gap(tmp, items, registry)
        print(f"failover gap, server leading the pulses' stream killed: {gap_s:.1f} s without a stored pulse "
              f"(longest pause before the kill {normal_s:.2f} s); single mosquitto: alerts stop until it is back")
        print(f"failover gap, one of three workers killed: its slot taken over after {worker_takeover_s(tmp, registry):.1f} s")
        for slots, what in ((1, "one worker (SQLite)"), (3, "one process running three slots (PostgreSQL)")):
            after_s, before_s = SIGTERM_REFERENCE_S[slots]
            print(f"SIGTERM with every NATS server down, {what}: exits after {sigterm_exit_s(tmp, registry, slots):.1f} s "
                  f"(reference {after_s} s; {before_s} s before a stop stopped waiting for an unreachable server)",
                  flush=True)
