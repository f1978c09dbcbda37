"""The broker fixture itself: a message goes through, and a restart keeps the port."""
import threading

import paho.mqtt.client as mqtt


def _roundtrip(broker, topic):
    got = threading.Event()
    received = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: (received.append(m.payload), got.set())
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for _ in range(50):
        pub.publish(topic, b"hello", qos=1).wait_for_publish(timeout=5)
        if got.wait(0.1):
            break
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return received


def test_message_goes_through_and_survives_restart(mosquitto):
    assert _roundtrip(mosquitto, "ew/test/a")[0] == b"hello"
    port = mosquitto.port
    mosquitto.stop()
    mosquitto.start()
    assert mosquitto.port == port
    assert _roundtrip(mosquitto, "ew/test/b")[0] == b"hello"
