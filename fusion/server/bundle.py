"""Evidence bundles: one incident's evidence in a zip anyone can check, and the check.

A bundle holds, each file listed with its SHA-256 in ``manifest.json`` (signed by the server's
Ed25519 key in ``manifest.sig``, its public key in the manifest):

- ``pulses/NNNN.bin``: the signed pulse messages exactly as the nodes sent them, and
  ``pulses.json``: per file its node, sequence, whether the locator used it and why not;
- ``registry.toml``: the registry the server ran with (the nodes' keys and positions), as
  entered in the audit log;
- ``revisions.json``: every revision of the incident as stored (body and meta text: the
  temperature and speed of sound used, the locator's mode, the software version);
- ``clips/NNNN.flac`` and ``clips.json``: the audio the nodes sent, with their signed metadata;
- ``audit.json``: the audit entries of the incident and of the registry;
- ``settings.json``: the software version and the locator settings the check uses.

:func:`check_bundle` checks the manifest's signature, every file's hash, every pulse's and
clip's node signature against the registry, every audit entry's hash and signature and that
they match the revisions, then locates the used pulses again with the same locator
(:func:`fusion.locator.locate`) and compares position and round count with the last revision.

Example::

    write_bundle(store, "pgh-inc-1", signing_key, "inc.zip")
    report = check_bundle("inc.zip")      # report.problems: one line each; empty when all checks
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import pathlib
import zipfile

import nacl.exceptions
import nacl.signing
import sqlalchemy as sa

import earwitness
from earwitness import keys, wire
from fusion.locator.locate import locate
from fusion.locator.uncertainty import FRAME_TYPICAL_M
from fusion.server import audit, evidence
from fusion.server.ingest import pulse_dict
from fusion.server.registry import Registry, RegistryError, registry_from_nodes
from fusion.server.store import Store, revisions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
LOCATOR = "fusion.locator.locate.locate"
# A recomputed position this close to the stored one agrees whatever err_m says (float rounding).
AGREE_MIN_M = 1.0


class BundleError(ValueError):
    """An incident that cannot be exported (unknown, no registry entered); one line."""


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1).encode()


def bundle_files(store: Store, incident_id: str, signing_key: nacl.signing.SigningKey) -> dict[str, bytes]:
    """The files of an incident's bundle, manifest and signature included."""
    with store.engine.connect() as conn:
        rows = list(conn.execute(sa.select(revisions).where(revisions.c.incident == incident_id)
                                 .order_by(revisions.c.revision)))
    if not rows:
        raise BundleError(f"no incident {incident_id!r} in the store")
    log = audit.AuditLog(store)
    entries = log.entries(subject=incident_id)
    entered = registry_entry(log, entries)
    files: dict[str, bytes] = {
        "revisions.json": _json([{"revision": r.revision, "status": r.status, "body": r.body, "meta": r.meta,
                                  "created_ns": r.created_ns} for r in rows]),
        "registry.toml": entered["body"]["text"].encode("utf-8"),
        "audit.json": _json([entered, *entries]),
    }
    index = []
    for i, p in enumerate(store.incident_pulses(incident_id), 1):
        name = f"pulses/{i:04d}.bin"
        files[name] = store.pulse_raw(p["id"])
        index.append({"file": name, "node": p["node"], "seq": p["seq"], "used": p["used"], "reason": p["reason"],
                      "received_ns": p["received_ns"]})
    files["pulses.json"] = _json(index)
    clip_index = []
    for i, c in enumerate(store.clips(incident_id), 1):
        name = f"clips/{i:04d}.flac"
        files[name] = c["data"]
        clip_index.append({"file": name, "node": c["node"], "sha256": c["sha256"], "meta": c["meta"],
                           "received_ns": c["received_ns"]})
    files["clips.json"] = _json(clip_index)
    meta = json.loads(rows[-1].meta)
    files["settings.json"] = _json({"software": earwitness.__version__, "incident": incident_id,
                                    "locator": {"function": LOCATOR, "mode": meta.get("mode", "2d"),
                                                "temperature_c": meta.get("temperature_c"),
                                                "wind_m_s": meta.get("wind_m_s"),
                                                "frame_m": meta.get("frame_m", FRAME_TYPICAL_M)},
                                    "weather": {"temperature_c": meta.get("temperature_c"), "wind_m_s": meta.get("wind_m_s"),
                                                "speed_of_sound_m_s": meta.get("speed_of_sound_m_s")}})
    manifest = _json({"incident": incident_id, "server_key": keys.public_hex(signing_key.verify_key),
                      "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items())}})
    files[MANIFEST] = manifest
    files[SIGNATURE] = signing_key.sign(manifest).signature.hex().encode()
    return files


def registry_entry(log: audit.AuditLog, entries: list[dict]) -> dict:
    """The registry entered last before the incident's first revision entry (else the last one)."""
    first = min((e["seq"] for e in entries), default=math.inf)
    found = log.entries(action=audit.REGISTRY)
    before = [e for e in found if e["seq"] < first]
    if not found:
        raise BundleError("no registry in the audit log (the server ran without a signing key)")
    return (before or found)[-1]


def write_bundle(store: Store, incident_id: str, signing_key: nacl.signing.SigningKey, out: str | pathlib.Path) -> int:
    """Write the bundle zip; returns how many files it holds."""
    files = bundle_files(store, incident_id, signing_key)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return len(files)


@dataclasses.dataclass
class Report:
    """What a check found: ``problems`` (one line each; empty: everything checks) and ``notes``."""

    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def check_bundle(path: str | pathlib.Path, trusted: set[str] | None = None) -> Report:
    """Check a bundle (see the module's doc); ``trusted``: the server keys it must be signed by."""
    report = Report()
    try:
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"{path}: not a readable zip ({exc})")
        return report
    manifest = _check_manifest(files, trusted, report)
    if manifest is None:
        return report
    server_key = manifest["server_key"]
    _check_hashes(files, manifest, report)
    try:
        registry = registry_from_nodes(tomllib.loads(files["registry.toml"].decode("utf-8")).get("node", []),
                                       "registry.toml")
    except (KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError, RegistryError) as exc:
        report.problems.append(f"registry.toml: unreadable ({exc})")
        return report
    try:
        rows = json.loads(files["revisions.json"])
        pulses = _check_pulses(files, registry, report)
        _check_clips(files, registry, report)
        _check_audit(files, rows, server_key, report)
        _recompute(rows, pulses, registry, json.loads(files["settings.json"]), report)
    except (KeyError, ValueError, TypeError) as exc:
        report.problems.append(f"bundle malformed: {type(exc).__name__}: {exc}")
    return report


def _check_manifest(files: dict[str, bytes], trusted: set[str] | None, report: Report) -> dict | None:
    try:
        manifest = json.loads(files[MANIFEST])
        key = nacl.signing.VerifyKey(bytes.fromhex(manifest["server_key"]))
        key.verify(files[MANIFEST], bytes.fromhex(files[SIGNATURE].decode()))
    except KeyError as exc:
        report.problems.append(f"{exc.args[0]}: missing from the bundle")
        return None
    except (ValueError, TypeError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        report.problems.append(f"{MANIFEST}: its signature does not check (changed after export)")
        return None
    if trusted is not None and manifest["server_key"] not in trusted:
        report.problems.append(f"{MANIFEST}: signed by key {manifest['server_key'][:16]}..., not the one given")
    report.notes.append(f"manifest signed by server key {manifest['server_key']}")
    return manifest


def _check_hashes(files: dict[str, bytes], manifest: dict, report: Report) -> None:
    listed = manifest.get("files", {})
    for name, data in sorted(files.items()):
        if name in (MANIFEST, SIGNATURE):
            continue
        if name not in listed:
            report.problems.append(f"{name}: not in the manifest (added after export)")
        elif hashlib.sha256(data).hexdigest() != listed[name]:
            report.problems.append(f"{name}: SHA-256 differs from the manifest's (changed after export)")
    for name in sorted(set(listed) - set(files)):
        report.problems.append(f"{name}: in the manifest, missing from the bundle")


def _check_pulses(files: dict[str, bytes], registry: Registry, report: Report) -> list[dict]:
    """Each pulse message's node signature; returns the used ones as locator pulses."""
    used, good = [], 0
    for item in json.loads(files["pulses.json"]):
        try:
            msg = wire.decode(files[item["file"]], registry.keyring, topic_node=item["node"])
        except wire.WireError as exc:
            report.problems.append(f"{item['file']}: node {item['node']} seq {item['seq']}: {exc}")
            continue
        if msg.stream_seq != item["seq"]:
            report.problems.append(f"{item['file']}: seq {msg.stream_seq} signed, {item['seq']} listed")
        good += 1
        if item["used"]:
            used.append(pulse_dict(item["node"], msg))
    report.notes.append(f"{good} pulse message(s) signed by their registered nodes")
    return used


def _check_clips(files: dict[str, bytes], registry: Registry, report: Report) -> None:
    for item in json.loads(files["clips.json"]):
        flac = files[item["file"]]
        answer = dict(item["meta"], audio_b64=base64.b64encode(flac).decode())
        try:
            evidence.verify_clip(item["node"], json.dumps(answer).encode(), registry)
        except evidence.ClipRejected as exc:
            report.problems.append(f"{item['file']}: clip from {item['node']}: {exc.detail}")
    report.notes.append(f"{len(json.loads(files['clips.json']))} clip(s) checked against their nodes' signatures")


def _check_audit(files: dict[str, bytes], rows: list[dict], server_key: str, report: Report) -> None:
    entries = json.loads(files["audit.json"])
    for entry in entries:
        what = audit.check_entry(entry, {server_key})
        if what:
            report.problems.append(f"audit.json: entry {entry.get('seq')}: {what}")
    registry_sha = hashlib.sha256(files["registry.toml"]).hexdigest()
    if not any(e["action"] == audit.REGISTRY and e["subject"] == registry_sha for e in entries):
        report.problems.append("registry.toml: not the registry the audit log entered")
    entered = {e["body"].get("revision"): e for e in entries if e["action"] == audit.REVISION}
    for row in rows:
        entry = entered.get(row["revision"])
        if entry is None:
            report.problems.append(f"revisions.json: revision {row['revision']} has no audit entry")
        elif entry["body"].get("sha256") != audit.revision_digest(row["body"], row["meta"]):
            report.problems.append(f"revisions.json: revision {row['revision']} differs from its audit entry")
    report.notes.append(f"{len(entries)} audit entr{'y' if len(entries) == 1 else 'ies'} checked")


def _recompute(rows: list[dict], pulses: list[dict], registry: Registry, settings: dict, report: Report) -> None:
    """Locate the used pulses again; the differences from the last revision are notes, a different
    round count or a position outside the stated 95% radius a problem."""
    last = json.loads(rows[-1]["body"])
    if not pulses or "t_ns" not in last or last.get("status") == "withdrawn":
        report.notes.append(f"nothing to recompute (status {last.get('status')}, {len(pulses)} used pulse(s))")
        return
    locator = settings["locator"]
    wind = locator.get("wind_m_s")
    found = locate(pulses, registry.sensors, locator.get("temperature_c"), mode=locator.get("mode", "2d"),
                   wind_m_s=tuple(wind) if wind else None, frame_m=locator.get("frame_m", FRAME_TYPICAL_M))
    if not found:
        report.problems.append(f"recomputed: the locator finds no incident in the {len(pulses)} used pulses")
        return
    again = max(found, key=lambda inc: inc["rounds"])
    dist_m = math.dist(registry.sensors.to_enu(last)[:2], registry.sensors.to_enu(again)[:2])
    limit_m = max(float(last.get("err_m") or 0.0), AGREE_MIN_M)
    report.notes.append(f"recomputed with {LOCATOR} ({len(pulses)} pulses, mode {locator.get('mode')}, "
                        f"temperature {locator.get('temperature_c')} C): rounds {again['rounds']} (stored {last['rounds']}), "
                        f"position {dist_m:.1f} m from the stored one (its 95% radius {limit_m:.1f} m)")
    if again["rounds"] != last["rounds"]:
        report.problems.append(f"recomputed: {again['rounds']} rounds, the incident says {last['rounds']}")
    if dist_m > limit_m:
        report.problems.append(f"recomputed: position {dist_m:.1f} m from the stored one, beyond its 95% radius {limit_m:.1f} m")
    if settings.get("software") != earwitness.__version__:
        report.notes.append(f"exported by earwitness {settings.get('software')}, checked with {earwitness.__version__}")

