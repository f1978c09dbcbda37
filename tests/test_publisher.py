"""edge.publisher against a real mosquitto: pulses arrive signed and in order, none lost
through a broker outage, status is retained, commands reach the node."""
import json
import logging
import time

import nacl.signing
import pytest

from earwitness import topics, wire
from edge.config import MqttSection
from edge.outbox import Outbox
from edge.publisher import Publisher
from simulator.broker import Collector, Mosquitto, Tls, free_port, wait_until

pytestmark = pytest.mark.integration

NODE, SITE = "roof-1", "test"
PULSES = topics.pulse(SITE, NODE)


@pytest.fixture
def key():
    return nacl.signing.SigningKey.generate()


def _sink(broker, client_id="test-sink"):
    """Everything of the site, in a persistent session: nothing is lost while it reconnects."""
    return Collector(broker.url, "ew/v1/#", client_id=client_id, persistent=True).start()


def mqtt_cfg(broker, **kw):
    return MqttSection(url=broker.url, reconnect_min_s=1, reconnect_max_s=1, keepalive_s=5, **kw)


def append_pulse(box, key):
    nid = wire.node_id(NODE)
    return box.append(lambda seq: wire.encode(wire.PulseMessage(nid, seq, 1_700_000_000_000_000_000 + seq, 500, "system",
                                                                {"peak_dbfs": -6.0}), key))


def decoded(sink, key):
    ring = wire.Keyring({NODE: key.verify_key})
    return [wire.decode(p, ring, topic_node=NODE) for p in sink.payloads(PULSES)]


def test_pulses_arrive_verified_in_order_and_leave_the_outbox(mosquitto, tmp_path, key):
    sink = _sink(mosquitto)
    box = Outbox(tmp_path / "o.db")
    commands = []
    pub = Publisher(mqtt_cfg(mosquitto, inflight=8), SITE, NODE, box, on_command=commands.append).start()
    try:
        for _ in range(40):
            append_pulse(box, key)
            pub.notify()
        assert wait_until(lambda: len(sink.payloads(PULSES)) >= 40, 20)
        assert [m.seq for m in decoded(sink, key)] == list(range(1, 41))
        assert wait_until(lambda: box.depth() == 0, 10)
        assert pub.published == 40
        assert sink.has(topics.status(SITE, NODE), b"online", retained=False)
        assert sink.publish(pub.topics.cmd, json.dumps({"cmd": "ping"}))
        assert sink.publish(pub.topics.cmd, b"{not json")
        assert wait_until(lambda: commands == [{"cmd": "ping"}] and pub.bad_commands == 1, 10)
        assert pub.publish_json(pub.topics.health, {"ok": 1})
        assert wait_until(lambda: sink.payloads(topics.health(SITE, NODE)) == [b'{"ok":1}'], 10)
    finally:
        pub.stop()
        sink.close()
    late = _sink(mosquitto, client_id="late")  # the retained status says the node left
    assert wait_until(lambda: late.has(pub.topics.status, b"offline", retained=True), 10)
    late.close()


def test_outage_loses_nothing(mosquitto, tmp_path, key):
    sink = _sink(mosquitto)
    box = Outbox(tmp_path / "o.db")
    pub = Publisher(mqtt_cfg(mosquitto, inflight=4), SITE, NODE, box).start()
    try:
        for _ in range(10):
            append_pulse(box, key)
            pub.notify()
        assert wait_until(lambda: len(sink.payloads(PULSES)) >= 10, 20)
        mosquitto.stop()
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:  # pulses keep coming while the broker is away
            append_pulse(box, key)
            pub.notify()
            time.sleep(0.05)
        assert box.depth() > 4  # more than paho holds: the rest are only on disk
        mosquitto.start()
        last = box.last_seq()
        guard = wire.ReplayGuard()
        assert wait_until(lambda: box.depth() == 0, 30)
        assert wait_until(lambda: {m.seq for m in decoded(sink, key)} >= set(range(1, last + 1)), 15)
        unique = [m.seq for m in decoded(sink, key) if guard.accept(m)]
        assert sorted(unique) == list(range(1, last + 1))
    finally:
        pub.stop()
        sink.close()


