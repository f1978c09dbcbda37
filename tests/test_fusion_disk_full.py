"""A full disk under the fusion server's database: nothing is acknowledged that is not stored,
and ingest resumes when space returns.  The disk is a real size-limited tmpfs the test mounts
(root only), the server the real `earwitness fusion` process, the broker a real mosquitto."""
from __future__ import annotations

import errno
import os
import signal
import subprocess

import pytest

from earwitness import wire
from fusion.server.store import Store
from fusion_site import build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, publish_all, wait_until

SITE = "pgh"
DEADLETTER = f"ew/v1/{SITE}/deadletter"
DISK_BYTES = 4 << 20
FILL_CHUNK_BYTES = 64 << 10
WAIT_S = 60.0
PER_NODE = 60        # pulses per node in each of the two phases
NODES = 8
GAP_NS = 30 * 10**9  # pulses far apart: each its own group (this tests ingest, not the locator)
FULL_LINE = "cannot store"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(folder) -> int:
    """Write a filler file until the disk is full; its size."""
    size = 0
    # Unbuffered: a buffered file would flush its unwritten rest at close and raise ENOSPC again there.
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * FILL_CHUNK_BYTES)
                fh.flush()
                os.fsync(fh.fileno())
                size += FILL_CHUNK_BYTES
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return size


def _items(site, seqs) -> list[tuple[str, bytes]]:
    nodes = sorted(site.keys)[:NODES]
    t0 = site.pulses[0]["t_ns"]
    return [(site.topic(SITE, node), wire.encode(wire.PulseMessage(
        wire.node_id(node), seq, t0 + (seq * NODES + k) * GAP_NS, 10**6, "file"), site.keys[node]))
        for seq in seqs for k, node in enumerate(nodes)]


def _stored(db) -> int:
    with Store(db) as store:
        return store.count_pulses()


@pytest.mark.integration
@pytest.mark.slow
def test_full_disk_acknowledges_nothing_unstored_and_ingest_resumes(pittsburgh, small_disk, mosquitto, tmp_path):
    site = build_site(pittsburgh[0], tmp_path / "site")
    db = small_disk / "fusion.db"
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, mosquitto.url, site.registry_path, "fusion-full",
                                 site.temperature_c, database=str(db))
    log = tmp_path / "fusion.log"
    deadletters = Collector(mosquitto.url, DEADLETTER).start()
    proc = fusion_process(config, log)
    first, second = _items(site, range(1, PER_NODE + 1)), _items(site, range(PER_NODE + 1, 2 * PER_NODE + 1))
    try:
        assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()
        # 1. The disk fills while the server runs: it says so once, and stores the rest when space returns.
        _fill(small_disk)
        publish_all(mosquitto.url, first, client_id="nodes-1")
        assert wait_until(lambda: FULL_LINE in log.read_text(), WAIT_S), log.read_text()
        held = _stored(db)
        assert held < len(first)
        (small_disk / "filler").unlink()
        assert wait_until(lambda: _stored(db) == len(first), WAIT_S), (_stored(db), log.read_text())
        assert wait_until(lambda: "working again" in log.read_text(), WAIT_S), log.read_text()
        # 2. Full again, and the server killed while it holds unstored pulses: nothing it held was
        # acknowledged, so the broker delivers all of it to the restarted server.
        _fill(small_disk)
        publish_all(mosquitto.url, second, client_id="nodes-2")
        assert wait_until(lambda: log.read_text().count(FULL_LINE) >= 2, WAIT_S), log.read_text()
        killed_at = _stored(db)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert killed_at < len(first) + len(second)
        (small_disk / "filler").unlink()
        proc = fusion_process(config, log)
        assert wait_until(lambda: _stored(db) == len(first) + len(second), WAIT_S), (_stored(db), log.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    text = log.read_text()
    print(f"disk full: {held}/{len(first)} stored before space returned, {killed_at}/{len(first) + len(second)} "
          f"when killed; {text.count(FULL_LINE)} '{FULL_LINE}' log lines")
    with Store(db) as store:
        stored = sorted((p["node"], p["seq"]) for p in store.pulses())
    assert stored == sorted({(n, s) for n in sorted(site.keys)[:NODES] for s in range(1, 2 * PER_NODE + 1)})
    assert text.count(FULL_LINE) == 2    # once per outage, not once per retry
    assert deadletters.json(DEADLETTER) == []
    deadletters.close()
