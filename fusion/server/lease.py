"""Who runs a worker slot of a site: a PostgreSQL advisory lock held by the worker's own connection.

Several fusion processes share a site's slots (``workers``, :mod:`fusion.server.partition`).  A
process runs a slot only while it holds the slot's lease: a session-level advisory lock on a
connection of its own.  When the process dies (``kill -9``, a machine lost) its connection
closes and PostgreSQL frees the lock at once; another process takes it and resumes the slot from
the shared store (its tracker checkpoint, open windows, published incidents, outbox), as a
restarted worker would.  A process that loses its lease connection (the database restarted, the
network cut) stops the slot: someone else may hold it now.

Example::

    lease = SlotLease("postgresql://postgres@db/fusion", "pgh", slot=2)
    if lease.try_acquire():
        ...                      # run slot 2 while lease.alive()
        lease.release()
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa

from fusion.server.store import engine_url

KEY_BYTES = 8   # an advisory lock key is a signed 64-bit integer


def lease_key(site: str, schema: str | None, slot: int) -> int:
    """The advisory lock key of a site's slot (in one database, per schema)."""
    digest = hashlib.sha256(f"earwitness-slot:{schema or ''}:{site}:{slot}".encode()).digest()
    return int.from_bytes(digest[:KEY_BYTES], "big", signed=True)


class SlotLease:
    """The lease of slot ``slot`` of ``site`` in the PostgreSQL database at ``url``."""

    def __init__(self, url: str, site: str, slot: int, schema: str | None = None):
        self.url = engine_url(url)
        if self.url.get_backend_name() != "postgresql":
            raise ValueError("slot leases need a PostgreSQL database (several workers share its store)")
        self.slot = slot
        self.key = lease_key(site, schema, slot)
        self._engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        self._conn: sa.Connection | None = None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; whether we hold it now."""
        if self._conn is not None:
            return self.alive()
        conn = self._engine.connect()
        try:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            conn.commit()
        except sa.exc.SQLAlchemyError:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return bool(got)

    def alive(self) -> bool:
        """Whether we still hold it: our connection answers (a lock lives as long as its session)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
            self._conn.commit()
            return True
        except sa.exc.SQLAlchemyError:
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.commit()
            except sa.exc.SQLAlchemyError:
                pass   # the session is gone, and the lock with it
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                pass
            self._conn = None

    def close(self) -> None:
        self.release()
        self._engine.dispose()
