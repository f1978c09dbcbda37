"""Databases for the fusion tests: a fresh SQLite file, or a fresh schema on the local PostgreSQL.

PostgreSQL is the server this machine runs (127.0.0.1:5432, trust auth, user postgres,
database ``test``; `.ci/run` starts it).  Each test gets its own schema, dropped afterwards.
"""
from __future__ import annotations

import contextlib
import uuid

import sqlalchemy as sa

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def database(kind: str, tmp_path):
    """Yield ``(url, schema)`` for a fresh database of ``kind`` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        yield str(tmp_path / "fusion.db"), None
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield POSTGRES_URL, schema
    finally:
        engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
