"""The broker fixture's restart keeps persistent sessions: a message published before the
subscriber is back reaches it (the node's outage tests rely on this)."""
import paho.mqtt.client as mqtt

from mqtt_sink import Sink


def test_restart_keeps_a_persistent_session(mosquitto):
    sink = Sink(mosquitto, topic="ew/persist/#")
    mosquitto.stop()
    assert (mosquitto.workdir / "mosquitto.db").exists()
    mosquitto.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(mosquitto.host, mosquitto.port)  # before the sink has reconnected
    pub.loop_start()
    pub.publish("ew/persist/a", b"kept", qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    assert sink.wait_for(lambda: sink.payloads("/a") == [b"kept"], 10)
    sink.close()
