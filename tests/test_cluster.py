"""The cluster engine: a 3-server NATS JetStream cluster on loopback (simulator.natscluster), nodes
publishing MQTT 3.1.1 QoS 1 to its gateways with failover, fusion workers pulling from its
replicated streams into PostgreSQL; servers killed with SIGKILL mid-run."""
from __future__ import annotations

import json
import time

import nacl.signing
import pytest

from earwitness import topics, wire
from edge.config import MqttSection
from edge.outbox import Outbox
from edge.publisher import Publisher
from fusion.server.store import Store
from fusion.transport.natslink import MQTT_MSGS_STREAM, NatsLink, streams
from fusion_db import database
from fusion_site import fusion_process, write_fusion_config
from simulator import cityfleet, fleet, live
from simulator.broker import wait_until
from simulator.natscluster import NatsCluster, read_stream, stream_leader

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]

NODE, SITE = "roof-1", "test"
WAIT_S = 60.0
CITY_SECONDS = 20.0        # a slice of the city's night: 33 incidents
KILL_AT_S = 8.0            # into the publishing: a server dies
FLEET_RANGE_M = 2500.0     # the fleet model's farthest first arrival: as a city configures its server


@pytest.fixture
def cluster(tmp_path):
    with NatsCluster(tmp_path / "nats") as c:
        yield c


def _append(box, key, nid):
    return box.append(lambda seq: wire.encode(wire.PulseMessage(nid, seq, 1_700_000_000_000_000_000 + seq, 500, "system",
                                                                {"peak_dbfs": -6.0}), key))


def _take_all(link, n, timeout_s=WAIT_S):
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        batch = link.take(2000, 0.5)
        link.ack([m for _, m in batch])
        got += batch
    return got


def test_node_fails_over_to_another_server_and_loses_no_pulse(cluster, tmp_path):
    """The node's real publisher (MQTT 3.1.1 to the gateways, every server in its url): the server
    it talks to is killed; its outbox drains through another, and the stream holds every pulse."""
    key = nacl.signing.SigningKey.generate()
    nid = wire.node_id(NODE)
    box = Outbox(tmp_path / "o.db")
    cfg = MqttSection(url=cluster.mqtt_url, protocol="3.1.1", reconnect_min_s=1, reconnect_max_s=1, keepalive_s=5)
    link = NatsLink(cluster.url, SITE, "test-reader", [topics.pulse(SITE, "+")])
    link.start()   # first: the gateway's stream keeps what a consumer is there for
    pub = Publisher(cfg, SITE, NODE, box).start()
    try:
        for _ in range(100):
            _append(box, key, nid)
        pub.notify()
        assert wait_until(lambda: box.depth() == 0, WAIT_S)
        first = cluster.mqtt_ports.index(pub.client.port)
        cluster.kill(first)
        for _ in range(100):
            _append(box, key, nid)
        pub.notify()
        assert wait_until(lambda: box.depth() == 0, WAIT_S)
        assert pub.client.port != cluster.mqtt_ports[first]
        got = _take_all(link, 200)
    finally:
        pub.stop()
        link.stop()
    ring = wire.Keyring({NODE: key.verify_key})
    seqs = sorted({wire.decode(m.payload, ring, topic_node=NODE).seq % wire.SEQ_SPAN for _, m in got})
    assert seqs == list(range(1, 201))
    assert all(m.topic == topics.pulse(SITE, NODE) for _, m in got)


def test_alerts_are_stored_once_however_often_sent(cluster):
    """What a worker sends again (its outbox after a crash, or the worker that took its slot over)
    is stored once in the output stream: the message id is its subject and bytes."""
    link = NatsLink(cluster.url, SITE, "test-sender", [])
    link.start()
    try:
        sent = [link.publish(topics.incident(SITE), b'{"incident": "a", "revision": %d}' % (k % 3)) for k in range(9)]
        assert all(d.wait(WAIT_S) for d in sent)
    finally:
        link.stop()
    out = read_stream(cluster.url, streams(SITE, 1)["out"].name)
    assert sorted(data for _, data, _ in out) == [b'{"incident": "a", "revision": %d}' % k for k in range(3)]


