"""The audit log (fusion.server.audit) and `earwitness audit verify` on SQLite and on the real PostgreSQL."""
from __future__ import annotations

import getpass
import signal
import subprocess
import sys
import threading

import nacl.signing
import pytest

from earwitness import keys
from earwitness.cli import main
from fusion.server.audit import AuditLog
from fusion.server.registry import write_registry
from fusion.server.store import Store
from fusion_db import database
from fusion_site import write_fusion_config

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
KEY = nacl.signing.SigningKey(b"\x07" * 32)


def _incident(i: int, rounds: int) -> dict:
    return {"incident": f"inc-{i}", "t_ns": 1_700_000_000_000_000_000 + i, "x": 1.0 * i, "y": 2.0, "rounds": rounds}


def _filled(url, schema) -> Store:
    """A store with 5 revisions of 2 incidents and one person's action: entries 1..6."""
    store = Store(url, schema=schema)
    log = AuditLog(store, KEY)
    log.record_revisions()
    store.save_incident(_incident(1, 1), "preliminary", meta={"temperature_c": 4.0})   # entry 1
    store.save_incident(_incident(1, 2), "revised")                                    # 2
    store.save_incident(_incident(2, 1), "preliminary")                                # 3
    log.append("alice", "review", "inc-1", {"verdict": "confirmed", "reason": "casings found"})   # 4
    store.save_incident(_incident(1, 3), "final")                                      # 5
    store.save_incident(_incident(2, 1), "final")                                      # 6
    return store


def _verify(capsys, url, schema, *extra) -> tuple[int, str]:
    code, out, err = _run_capture(capsys, ["audit", "verify", "--db", url, *(["--schema", schema] if schema else []), *extra])
    return code, (out + err).strip()


def _sql(store: Store, text: str) -> None:
    with store.engine.begin() as conn:
        assert conn.exec_driver_sql(text).rowcount == 1


@pytest.mark.parametrize("kind", KINDS)
def test_chain_verifies_and_names_a_tampered_or_deleted_entry(kind, tmp_path, capsys):
    with database(kind, tmp_path) as (url, schema):
        store = _filled(url, schema)
        entries = AuditLog(store).entries()
        assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
        assert [e["actor"] for e in entries] == ["fusion"] * 3 + ["alice"] + ["fusion"] * 2
        public = bytes(KEY.verify_key).hex()
        code, text = _verify(capsys, url, schema, "--public-key", public)
        assert code == 0 and text.startswith("audit log OK: 6 entries"), text
        other = bytes(nacl.signing.SigningKey(b"\x08" * 32).verify_key).hex()
        code, text = _verify(capsys, url, schema, "--public-key", other)
        assert code == 1 and "audit entry 1: signed by key" in text, text

        # A reviewer's reason rewritten in the row: entry 4 named.
        _sql(store, "UPDATE audit_log SET body = replace(body, 'casings found', 'nothing found') WHERE seq = 4")
        code, text = _verify(capsys, url, schema)
        assert code == 1 and "audit entry 4: its content does not match its hash" in text, text
        _sql(store, "UPDATE audit_log SET body = replace(body, 'nothing found', 'casings found') WHERE seq = 4")
        assert _verify(capsys, url, schema)[0] == 0

        # A stored revision changed behind the log's back (rounds 2 -> 5): its entry named.
        _sql(store, "UPDATE incident_revisions SET body = replace(body, '\"rounds\":2', '\"rounds\":5') "
                    "WHERE incident = 'inc-1' AND revision = 2")
        code, text = _verify(capsys, url, schema)
        assert code == 1 and "audit entry 2: revision 2 of inc-1 was changed" in text, text
        _sql(store, "UPDATE incident_revisions SET body = replace(body, '\"rounds\":5', '\"rounds\":2') "
                    "WHERE incident = 'inc-1' AND revision = 2")

        # An entry deleted from the middle, then one from the end.
        _sql(store, "DELETE FROM audit_log WHERE seq = 3")
        code, text = _verify(capsys, url, schema)
        assert code == 1 and "audit entry 3: missing (deleted)" in text, text
        store.close()

    with database(kind, tmp_path / "b") as (url, schema):
        (tmp_path / "b").mkdir(exist_ok=True)
        store = _filled(url, schema)
        _sql(store, "DELETE FROM audit_log WHERE seq = 6")
        code, text = _verify(capsys, url, schema)
        assert code == 1 and "audit entry 6: missing: no entry for revision 2 of inc-2" in text, text
        store.close()


def test_append_is_in_the_revision_transaction(tmp_path):
    """A revision that fails to store leaves no entry, and an entry that fails to append stores no revision."""
    store = Store(tmp_path / "fusion.db")
    log = AuditLog(store, KEY)
    log.record_revisions()
    store.save_incident(_incident(1, 1), "preliminary")

    def broken(conn, saved):
        raise RuntimeError("disk full")

    store.revision_hooks.append(broken)
    with pytest.raises(RuntimeError):
        store.save_incident(_incident(1, 2), "revised")
    store.revision_hooks.remove(broken)
    assert [r["revision"] for r in store.revisions("inc-1")] == [1]
    assert [e["seq"] for e in log.entries()] == [1]
    assert log.verify().problem is None
    store.close()


