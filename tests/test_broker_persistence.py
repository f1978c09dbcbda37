"""The broker fixture's restart keeps persistent sessions: a message published before the
subscriber is back reaches it (the node's outage tests rely on this)."""
import pytest

from simulator.broker import Collector, wait_until

pytestmark = pytest.mark.integration


def test_restart_keeps_a_persistent_session(mosquitto):
    sink = Collector(mosquitto.url, "ew/persist/#", client_id="test-sink", persistent=True).start()
    mosquitto.stop()
    assert (mosquitto.workdir / "mosquitto.db").exists()
    mosquitto.start()
    with Collector(mosquitto.url, client_id="pub") as pub:   # before the sink has reconnected
        assert pub.publish("ew/persist/a", b"kept")
    assert wait_until(lambda: sink.payloads("ew/persist/a") == [b"kept"], 10)
    sink.close()
