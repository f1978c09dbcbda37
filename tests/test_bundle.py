"""Audit log and evidence bundles from a real `earwitness fusion` run: the chain verifies, a bundle
exported from it verifies, and one byte changed anywhere in the bundle is named.

One run of the real server process (real mosquitto, the real Pittsburgh pulses signed by stand-in
nodes that answer clip requests with the test's real audio) serves every test of the module.
"""
from __future__ import annotations

import hashlib
import json
import zipfile

import nacl.signing
import pytest

from earwitness.cli import main
from fusion.server.audit import AuditLog
from fusion.server.store import Store
from fusion_site import build_site, final_with_clips, fusion_run
from simulator.broker import publish_all, wait_until

SITE = "pgh"
WAIT_S = 90.0
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(pittsburgh, tmp_path_factory):
    """A real server run to a final incident with its clips; yields (folder, database, incident id)."""
    work = tmp_path_factory.mktemp("bundle")
    site = build_site(pittsburgh[0], work / "site")
    with fusion_run(work, site, SITE, "fusion-bundle", wait_s=WAIT_S) as (url, log, db, _):
        publish_all(url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        with Store(db) as store:
            assert wait_until(lambda: final_with_clips(store, len(site.wavs)), WAIT_S), log.read_text()
            incident = final_with_clips(store, len(site.wavs))
    assert "made one (public key" in log.read_text()   # the key made at first start, said in one line
    yield work, db, incident


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_real_run_leaves_a_chain_that_verifies(run, capsys):
    work, db, incident = run
    with Store(db) as store:
        entries = AuditLog(store).entries()
        revisions = store.revisions(incident["incident"])
    assert entries[0]["action"] == "registry"
    mine = [e["body"]["revision"] for e in entries if e["subject"] == incident["incident"]]
    assert mine == [r["revision"] for r in revisions] and len(mine) >= 2
    code, out, err = _cli(capsys, "audit", "verify", "--db", str(db), "--public-key", str(work / "fusion.key.pub"))
    assert code == 0 and out.startswith(f"audit log OK: {len(entries)} entries"), out + err


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    work, db, incident = run
    out = tmp_path_factory.mktemp("out") / "evidence.zip"
    assert main(["evidence", incident["incident"], "--db", str(db), "--out", str(out),
                 "--signing-key", str(work / "fusion.key")]) == 0
    return out


def test_exported_bundle_verifies_and_recomputes_the_incident(run, bundle, capsys):
    work, _, incident = run
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
    assert {"registry.toml", "revisions.json", "audit.json", "settings.json", "pulses.json", "clips.json"} <= names
    assert sum(n.startswith("clips/") for n in names) > 0 and sum(n.startswith("pulses/") for n in names) >= incident["rounds"]
    assert set(manifest["files"]) == names - {"manifest.json", "manifest.sig"}
    code, out, err = _cli(capsys, "verify", str(bundle), "--public-key", str(work / "fusion.key.pub"))
    assert code == 0, out + err
    assert f"rounds {incident['rounds']} (stored {incident['rounds']})" in out and "everything checks" in out


def _changed(bundle, tmp_path, name: str, offset: int = 40):
    """A copy of the bundle with one byte of ``name`` flipped."""
    out = tmp_path / f"changed-{name.replace('/', '_')}.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == name:
                i = offset % len(data)
                data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
            dst.writestr(item, data)
    return out


@pytest.mark.parametrize("part", ["pulses/0001.bin", "clips/0001.flac", "registry.toml", "audit.json",
                                  "revisions.json", "manifest.json"])
def test_one_byte_changed_is_named(bundle, tmp_path, capsys, part):
    changed = _changed(bundle, tmp_path, part)
    assert hashlib.sha256(changed.read_bytes()).digest() != hashlib.sha256(bundle.read_bytes()).digest()
    code, out, err = _cli(capsys, "verify", str(changed))
    assert code == 1, out + err
    first = err.splitlines()[0]
    assert first.startswith(f"BAD: {part}:"), err



def test_a_pulse_changed_and_the_manifest_signed_again_by_another_key_is_still_named(run, bundle, tmp_path, capsys):
    """Whoever holds a server key cannot alter a node's pulse: its node signature names it; and a
    bundle signed by another key than the server's is refused with --public-key."""
    changed = _changed(bundle, tmp_path, "pulses/0001.bin", offset=12)   # inside the signed body: t_ns
    with zipfile.ZipFile(changed) as z:
        files = {n: z.read(n) for n in z.namelist()}
    forger = nacl.signing.SigningKey(b"\x09" * 32)
    manifest = json.loads(files["manifest.json"])
    manifest["server_key"] = bytes(forger.verify_key).hex()
    manifest["files"]["pulses/0001.bin"] = hashlib.sha256(files["pulses/0001.bin"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    files["manifest.sig"] = forger.sign(files["manifest.json"]).signature.hex().encode()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    code, out, err = _cli(capsys, "verify", str(forged))
    assert code == 1 and err.splitlines()[0].startswith("BAD: pulses/0001.bin: node "), err
    assert "audit.json: entry" in err        # the audit entries are the server's, not the forger's
    code, out, err = _cli(capsys, "verify", str(forged), "--public-key", str(run[0] / "fusion.key.pub"))
    assert code == 1 and err.splitlines()[0].startswith("BAD: manifest.json: signed by key"), err
