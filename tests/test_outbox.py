"""edge.outbox: order, durability across reopen and kill -9, acknowledgement, disk budget."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from edge.outbox import Outbox


def payload(seq):
    return f"pulse-{seq}".encode() * 4


def test_fifo_ack_and_sequence_never_reused(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        seqs = [box.append(payload) for _ in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert box.pending() == [(s, payload(s)) for s in seqs]
        assert [s for s, _ in box.pending(after_seq=2, limit=2)] == [3, 4]
        box.ack(1)
        box.ack(3)
        box.ack(3)
        assert [s for s, _ in box.pending()] == [2, 4, 5]
        for s in (2, 4, 5):
            box.ack(s)
        assert box.depth() == 0
    with Outbox(path) as box:  # reopened: numbering continues after the last one handed out
        assert box.last_seq() == 5
        assert box.append(payload) == 6


def test_failed_encode_stores_nothing(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        def bad(seq):
            raise RuntimeError("signing failed")
        with pytest.raises(RuntimeError):
            box.append(bad)
        assert box.depth() == 0
        assert box.append(payload) >= 1
        assert box.depth() == 1


def test_budget_evicts_oldest_and_counts(tmp_path):
    path = tmp_path / "o.db"
    budget = 32 * 1024
    with Outbox(path, budget_bytes=budget) as box:
        for _ in range(400):
            box.append(lambda s: bytes(500))
        depth, evicted = box.depth(), box.evicted()
        assert depth == len(box.pending(limit=10**6))
        assert evicted > 0 and depth + evicted == 400
        assert box.pending(limit=1)[0][0] == evicted + 1  # the oldest went first
        assert box.pending(after_seq=399)[0][0] == 400  # the newest is kept
    assert os.path.getsize(path) <= 2 * budget
    with Outbox(path, budget_bytes=budget) as box:
        assert box.evicted() == evicted


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="outbox"):
        Outbox(path)


def test_every_committed_pulse_survives_kill_9(tmp_path):
    path = tmp_path / "o.db"
    writer = textwrap.dedent(f"""
        import sys
        from edge.outbox import Outbox
        box = Outbox({str(path)!r})
        while True:
            seq = box.append(lambda s: b"x" * 100)
            print(seq, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    committed = []
    deadline = time.monotonic() + 30
    while len(committed) < 200 and time.monotonic() < deadline:
        committed.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed += [int(line) for line in proc.stdout.read().split()]
    assert len(committed) >= 200
    with Outbox(path) as box:
        stored = [s for s, _ in box.pending(limit=10**6)]
    assert set(committed) <= set(stored)
    assert stored == list(range(1, len(stored) + 1))
