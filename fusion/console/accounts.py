"""Console users: names, roles and argon2id password hashes, kept in the fusion store's database.

Roles and what each may do: :mod:`fusion.console.roles`.  A disabled user cannot log in and
their sessions end (:mod:`fusion.console.sessions`); they stay listed, with their actions.

Passwords are hashed with argon2-cffi's defaults (RFC 9106 argon2id); a hash made with older
parameters is rehashed at the next login.

Example::

    users = Accounts(store)
    users.add("ann", "reviewer", "a long passphrase")
    users.authenticate("ann", "a long passphrase")   # -> "reviewer", or None
"""
from __future__ import annotations

import time

import argon2
import sqlalchemy as sa

from fusion.console.roles import ROLES

NAME_MAX = 64
MIN_PASSWORD_LEN = 8

metadata = sa.MetaData()

users = sa.Table(
    "console_users", metadata,
    sa.Column("name", sa.String(NAME_MAX), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("disabled_ns", sa.BigInteger, nullable=True),   # when disabled; None: active
)


class AccountError(ValueError):
    """A user that cannot be added as asked: the message says why, in one line."""


class Accounts:
    """The console's users in the fusion store's database (read through ``store.engine``, written
    through ``store.writer``: on SQLite its transactions take the write lock at once)."""

    def __init__(self, store):
        self.engine, self.writer = store.engine, store.writer
        self.hasher = argon2.PasswordHasher()
        metadata.create_all(self.writer)
        _add_disabled_column(self.writer)

    def add(self, name: str, role: str, password: str) -> None:
        """Add a user, or give an existing one a new role and password."""
        if not name or len(name) > NAME_MAX or not name.isprintable() or name != name.strip():
            raise AccountError(f"user name must be 1 to {NAME_MAX} printable characters without outer spaces")
        _check_role(role)
        if len(password) < MIN_PASSWORD_LEN:
            raise AccountError(f"password must have at least {MIN_PASSWORD_LEN} characters")
        row = {"role": role, "password_hash": self.hasher.hash(password), "created_ns": time.time_ns()}
        with self.writer.begin() as conn:
            done = conn.execute(users.update().where(users.c.name == name).values(**row)).rowcount
            if not done:
                conn.execute(users.insert().values(name=name, **row))

    def authenticate(self, name: str, password: str) -> str | None:
        """The user's role if the password is theirs, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users.c.role, users.c.password_hash)
                               .where(users.c.name == name, users.c.disabled_ns.is_(None))).first()
        if row is None:
            # Hash anyway: an unknown name takes as long as a wrong password.
            self.hasher.hash(password)
            return None
        try:
            self.hasher.verify(row.password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return None
        if self.hasher.check_needs_rehash(row.password_hash):
            with self.writer.begin() as conn:
                conn.execute(users.update().where(users.c.name == name).values(password_hash=self.hasher.hash(password)))
        return str(row.role)

    def role(self, name: str) -> str | None:
        """An active user's role now (None if unknown or disabled): read at every request, so a
        changed role applies at once."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(users.c.role).where(users.c.name == name, users.c.disabled_ns.is_(None))).scalar()

    def set_role(self, name: str, role: str) -> None:
        """Give an existing user another role."""
        _check_role(role)
        self._update(name, role=role)

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable a user (no login, no session) or enable them again."""
        self._update(name, disabled_ns=time.time_ns() if disabled else None)

    def _update(self, name: str, **values) -> None:
        with self.writer.begin() as conn:
            if not conn.execute(users.update().where(users.c.name == name).values(**values)).rowcount:
                raise AccountError(f"no user {name!r}")

    def all(self) -> list[dict]:
        """Every user (name, role, created_ns, disabled_ns), by name; never the hash."""
        query = sa.select(users.c.name, users.c.role, users.c.created_ns, users.c.disabled_ns).order_by(users.c.name)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _add_disabled_column(engine) -> None:
    """A users table made before users could be disabled gets the column (nobody disabled)."""
    if "disabled_ns" not in {c["name"] for c in sa.inspect(engine).get_columns(users.name)}:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {users.name} ADD COLUMN disabled_ns BIGINT"))