def _failover_gap_s(received_ns: list[int], kill_ns: int) -> tuple[float, float]:
    """The longest pause between consecutive stored pulses' arrivals at the worker: before the
    kill, and from the kill on (the failover gap)."""
    before = sorted(t for t in received_ns if t < kill_ns)
    after = sorted([kill_ns] + [t for t in received_ns if t >= kill_ns])
    gap = lambda ts: max((b - a for a, b in zip(ts, ts[1:])), default=0) / 1e9   # noqa: E731
    return gap(before), gap(after)


def test_one_worker_stores_every_accepted_pulse_of_a_city_through_a_server_kill(cluster, tmp_path):
    """A 1,000-sensor city's fleet pulses through the cluster to one fusion worker process on
    PostgreSQL; the server leading the gateway's stream of pulses is killed mid-run: every pulse a gateway
    accepted is stored once, alerts keep coming, each revision published once."""
    scn = cityfleet.city_scenario(CITY_SECONDS)
    pulses, _ = fleet.pulses(scn)
    signers, registry = cityfleet.provision(scn, tmp_path)
    items = cityfleet.signed(pulses, signers)
    names = streams(live.SITE, 1)
    with database("postgresql", tmp_path) as (url, schema):
        conf = write_fusion_config(tmp_path / "fusion.toml", live.SITE, cluster.url, registry, "worker-0",
                                   scn.atmosphere.temperature_c, database=url,
                                   extra=f'schema = "{schema}"\nmax_range_m = {FLEET_RANGE_M}\nrequest_clips = false\n')
        log = tmp_path / "fusion.log"
        worker = fusion_process(conf, log)
        try:
            assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()[-2000:]
            nodes = cityfleet.FleetPublisher(cluster.mqtt_urls, protocol="3.1.1").start()
            killed = {}

            def kill_leader(elapsed_s):
                if elapsed_s >= KILL_AT_S and not killed:
                    leader = stream_leader(cluster.url, MQTT_MSGS_STREAM)
                    killed.update(server=leader, at_ns=time.time_ns())
                    cluster.kill(int(leader[1:]))

            nodes.publish_paced(items, scn.start_ns, on_second=kill_leader)
            assert wait_until(lambda: nodes.accepted == len(items), WAIT_S), (nodes.accepted, len(items))
            with Store(url, schema=schema) as store:
                assert wait_until(lambda: store.count_pulses() == len(items), WAIT_S), (store.count_pulses(), len(items))
                stored = store.pulses()
            nodes.close()
        finally:
            worker.terminate()
            worker.wait(WAIT_S)
        alerts = read_stream(cluster.url, names["out"].name)
    assert killed, "the run ended before the kill"
    assert len(stored) == len({(p["node"], p["seq"]) for p in stored}) == len(items)   # each once
    incident_alerts = [json.loads(d) for s, d, _ in alerts if s == "ew.v1.sim.incident"]
    revisions = [(a["incident"], a["revision"]) for a in incident_alerts]
    assert len(revisions) == len(set(revisions))
    after_kill = [t for s, _, t in alerts if s == "ew.v1.sim.incident" and t > killed["at_ns"]]
    assert after_kill, "no alert after the kill"
    before_s, gap_s = _failover_gap_s([p["received_ns"] for p in stored], killed["at_ns"])
    print(f"\none worker, server {killed['server']} (leading the pulses' stream) killed: {len(items)} pulses accepted and "
          f"stored, {len(incident_alerts)} alerts ({len(after_kill)} after the kill); longest pause in ingest "
          f"{before_s:.2f} s before the kill, {gap_s:.2f} s from it (the failover gap)")