def test_publisher_never_blocks_without_a_broker_and_sends_once_there_is_one(tmp_path, key):
    box = Outbox(tmp_path / "o.db")
    broker = Mosquitto(tmp_path / "late-broker", persistence=True).start()
    sink = _sink(broker)  # its persistent session waits in the broker's persistence file
    broker.stop()
    cfg = MqttSection(url=broker.url, reconnect_min_s=1, reconnect_max_s=1, inflight=4)
    pub = Publisher(cfg, SITE, NODE, box).start()
    t0 = time.monotonic()
    for _ in range(50):
        append_pulse(box, key)
        pub.notify()
    assert time.monotonic() - t0 < 5
    time.sleep(0.5)
    assert box.depth() == 50 and pub.inflight() <= 4
    assert not pub.publish_json(pub.topics.health, {"dropped": True})
    broker.start()
    try:
        assert wait_until(lambda: box.depth() == 0, 20)
        assert wait_until(lambda: sorted({m.seq for m in decoded(sink, key)}) == list(range(1, 51)), 10)
        sink.close()
    finally:
        pub.stop()
        broker.stop()


def test_a_broker_down_at_start_is_waited_for_with_a_warning_a_try(tmp_path, key, caplog):
    """As the fusion server (tests/test_fusion_broker_wait.py): the node keeps trying, says so in
    one line a try, and its pulses go out once a broker comes up on the port."""
    port = free_port()
    box = Outbox(tmp_path / "o.db")
    pub = Publisher(MqttSection(url=f"mqtt://127.0.0.1:{port}", reconnect_min_s=1, reconnect_max_s=2, keepalive_s=5),
                    SITE, NODE, box)
    broker = None
    with caplog.at_level(logging.WARNING, logger="edge.publisher"):
        try:
            pub.start()
            for _ in range(3):
                append_pulse(box, key)
            pub.notify()
            assert wait_until(lambda: len(_cannot_reach(caplog)) >= 2, 30), caplog.text
            assert all(f"127.0.0.1:{port}" in line for line in _cannot_reach(caplog))
            broker = Mosquitto(tmp_path / "broker", port=port).start()
            assert wait_until(lambda: box.depth() == 0, 30), caplog.text
            assert pub.published == 3
        finally:
            pub.stop()
            if broker is not None:
                broker.stop()


def _cannot_reach(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot reach the broker" in r.getMessage()]


@pytest.mark.slow
def test_tls_with_a_client_certificate(tmp_path, key):
    from tls_certs import make_pki

    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", tls=Tls(pki["ca"], pki["server_cert"], pki["server_key"])).start()
    try:
        sink = _sink(broker)  # on the plain listener
        box = Outbox(tmp_path / "o.db")
        url = broker.tls_url
        pub = Publisher(MqttSection(url=url, ca=pki["ca"], cert=pki["client_cert"], cert_key=pki["client_key"],
                                    reconnect_min_s=1, reconnect_max_s=1), SITE, NODE, box).start()
        for _ in range(3):
            append_pulse(box, key)
        pub.notify()
        assert wait_until(lambda: len(sink.payloads(PULSES)) == 3, 15)
        assert [m.seq for m in decoded(sink, key)] == [1, 2, 3]
        pub.stop()
        # Without a client certificate the broker refuses the node: nothing leaves the outbox.
        box2 = Outbox(tmp_path / "o2.db")
        anon = Publisher(MqttSection(url=url, ca=pki["ca"], reconnect_min_s=1, reconnect_max_s=1), SITE, "roof-2", box2).start()
        append_pulse(box2, key)
        anon.notify()
        time.sleep(2)
        assert not anon.connected and box2.depth() == 1
        anon.stop()
        sink.close()
    finally:
        broker.stop()
