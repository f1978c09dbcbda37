"""earwitness.wire: round trip, size, and refusal of every malformed, forged, altered or replayed message."""
import math

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earwitness import wire
from earwitness.wire import MESSAGE_LEN, PulseMessage, WireError
from edge import keys

NODE = "roof-17"


@pytest.fixture(scope="module")
def key():
    return nacl.signing.SigningKey(bytes(range(32)))


@pytest.fixture(scope="module")
def ring(key):
    return wire.Keyring({NODE: key.verify_key})


def message(**kw):
    base = dict(node_id=wire.node_id(NODE), seq=41, t_ns=1_543_000_000_123_456_789, t_unc_ns=1_250,
                timing="pps-audio",
                features={"peak_dbfs": -3.21, "snr_db": 38.5, "noise_dbfs": -71.02, "rise_ms": 0.25,
                          "duration_ms": 12.3, "decay_ms": 80.1, "crest_db": 14.07,
                          "low_ratio_db": -6.5, "high_ratio_db": 2.25})
    base.update(kw)
    return PulseMessage(**base)


def test_round_trip_within_quantisation(key, ring):
    msg = message()
    data = wire.encode(msg, key)
    assert len(data) == MESSAGE_LEN <= 128
    got = wire.decode(data, ring, topic_node=NODE)
    assert (got.node_id, got.seq, got.t_ns, got.t_unc_ns, got.timing) == (msg.node_id, 41, msg.t_ns, 1250, "pps-audio")
    assert set(got.features) == set(msg.features)
    for name, _, scale in wire.FEATURES:
        assert abs(got.features[name] - msg.features[name]) <= scale / 2 + 1e-9, name
    assert ring.name(got.node_id) == NODE


def test_absent_and_out_of_range_features(key, ring):
    got = wire.decode(wire.encode(message(features={"peak_dbfs": float("nan"), "snr_db": 1e9, "rise_ms": -5},
                                          t_unc_ns=10**12), key), ring)
    assert "peak_dbfs" not in got.features and "crest_db" not in got.features
    assert got.features["snr_db"] == pytest.approx(327.67)
    assert got.features["rise_ms"] == 0
    assert got.t_unc_ns == wire.U32_MAX  # saturates: "at least 4.29 s"


def test_encoder_refuses_what_it_cannot_carry(key):
    with pytest.raises(ValueError, match="timing"):
        wire.encode(message(timing="sundial"), key)
    with pytest.raises(ValueError, match="features"):
        wire.encode(message(features={"colour": 1.0}), key)
    with pytest.raises(ValueError, match="range"):
        wire.encode(message(seq=2**32), key)


def reason(data, ring, **kw):
    with pytest.raises(WireError) as err:
        wire.decode(data, ring, **kw)
    assert isinstance(err.value, ValueError)
    return err.value.reason


def test_rejections_carry_their_reason(key, ring):
    good = wire.encode(message(), key)
    assert reason(b"", ring) == "length"
    assert reason(good[:-1], ring) == "length"
    assert reason(good + b"\0", ring) == "length"
    assert reason(bytes([wire.WIRE_VERSION + 1]) + good[1:], ring) == "version"
    # Forged: right layout, signed by a key that is not the node's.
    forger = nacl.signing.SigningKey(bytes(32))
    assert reason(wire.encode(message(), forger), ring) == "signature"
    # Altered: one bit of the time changed after signing.
    altered = bytearray(good)
    altered[20] ^= 0x01
    assert reason(bytes(altered), ring) == "signature"
    # Altered signature.
    assert reason(good[:-1] + bytes([good[-1] ^ 0x80]), ring) == "signature"
    assert reason(wire.encode(message(node_id=wire.node_id("stranger")), key), ring) == "unknown-node"
    assert reason(good, ring, topic_node="roof-18") == "topic"
    # A timing code no encoder writes, properly signed: refused as a bad field.
    body = bytearray(wire.encode_body(message()))
    body[1] = 99
    assert reason(bytes(body) + key.sign(bytes(body)).signature, ring) == "field"


def test_replay_is_refused_by_node_and_sequence(key, ring):
    guard = wire.ReplayGuard(window=8)
    msg = wire.decode(wire.encode(message(seq=5), key), ring)
    assert guard.accept(msg)
    assert not guard.accept(wire.decode(wire.encode(message(seq=5), key), ring))
    with pytest.raises(WireError) as err:
        guard.check(msg.node_id, 5)
    assert err.value.reason == "replay"
    guard.check(msg.node_id, 4)  # late but new: accepted
    guard.check(msg.node_id, 100)
    with pytest.raises(WireError, match="older than the window"):
        guard.check(msg.node_id, 6)
    guard.check(wire.node_id("other"), 5)  # another node's seq 5 is its own


