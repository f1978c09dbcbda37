"""The pulse wire format: one compact, signed, versioned binary message per pulse.

Shared by the sensor node (which encodes) and the fusion server (which decodes); nothing
else defines it.  A message is a fixed-layout body followed by the node's Ed25519
signature of that body (PyNaCl / libsodium)::

    offset size  field
    0      1     version            WIRE_VERSION (2)
    1      1     timing             code of the timing source (TIMING_CODES)
    2      8     node_id            node_id(name): first 8 bytes of SHA-256 of the node name
    10     4     epoch              the node's sequence epoch (see below); 0 = none
    14     4     seq                per-node sequence number within its epoch, never reused
    18     8     t_ns               arrival time, ns since the Unix epoch, UTC
    26     4     t_unc_ns           its uncertainty, saturating at 2**32 - 1 (about 4.3 s)
    30     18    features           quantised, see FEATURES (absent = the field's sentinel)
    48     64    signature          Ed25519 over bytes 0..47

All integers are big-endian.  112 bytes in all (MESSAGE_LEN), within the 128 the design
allows.  The node id is a hash of the node's name so that the receiver finds the key in its
registry with one lookup and can check it against the name in the topic; 64 bits make a
collision among even a million nodes vanishingly unlikely.

The epoch makes replay protection independent of the node's disk: a node numbers its pulses
from 1 in an epoch it picks when its outbox is created (:func:`new_epoch`: whole seconds
since EPOCH_ORIGIN_S), so a re-flashed node (its key, an empty data folder) starts a new
epoch and its new pulses are new, while a replayed message is a repeat of a
(node, epoch, seq) already received and a forged one fails the signature.  The receiver
de-duplicates by (node, :attr:`PulseMessage.stream_seq`) = (node, epoch * 2**32 + seq).

Version 1 (108 bytes: the same without ``epoch``) is still decoded, as epoch 0.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import struct
from typing import Mapping

import nacl.exceptions
import nacl.signing

WIRE_VERSION = 2
WIRE_VERSION_NO_EPOCH = 1
SIGNATURE_LEN = 64
NODE_ID_LEN = 8
MAX_MESSAGE_LEN = 128

# Timing sources (DESIGN.md "Pulses JSONL" labels) and their codes on the wire.
TIMING_CODES: dict[str, int] = {"pps-audio": 1, "pps-kernel": 2, "system": 3, "file": 4}
TIMING_LABELS: dict[int, str] = {code: label for label, code in TIMING_CODES.items()}

# name, struct code, units per quantum (value = raw * scale).  Levels to 0.01 dB,
# times to 1 us or 0.1 ms: finer than the detector resolves, coarse enough to fit.
FEATURES: tuple[tuple[str, str, float], ...] = (
    ("peak_dbfs", "h", 0.01),
    ("snr_db", "h", 0.01),
    ("noise_dbfs", "h", 0.01),
    ("rise_ms", "H", 0.001),
    ("duration_ms", "H", 0.1),
    ("decay_ms", "H", 0.1),
    ("crest_db", "h", 0.01),
    ("low_ratio_db", "h", 0.01),
    ("high_ratio_db", "h", 0.01),
)
# The most negative (signed) or largest (unsigned) raw value means "not measured".
_ABSENT = {"h": -(2**15), "H": 2**16 - 1}
_RANGE = {"h": (-(2**15) + 1, 2**15 - 1), "H": (0, 2**16 - 2)}

_HEADER = struct.Struct(">BBQ")
_FEATURE_CODES = "".join(code for _, code, _ in FEATURES)
_BODY = struct.Struct(">BBQIIQI" + _FEATURE_CODES)
_BODY_V1 = struct.Struct(">BBQIQI" + _FEATURE_CODES)
BODY_LEN = _BODY.size
MESSAGE_LEN = BODY_LEN + SIGNATURE_LEN
MESSAGE_LEN_V1 = _BODY_V1.size + SIGNATURE_LEN
assert MESSAGE_LEN <= MAX_MESSAGE_LEN

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
# Epochs count whole seconds from 2025-01-01T00:00:00Z and stay below 2**31, so that
# stream_seq = epoch * 2**32 + seq fits a signed 64-bit integer (a database BIGINT) until 2093.
EPOCH_ORIGIN_S = 1_735_689_600
EPOCH_MAX = 2**31 - 1
SEQ_SPAN = 2**32


class WireError(ValueError):
    """A message the decoder refuses; ``reason`` is a short machine-readable code.

    Reasons: ``length``, ``version``, ``field`` (a value no encoder writes),
    ``unknown-node``, ``topic`` (node id differs from the topic's node), ``signature``,
    ``retired-key`` (signed by a replaced key, for a time after its replacement),
    ``replay`` (from :class:`ReplayGuard`).
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class PulseMessage:
    """One pulse as it travels: who heard it, which one it is, when, how sure, what it was like.

    features holds the measured ones of :data:`FEATURES` (peak_dbfs and snr_db included),
    after quantisation; unmeasured features are simply missing.
    """

    node_id: int
    seq: int
    t_ns: int
    t_unc_ns: int
    timing: str
    features: dict[str, float] = dataclasses.field(default_factory=dict)
    epoch: int = 0

    @property
    def stream_seq(self) -> int:
        """The message's place in its node's stream across epochs: epoch * 2**32 + seq (unique per node)."""
        return self.epoch * SEQ_SPAN + self.seq


def new_epoch(now_ns: int) -> int:
    """The epoch a node starting a new sequence at ``now_ns`` takes: seconds since EPOCH_ORIGIN_S.

    A clock before the origin (a board without a real-time clock, before its first fix)
    still gets a non-zero epoch; it is unique as long as the node does not restart twice
    in the same second with an empty disk.
    """
    return min(EPOCH_MAX, max(1, now_ns // 1_000_000_000 - EPOCH_ORIGIN_S))


def epoch_utc(epoch: int) -> str:
    """An epoch as the UTC time it was started, ISO 8601 (for log lines)."""
    import datetime

    return datetime.datetime.fromtimestamp(EPOCH_ORIGIN_S + epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(name: str) -> int:
    """The 64-bit wire id of the node called ``name``: SHA-256 of its UTF-8, first 8 bytes."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:NODE_ID_LEN], "big")


def _quantise(name: str, code: str, scale: float, value: float | None) -> int:
    if value is None or not math.isfinite(float(value)):
        return _ABSENT[code]
    lo, hi = _RANGE[code]
    return min(hi, max(lo, round(float(value) / scale)))


def encode_body(msg: PulseMessage) -> bytes:
    """The unsigned body of ``msg`` (BODY_LEN bytes); out-of-range features saturate."""
    if msg.timing not in TIMING_CODES:
        raise ValueError(f"unknown timing source {msg.timing!r}; one of {sorted(TIMING_CODES)}")
    if not 0 <= msg.node_id <= U64_MAX or not 0 <= msg.seq <= U32_MAX or not 0 <= msg.t_ns <= U64_MAX:
        raise ValueError("node_id, seq or t_ns out of range")
    if not 0 <= msg.epoch <= EPOCH_MAX:
        raise ValueError(f"epoch out of range (0..{EPOCH_MAX})")
    if msg.t_unc_ns < 0:
        raise ValueError("t_unc_ns must be >= 0")
    unknown = set(msg.features) - {name for name, _, _ in FEATURES}
    if unknown:
        raise ValueError(f"features not in the wire format: {sorted(unknown)}")
    raw = [_quantise(name, code, scale, msg.features.get(name)) for name, code, scale in FEATURES]
    return _BODY.pack(WIRE_VERSION, TIMING_CODES[msg.timing], msg.node_id, msg.epoch, msg.seq, msg.t_ns,
                      min(int(msg.t_unc_ns), U32_MAX), *raw)


def encode(msg: PulseMessage, signing_key: nacl.signing.SigningKey) -> bytes:
    """Encode and sign ``msg``: MESSAGE_LEN bytes, body then Ed25519 signature.

    Parameters
    ----------
    msg : PulseMessage
        ``msg.node_id`` should be ``node_id(name)`` of the node owning ``signing_key``.
    signing_key : nacl.signing.SigningKey
        The node's private key (see :mod:`edge.keys`).

    Raises
    ------
    ValueError
        A timing label or feature name the format does not know, or an integer out of range.
    """
    body = encode_body(msg)
    return body + signing_key.sign(body).signature


_LENGTHS = {WIRE_VERSION: MESSAGE_LEN, WIRE_VERSION_NO_EPOCH: MESSAGE_LEN_V1}


def peek_node_id(data: bytes) -> int:
    """The node id a message claims, unverified (to route or to report a rejection)."""
    if len(data) < _HEADER.size:
        raise WireError("length", f"{len(data)} bytes, too short to hold a header")
    nid: int = _HEADER.unpack_from(data)[2]
    return nid


def _parse(body: bytes) -> PulseMessage:
    if body[0] == WIRE_VERSION_NO_EPOCH:
        version, timing, nid, seq, t_ns, t_unc_ns, *raw = _BODY_V1.unpack(body)
        epoch = 0
    else:
        version, timing, nid, epoch, seq, t_ns, t_unc_ns, *raw = _BODY.unpack(body)
    if timing not in TIMING_LABELS:
        raise WireError("field", f"unknown timing code {timing}")
    if epoch > EPOCH_MAX:
        raise WireError("field", f"epoch {epoch} beyond {EPOCH_MAX}")
    features = {name: round(value * scale, 6)
                for (name, code, scale), value in zip(FEATURES, raw) if value != _ABSENT[code]}
    return PulseMessage(nid, seq, t_ns, t_unc_ns, TIMING_LABELS[timing], features, epoch)


def decode(data: bytes, keys: "Keyring | Mapping[int, nacl.signing.VerifyKey]", *,
           topic_node: str | None = None) -> PulseMessage:
    """Check and decode one message.

    Parameters
    ----------
    data : bytes
        The MQTT payload.
    keys : Keyring or mapping node_id -> nacl.signing.VerifyKey
        The public keys of the nodes the receiver knows.
    topic_node : str, optional
        The node name in the topic the message came on; if given, it must hash to the
        message's node id (a node cannot speak for another).

    Returns
    -------
    PulseMessage

    Raises
    ------
    WireError
        With ``reason`` one of ``length``, ``version``, ``field``, ``unknown-node``,
        ``topic``, ``signature``.  Checks run cheapest first; the signature is verified
        before any field is trusted.
    """
    data = bytes(data)
    if len(data) < 1:
        raise WireError("length", "empty message")
    expected = _LENGTHS.get(data[0])
    if expected is None:
        raise WireError("version", f"version {data[0]}, this decoder reads {sorted(_LENGTHS)}")
    if len(data) != expected:
        raise WireError("length", f"{len(data)} bytes, version {data[0]} has {expected}")
    nid = peek_node_id(data)
    if topic_node is not None and node_id(topic_node) != nid:
        raise WireError("topic", f"node id {nid:016x} is not that of topic node {topic_node!r}")
    verify_key = keys.get(nid)
    if verify_key is None:
        raise WireError("unknown-node", f"no key for node id {nid:016x}")
    body, signature = data[:-SIGNATURE_LEN], data[-SIGNATURE_LEN:]
    if _verifies(verify_key, body, signature):
        return _parse(body)
    retired = keys.retired(nid) if isinstance(keys, Keyring) else []
    for old_key, until_ns in retired:
        if _verifies(old_key, body, signature):
            msg = _parse(body)
            if msg.t_ns >= until_ns:
                raise WireError("retired-key", f"node id {nid:016x}: signed with a key retired before t_ns {msg.t_ns}")
            return msg
    raise WireError("signature", f"signature does not verify for node id {nid:016x}")


def _verifies(key: nacl.signing.VerifyKey, body: bytes, signature: bytes) -> bool:
    try:
        key.verify(body, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _verify_key(key: "nacl.signing.VerifyKey | bytes | str") -> nacl.signing.VerifyKey:
    if isinstance(key, str):
        key = bytes.fromhex(key)
    if isinstance(key, bytes):
        key = nacl.signing.VerifyKey(key)
    return key


class Keyring:
    """Public keys of known nodes, found by wire node id; a ``Mapping``-like ``get``.

    A node's key can be replaced (a new node in its place): :meth:`retire` keeps the old key
    for the messages it signed before a time, so that stored pulses still verify while new
    ones signed with it are refused.  A key belongs to one node only: a second node with
    the same key could sign as the first.
    """

    def __init__(self, nodes: Mapping[str, "nacl.signing.VerifyKey | bytes | str"] | None = None):
        self._keys: dict[int, nacl.signing.VerifyKey] = {}
        self._names: dict[int, str] = {}
        self._retired: dict[int, list[tuple[nacl.signing.VerifyKey, int]]] = {}
        self._owners: dict[bytes, str] = {}   # raw public key -> node name
        for name, key in (nodes or {}).items():
            self.add(name, key)

    def _claim(self, name: str, key: nacl.signing.VerifyKey) -> None:
        owner = self._owners.setdefault(bytes(key), name)
        if owner != name:
            raise ValueError(f"node {name!r} has the public key of node {owner!r} (one could sign as the other)")

    def add(self, name: str, key: "nacl.signing.VerifyKey | bytes | str") -> int:
        """Register node ``name`` with its public key (VerifyKey, 32 raw bytes or 64 hex chars)."""
        key = _verify_key(key)
        nid = node_id(name)
        if nid in self._names and self._names[nid] != name:
            raise ValueError(f"node ids of {name!r} and {self._names[nid]!r} collide")
        self._claim(name, key)
        self._keys[nid], self._names[nid] = key, name
        return nid

    def retire(self, name: str, key: "nacl.signing.VerifyKey | bytes | str", until_ns: int) -> None:
        """Accept ``key``, a former key of node ``name``, for messages with ``t_ns < until_ns`` only."""
        key = _verify_key(key)
        self._claim(name, key)
        self._retired.setdefault(node_id(name), []).append((key, int(until_ns)))

    def retired(self, nid: int) -> list[tuple[nacl.signing.VerifyKey, int]]:
        """The retired keys of node ``nid`` with the time (t_ns) from which each is refused."""
        return self._retired.get(nid, [])

    def get(self, nid: int, default: nacl.signing.VerifyKey | None = None) -> nacl.signing.VerifyKey | None:
        return self._keys.get(nid, default)

    def name(self, nid: int) -> str | None:
        """The node name registered for wire id ``nid``, or None."""
        return self._names.get(nid)

    def __len__(self) -> int:
        return len(self._keys)


class ReplayGuard:
    """Receiver-side de-duplication by (node, stream sequence: epoch and seq) with bounded memory.

    Remembers, per node, the highest sequence number accepted and which of the ``window``
    numbers below it were seen.  A node's outbox replays in order, so anything older than
    the window is a replay too.  QoS 1 redeliveries and replays by an attacker look alike
    and both are refused here.

    Parameters
    ----------
    window : int
        How far below the highest accepted sequence a late message is still accepted.
    """

    def __init__(self, window: int = 65536):
        self.window = window
        self._high: dict[int, int] = {}
        self._seen: dict[int, set[int]] = {}

    def check(self, nid: int, seq: int) -> None:
        """Accept (node, seq) once; raise WireError("replay") on a second time or a stale one."""
        high = self._high.get(nid)
        seen = self._seen.setdefault(nid, set())
        if high is not None:
            if seq <= high - self.window:
                raise WireError("replay", f"node {nid:016x} seq {seq} is older than the window")
            if seq in seen:
                raise WireError("replay", f"node {nid:016x} seq {seq} already received")
        seen.add(seq)
        if high is None or seq > high:
            self._high[nid] = seq
            # Trim rarely (amortised O(1)): keep at most 2 * window numbers per node.
            if len(seen) > 2 * self.window:
                floor = seq - self.window
                self._seen[nid] = {s for s in seen if s > floor}

    def accept(self, msg: PulseMessage) -> bool:
        """True the first time (msg.node_id, msg.seq) is offered, False after."""
        try:
            self.check(msg.node_id, msg.stream_seq)
        except WireError:
            return False
        return True

