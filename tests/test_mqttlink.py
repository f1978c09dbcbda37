"""The fusion server's own MQTT v5 client: packet codec, and the link against a real mosquitto
(persistent session, acks after commit, redelivery, reconnect, shared subscription, TLS)."""
from __future__ import annotations

import time

import pytest

from fusion.transport import mqttwire
from fusion.transport.mqttlink import MqttLink
from simulator.broker import Collector, Mosquitto, free_port, publish_all, wait_until

WAIT_S = 20.0
TOPIC = "ew/v1/t/node/+/pulse"
BIG_BYTES = 3_000_000   # spans many reads: reassembly of a clip-sized message


def _topic(node: str) -> str:
    return f"ew/v1/t/node/{node}/pulse"


def _take_all(link: MqttLink, n: int, timeout_s: float = WAIT_S) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += [msg for _, msg in link.take(n - len(got), 0.1)]
    return got


# -- codec ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, size", [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_152, 4),
                                         (mqttwire.VARINT_MAX, 4)])
def test_varint_round_trip_and_size(value, size):
    raw = mqttwire.encode_varint(value)
    assert len(raw) == size and mqttwire.decode_varint(b"x" + raw, 1) == (value, 1 + size)
    assert mqttwire.decode_varint(raw[:-1], 0) is None          # cut short: wait for more


def test_varint_out_of_range_and_too_long():
    with pytest.raises(ValueError):
        mqttwire.encode_varint(mqttwire.VARINT_MAX + 1)
    with pytest.raises(mqttwire.ProtocolError):
        mqttwire.decode_varint(b"\xff\xff\xff\xff\x01", 0)


def _publish_with_properties(topic: str, payload: bytes, mid: int) -> bytes:
    # What a broker may add: a subscription identifier (0x0B) and a user property (0x26).
    props = b"\x0b\x05" + b"\x26" + mqttwire._string("k") + mqttwire._string("v")
    body = mqttwire._string(topic) + mid.to_bytes(2, "big") + mqttwire.encode_varint(len(props)) + props + payload
    return mqttwire._packet((mqttwire.PUBLISH << 4) | 0x0A, body)   # QoS 1, DUP


def test_reader_reassembles_any_split_of_a_stream():
    connack = bytes([mqttwire.CONNACK << 4]) + b"\x06\x01\x00\x03\x21\x00\x14"   # session present, receive max 20
    suback = bytes([mqttwire.SUBACK << 4, 4]) + b"\x00\x07\x00\x80"              # one filter refused
    stream = (connack + suback + mqttwire.encode_publish("a/b", b"zero", 0, retain=True)
              + _publish_with_properties("c/d", b"\x00one", 513) + bytes([mqttwire.PUBACK << 4, 2, 0, 9])
              + mqttwire.encode_publish("e", b"x" * 300, 1, packet_id=65535) + bytes([mqttwire.PINGRESP << 4, 0]))
    for step in (1, 2, 7, len(stream)):
        reader, packets = mqttwire.PacketReader(), []
        for i in range(0, len(stream), step):
            packets += reader.feed(stream[i:i + step])
        ack, sub, p0, p1, puback, p2, ping = packets
        assert (ack.kind, ack.session_present, ack.failed, ack.props) == (mqttwire.CONNACK, True, False, {0x21: 20})
        assert (sub.kind, sub.mid, sub.failed) == (mqttwire.SUBACK, 7, True)
        assert (p0.topic, p0.payload, p0.qos, p0.retain, p0.dup, p0.mid) == ("a/b", b"zero", 0, True, False, 0)
        assert (p1.topic, p1.payload, p1.qos, p1.dup, p1.mid) == ("c/d", b"\x00one", 1, True, 513)
        assert (puback.kind, puback.mid, puback.failed) == (mqttwire.PUBACK, 9, False)
        assert (p2.payload, p2.mid) == (b"x" * 300, 65535) and ping.kind == mqttwire.PINGRESP


