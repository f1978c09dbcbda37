"""MQTT v5 packets, the few the fusion server's connection needs: bytes out, parsed packets in.

Encoders for CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ and DISCONNECT, and a stream
parser (:class:`PacketReader`) that turns received bytes into CONNACK, SUBACK, PUBLISH,
PUBACK, PINGRESP and DISCONNECT packets, many per call.  Layout: MQTT Version 5.0, OASIS
Standard (2019), chapters 2 (fixed header, variable byte integer, properties) and 3.

Example::

    sock.sendall(encode_connect("fusion-pgh", keepalive_s=30, clean_start=False, session_expiry_s=3600))
    reader = PacketReader()
    for packet in reader.feed(sock.recv(65536)):
        if isinstance(packet, Publish): ...
"""
from __future__ import annotations

import struct

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14
PROTOCOL_NAME = b"MQTT"
PROTOCOL_LEVEL_V5 = 5
CLEAN_START = 0x02
SUBSCRIBE_FLAGS = 0x02          # fixed header flags of SUBSCRIBE are reserved as 0010
DUP_FLAG, RETAIN_FLAG = 0x08, 0x01
PROP_SESSION_EXPIRY = 0x11      # four-byte integer
PROP_RECEIVE_MAXIMUM = 0x21     # two-byte integer
PROP_MAXIMUM_PACKET_SIZE = 0x27  # four-byte integer: the broker sends nothing larger
# The largest packet we take: a clip of MAX_CLIP_S (300 s) of evidence audio in base64 JSON is
# about 10 MB.  A longer length is refused at once rather than buffered.
MAX_PACKET_BYTES = 64 * 1024 * 1024
SESSION_TAKEN_OVER = 0x8E       # DISCONNECT reason: another client connected with our client id
# A variable byte integer has at most four bytes of seven bits (MQTT 5, 1.5.5).
VARINT_MAX_BYTES = 4
VARINT_MAX = 2**28 - 1
PACKET_ID_MAX = 65535
FAILURE_REASON = 0x80           # reason codes from here on are failures (MQTT 5, 2.4)

PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])   # normal disconnection, no properties
_U16 = struct.Struct(">H")
_PUBACK = struct.Struct(">BBH")


class ProtocolError(ConnectionError):
    """The broker sent bytes that are not MQTT v5 as we expect it: the connection is unusable."""


class Publish:
    """A received PUBLISH: ``topic``, ``payload``, ``qos``, ``dup``, ``retain``, ``mid`` (packet id, 0 for QoS 0).

    ``generation`` is set by the connection that received it (which TCP connection, for acks).
    """

    __slots__ = ("topic", "payload", "qos", "dup", "retain", "mid", "generation")

    def __init__(self, topic: str, payload: bytes, qos: int, dup: bool, retain: bool, mid: int, generation: int = 0):
        self.topic, self.payload, self.qos, self.dup, self.retain, self.mid = topic, payload, qos, dup, retain, mid
        self.generation = generation


class Ack:
    """A received CONNACK, SUBACK or PUBACK: packet ``kind``, packet id ``mid``, ``reasons`` codes, CONNACK's ``props``."""

    __slots__ = ("kind", "mid", "reasons", "session_present", "props")

    def __init__(self, kind: int, mid: int = 0, reasons: bytes = b"", session_present: bool = False, props: dict | None = None):
        self.kind, self.mid, self.reasons, self.session_present, self.props = kind, mid, reasons, session_present, props or {}

    @property
    def failed(self) -> bool:
        return any(r >= FAILURE_REASON for r in self.reasons)


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= VARINT_MAX:
        raise ValueError(f"{value} does not fit an MQTT variable byte integer")
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None if ``data`` ends inside it."""
    value = shift = 0
    for i in range(pos, min(pos + VARINT_MAX_BYTES, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    if len(data) - pos >= VARINT_MAX_BYTES:
        raise ProtocolError("variable byte integer longer than four bytes")
    return None


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return _U16.pack(len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body


def encode_connect(client_id: str, keepalive_s: int, clean_start: bool, session_expiry_s: int,
                   receive_maximum: int = PACKET_ID_MAX) -> bytes:
    props = (bytes([PROP_SESSION_EXPIRY]) + struct.pack(">I", session_expiry_s)
             + bytes([PROP_RECEIVE_MAXIMUM]) + _U16.pack(receive_maximum)
             + bytes([PROP_MAXIMUM_PACKET_SIZE]) + struct.pack(">I", MAX_PACKET_BYTES))
    body = (_string(PROTOCOL_NAME) + bytes([PROTOCOL_LEVEL_V5, CLEAN_START if clean_start else 0])
            + _U16.pack(keepalive_s) + encode_varint(len(props)) + props + _string(client_id))
    return _packet(CONNECT << 4, body)


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE to ``(topic filter, max QoS)`` pairs (no properties, default options)."""
    body = _U16.pack(packet_id) + b"\x00" + b"".join(_string(f) + bytes([qos]) for f, qos in filters)
    return _packet((SUBSCRIBE << 4) | SUBSCRIBE_FLAGS, body)


def encode_publish(topic: str, payload: bytes, qos: int, packet_id: int = 0, retain: bool = False, dup: bool = False) -> bytes:
    flags = (qos << 1) | (RETAIN_FLAG if retain else 0) | (DUP_FLAG if dup else 0)
    body = _string(topic) + (_U16.pack(packet_id) if qos else b"") + b"\x00" + payload
    return _packet((PUBLISH << 4) | flags, body)


def encode_puback(packet_id: int) -> bytes:
    """PUBACK, success (reason code and properties omitted: MQTT 5, 3.4.2.1)."""
    return _PUBACK.pack(PUBACK << 4, 2, packet_id)


