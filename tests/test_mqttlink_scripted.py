"""The fusion server's MQTT link against a scripted broker on loopback (tests/scripted_broker.py):
a refused CONNACK, malformed packets, a connection cut inside a packet, a session taken over,
random bytes.  Whatever the broker sends, the link's I/O thread lives on, says it is connected
only when it is, and reconnects."""
from __future__ import annotations

import logging
import random

import pytest

from fusion.transport import mqttlink, mqttwire
from fusion.transport.mqttlink import MqttLink
from fuzzing import COUNTS
from scripted_broker import OPENING, ScriptedBroker, connack
from simulator.broker import wait_until

WAIT_S = 15.0
NOT_AUTHORIZED = 0x87
GOOD = mqttwire.encode_publish("t/ok", b"good", 1, packet_id=7)
GARBAGE_CONNECTIONS = 30


def _publish_body(topic: bytes, rest: bytes, flags: int = 0x02) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + rest
    return bytes([(mqttwire.PUBLISH << 4) | flags]) + mqttwire.encode_varint(len(body)) + body


MALFORMED = {
    "topic not UTF-8": _publish_body(b"t/\xff\xfe", b"\x00\x07\x00x"),
    "QoS 3": _publish_body(b"t/a", b"\x00\x07\x00x", flags=0x06),
    "packet id 0": _publish_body(b"t/a", b"\x00\x00\x00x"),
    "topic past the end": bytes([mqttwire.PUBLISH << 4 | 0x02, 4, 0, 200, ord("t"), ord("/")]),
    "properties past the end": _publish_body(b"t/a", b"\x00\x07\x10\x26\x00"),
    "unknown property": _publish_body(b"t/a", b"\x00\x07\x02\x7f\x00x"),
    "a packet for brokers": mqttwire.encode_subscribe(3, [("t/#", 1)]),
    "varint of five bytes": bytes([mqttwire.PUBLISH << 4]) + b"\xff\xff\xff\xff\x01",
    "PUBACK too short": bytes([mqttwire.PUBACK << 4, 1, 0]),
    "a 256 MB packet announced": bytes([mqttwire.PUBLISH << 4 | 0x02]) + mqttwire.encode_varint(mqttwire.VARINT_MAX),
    "CONNACK mid-session, bad properties": bytes([mqttwire.CONNACK << 4, 4, 0, 0, 5, 0x21]),
}


@pytest.fixture(autouse=True)
def _link_warnings_seen(caplog):
    """The link's warnings reach caplog whatever other tests set the "fusion" logger's level to."""
    caplog.set_level(logging.WARNING, logger="fusion.transport.mqttlink")


def _link(broker: ScriptedBroker) -> MqttLink:
    link = MqttLink(broker.url, "fusion-scripted", ["t/#"])
    link.start(timeout_s=WAIT_S)
    return link


def _take(link: MqttLink, n: int = 1) -> list:
    got: list = []
    wait_until(lambda: got.extend(m for _, m in link.take(n, 0.05)) or len(got) >= n, WAIT_S)
    return got


def _alive(link: MqttLink) -> bool:
    return link._thread is not None and link._thread.is_alive()


def test_a_refused_connack_is_a_one_line_error_at_start():
    broker = ScriptedBroker([[("expect", mqttwire.CONNECT), ("send", connack(NOT_AUTHORIZED))]])
    try:
        with pytest.raises(ConnectionRefusedError, match="refused the connection .reason 0x87"):
            MqttLink(broker.url, "fusion-scripted", ["t/#"]).start(timeout_s=WAIT_S)
    finally:
        broker.close()


def test_refused_on_reconnect_it_keeps_trying_and_gets_back():
    broker = ScriptedBroker([OPENING + [("close",)],
                             [("expect", mqttwire.CONNECT), ("send", connack(NOT_AUTHORIZED))],
                             OPENING + [("send", GOOD), ("hold",)]])
    link = _link(broker)
    try:
        got = _take(link)
        assert [(m.topic, m.payload) for m in got] == [("t/ok", b"good")] and broker.connections == 3
        assert link.connected.is_set() and _alive(link) and not broker.errors
    finally:
        link.stop()
        broker.close()
    assert not link.connected.is_set()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_packet_means_a_reconnect_not_a_dead_thread(name, caplog):
    broker = ScriptedBroker([OPENING + [("send", MALFORMED[name]), ("hold",)], OPENING + [("send", GOOD), ("hold",)]])
    link = _link(broker)
    try:
        got = _take(link)
        assert [(m.topic, m.payload) for m in got] == [("t/ok", b"good")], name
        assert broker.connections == 2 and link.connected.is_set() and _alive(link)
        assert "connection to the broker lost (" in caplog.text
        link.ack(got)
        assert wait_until(lambda: mqttwire.PUBACK in broker.received[1], WAIT_S)   # the good one is acknowledged
    finally:
        link.stop()
        broker.close()


