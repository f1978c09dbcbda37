"""Clip format: the node's signed answer to a clip command, as the server stores and checks it.

A clip message is JSON: the clip's fields (``t0_ns``, ``t1_ns`` of its first and last samples,
``rate_hz``, ``frames``, ``t_unc_ns``, ``timing``, ``sha256`` of the FLAC bytes), the request
``id``, the ``node`` name, ``format`` (``"flac"``), the audio in ``audio_b64`` and
``signature``: the node's Ed25519 signature (hex) of the canonical JSON of every other field,
so the audio's SHA-256 is signed with its times.
"""
from __future__ import annotations

import base64
import json
from typing import Any

import nacl.signing

MAX_CLIP_S = 300.0  # a node refuses longer clips; the server never asks for more


def clip_message(clip: dict[str, Any], request_id: Any, node: str,
                 signing_key: nacl.signing.SigningKey) -> dict[str, Any]:
    """The JSON answer to a clip command: ``clip`` (with ``flac`` bytes) in base64, signed."""
    msg = {k: v for k, v in clip.items() if k != "flac"}
    msg.update({"id": request_id, "node": node, "format": "flac", "audio_b64": base64.b64encode(clip["flac"]).decode()})
    msg["signature"] = signing_key.sign(canonical_json(msg)).signature.hex()
    return msg


def canonical_json(obj: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a clip signature covers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
