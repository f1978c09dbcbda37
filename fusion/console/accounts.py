"""Console users: names, roles and argon2id password hashes, kept in the fusion store's database.

Roles (what each may do is :mod:`fusion.console.reviews`'s):

- ``dispatcher``: watches the live map, confirms an alert, records an officer's disposition;
- ``reviewer``: confirms, dismisses or reclassifies alerts;
- ``analyst``, ``auditor``: read only (statistics and the audit trail come with their pages);
- ``admin``: everything.

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

ROLES = ("dispatcher", "reviewer", "analyst", "auditor", "admin")
NAME_MAX = 64
MIN_PASSWORD_LEN = 8

metadata = sa.MetaData()

users = sa.Table(
    "console_users", metadata,
    sa.Column("name", sa.String(NAME_MAX), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
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

    def add(self, name: str, role: str, password: str) -> None:
        """Add a user, or give an existing one a new role and password."""
        if not name or len(name) > NAME_MAX or not name.isprintable() or name != name.strip():
            raise AccountError(f"user name must be 1 to {NAME_MAX} printable characters without outer spaces")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
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
            row = conn.execute(sa.select(users.c.role, users.c.password_hash).where(users.c.name == name)).first()
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
        """A user's role now (a session outlives a role change only until its next request)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(users.c.role).where(users.c.name == name)).scalar()
