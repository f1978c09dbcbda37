"""Durable outbox: every pulse is on disk before it is published, and leaves only when acknowledged.

One SQLite database in WAL mode with ``synchronous=FULL``, so a committed pulse survives a
``kill -9`` of the node and a power cut (paho keeps its queue in memory only).  The outbox
also owns the node's sequence numbers: ``AUTOINCREMENT`` never hands out a number twice,
even after the rows are deleted, so (node, seq) stays unique across restarts.

The disk budget is enforced on the pages SQLite actually uses; when a new pulse would
exceed it, the oldest pulses are evicted (the newest evidence is the most useful to a live
system) and counted, and the count survives restarts.

The outbox also keeps the node's sequence epoch (:func:`earwitness.wire.new_epoch`), picked
when the database is created: a node whose data folder is lost (a new SD card, a re-flash)
numbers from 1 again in a new epoch, which the server takes as new pulses, not replays.
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
import sqlite3
import threading
import time
from typing import Callable, cast

from earwitness import wire

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
# Fraction of the stored pulses evicted at once when over budget, so that eviction
# does not run on every append once the disk is full.
EVICT_FRACTION = 0.01
# WAL file kept no larger than this after a checkpoint.
JOURNAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
# The outbox stops growing when its disk has less than this free: room for its WAL (checkpointed
# at half of it at most) and the other writers.
DISK_MARGIN_BYTES = 16 * 1024 * 1024
DROPPED_LOG_EVERY = 1000
SQLITE_FULL = 13   # the result code (sqlite3.SQLITE_FULL from Python 3.11 on)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pulse (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counter VALUES ('evicted', 0);
"""


class Outbox:
    """A durable FIFO of signed pulse messages keyed by their sequence numbers.

    Parameters
    ----------
    path : path-like
        The SQLite file (created with its folder if missing).
    budget_bytes : int
        Most disk the stored pulses may take; the oldest are evicted beyond it.
    disk_margin_bytes : int
        Free disk below which the outbox stops growing (the oldest are evicted instead).

    Thread-safe: the detector worker appends while the publisher reads and acknowledges.
    """

    def __init__(self, path: str | os.PathLike, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 disk_margin_bytes: int = DISK_MARGIN_BYTES):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budget_bytes = int(budget_bytes)
        self.disk_margin_bytes = int(disk_margin_bytes)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            if self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.OperationalError("WAL mode refused")
            self._db.execute("PRAGMA synchronous=FULL")
            # The WAL is checkpointed (and cut back) well inside the disk margin, so that it
            # cannot fill the disk the outbox keeps free.
            wal_bytes = min(JOURNAL_SIZE_LIMIT_BYTES, self.disk_margin_bytes // 2)
            self._db.execute(f"PRAGMA journal_size_limit={wal_bytes}")
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA wal_autocheckpoint={max(1, wal_bytes // page_size)}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ValueError(f"outbox {self.path}: {exc}") from None
        self.epoch = self._epoch()
        self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        # Kept in memory so that depth() is O(1): count(*) scans the table.
        self._depth = self._db.execute("SELECT count(*) FROM pulse").fetchone()[0]
        self.dropped = 0              # pulses a full disk had no room for (this run)
        self._disk_was_low = False

    def _epoch(self) -> int:
        """The stored epoch; a new one for a new outbox, 0 for one made before epochs (its numbers go on)."""
        row = self._db.execute("SELECT value FROM counter WHERE name = 'epoch'").fetchone()
        if row is not None:
            return int(row[0])
        fresh = self._db.execute("SELECT count(*) FROM sqlite_sequence WHERE name = 'pulse'").fetchone()[0] == 0
        epoch = wire.new_epoch(time.time_ns()) if fresh else 0
        self._db.execute("INSERT INTO counter VALUES ('epoch', ?)", (epoch,))
        if fresh:
            log.warning("new outbox %s: sequence epoch %d (%s), pulses numbered from 1; a re-flashed node or a "
                        "lost data folder starts here, and the server accepts it as such", self.path, epoch,
                        wire.epoch_utc(epoch))
        return epoch

    def append(self, encode: Callable[[int], bytes]) -> int:
        """Store one pulse and return its sequence number (0 if a full disk left no room for it).

        ``encode(seq)`` builds the signed message for the sequence number the outbox
        assigns (in the epoch :attr:`epoch`); number and message are committed together or
        not at all.  Below ``disk_margin_bytes`` of free disk the outbox stops growing: the
        oldest pulses are evicted (and counted) to make room for the newest.  If the disk
        is full all the same (another writer filled it), the pulse is dropped and counted.
        """
        with self._lock:
            try:
                return self._append(encode)
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise
            self.dropped += 1
            if self.dropped == 1 or self.dropped % DROPPED_LOG_EVERY == 0:
                log.warning("outbox %s: the disk is full: pulse dropped (%d so far)", self.path, self.dropped)
            return 0

    def _append(self, encode: Callable[[int], bytes]) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = cast(int, self._db.execute("INSERT INTO pulse (payload) VALUES (NULL)").lastrowid)
            self._db.execute("UPDATE pulse SET payload = ? WHERE seq = ?", (bytes(encode(seq)), seq))
            evicted = self._evict_over_budget()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:   # SQLite rolls back by itself on some errors (a full disk)
                self._db.execute("ROLLBACK")
            raise
        self._depth += 1 - evicted
        return seq

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _disk_low(self) -> bool:
        """Free disk below the margin and no free page left in the database: growing it would fill the disk."""
        low = shutil.disk_usage(self.path.parent).free < self.disk_margin_bytes
        if low and not self._disk_was_low:
            log.warning("outbox %s: less than %.0f MB free on its disk: the oldest pulses make room for the newest",
                        self.path, self.disk_margin_bytes / 2**20)
        self._disk_was_low = low
        return low and self._db.execute("PRAGMA freelist_count").fetchone()[0] == 0

    def _evict_over_budget(self) -> int:
        evicted = 0
        while self._used_bytes() > self.budget_bytes or self._disk_low():
            depth = self._depth + 1 - evicted
            if depth <= 1:
                break  # the newest pulse is always kept, whatever the budget
            n = max(1, int(depth * EVICT_FRACTION))
            n = self._db.execute("DELETE FROM pulse WHERE seq IN (SELECT seq FROM pulse ORDER BY seq LIMIT ?)", (n,)).rowcount
            self._db.execute("UPDATE counter SET value = value + ? WHERE name = 'evicted'", (n,))
            evicted += n
        return evicted

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[tuple[int, bytes]]:
        """Up to ``limit`` stored pulses with seq > ``after_seq``, oldest first, as (seq, payload)."""
        with self._lock:
            return [(s, bytes(p)) for s, p in self._db.execute(
                "SELECT seq, payload FROM pulse WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))]

    def ack(self, seq: int) -> None:
        """The broker has the pulse ``seq``: forget it (no error if already gone)."""
        with self._lock:
            self._depth -= self._db.execute("DELETE FROM pulse WHERE seq = ?", (seq,)).rowcount

    def depth(self) -> int:
        """How many pulses wait for an acknowledgement."""
        return self._depth

    def evicted(self) -> int:
        """How many pulses the disk budget has pushed out, ever."""
        with self._lock:
            return self._db.execute("SELECT value FROM counter WHERE name = 'evicted'").fetchone()[0]

    def last_seq(self) -> int:
        """The last sequence number handed out (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pulse'").fetchone()
            return row[0] if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_FULL: the disk (or a size limit) has no room for the write."""
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)
