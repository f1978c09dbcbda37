"""edge.config: a good file loads with paths made absolute; every mistake is one clear line."""
import pathlib

import pytest

from edge.config import ConfigError, load
from unreadable_file import unreadable

GOOD = """
[node]
name = "roof-17"
site = "pgh"
key = "node.key"
data_dir = "var"

[audio]
source = "wav"
path = "in.wav"
realtime = false
start_utc = "2018-12-19T00:49:26Z"
pps_channel = 1

[timing]
pps = "audio"

[mqtt]
url = "mqtt://127.0.0.1:18830"
health_interval_s = 5

[detector]
threshold_db = 12
"""


def write(tmp_path, text):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_good_config(tmp_path):
    cfg = load(write(tmp_path, GOOD))
    assert cfg.node.name == "roof-17" and cfg.node.key == tmp_path / "node.key"
    assert cfg.audio.path == tmp_path / "in.wav" and cfg.audio.realtime is False
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("127.0.0.1", 18830, False)
    assert cfg.mqtt.health_interval_s == 5.0 and isinstance(cfg.mqtt.health_interval_s, float)
    assert cfg.detector == {"threshold_db": 12}
    assert cfg.evidence.rate_hz == 12000


@pytest.mark.parametrize("change, message", [
    (("", "[nodes]\n"), "unknown section [nodes]"),
    (('name = "roof-17"\n', ""), "[node] missing key 'name'"),
    (('name = "roof-17"', 'name = "roof/17"'), "node.name must be non-empty"),
    (("realtime = false", "realtime = 1"), "audio.realtime must be true or false, not 1"),
    (("realtime = false", "realtim = false"), "[audio] unknown key 'realtim'"),
    (('source = "wav"', 'source = "tape"'), "audio.source must be one of device, wav, stdin"),
    (("pps_channel = 1", "pps_channel = 5"), "audio.pps_channel = 5 is not one of the 2 channels"),
    (("pps_channel = 1", ""), "timing.pps = 'audio' needs audio.pps_channel"),
    (('start_utc = "2018-12-19T00:49:26Z"', 'start_utc = "yesterday"'), "audio.start_utc: not an ISO 8601"),
    (('url = "mqtt://127.0.0.1:18830"', 'url = "http://x"'), "mqtt.url must be mqtt://host[:port] or mqtts://host[:port]"),
    (('url = "mqtt://127.0.0.1:18830"', 'url = "mqtt://[::1:18830"'), "mqtt.url is not a URL"),
    (('url = "mqtt://127.0.0.1:18830"', 'url = "mqtts://h:8883"\ncert = "c.pem"'), "mqtt.cert and mqtt.cert_key go together"),
    (('url = "mqtt://127.0.0.1:18830"', 'url = "mqtts://h:8883"\nca = "ca.pem"'), "mqtt.ca: no such file"),
    (("threshold_db = 12", 'threshold_db = "high"'), "detector.threshold_db must be a number"),
    (("[timing]", "[timing\n"), "not valid TOML"),
])
def test_mistakes_are_one_line(tmp_path, change, message):
    old, new = change
    text = GOOD.replace(old, new, 1) if old else GOOD + new
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "node.toml"))
    assert "\n" not in str(err.value)


TLS_GOOD = 'url = "mqtts://127.0.0.1:8883"\nca = "ca.pem"\ncert = "node.pem"\ncert_key = "node-key.pem"'


@pytest.mark.parametrize("key", ["ca", "cert", "cert_key"])
def test_an_unreadable_tls_file_is_named_at_load(tmp_path, key):
    """ssl says only "Permission denied", and only once connecting, after the audio started: the
    configuration's check names the setting and the file, at start."""
    for name in ("ca.pem", "node.pem", "node-key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    locked = unreadable(tmp_path)
    text = GOOD.replace('url = "mqtt://127.0.0.1:18830"', TLS_GOOD).replace(
        {"ca": '"ca.pem"', "cert": '"node.pem"', "cert_key": '"node-key.pem"'}[key], f'"{locked}"')
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text))
    assert f"mqtt.{key}: cannot read {locked} (Permission denied)" in str(err.value)
    assert "\n" not in str(err.value)
    load(write(tmp_path, GOOD.replace('url = "mqtt://127.0.0.1:18830"', TLS_GOOD)))   # the readable ones pass


NO_SUCH_HOST = "no-such-broker.invalid"   # RFC 6761: no name under .invalid exists


def test_a_broker_host_that_does_not_exist_stops_the_node_at_once(tmp_path, capsys):
    """A typo in the host name fails in one line before any audio (a broker that is down is waited
    for: tests/test_publisher.py); the file itself loads (a name is looked up when the node starts)."""
    import socket

    from earwitness.cli import main

    try:
        socket.getaddrinfo(NO_SUCH_HOST, 1883)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"no name server answers here ({exc.strerror}): a missing name looks like an outage")
    path = write(tmp_path, GOOD.replace("127.0.0.1:18830", f"127.0.0.1:18830,mqtt://{NO_SUCH_HOST}:1883"))
    load(path)
    assert main(["node", "--keygen", str(tmp_path / "node.key")]) == 0
    capsys.readouterr()
    assert main(["node", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"broker host '{NO_SUCH_HOST}' not found" in err[0] and str(path) in err[0], err


def test_the_example_in_hardware_loads(tmp_path):
    example = pathlib.Path(__file__).resolve().parents[1] / "hardware" / "node" / "node.toml"
    text = example.read_text().replace("/etc/earwitness/", f"{tmp_path}/")
    for name in ("ca.pem", "node.pem", "node-key.pem"):
        (tmp_path / name).write_text("")
    cfg = load(write(tmp_path, text))
    assert (cfg.audio.source, cfg.timing.pps, cfg.mqtt.tls, cfg.mqtt.port) == ("device", "audio", True, 8883)
    assert cfg.mqtt.cert == tmp_path / "node.pem"
