"""A scripted MQTT broker on loopback for tests of our MQTT client (in the style of paho-mqtt's
tests): each accepted connection plays the next script of steps, exactly, and records what the
client sent.  Steps: ``("expect", packet_type)`` reads one packet from the client and checks its
type, ``("send", bytes)``, ``("close",)`` closes the connection, ``("hold",)`` reads until the
client sends DISCONNECT or closes.  After the last script, further connections replay it.
"""
from __future__ import annotations

import socket
import threading

from fusion.transport import mqttwire

CONNACK_OK = bytes([mqttwire.CONNACK << 4, 3, 0, 0, 0])   # no session present, success, no properties
READ_TIMEOUT_S = 10.0


def connack(reason: int) -> bytes:
    return bytes([mqttwire.CONNACK << 4, 3, 0, reason, 0])


def suback(packet_id: int = 1, reason: int = 1) -> bytes:
    return bytes([mqttwire.SUBACK << 4, 4]) + packet_id.to_bytes(2, "big") + bytes([0, reason])


# The opening every accepted connection of the link plays: CONNECT -> CONNACK, SUBSCRIBE -> SUBACK.
OPENING = [("expect", mqttwire.CONNECT), ("send", CONNACK_OK), ("expect", mqttwire.SUBSCRIBE), ("send", suback())]


def _read_exact(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise ConnectionError("client closed")
        out += chunk
    return out


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """One packet the client sent: (type, body)."""
    first = _read_exact(conn, 1)[0]
    length, shift = 0, 0
    while True:
        byte = _read_exact(conn, 1)[0]
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return first >> 4, _read_exact(conn, length)


class ScriptedBroker:
    """Plays ``scripts`` (one per connection, the last repeated); ``errors`` lists what went unexpected."""

    def __init__(self, scripts: list[list[tuple]]):
        self.scripts = scripts
        self.connections = 0
        self.received: list[list[int]] = []        # packet types the client sent, per connection
        self.errors: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            script = self.scripts[min(self.connections, len(self.scripts) - 1)]
            self.connections += 1
            self.received.append([])
            threading.Thread(target=self._play, args=(conn, script, self.received[-1]), daemon=True).start()

    def _play(self, conn: socket.socket, script: list[tuple], received: list[int]) -> None:
        conn.settimeout(READ_TIMEOUT_S)
        try:
            for step in script:
                if step[0] == "expect":
                    kind, _ = read_packet(conn)
                    while kind in (mqttwire.PINGREQ, mqttwire.PUBACK) and step[1] != kind:
                        received.append(kind)
                        kind, _ = read_packet(conn)
                    received.append(kind)
                    if kind != step[1]:
                        self.errors.append(f"connection {self.connections}: expected packet type {step[1]}, got {kind}")
                        return
                elif step[0] == "send":
                    conn.sendall(step[1])
                elif step[0] == "close":
                    return
                elif step[0] == "hold":   # until the client disconnects, as a broker closes on DISCONNECT
                    conn.settimeout(None)
                    while not received or received[-1] != mqttwire.DISCONNECT:
                        received.append(read_packet(conn)[0])
        except (OSError, ConnectionError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._server.close()
