"""Evidence: ask the nodes that heard an incident for their audio, and check what they send.

When an incident is final the server publishes, for every participating node, a command on
``ew/v1/{site}/node/{node}/cmd``::

    {"cmd": "clip", "id": "<incident>|<node>", "t0_ns": ..., "t1_ns": ...}

covering the node's arrivals with a margin; and to every node that did not trigger but is no farther
from the shots than the farthest node that heard them (:func:`quiet_clip_requests`), covering when
the shots' sound passed it: what a sensor nearby heard, or did not, is evidence too.  The node
answers on ``.../clip`` with the clip (:func:`earwitness.clip.clip_message`): FLAC audio in
base64, the UTC of its first and last samples, its SHA-256, all signed with the node's Ed25519
key.  :func:`verify_clip` checks
the topic, the signature against the registry and the audio's digest before anything is
stored; the store keeps the FLAC bytes with their SHA-256.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json

import nacl.exceptions
import numpy as np

from earwitness.clip import MAX_CLIP_S, canonical_json
from earwitness.units import NS_PER_S
from earwitness.wire import node_id
from fusion.locator.sensors import Sensors
from fusion.server.registry import Registry

CLIP_BEFORE_S = 0.5    # before a node's first arrival: the noise floor, for the analyst
CLIP_AFTER_S = 1.5     # after its last arrival: the echo tail
ID_SEPARATOR = "|"


class ClipRejected(ValueError):
    """A clip answer that cannot be stored; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def clip_requests(incident_id: str, pulses: list[dict], nodes: list[str]) -> dict[str, dict]:
    """Clip commands per node: from each node's first arrival in ``pulses`` minus a margin to its last plus one."""
    requests = {}
    for node in nodes:
        times = [p["t_ns"] for p in pulses if p["sensor"] == node]
        if not times:
            continue
        t0 = min(times) - int(CLIP_BEFORE_S * NS_PER_S)
        t1 = min(max(times) + int(CLIP_AFTER_S * NS_PER_S), t0 + int(MAX_CLIP_S * NS_PER_S))
        requests[node] = {"cmd": "clip", "id": f"{incident_id}{ID_SEPARATOR}{node}", "t0_ns": t0, "t1_ns": t1}
    return requests


def quiet_clip_requests(inc: dict, sensors: Sensors) -> dict[str, dict]:
    """Clip commands for the nodes of ``sensors`` that did not trigger on the incident ``inc`` yet are no
    farther from its nearest shot than the farthest node that did: each from when the first shot's
    sound reached it (at the incident's ``c_mps``) less a margin to when the last one's did plus one,
    as :func:`clip_requests` times a node that triggered."""
    heard = [sensors.index[n] for n in inc.get("sensors", []) if n in sensors.index]
    shots = inc.get("shots", [])
    if not heard or not shots:
        return {}
    places = np.array([sensors.to_enu(s)[:2] for s in shots], dtype=float)
    dist_m = np.linalg.norm(sensors.enu_m[:, None, :2] - places[None, :, :], axis=2)   # sensor x shot
    reach_m = float(dist_m[heard].min(axis=1).max())
    requests = {}
    for node, i in sorted(sensors.index.items()):
        if i in heard or dist_m[i].min() > reach_m:
            continue
        passes = [int(s["t_ns"]) + int(d / inc["c_mps"] * NS_PER_S) for s, d in zip(shots, dist_m[i])]
        t0 = min(passes) - int(CLIP_BEFORE_S * NS_PER_S)
        t1 = min(max(passes) + int(CLIP_AFTER_S * NS_PER_S), t0 + int(MAX_CLIP_S * NS_PER_S))
        requests[node] = {"cmd": "clip", "id": f"{inc['incident']}{ID_SEPARATOR}{node}", "t0_ns": t0, "t1_ns": t1}
    return requests


def verify_clip(topic_node: str, payload: bytes, registry: Registry) -> tuple[str, dict, bytes]:
    """Check a clip answer; returns (incident id, metadata, FLAC bytes) or raises ClipRejected.

    Checks: JSON object; the node named in it is the topic's and is registered; the answer
    is not an error; the Ed25519 signature covers every other field; the audio's SHA-256 is
    the one signed.
    """
    try:
        msg = json.loads(payload)
    except ValueError as exc:
        raise ClipRejected("clip-json", str(exc)) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("id"), str) or ID_SEPARATOR not in msg["id"]:
        raise ClipRejected("clip-schema", "not a clip answer to one of our requests")
    incident_id, requested_node = msg["id"].rsplit(ID_SEPARATOR, 1)
    if msg.get("node") != topic_node or requested_node != topic_node:
        raise ClipRejected("topic", f"answer from {msg.get('node')!r} on the topic of {topic_node!r}")
    if "error" in msg:
        raise ClipRejected("clip-error", f"node {topic_node}: {msg['error']}")
    key = registry.keyring.get(node_id(topic_node))
    if key is None:
        raise ClipRejected("unknown-node", f"no key for node {topic_node!r}")
    body = {k: v for k, v in msg.items() if k != "signature"}
    try:
        key.verify(canonical_json(body), bytes.fromhex(str(msg.get("signature", ""))))
        audio = base64.b64decode(str(msg.get("audio_b64", "")), validate=True)
    except (ValueError, binascii.Error, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise ClipRejected("signature", f"clip from {topic_node}: {exc or 'bad signature'}") from None
    if hashlib.sha256(audio).hexdigest() != msg.get("sha256"):
        raise ClipRejected("clip-hash", f"clip from {topic_node}: audio does not match its signed SHA-256")
    if not isinstance(msg.get("t0_ns"), int):
        raise ClipRejected("clip-schema", "t0_ns missing")
    meta = {k: v for k, v in body.items() if k != "audio_b64"}
    meta["signature"] = msg["signature"]
    return incident_id, meta, audio
