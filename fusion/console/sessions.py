"""Console sessions kept on the server, in the fusion store's database, so they can be ended at once.

The browser's (signed) cookie holds only a random session token; the table holds its SHA-256,
the user, and when it was opened, last used and ended.  A session is good while it is not
ended, has been used within the idle limit, and its user is active: logging out, disabling the
user or staying idle ends it at the next request, whichever process serves it.

Example::

    sessions = Sessions(store, idle_s=1800)
    token = sessions.open("ann")
    sessions.user(token)            # -> "ann"
    sessions.end(token, "logout")
"""
from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa

NAME_MAX = 64
DEFAULT_IDLE_S = 30 * 60
# A session's last use is written at most this often (not at every request of a page's burst).
TOUCH_NS = 5 * 10**9
TOUCHES_PER_IDLE = 4   # ... and several times within the idle limit, however short
NS_PER_S = 10**9

metadata = sa.MetaData()

sessions = sa.Table(
    "console_sessions", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(NAME_MAX), nullable=False),
    sa.Column("opened_ns", sa.BigInteger, nullable=False),
    sa.Column("seen_ns", sa.BigInteger, nullable=False),
    sa.Column("ended_ns", sa.BigInteger, nullable=True),
    sa.Column("end_reason", sa.String(32), nullable=True),   # logout, idle, user disabled
)
sa.Index("console_sessions_user", sessions.c.user_name)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """The console's sessions in the fusion store's database; ``idle_s`` unused ends one."""

    def __init__(self, store, idle_s: float = DEFAULT_IDLE_S):
        self.engine, self.writer = store.engine, store.writer
        self.idle_ns = int(idle_s * NS_PER_S)
        self.touch_ns = min(TOUCH_NS, self.idle_ns // TOUCHES_PER_IDLE)
        metadata.create_all(self.writer)

    def open(self, user: str) -> str:
        """A new session of ``user``: its token (for the cookie; only its hash is stored)."""
        token, now = secrets.token_urlsafe(32), time.time_ns()
        with self.writer.begin() as conn:
            conn.execute(sessions.insert().values(token_sha256=_digest(token), user_name=user, opened_ns=now, seen_ns=now))
        return token

    def user(self, token: str | None) -> str | None:
        """The user of a good session (and its use noted), or None (unknown, ended or idle too long:
        an idle one is ended here)."""
        if not token:
            return None
        key, now = _digest(token), time.time_ns()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.token_sha256 == key)).first()
        if row is None or row.ended_ns is not None:
            return None
        if now - row.seen_ns > self.idle_ns:
            self.end(token, "idle")
            return None
        if now - row.seen_ns > self.touch_ns:
            with self.writer.begin() as conn:
                conn.execute(sessions.update().where(sessions.c.token_sha256 == key).values(seen_ns=now))
        return str(row.user_name)

    def end(self, token: str | None, reason: str) -> None:
        """End one session (logout, idle)."""
        if token:
            self._end(sessions.c.token_sha256 == _digest(token), reason)

    def end_user(self, user: str, reason: str) -> int:
        """End every open session of ``user`` (disabled); how many."""
        return self._end(sessions.c.user_name == user, reason)

    def _end(self, which, reason: str) -> int:
        with self.writer.begin() as conn:
            return conn.execute(sessions.update().where(which, sessions.c.ended_ns.is_(None))
                                .values(ended_ns=time.time_ns(), end_reason=reason)).rowcount

    def open_count(self, user: str) -> int:
        """How many of ``user``'s sessions are not ended (idle ones count until their next use)."""
        query = (sa.select(sa.func.count()).select_from(sessions)
                 .where(sessions.c.user_name == user, sessions.c.ended_ns.is_(None)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
