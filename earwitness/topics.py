"""MQTT topic names (DESIGN.md): one function per topic, the only place the scheme is spelled.

Every topic lives under ``ew/v1/{site}/``.  Functions taking ``node`` accept ``"+"`` for a
subscription's single-level wildcard.
"""
from __future__ import annotations

ROOT = "ew/v1"
WILDCARD = "+"
SHARE_PREFIX = "$share"
NODE_TOPIC_PARTS = 6  # ew / v1 / site / node / {node} / kind


def site_root(site: str) -> str:
    """``ew/v1/{site}``: everything of one site lies under it."""
    return f"{ROOT}/{site}"


def node_root(site: str, node: str) -> str:
    """``ew/v1/{site}/node/{node}``: the topics of one node."""
    return f"{site_root(site)}/node/{node}"


def pulse(site: str, node: str) -> str:
    """Signed binary pulse messages from a node (QoS 1)."""
    return f"{node_root(site, node)}/pulse"


def status(site: str, node: str) -> str:
    """A node's retained ``online``/``offline`` status (its last will says ``offline``)."""
    return f"{node_root(site, node)}/status"


def health(site: str, node: str) -> str:
    """A node's periodic health report (JSON)."""
    return f"{node_root(site, node)}/health"


def command(site: str, node: str) -> str:
    """Commands to a node (JSON), e.g. a clip request."""
    return f"{node_root(site, node)}/cmd"


def clip(site: str, node: str) -> str:
    """A node's signed audio clip, answering a clip command."""
    return f"{node_root(site, node)}/clip"


def incident(site: str) -> str:
    """Incident alerts out (JSON, one message per revision)."""
    return f"{site_root(site)}/incident"


def incident_cap(site: str) -> str:
    """Incident alerts out as CAP 1.2 XML."""
    return f"{incident(site)}/cap"


def deadletter(site: str) -> str:
    """Rejected input with its reason (JSON)."""
    return f"{site_root(site)}/deadletter"


def fusion_health(site: str) -> str:
    """The fusion server's own health."""
    return f"{site_root(site)}/fusion/health"


def camera_cue(site: str, camera: str) -> str:
    """Bearing and distance for a pan-tilt camera."""
    return f"{site_root(site)}/camera/{camera}/cue"


def worker_pulses(site: str, slot: int) -> str:
    """Verified pulses forwarded between fusion workers to worker slot ``slot`` (the owner of their cells)."""
    return f"{worker_root(site)}{slot}/pulse"


def worker_root(site: str) -> str:
    """The prefix of every worker topic (what a worker forwards, not what a node sends)."""
    return f"{site_root(site)}/worker/"


def shared(group: str, topic: str) -> str:
    """An MQTT v5 shared subscription of ``topic`` for the workers of ``group``."""
    return f"{SHARE_PREFIX}/{group}/{topic}"


def node_of(topic: str, site: str, kind: str) -> str | None:
    """The node name in ``ew/v1/{site}/node/{node}/{kind}``, or None if ``topic`` is not of that form."""
    parts = topic.split("/")
    if len(parts) != NODE_TOPIC_PARTS or "/".join(parts[:4]) != f"{site_root(site)}/node" or parts[5] != kind:
        return None
    return parts[4] or None
