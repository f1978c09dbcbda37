"""The shared broker and collector (simulator/broker.py) themselves: a message goes through, a
restart keeps the port, a kill loses what was never saved, a TLS listener wants a certificate."""
import itertools

import pytest

from simulator.broker import BrokerError, Collector, Mosquitto, Tls, wait_until, wait_while_moving

pytestmark = pytest.mark.integration


def _roundtrip(broker, topic):
    with Collector(broker.url, topic) as sub, Collector(broker.url) as pub:
        assert pub.publish(topic, b"hello")
        assert wait_until(lambda: sub.count() > 0, 10)
        return sub.payloads(topic)


def test_message_goes_through_and_survives_restart(mosquitto):
    assert _roundtrip(mosquitto, "ew/test/a") == [b"hello"]
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    assert _roundtrip(mosquitto, "ew/test/b") == [b"hello"]


def test_kill_then_start_keeps_only_what_was_saved(tmp_path):
    """SIGKILL: a broker without persistence comes back empty; the port is the same."""
    broker = Mosquitto(tmp_path / "mq").start()
    try:
        with Collector(broker.url, client_id="pub") as pub:
            assert pub.publish("ew/test/kept", b"retained", retain=True)
        with Collector(broker.url, "ew/test/#") as sub:
            assert wait_until(lambda: sub.has("ew/test/kept", b"retained", retained=True), 10)
        broker.kill()
        assert not broker.running
        broker.start()
        with Collector(broker.url, "ew/test/#") as sub:
            assert _roundtrip(broker, "ew/test/after") == [b"hello"]
            assert sub.payloads("ew/test/kept") == []    # the retained message was never saved
    finally:
        broker.stop()


def test_tls_listener_wants_a_client_certificate(tmp_path):
    from tls_certs import make_pki

    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "mq", tls=Tls(pki["ca"], pki["server_cert"], pki["server_key"])).start()
    try:
        with Collector(broker.url, "ew/tls/#") as plain, \
             Collector(broker.tls_url, client_id="with-cert",
                       tls={"ca": pki["ca"], "cert": pki["client_cert"], "key": pki["client_key"]}) as client:
            assert client.publish("ew/tls/a", b"over tls")
            assert wait_until(lambda: plain.payloads("ew/tls/a") == [b"over tls"], 10)
        anonymous = Collector(broker.tls_url, client_id="no-cert", tls={"ca": pki["ca"]})
        with pytest.raises(ConnectionError):
            anonymous.start(timeout_s=5)
        assert not anonymous.connected
        anonymous.close()
    finally:
        broker.stop()


def test_a_bad_configuration_is_a_one_line_error(tmp_path):
    broker = Mosquitto(tmp_path / "mq", extra_conf="no_such_option 1")
    with pytest.raises(BrokerError, match="mosquitto exited at start"):
        broker.start()
    assert not broker.running


def test_a_slow_consumer_is_waited_for_and_a_stopped_one_is_not():
    """A consumer that keeps taking is waited for past the stall time, however long it takes; one
    that stops taking ends the wait one stall time later, not true."""
    taken = itertools.count()
    poll_s, stall_s, needed = 0.01, 0.05, 30    # one taken per poll: 0.3 s, six stall times
    count = [0]

    def progress():
        count[0] = next(taken)
        return count[0]

    assert wait_while_moving(lambda: count[0] >= needed, progress, stall_s, poll_s)
    assert not wait_while_moving(lambda: False, lambda: count[0], stall_s, poll_s)