def test_a_connection_cut_inside_a_packet_is_resumed_on_the_next():
    half = GOOD[:len(GOOD) // 2]
    broker = ScriptedBroker([OPENING + [("send", half), ("close",)], OPENING + [("send", GOOD), ("hold",)]])
    link = _link(broker)
    try:
        got = _take(link)
        assert [(m.topic, m.payload) for m in got] == [("t/ok", b"good")] and broker.connections == 2
        assert link.take(10, 0.5) == []     # the half packet was never delivered
    finally:
        link.stop()
        broker.close()


def test_a_session_taken_over_backs_off_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(mqttlink, "TAKEOVER_BACKOFF_S", 0.3)
    taken = bytes([mqttwire.DISCONNECT << 4, 1, mqttwire.SESSION_TAKEN_OVER])
    broker = ScriptedBroker([OPENING + [("send", taken), ("hold",)], OPENING + [("send", taken), ("hold",)],
                             OPENING + [("send", GOOD), ("hold",)]])
    with caplog.at_level(logging.ERROR, logger="fusion.transport.mqttlink"):
        link = _link(broker)
        try:
            assert [m.payload for m in _take(link)] == [b"good"] and broker.connections == 3
            assert link.takeovers.count == 2
            lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(lines) == 2 and all("taken over" in line and "second server" in line for line in lines)
            assert "1 time(s)" in lines[0] and "backing off 0.3 s" in lines[0]     # each takeover doubles the wait
            assert "2 time(s)" in lines[1] and "backing off 0.6 s" in lines[1]
        finally:
            link.stop()
            broker.close()


def test_a_bug_in_handling_a_packet_does_not_end_the_io_thread(monkeypatch, caplog):
    broker = ScriptedBroker([OPENING + [("send", GOOD), ("hold",)]])
    link = _link(broker)
    real = link._dispatch
    calls = []

    def once_broken(packets, received_ns):
        calls.append(packets)
        if len(calls) == 1 and packets:
            raise RuntimeError("a bug")
        real(packets, received_ns)

    monkeypatch.setattr(link, "_dispatch", once_broken)
    try:
        assert wait_until(lambda: broker.connections >= 2 and link.connected.is_set(), WAIT_S)
        assert _alive(link) and "MQTT I/O failed; reconnecting" in caplog.text
        assert [m.payload for m in _take(link)] == [b"good"]      # the broker sends it again
    finally:
        link.stop()
        broker.close()


def test_a_session_closed_again_and_again_right_after_connecting_is_taken_as_a_takeover(monkeypatch, caplog):
    """mosquitto closes the older connection without a word: three closes in a row, each soon
    after connecting while connecting again works, are a takeover (one ERROR line, a back-off)."""
    monkeypatch.setattr(mqttlink, "TAKEOVER_BACKOFF_S", 0.3)
    broker = ScriptedBroker([OPENING + [("close",)]] * mqttlink.FLAP_LIMIT + [OPENING + [("send", GOOD), ("hold",)]])
    with caplog.at_level(logging.WARNING, logger="fusion.transport.mqttlink"):
        link = _link(broker)
        try:
            assert [m.payload for m in _take(link)] == [b"good"] and broker.connections == mqttlink.FLAP_LIMIT + 1
            assert link.takeovers.count == 1
        finally:
            link.stop()
            broker.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [logging.WARNING, logging.ERROR], lines   # one line per series
    assert "taken over" in lines[1][1] and "second server" in lines[1][1] and "backing off 0.3 s" in lines[1][1]


def test_random_bytes_from_the_broker_never_kill_the_link(monkeypatch):
    monkeypatch.setattr(mqttlink, "TAKEOVER_BACKOFF_S", 0.01)   # cut-off garbage looks like takeovers too
    rng = random.Random(15)
    scripts = [OPENING + [("send", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))), ("close",)]
               for _ in range(GARBAGE_CONNECTIONS)]
    broker = ScriptedBroker(scripts + [OPENING + [("send", GOOD), ("hold",)]])
    link = _link(broker)
    try:
        got = []
        assert wait_until(lambda: got.extend(m for _, m in link.take(10, 0.05) if m.topic == "t/ok") or got, WAIT_S)
        assert broker.connections == GARBAGE_CONNECTIONS + 1 and link.connected.is_set() and _alive(link)
    finally:
        link.stop()
        broker.close()
    COUNTS["mqtt-link-random-streams"] = COUNTS.get("mqtt-link-random-streams", 0) + GARBAGE_CONNECTIONS
    print(f"fuzz mqtt-link-random-streams: {GARBAGE_CONNECTIONS} cases")


def test_a_dead_io_thread_never_says_connected(monkeypatch):
    """Whatever ends the I/O thread (here an exit raised inside it), connected is cleared with it."""
    broker = ScriptedBroker([OPENING + [("hold",)]])
    link = _link(broker)
    try:
        assert link.connected.is_set() and _alive(link)

        def dying(sock) -> bool:
            raise SystemExit("the I/O thread ends")

        monkeypatch.setattr(link, "_flush", dying)
        monkeypatch.setattr("threading.excepthook", lambda args: None)   # its end is the point, not noise
        link.publish("t/out", b"x")
        assert wait_until(lambda: not _alive(link), WAIT_S)
        assert not link.connected.is_set()
    finally:
        link.stop(timeout_s=1.0)
        broker.close()