def _v1_message(key, seq: int) -> bytes:
    """A version 1 message (no epoch) as nodes before version 2 signed it."""
    body = bytearray(wire.encode_body(message(seq=seq)))
    del body[10:14]                      # the epoch field
    body[0] = wire.WIRE_VERSION_NO_EPOCH
    return bytes(body) + key.sign(bytes(body)).signature


def test_epoch_round_trip_and_version_1_still_read(key, ring):
    epoch = wire.new_epoch(1_764_668_400 * 10**9)          # 2025-12-02T09:40:00Z
    assert epoch == 1_764_668_400 - wire.EPOCH_ORIGIN_S and wire.epoch_utc(epoch) == "2025-12-02T09:40:00Z"
    assert wire.new_epoch(0) == 1                          # a clock before the origin: still an epoch
    got = wire.decode(wire.encode(message(seq=1, epoch=epoch), key), ring)
    assert (got.epoch, got.seq, got.stream_seq) == (epoch, 1, epoch * 2**32 + 1)
    old = _v1_message(key, 41)
    assert len(old) == wire.MESSAGE_LEN_V1 == 108
    got = wire.decode(old, ring)
    assert (got.epoch, got.seq, got.stream_seq, got.t_ns) == (0, 41, 41, message().t_ns)
    with pytest.raises(ValueError, match="epoch"):
        wire.encode(message(epoch=2**31), key)


def test_replay_guard_takes_a_new_epoch_as_new(key, ring):
    """A re-flashed node numbers from 1 again in a new epoch: new; its old messages: replays."""
    guard = wire.ReplayGuard(window=8)
    first = [wire.decode(wire.encode(message(seq=s, epoch=100), key), ring) for s in (1, 2, 3)]
    assert all(guard.accept(m) for m in first)
    again = [wire.decode(wire.encode(message(seq=s, epoch=200), key), ring) for s in (1, 2, 3)]
    assert all(guard.accept(m) for m in again)
    assert not any(guard.accept(m) for m in first + again)


def test_replay_guard_memory_is_bounded():
    guard = wire.ReplayGuard(window=16)
    for seq in range(1000):
        guard.check(1, seq)
    assert len(guard._seen[1]) <= 32


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_crash(ring, data):
    try:
        wire.decode(data, ring)
    except WireError as exc:
        assert exc.reason in {"length", "version", "field", "unknown-node", "signature"}
    else:
        pytest.fail("random bytes were accepted")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MESSAGE_LEN - 1), st.integers(1, 255))
def test_fuzz_any_single_byte_change_is_refused(key, ring, where, xor):
    data = bytearray(wire.encode(message(), key))
    data[where] ^= xor
    with pytest.raises(WireError):
        wire.decode(bytes(data), ring)


finite = st.floats(-400, 400, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(seq=st.integers(0, wire.U32_MAX), t_ns=st.integers(0, wire.U64_MAX), t_unc_ns=st.integers(0, 2**40),
       timing=st.sampled_from(sorted(wire.TIMING_CODES)),
       features=st.dictionaries(st.sampled_from([n for n, _, _ in wire.FEATURES]), finite))
def test_fuzz_round_trip(key, ring, seq, t_ns, t_unc_ns, timing, features):
    got = wire.decode(wire.encode(message(seq=seq, t_ns=t_ns, t_unc_ns=t_unc_ns, timing=timing, features=features), key), ring)
    assert (got.seq, got.t_ns, got.t_unc_ns, got.timing) == (seq, t_ns, min(t_unc_ns, wire.U32_MAX), timing)
    assert set(got.features) == set(features)
    for value in got.features.values():
        assert math.isfinite(value)


def test_keys_generate_and_load(tmp_path):
    path = tmp_path / "node.key"
    public = keys.generate(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    signing = keys.load_signing_key(path)
    assert signing.verify_key == public == keys.load_verify_key(keys.public_path(path))
    ring = wire.Keyring({NODE: keys.public_path(path).read_text().strip()})
    assert wire.decode(wire.encode(message(), signing), ring).seq == 41
    with pytest.raises(FileExistsError):
        keys.generate(path)
    path.write_text("zz\n")
    with pytest.raises(ValueError, match="not a hex"):
        keys.load_signing_key(path)