# Property identifiers by value type (MQTT 5, 2.2.2.2), to skip the ones we do not read.
_PROP_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_PROP_U16 = {0x13, 0x21, 0x22, 0x23}
_PROP_U32 = {0x02, 0x11, 0x18, 0x27}
_PROP_VARINT = {0x0B}
_PROP_PAIR = {0x26}                   # two strings
_PROP_STRING = {0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F}   # one string or binary
_U32 = struct.Struct(">I")
_FIXED = {1: _PROP_BYTE, 2: _PROP_U16, 4: _PROP_U32}
_NAMES = {CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK", SUBACK: "SUBACK",
          PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT"}


class _Body:
    """One packet's bytes (a zero-copy view) read front to back; reading past its end is a ProtocolError."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: memoryview, pos: int, end: int):
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise ProtocolError(f"field of {n} bytes runs past the end of the packet")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def varint(self) -> int:
        got = decode_varint(self.data[:self.end], self.pos)
        if got is None:
            raise ProtocolError("variable byte integer runs past the end of the packet")
        value, self.pos = got
        return value

    def rest(self) -> bytes:
        return bytes(self.take(self.end - self.pos))


def _properties(body: _Body) -> dict:
    """Numeric properties (identifier -> value); strings and binary data are skipped."""
    length = body.varint()
    inner, props = _Body(body.data, body.pos, body.pos + length), {}
    body.take(length)
    while inner.pos < inner.end:
        ident = inner.varint()
        size = next((n for n, idents in _FIXED.items() if ident in idents), None)
        if size is not None:
            props[ident] = int.from_bytes(inner.take(size), "big")
        elif ident in _PROP_VARINT:
            props[ident] = inner.varint()
        elif ident in _PROP_STRING or ident in _PROP_PAIR:
            for _ in range(2 if ident in _PROP_PAIR else 1):
                inner.take(inner.u16())
        else:
            raise ProtocolError(f"unknown property identifier 0x{ident:02x}")
    return props


class PacketReader:
    """Reassembles packets from a byte stream; :meth:`feed` returns the complete ones in order.

    Bytes that are not MQTT v5 as a client receives it raise :class:`ProtocolError`; the
    stream is then out of step and the connection must be dropped.
    """

    def __init__(self):
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 2      # bytes needed before anything can be parsed

    def feed(self, chunk: bytes) -> list:
        self._chunks.append(chunk)
        self._have += len(chunk)
        if self._have < self._need:   # a large packet (a clip) still arriving: no copying meanwhile
            return []
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        out, pos, end = [], 0, len(data)
        self._need = 2
        while pos + 1 < end:
            first = data[pos]
            header = decode_varint(data, pos + 1)
            if header is None:
                self._need = end - pos + 1
                break
            length, body = header
            if body - pos + length > MAX_PACKET_BYTES:
                raise ProtocolError(f"a packet of {length} bytes, over the {MAX_PACKET_BYTES} we accept")
            stop = body + length
            if stop > end:
                self._need = stop - pos
                break
            out.append(parse_packet(first, data, body, stop))
            pos = stop
        rest = data[pos:] if pos else data
        self._chunks = [rest] if rest else []
        self._have = len(rest)
        return out


def parse_packet(first: int, data: bytes, start: int, stop: int):
    """The packet whose body is ``data[start:stop]``; ProtocolError if it is malformed or not for a client."""
    kind = first >> 4
    if kind not in _NAMES:
        raise ProtocolError(f"unexpected MQTT packet type {kind}")
    try:
        if kind == PUBLISH:
            return _parse_publish(first, data, start, stop)
        body = _Body(memoryview(data), start, stop)
        packet = _parse_ack(kind, body)
    except (UnicodeDecodeError, struct.error) as exc:
        raise ProtocolError(f"malformed {_NAMES[kind]}: {exc}") from None
    except ProtocolError as exc:
        raise ProtocolError(f"malformed {_NAMES[kind]}: {exc}") from None
    if body.pos != body.end:
        raise ProtocolError(f"malformed {_NAMES[kind]}: {body.end - body.pos} bytes left over")
    return packet


def _parse_ack(kind: int, body: _Body) -> Ack:
    if kind == PUBACK:
        mid = body.u16()
        reasons = bytes(body.take(1)) if body.pos < body.end else b""
        if body.pos < body.end:
            _properties(body)
        return Ack(kind, mid, reasons)
    if kind == SUBACK:
        mid = body.u16()
        _properties(body)
        return Ack(kind, mid, body.rest())
    if kind == CONNACK:
        flags, reasons = body.u8(), bytes(body.take(1))
        props = _properties(body) if body.pos < body.end else {}
        return Ack(kind, 0, reasons, bool(flags & 1), props)
    reasons = bytes(body.take(1)) if body.pos < body.end else b""   # PINGRESP, DISCONNECT
    if body.pos < body.end:
        _properties(body)
    return Ack(kind, 0, reasons)


def _parse_publish(first: int, data: bytes, pos: int, stop: int) -> Publish:
    """PUBLISH, the hot path: fields read in place, each checked against the packet's end."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise ProtocolError("QoS 3")
    head = pos + 2
    if head > stop:
        raise ProtocolError("no topic length")
    pos = head + ((data[pos] << 8) | data[pos + 1])
    if pos + (3 if qos else 1) > stop:
        raise ProtocolError("topic runs past the end")
    topic = data[head:pos].decode()
    mid = 0
    if qos:
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if not mid:
            raise ProtocolError("packet id 0")
    if data[pos] == 0:       # the usual empty property list
        pos += 1
    else:
        body = _Body(memoryview(data), pos, stop)
        _properties(body)
        pos = body.pos
    return Publish(topic, data[pos:stop], qos, bool(first & DUP_FLAG), bool(first & RETAIN_FLAG), mid)
