"""earwitness.brokerurls: one split and check of a broker URL for the node, the fusion server and the simulator."""
from __future__ import annotations

import pytest

from earwitness.brokerurls import split_broker_url

MQTT = {"mqtt": 1883, "mqtts": 8883}


@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1:18830", ("127.0.0.1", 18830, "mqtt")),
    ("mqtts://broker.example.org", ("broker.example.org", 8883, "mqtts")),
    ("mqtt://[::1]", ("::1", 1883, "mqtt")),
])
def test_a_broker_url_gives_host_port_and_scheme(url, expected):
    assert split_broker_url(url, MQTT, "mqtt.url") == expected


@pytest.mark.parametrize("url, message", [
    ("mqtt://[::1:1883", "mqtt.url is not a URL: 'mqtt://[::1:1883'"),
    ("http://host:1883", "mqtt.url must be mqtt://host[:port] or mqtts://host[:port], not 'http://host:1883'"),
    ("mqtt://:1883", "mqtt.url must be mqtt://host[:port] or mqtts://host[:port], not 'mqtt://:1883'"),
    ("mqtt://host:port", "bad port in mqtt.url 'mqtt://host:port'"),
    ("mqtt://host:70000", "bad port in mqtt.url 'mqtt://host:70000'"),
])
def test_a_malformed_broker_url_is_one_line_naming_it(url, message):
    with pytest.raises(ValueError) as caught:
        split_broker_url(url, MQTT, "mqtt.url")
    assert str(caught.value) == message
