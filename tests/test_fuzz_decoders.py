"""Property-based fuzzing of every decoder we own: each refuses bad input with its own one-line
error and never with anything else (a crash), and what it accepts is well formed.

Decoders: the pulse wire format, the MQTT v5 packet reader, NMEA, the node's and the fusion
server's TOML configurations, sensors CSV, pulses JSONL, WAV headers.  Inputs are random bytes
and mutations (byte changes, cuts, splices) of valid examples.  Each test prints its number of
cases (`fuzz NAME: N cases`); the run's terminal summary lists them all.
"""
from __future__ import annotations

import io
import math
import pathlib
import struct

import nacl.signing
import numpy as np
import pytest
import soundfile as sf
from hypothesis import strategies as st

import test_node_config
from earwitness import wire
from earwitness.cli import UserError
from edge import config as node_config
from edge.nmea import NmeaStream
from edge.wavio import WavError, read_channel, wav_info
from fusion.locator.pulses import parse_pulses
from fusion.locator.sensors import Sensors, SensorsError, read_sensors
from fusion.transport import mqttwire
from fuzzing import fuzz

# A few seconds each: in `make test`, not in the one-minute `make test-fast`.
pytestmark = pytest.mark.slow

DATA = pathlib.Path(__file__).parent / "data"
KEY = nacl.signing.SigningKey(bytes(range(32)))
RING = wire.Keyring({"roof-1": KEY.verify_key})


def mutations(valid: bytes) -> st.SearchStrategy:
    """``valid`` with bytes changed, cut short, or a slice repeated or dropped, or random bytes."""
    n = len(valid)
    flip = st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
        lambda p: valid[:p[0]] + bytes([valid[p[0]] ^ p[1]]) + valid[p[0] + 1:])
    cut = st.integers(0, n).map(lambda k: valid[:k])
    splice = st.tuples(st.integers(0, n), st.integers(0, n), st.binary(max_size=16)).map(
        lambda p: valid[:min(p[:2])] + p[2] + valid[max(p[:2]):])
    repeat = st.tuples(st.integers(0, n), st.integers(0, n)).map(
        lambda p: valid[:max(p)] + valid[min(p):])
    return st.one_of(flip, cut, splice, repeat, st.binary(max_size=2 * n))


# -- the pulse wire format ------------------------------------------------------------------

def test_fuzz_wire_decode():
    valid = [wire.encode(wire.PulseMessage(wire.node_id("roof-1"), seq, 1_770_000_000 * 10**9 + seq, 1000,
                                           "pps-audio", {"snr_db": 30.0}, epoch), KEY)
             for seq, epoch in ((1, 0), (7, 12345))]

    def check(data: bytes) -> None:
        try:
            msg = wire.decode(data, RING, topic_node="roof-1")
        except wire.WireError as exc:
            assert exc.reason in {"length", "version", "field", "unknown-node", "topic", "signature"}
        else:
            assert data in valid and msg.node_id == wire.node_id("roof-1")

    assert fuzz("wire", st.one_of(*(mutations(v) for v in valid)), check, 1000) >= 333


# -- the MQTT packet reader -----------------------------------------------------------------

def _stream_examples() -> bytes:
    props = b"\x0b\x05" + b"\x26" + mqttwire._string("k") + mqttwire._string("v")
    publish = mqttwire._packet((mqttwire.PUBLISH << 4) | 0x0A, mqttwire._string("ew/v1/s/node/a/pulse") + b"\x02\x01"
                               + mqttwire.encode_varint(len(props)) + props + b"payload")
    return (bytes([mqttwire.CONNACK << 4]) + b"\x06\x01\x00\x03\x21\x00\x14"
            + bytes([mqttwire.SUBACK << 4, 4]) + b"\x00\x01\x00\x01" + publish
            + mqttwire.encode_publish("a/b", b"x" * 40, 0) + bytes([mqttwire.PUBACK << 4, 2, 0, 9])
            + bytes([mqttwire.PINGRESP << 4, 0]) + bytes([mqttwire.DISCONNECT << 4, 1, 0x8E]))


