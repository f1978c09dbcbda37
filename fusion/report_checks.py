"""What the report checks itself: the registry the server ran with, and every signature of the incident's evidence.

The registry comes from the audit log (:mod:`fusion.server.audit`): the server enters the
registry file it starts with (its text and SHA-256), and the entry in force when the incident
was first stored is the one that verified its pulses.  From it the report takes each node's
position and ``survey`` (where the position came from, as the site wrote it in the registry).

Signatures are checked again at report time, not taken on trust: each stored pulse message
(exactly as the node sent it) against its node's key in that registry
(:func:`earwitness.wire.decode`), each clip's signed metadata and audio digest
(:func:`fusion.server.evidence.verify_clip`), and each audit entry of the incident (hash and
the server's signature, :func:`fusion.server.audit.check_entry`).

Example::

    snap = registry_snapshot(store, "pgh-inc-1")
    sigs = check_signatures(store, snap, pulses, clips, entries)
    sigs.pulses_ok, sigs.refused
"""
from __future__ import annotations

import base64
import dataclasses
import json

from earwitness import wire
from fusion.server import audit, evidence
from fusion.server.bundle import BundleError, registry_entry
from fusion.server.registry import Registry, RegistryError, registry_from_nodes

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

NOT_STATED = "not stated in the registry"


@dataclasses.dataclass
class RegistrySnapshot:
    """The registry in force for an incident, as entered in the audit log (all None/empty without one)."""

    sha256: str | None = None
    path: str | None = None
    seq: int | None = None
    entered_ns: int | None = None
    registry: Registry | None = None
    surveys: dict[str, str] = dataclasses.field(default_factory=dict)
    problem: str | None = None      # why there is none, or why it cannot be read

    def survey(self, node: str) -> str:
        return self.surveys.get(node, NOT_STATED)


def registry_snapshot(log: audit.AuditLog, entries: list[dict]) -> RegistrySnapshot:
    """The registry entered last before the incident's first audit entry (``entries``)."""
    try:
        entry = registry_entry(log, entries)
    except BundleError as exc:
        return RegistrySnapshot(problem=str(exc))
    snap = RegistrySnapshot(sha256=entry["subject"], path=entry["body"].get("path"), seq=entry["seq"],
                            entered_ns=entry["t_ns"])
    try:
        nodes = tomllib.loads(entry["body"]["text"]).get("node", [])
        snap.registry = registry_from_nodes(nodes, f"registry {snap.sha256[:16]}")
    except (KeyError, TypeError, tomllib.TOMLDecodeError, RegistryError) as exc:
        snap.problem = f"the registry entered in the audit log cannot be read: {exc}"
        return snap
    snap.surveys = {n["id"]: n["survey"] for n in nodes if isinstance(n.get("survey"), str)}
    return snap


@dataclasses.dataclass
class SignatureCheck:
    """How many signatures were checked and held; what was refused, one line each."""

    pulses_ok: int = 0
    clips_ok: int = 0
    audit_ok: int = 0
    refused: list[str] = dataclasses.field(default_factory=list)
    pulses_refused: int = 0
    clips_refused: int = 0
    audit_refused: int = 0
    checked: bool = False           # False: no registry to check against

    def lines(self, snap: RegistrySnapshot) -> list[str]:
        if not self.checked:
            return [f"Signatures: not checked by this report ({snap.problem or 'no registry'}); the server verified "
                    "each pulse's Ed25519 signature on arrival and stores none that fails"]
        lines = [
            f"Signatures checked by this report against registry SHA-256 {snap.sha256}: "
            f"pulse messages {self.pulses_ok} verified, {self.pulses_refused} refused; "
            f"audio clips {self.clips_ok} verified, {self.clips_refused} refused; "
            f"audit entries {self.audit_ok} verified, {self.audit_refused} refused",
            "(the server verifies each message on arrival and stores none that fails: those go to the dead-letter topic)",
        ]
        return lines + [f"REFUSED: {line}" for line in self.refused]


def check_signatures(store, snap: RegistrySnapshot, pulses: list[dict], clips: list[dict],
                     entries: list[dict]) -> SignatureCheck:
    """Check every pulse message, clip and audit entry of the incident (see the module docstring)."""
    out = SignatureCheck()
    for entry in entries:
        what = audit.check_entry(entry)
        if what:
            out.audit_refused += 1
            out.refused.append(f"audit entry {entry['seq']}: {what}")
        else:
            out.audit_ok += 1
    registry = snap.registry
    if registry is None:
        return out
    out.checked = True
    for p in pulses:
        try:
            msg = wire.decode(store.pulse_raw(p["id"]), registry.keyring, topic_node=p["node"])
            if msg.t_ns != p["t_ns"]:
                raise wire.WireError("stored", f"signed time {msg.t_ns} differs from the stored {p['t_ns']}")
        except wire.WireError as exc:
            out.pulses_refused += 1
            out.refused.append(f"pulse of {p['node']} seq {p['seq']}: {exc}")
        else:
            out.pulses_ok += 1
    for c in clips:
        answer = dict(c["meta"], audio_b64=base64.b64encode(c["data"]).decode())
        try:
            evidence.verify_clip(c["node"], json.dumps(answer).encode(), registry)
        except evidence.ClipRejected as exc:
            out.clips_refused += 1
            out.refused.append(f"clip of {c['node']}: {exc.detail}")
        else:
            out.clips_ok += 1
    return out