def test_verify_refuses_a_missing_database_in_one_line(tmp_path, capsys):
    code, text = _verify(capsys, str(tmp_path / "nope.db"), None)
    assert code == 2 and "no database file" in text and len(text.splitlines()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_two_writers_appending_at_once_keep_one_chain(kind, tmp_path):
    """Two stores (two workers) append and save revisions concurrently: one gapless chain that verifies."""
    per_writer = 15
    with database(kind, tmp_path) as (url, schema):
        stores = [Store(url, schema=schema) for _ in range(2)]
        logs = [AuditLog(s, KEY) for s in stores]
        for log in logs:
            log.record_revisions()

        def work(k: int) -> None:
            for i in range(per_writer):
                stores[k].save_incident(_incident(100 * k + i, 1), "preliminary")
                logs[k].append(f"worker-{k}", "note", f"inc-{100 * k + i}", {"i": i})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        verdict = logs[0].verify({bytes(KEY.verify_key).hex()})
        assert verdict.problem is None and verdict.entries == 2 * 2 * per_writer
        assert [e["seq"] for e in logs[1].entries()] == list(range(1, 4 * per_writer + 1))
        for s in stores:
            s.close()


def test_revisions_of_before_the_log_are_entered_once_at_its_first_use(tmp_path, capsys):
    db = str(tmp_path / "fusion.db")
    store = Store(db)
    store.save_incident(_incident(1, 1), "preliminary")
    store.save_incident(_incident(1, 2), "final")
    AuditLog(store, KEY).record_revisions()        # an upgraded server's first start
    AuditLog(store, KEY).record_revisions()        # its second: nothing entered again
    code, text = _verify(capsys, db, None)
    assert code == 0 and "audit log OK: 2 entries" in text and "2 stored before the log existed" in text, text
    store.close()
    with Store(db) as behind:                      # a revision written without the log
        behind.save_incident(_incident(1, 3), "revised")
    code, text = _verify(capsys, db, None)
    assert code == 1 and "audit entry 3: missing: no entry for revision 3 of inc-1" in text, text


def test_calls_import_is_entered_under_the_user_running_it(tmp_path, capsys):
    db = str(tmp_path / "fusion.db")
    Store(db).close()
    calls = tmp_path / "cad.csv"
    calls.write_text("call_id,t_utc,x,y\nc1,2026-01-01T00:00:00Z,10,20\n")
    argv = ["calls", "import", str(calls), "--db", db, "--signing-key"]
    code, out, _ = _run_capture(capsys, [*argv, str(tmp_path / "none.key")])
    assert code == 0 and "not entered in the audit log: no signing key" in out
    keys.generate(tmp_path / "fusion.key")
    code, out, _ = _run_capture(capsys, [*argv, str(tmp_path / "fusion.key")])
    assert code == 0 and "entered in the audit log as entry 1" in out, out
    with Store(db) as store:
        entry, = AuditLog(store).entries()
    assert entry["action"] == "calls-import" and entry["subject"] == "cad.csv" and entry["actor"] == getpass.getuser()
    assert entry["body"]["calls"] == 1 and entry["body"]["new"] == 0     # stored by the first import
    code, text = _verify(capsys, db, None, "--public-key", str(tmp_path / "fusion.key.pub"))
    assert code == 0, text


def _run_capture(capsys, argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.integration
def test_fusion_refuses_a_malformed_signing_key_in_one_line_and_makes_none_before_it_starts(mosquitto, tmp_path):
    registry = write_registry(tmp_path / "nodes.toml", {"n1": (bytes(KEY.verify_key).hex(), {"x": 0.0, "y": 0.0})})
    (tmp_path / "bad.key").write_text("not a key\n")
    bad = write_fusion_config(tmp_path / "bad.toml", "s", mosquitto.url, registry, "fusion-bad", 10.0,
                              extra='signing_key = "bad.key"\n')
    done = subprocess.run([sys.executable, "-m", "earwitness", "fusion", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"earwitness fusion: error: signing key {tmp_path / 'bad.key'}: not a hex Ed25519 seed"], done.stderr
    # Waiting for a broker that does not answer, it has not started: no key is made yet, nor on a stop.
    unreachable = write_fusion_config(tmp_path / "off.toml", "s", "mqtt://127.0.0.1:1", registry, "fusion-off", 10.0)
    waiting = subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", str(unreachable)],
                               stderr=subprocess.PIPE, text=True)
    try:
        first = waiting.stderr.readline()
        while first and "cannot reach the broker" not in first:
            first = waiting.stderr.readline()
        assert "trying again" in first and not (tmp_path / "fusion.key").exists(), first
    finally:
        waiting.send_signal(signal.SIGTERM)
        rest = waiting.communicate(timeout=60)[1]
    assert waiting.returncode == 0 and not (tmp_path / "fusion.key").exists(), rest