def _feed_in_pieces(data: bytes, cuts: list[int]) -> list:
    reader, packets, at = mqttwire.PacketReader(), [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        packets += reader.feed(data[at:cut])
        at = max(at, cut)
    return packets


def test_fuzz_mqtt_packet_reader():
    valid = _stream_examples()

    def check(case) -> None:
        data, cuts = case
        try:
            packets = _feed_in_pieces(data, cuts)
        except mqttwire.ProtocolError as exc:
            assert str(exc)
            return
        for p in packets:
            if isinstance(p, mqttwire.Publish):
                assert isinstance(p.topic, str) and isinstance(p.payload, bytes) and p.qos in (0, 1, 2)
                assert (p.mid == 0) == (p.qos == 0)
            else:
                assert isinstance(p, mqttwire.Ack) and p.kind in (mqttwire.CONNACK, mqttwire.SUBACK, mqttwire.PUBACK,
                                                                  mqttwire.PINGRESP, mqttwire.DISCONNECT)

    cases = st.tuples(st.one_of(mutations(valid), st.binary(max_size=300)), st.lists(st.integers(0, 400), max_size=6))
    assert fuzz("mqtt", cases, check, 1500) >= 500


# -- NMEA -------------------------------------------------------------------------------------

def test_fuzz_nmea_stream():
    log = (DATA / "nmea" / "ublox_m8_gn.nmea").read_bytes()[:1500]

    def check(data: bytes) -> None:
        stream = NmeaStream()
        for fix in stream.feed(data) + stream.flush():
            assert fix.mode in (1, 2, 3)
            assert fix.lat is None or -90 <= fix.lat <= 90
            assert fix.lon is None or -180 <= fix.lon <= 180

    assert fuzz("nmea", mutations(log), check, 500) >= 166


# -- configuration files ----------------------------------------------------------------------

NODE_TOML = test_node_config.GOOD.encode()   # a good node configuration

FUSION_TOML = b"""site = "pgh"
broker = "mqtt://127.0.0.1:1883"
registry = "nodes.toml"
database = "fusion.db"
temperature_c = 4.0
mode = "2d"
max_range_m = 4000.0
workers = 2
worker_index = 1
"""


def test_fuzz_node_config(tmp_path):
    path = tmp_path / "node.toml"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            node_config.load(path)
        except node_config.ConfigError as exc:
            assert "\n" not in str(exc).strip() and str(path) in str(exc)
        except UnicodeDecodeError:
            pytest.fail("a config file that is not UTF-8 must be a ConfigError")

    assert fuzz("node-config", mutations(NODE_TOML), check, 400) >= 133


def test_fuzz_fusion_config(tmp_path):
    from fusion.cli_fusion import load_config

    path = tmp_path / "fusion.toml"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            load_config(path)
        except UserError as exc:
            assert "\n" not in str(exc).strip()

    assert fuzz("fusion-config", mutations(FUSION_TOML), check, 400) >= 133


# -- sensors CSV and pulses JSONL -------------------------------------------------------------

SENSORS_CSV = b"sensor,x,y,z\nn1,0,0,10\nn2,250.5,-40,12\nn3,90,300,8.5\n"
PULSES_JSONL = (b'{"sensor": "n1", "t_ns": 1700000000000000000, "t_unc_ns": 1000, "snr_db": 30.5}\n'
                b'{"sensor": "n2", "t_ns": 1700000000100000000, "features": {"rise_ms": 0.2}}\n'
                b'{"sensor": "n3", "t_ns": 1.7e18, "peak_dbfs": -3}\n')


def test_fuzz_sensors_csv(tmp_path):
    path = tmp_path / "sensors.csv"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            sensors = read_sensors(path)
        except SensorsError as exc:
            assert "\n" not in str(exc)
        else:
            assert len(sensors.ids) >= 1 and np.isfinite(sensors.enu_m).all()

    assert fuzz("sensors-csv", mutations(SENSORS_CSV), check, 500) >= 166


def test_fuzz_pulses_jsonl():
    sensors = Sensors.from_local({"n1": (0.0, 0.0, 10.0), "n2": (250.0, -40.0, 12.0), "n3": (90.0, 300.0, 8.0)})

    def check(data: bytes) -> None:
        lines = data.split(b"\n")
        pulses = parse_pulses(lines, sensors)     # never raises: bad lines are problems, one line each
        assert len(pulses) + len(pulses.problems) + len(pulses.duplicates) <= len(lines)
        assert all("\n" not in p for p in pulses.problems)
        assert all(0 <= t <= 2**63 - 1 for t in pulses.t_ns.tolist())
        assert not np.isinf(pulses.snr_db).any() and not np.isinf(pulses.t_unc_ns).any()

    assert fuzz("pulses-jsonl", mutations(PULSES_JSONL), check, 600) >= 200


# -- WAV headers ------------------------------------------------------------------------------

def _valid_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (np.sin(np.arange(400) / 5) * 0.5).reshape(-1, 2), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_fuzz_wav_headers(tmp_path):
    valid = _valid_wav()
    header = valid[:44]
    path = tmp_path / "in.wav"

    def check(case) -> None:
        new_header, channel = case
        path.write_bytes(new_header + valid[44:])
        try:
            info = wav_info(path, channel)
            x, rate = read_channel(path, channel)
        except WavError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        else:
            assert info.rate_hz == rate > 0 and 0 <= channel < info.channels
            assert x.ndim == 1 and (x.dtype == np.int16 or np.isfinite(x).all())

    # The header's fields (RIFF size, fmt chunk, channels, rate, bits, data size) mutated.
    fields = st.tuples(st.sampled_from([4, 16, 20, 22, 24, 28, 32, 34, 40]), st.integers(0, 2**32 - 1)).map(
        lambda p: header[:p[0]] + struct.pack("<I", p[1])[:2 if p[0] in (20, 22, 32, 34) else 4]
        + header[p[0] + (2 if p[0] in (20, 22, 32, 34) else 4):])
    cases = st.tuples(st.one_of(mutations(header), fields), st.integers(0, 2))
    assert fuzz("wav-header", cases, check, 300) >= 100


def test_the_fuzzers_examples_are_valid_to_begin_with(tmp_path):
    """Each mutated example is accepted unmutated: the fuzzers start from inputs that work."""
    assert len(_feed_in_pieces(_stream_examples(), [])) == 7
    assert len(read_sensors(io.StringIO(SENSORS_CSV.decode()))) == 3
    sensors = Sensors.from_local({"n1": (0.0, 0.0, 10.0), "n2": (250.0, -40.0, 12.0), "n3": (90.0, 300.0, 8.0)})
    assert len(parse_pulses(PULSES_JSONL.split(b"\n"), sensors)) == 3
    (tmp_path / "node.toml").write_bytes(NODE_TOML)
    assert node_config.load(tmp_path / "node.toml").node.name == "roof-17"
    (tmp_path / "in.wav").write_bytes(_valid_wav())
    assert wav_info(tmp_path / "in.wav", 1).channels == 2
    assert math.isfinite(float(read_channel(tmp_path / "in.wav", 0)[0].astype(float).sum()))
