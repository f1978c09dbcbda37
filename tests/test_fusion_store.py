"""fusion.server.store against a real SQLite file and the real PostgreSQL server."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import pytest

from fusion.server.store import PulseRecord, Revision, SlotFenced, Store
from fusion_db import database


# PostgreSQL is the server at 127.0.0.1:5432 (tests/fusion_db.py): an integration test.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    with database(request.param, tmp_path) as (url, schema):
        s = Store(url, schema=schema)
        yield s
        s.close()


def _rec(node, seq, t_ns, raw=None):
    return PulseRecord(node=node, seq=seq, pulse={"sensor": node, "t_ns": t_ns, "snr_db": 12.5},
                       raw=raw or f"{node}:{seq}".encode())


def test_pulses_deduplicated_by_node_and_sequence(store):
    ids = store.add_pulses([_rec("a", 1, 300), _rec("b", 1, 100), _rec("a", 1, 999), _rec("a", 2, 200)])
    assert ids[0] and ids[1] and ids[3] and ids[2] is None
    assert store.add_pulses([_rec("b", 1, 100), _rec("c", 7, 50)])[0] is None
    got = store.pulses()
    assert [(p["node"], p["seq"], p["t_ns"]) for p in got] == [("c", 7, 50), ("b", 1, 100), ("a", 2, 200), ("a", 1, 300)]
    assert got[0]["sensor"] == "c" and got[0]["snr_db"] == 12.5
    assert store.pulses(t0_ns=100, t1_ns=200)[0]["t_ns"] == 100 and len(store.pulses(t0_ns=100, t1_ns=200)) == 2
    assert store.pulse_raw(ids[0]) == b"a:1"
    assert store.pulse_sha256("a", 1) == got[3]["sha256"] and len(got[3]["sha256"]) == 64
    assert store.pulse_sha256("a", 99) is None
    assert store.count_pulses() == 4


def test_every_incident_revision_is_kept(store):
    ids = store.add_pulses([_rec("a", 1, 100), _rec("b", 1, 110), _rec("c", 1, 120)])
    inc = {"incident": "i1", "t_ns": 90, "x": 1.0, "y": 2.0, "err_m": 9.0, "rounds": 1, "shooters": 1,
           "class": "gunshot", "confidence": 0.5, "shots": [], "sensors": ["a", "b"]}
    assert store.save_incident(inc, "preliminary", ids[:2], meta={"temperature_c": 3.0}) == 1
    inc2 = dict(inc, err_m=3.0, sensors=["a", "b", "c"])
    assert store.save_incident(inc2, "final", ids, rejected={}) == 2
    latest = store.incident("i1")
    assert latest["revision"] == 2 and latest["status"] == "final" and latest["err_m"] == 3.0
    revs = store.revisions("i1")
    assert [(r["revision"], r["status"], r["err_m"]) for r in revs] == [(1, "preliminary", 9.0), (2, "final", 3.0)]
    assert revs[0]["meta"] == {"temperature_c": 3.0}
    assert [p["used"] for p in store.incident_pulses("i1")] == [True, True, True]
    store.save_incident(inc2, "revised", ids[:1], rejected={ids[1]: "echo", ids[2]: "inconsistent"})
    assert [(p["node"], p["used"], p["reason"]) for p in store.incident_pulses("i1")] == [
        ("a", True, "used"), ("b", False, "echo"), ("c", False, "inconsistent")]
    assert store.incident("nope") is None
    assert [i["incident"] for i in store.incidents()] == ["i1"]
    with pytest.raises(ValueError):
        store.save_incident(inc, "maybe")
    # Withdrawn in favour of another incident: its last revision says which, and uses no pulse.
    assert store.save_incident(dict(inc2, merged_into="i2"), "withdrawn") == 4
    assert store.incident("i1")["status"] == "withdrawn" and store.incident("i1")["merged_into"] == "i2"


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_a_slot_started_again_refuses_the_writes_of_its_earlier_worker(kind, tmp_path):
    """Worker A runs slot "s/0"; B takes it over (A lost the lease and has not noticed): A's next
    round stores nothing (no revision, outbox message or checkpoint) and raises; B's goes in."""
    inc = {"incident": "i1", "t_ns": 90, "x": 1.0, "y": 2.0, "err_m": 9.0, "rounds": 1, "shooters": 1, "shots": [],
           "sensors": ["a"]}

    def sends(number, revision):
        return [("ew/v1/s/incident", b"%d" % number)]

    with database(kind, tmp_path) as (url, schema), Store(url, schema=schema) as store, \
            Store(url, schema=schema) as other:
        first = store.take_slot("s/0")
        assert store.save_round([Revision(inc, "preliminary", [], {}, {})], "s/0", {"by": "A"}, sends, epoch=first) == [1]
        second = other.take_slot("s/0")
        assert second == first + 1 and store.take_slot("s/1") == 1   # each slot its own epochs
        with pytest.raises(SlotFenced, match=r"slot s/0 was started again elsewhere \(epoch 2, this worker's 1\)"):
            store.save_round([Revision(inc, "final", [], {}, {})], "s/0", {"by": "A late"}, sends, epoch=first)
        assert [r["status"] for r in store.revisions("i1")] == ["preliminary"]
        assert [p for _, _, p in store.outbox("s/0")] == [b"1"] and store.tracker_state("s/0") == {"by": "A"}
        assert other.save_round([Revision(inc, "final", [], {}, {})], "s/0", {"by": "B"}, sends, epoch=second) == [2]
        assert store.tracker_state("s/0") == {"by": "B"} and [p for _, _, p in store.outbox("s/0")] == [b"1", b"2"]


def test_health_and_clips(store):
    store.record_health("a", 5, {"sats": 9, "pps": True})
    store.record_health("b", 6, {"sats": 3})
    assert store.health("a") == [{"sats": 9, "pps": True, "node": "a", "t_ns": 5}]
    assert len(store.health()) == 2
    digest = store.add_clip("i1", "a", 1000, b"RIFF....", {"rate_hz": 12000})
    assert digest == hashlib.sha256(b"RIFF....").hexdigest()
    clip, = store.clips("i1")
    assert clip["data"] == b"RIFF...." and clip["meta"] == {"rate_hz": 12000} and clip["sha256"] == digest


def test_committed_pulses_survive_kill_9(tmp_path):
    """A writer process killed with SIGKILL right after add_pulses returns loses nothing."""
    db = tmp_path / "kill.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from fusion.server.store import PulseRecord, Revision, SlotFenced, Store
        s = Store({str(db)!r})
        for batch in range(20):
            s.add_pulses([PulseRecord("n", batch * 50 + i, {{"sensor": "n", "t_ns": i}}, b"x") for i in range(50)])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -9
    with Store(db) as s:
        assert s.count_pulses() == 1000


def test_bad_url():
    with pytest.raises(ValueError, match="unsupported"):
        Store("mysql://x/y")