def test_reader_refuses_a_packet_type_a_client_never_gets():
    with pytest.raises(mqttwire.ProtocolError):
        mqttwire.PacketReader().feed(mqttwire.encode_subscribe(1, [("a", 1)]))


# -- against mosquitto --------------------------------------------------------------------------

def test_unreachable_broker_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        MqttLink(f"mqtt://127.0.0.1:{free_port()}", "nobody", [TOPIC]).start(timeout_s=2.0)


@pytest.mark.integration
def test_receives_publishes_and_acks_only_what_it_was_told(mosquitto):
    sink = Collector(mosquitto.url, "out/#").start()
    link = MqttLink(mosquitto.url, "fusion-a", [TOPIC])
    link.start()
    items = [(_topic(f"n{i % 3}"), bytes([i % 256]) * (i % 50 + 1)) for i in range(500)]
    items.append((_topic("big"), bytes(range(256)) * (BIG_BYTES // 256)))
    publish_all(mosquitto.url, items)
    got = _take_all(link, len(items))
    assert [(m.topic, m.payload) for m in got] == items and all(m.qos == 1 and not m.dup for m in got)
    acked = got[:300]
    link.ack(acked)
    delivery = link.publish("out/alert", b"after the ack")
    assert delivery.wait(WAIT_S)
    assert wait_until(lambda: sink.has("out/alert", b"after the ack"), WAIT_S)
    link.stop()
    sink.close()
    # The same session again: what was not acknowledged comes again, marked as a redelivery.
    link = MqttLink(mosquitto.url, "fusion-a", [TOPIC])
    link.start()
    again = _take_all(link, len(items) - len(acked))
    assert [(m.topic, m.payload) for m in again] == items[len(acked):] and all(m.dup for m in again)
    link.ack(again)
    link.stop()
    link = MqttLink(mosquitto.url, "fusion-a", [TOPIC])
    link.start()
    assert link.take(10, 1.0) == []     # everything acknowledged: nothing left
    link.stop()


@pytest.mark.integration
def test_after_a_broker_restart_it_reconnects_and_old_acks_are_void(tmp_path):
    broker = Mosquitto(tmp_path / "mq", persistence=True).start()
    try:
        link = MqttLink(broker.url, "fusion-r", [TOPIC])
        link.start()
        items = [(_topic("n1"), f"m{i}".encode()) for i in range(50)]
        publish_all(broker.url, items)
        before = _take_all(link, len(items))
        assert len(before) == len(items)
        broker.stop()
        assert wait_until(lambda: not link.connected.is_set(), WAIT_S)
        broker.start()   # same port, persistence kept: the session and its unacknowledged messages
        assert wait_until(link.connected.is_set, WAIT_S)
        link.ack(before)   # from the lost connection: must not acknowledge anything now
        after = _take_all(link, len(items))
        assert [(m.topic, m.payload) for m in after] == items and all(m.dup for m in after)
        link.stop()
        link = MqttLink(broker.url, "fusion-r", [TOPIC])
        link.start()
        again = _take_all(link, len(items))   # still unacknowledged: the old acks were void
        assert [(m.topic, m.payload) for m in again] == items
        link.ack(again)
        publish_all(broker.url, [(_topic("n2"), b"fresh")])
        fresh = _take_all(link, 1)
        assert [(m.payload, m.dup) for m in fresh] == [(b"fresh", False)]
        link.ack(fresh)
        link.stop()
    finally:
        broker.stop()


@pytest.mark.integration
def test_shared_subscription_splits_the_stream_between_links(mosquitto):
    links = [MqttLink(mosquitto.url, f"fusion-s{k}", [f"$share/g/{TOPIC}"]) for k in range(2)]
    for link in links:
        link.start()
    items = [(_topic(f"n{i % 7}"), f"p{i}".encode()) for i in range(400)]
    publish_all(mosquitto.url, items)
    got: list[list] = [[], []]
    assert wait_until(lambda: [got[k].extend(m for _, m in link.take(400, 0.05)) for k, link in enumerate(links)]
                      and sum(map(len, got)) >= len(items), WAIT_S)
    for link, msgs in zip(links, got):
        link.ack(msgs)
        link.stop()
    assert all(got) and sorted(m.payload for msgs in got for m in msgs) == sorted(p for _, p in items)


@pytest.mark.integration
def test_tls_with_the_production_broker_config(tmp_path):
    """The link as the server runs it in production: TLS, client certificate, the site ACL."""
    from test_hardware_broker import BROKER_DIR, broker_config
    from tls_certs import make_pki

    pki = make_pki(tmp_path / "pki", clients=("fusion", "roof-a"))
    port = free_port()
    conf = broker_config((BROKER_DIR / "mosquitto.conf").read_text(), port, tmp_path / "pki", tmp_path / "broker")
    broker = Mosquitto(tmp_path / "broker", port=port, conf=conf).start()
    try:
        tls = {"ca": str(pki["ca"]), "cert": str(pki["fusion_cert"]), "key": str(pki["fusion_key"])}
        link = MqttLink(f"mqtts://127.0.0.1:{port}", "fusion-tls", ["ew/v1/pgh/node/+/pulse"], tls=tls)
        link.start()
        node = MqttLink(f"mqtts://127.0.0.1:{port}", "roof-a", [],
                        tls={"ca": str(pki["ca"]), "cert": str(pki["roof-a_cert"]), "key": str(pki["roof-a_key"])})
        node.start()
        assert node.publish("ew/v1/pgh/node/roof-a/pulse", b"signed bytes").wait(WAIT_S)
        node.stop()
        got = _take_all(link, 1)
        assert [(m.topic, m.payload) for m in got] == [("ew/v1/pgh/node/roof-a/pulse", b"signed bytes")]
        link.ack(got)
        assert link.publish("ew/v1/pgh/incident", b"alert").wait(WAIT_S)
        link.stop()
    finally:
        broker.stop()


TAKEOVER_LINES = 4          # waited for in both logs together: two rounds of the fight
TAKEOVER_LINES_MAX = 8      # each server's at most, against ~24,000 warnings in 25 s before the back-off


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_server_on_the_same_identity_is_noticed_and_backed_off(mosquitto, tmp_path):
    """Two real `earwitness fusion` processes with one configuration (one MQTT client id): each
    takeover is one ERROR line that says why, and each backs off longer, instead of a flood."""
    import signal
    import subprocess
    import sys

    from fusion.server.registry import write_registry

    write_registry(tmp_path / "nodes.toml", {"n1": ("ab" * 32, {"x": 0.0, "y": 0.0, "z": 0.0})})
    (tmp_path / "fusion.toml").write_text(f'site = "twin"\nbroker = "{mosquitto.url}"\nregistry = "nodes.toml"\n'
                                          'database = "fusion.db"\nclient_id = "fusion-twin"\n')
    logs = [tmp_path / f"fusion-{k}.log" for k in range(2)]
    procs = []
    try:
        for log in logs:
            procs.append(subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", "fusion.toml"],
                                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(log, "wb")))
            assert wait_until(lambda log=log: "running" in log.read_text(), WAIT_S), log.read_text()

        def takeovers() -> list[int]:
            return [log.read_text().count("taken over") for log in logs]

        assert wait_until(lambda: sum(takeovers()) >= TAKEOVER_LINES, 60.0), takeovers()
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in procs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    for text in texts:
        lines = [line for line in text.splitlines() if "taken over" in line]
        assert 1 <= len(lines) <= TAKEOVER_LINES_MAX, text
        assert all("ERROR" in line and "second server" in line and "backing off" in line for line in lines)
        assert text.count("WARNING") <= TAKEOVER_LINES_MAX, text
