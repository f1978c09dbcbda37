"""edge.outbox: order, durability across reopen and kill -9, acknowledgement, disk budget."""
import json
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


SMALL_DISK_KB = 4096
MARGIN_BYTES = 1024 * 1024
FULL_DISK_PULSES = 30_000


def test_a_small_disk_makes_the_oldest_room_and_a_full_one_drops_counted(tmp_path):
    """On a real 4 MB filesystem (tmpfs in a mount namespace): the outbox stops growing at the
    margin, evicting and counting the oldest, never failing; when something else fills the disk,
    a pulse that finds no room is dropped and counted, and the node goes on."""
    import small_disk

    why = small_disk.available()
    if why:
        pytest.skip(f"cannot make a small disk here: {why}")
    mount = tmp_path / "disk"
    script = textwrap.dedent(f"""
        import json, os, shutil, sys
        from edge.outbox import Outbox
        box = Outbox({str(mount / "outbox.db")!r}, disk_margin_bytes={MARGIN_BYTES})
        seqs = [box.append(lambda s: bytes(112)) for _ in range({FULL_DISK_PULSES})]
        low = dict(depth=box.depth(), evicted=box.evicted(), dropped=box.dropped, last=seqs[-1],
                   oldest=box.pending(limit=1)[0][0], free=shutil.disk_usage({str(mount)!r}).free)
        fd = os.open({str(mount / "filler")!r}, os.O_WRONLY | os.O_CREAT)   # another writer fills the disk
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError:
            os.close(fd)
        full = [box.append(lambda s: bytes(112)) for _ in range(200)]
        print(json.dumps(dict(low=low, full_dropped=box.dropped, full_stored=sum(1 for s in full if s))))
    """)
    run = subprocess.run(small_disk.on_small_disk(mount, SMALL_DISK_KB, [sys.executable, "-c", script]),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    low = got["low"]
    assert low["dropped"] == 0 and low["last"] == FULL_DISK_PULSES
    assert low["evicted"] > 0 and low["depth"] + low["evicted"] == FULL_DISK_PULSES
    assert low["oldest"] == low["evicted"] + 1                  # the oldest went, the newest stayed
    assert low["free"] >= MARGIN_BYTES // 2                     # the margin held (less the WAL's share)
    assert got["full_dropped"] > 0 and got["full_dropped"] + got["full_stored"] == 200
    assert "the disk is full: pulse dropped" in run.stderr


NODE_DISK_KB = 24 * 1024
NODE_BALLAST_KB = 16 * 1024          # 8 MB left: below the outbox's 16 MB margin from the start
NODE_SHOTS = 40


@pytest.mark.integration
@pytest.mark.slow
def test_the_node_counts_what_a_small_disk_evicted_and_reports_it_in_health(tmp_path):
    """The real node process with its data folder on a nearly full disk and the broker down: it
    keeps the newest pulses, evicts the rest, and its health (once the broker is back) says how many."""
    import node_audio
    import small_disk
    from simulator.broker import Collector, Mosquitto, wait_until
    from test_node import NODE, SITE, make_node

    why = small_disk.available()
    if why:
        pytest.skip(f"cannot make a small disk here: {why}")
    broker = Mosquitto(tmp_path / "mq")            # not started yet: the node's pulses wait in its outbox
    wav = tmp_path / "in.wav"
    node_audio.write(wav, NODE_SHOTS * 0.5 + 2, [1.0 + 0.5 * k for k in range(NODE_SHOTS)])
    cfg, _ = make_node(tmp_path, broker, wav, realtime=True, health_interval_s=1)   # runs 22 s
    cfg.write_text(cfg.read_text().replace("[evidence]\nchunk_s = 5", "[evidence]\nenabled = false"))
    log = tmp_path / "node.log"
    argv = [sys.executable, "-m", "earwitness", "node", "--config", str(cfg)]
    proc = subprocess.Popen(small_disk.on_small_disk(tmp_path / "var", NODE_DISK_KB, argv, NODE_BALLAST_KB),
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        assert wait_until(lambda: "make room for the newest" in log.read_text(), 60), log.read_text()
        broker.start()
        with Collector(broker.url, f"ew/v1/{SITE}/node/{NODE}/health") as health:
            assert wait_until(lambda: any(h.get("outbox_evicted", 0) > 0 for h in health.json()), 60), log.read_text()
            assert proc.wait(timeout=60) == 0, log.read_text()
            report = health.json()[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()
    assert report["outbox_dropped"] == 0 and report["pulses_total"] > report["outbox_evicted"] > 0
    assert report["outbox_evicted"] + report["outbox_depth"] <= report["pulses_total"]
