"""The audit log: every machine revision and every human action, hash-chained and signed.

One table beside the store's own, in the same database (SQLite file or PostgreSQL), created on
first use: ``audit_log``, one row per entry, numbered from 1 without gaps.  An entry's hash
is the SHA-256 of its canonical content (sorted-key compact JSON of ``seq``, ``t_ns``,
``actor``, ``action``, ``subject``, ``body`` and ``prev``, the previous entry's hash; 64 zeros
for the first), and the server's Ed25519 key signs that hash: changing, inserting or deleting
a row breaks the chain at that row, and rewriting the chain from there needs the key.

Machine revisions are entered in the transaction that stores them (:meth:`AuditLog.record_revisions`
hooks :meth:`fusion.server.store.Store.save_round`): a revision is never stored without its entry.
The entry of a revision holds the SHA-256 of the revision's stored body and meta, so
:func:`verify` also finds a revision changed, added or removed behind the log's back.  Entries
are kept as long as the incidents: nothing here deletes them.

Example::

    log = AuditLog(store, signing_key)
    log.record_revisions()                               # the fusion service does this
    log.append("alice", "review", "pgh-inc-1", {"verdict": "confirmed", "reason": "..."})
    problem = verify(store)                              # None when the chain holds
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import pathlib
import time

import nacl.exceptions
import nacl.signing
import sqlalchemy as sa

from earwitness import keys
from fusion.server.store import Store, revisions

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MACHINE = "fusion"              # the actor of machine revisions
REVISION = "revision"           # their action
REGISTRY = "registry"           # the registry the server started with (subject: its SHA-256)
# PostgreSQL: one appender at a time per database (SQLite's BEGIN IMMEDIATE already serialises).
_PG_LOCK_KEY = 0x45_57_41_55_44_49_54   # "EWAUDIT"

metadata = sa.MetaData()

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("t_ns", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("prev", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),         # the signer's public key, hex
    sa.Column("signature", sa.String(128), nullable=False),
)
sa.Index("audit_log_subject", audit_log.c.subject)

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def entry_hash(entry: dict) -> str:
    """SHA-256 (hex) of an entry's canonical content, which names the previous entry's hash."""
    content = {k: entry[k] for k in ("seq", "t_ns", "actor", "action", "subject", "body", "prev")}
    return hashlib.sha256(_dumps(content).encode()).hexdigest()


def check_entry(entry: dict, trusted: set[str] | None = None) -> str | None:
    """What is wrong with one entry on its own (hash, signature, signer), or None."""
    if entry_hash(entry) != entry["hash"]:
        return "its content does not match its hash (changed after it was written)"
    if trusted is not None and entry["key"] not in trusted:
        return f"signed by key {entry['key'][:16]}..., not the server's"
    try:
        nacl.signing.VerifyKey(bytes.fromhex(entry["key"])).verify(bytes.fromhex(entry["hash"]),
                                                                     bytes.fromhex(entry["signature"]))
    except (ValueError, TypeError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return "bad signature"
    return None


def revision_digest(body: str, meta: str) -> str:
    """SHA-256 of a stored revision (its body and meta as stored), which its audit entry holds."""
    return hashlib.sha256(_dumps({"body": body, "meta": meta}).encode()).hexdigest()


class SigningKeyError(ValueError):
    """The server's signing key file is unreadable or malformed (one line)."""


def server_key(path: str | pathlib.Path) -> nacl.signing.SigningKey:
    """The server's signing key at ``path``; made (and the public half written to ``path.pub``) if absent."""
    path = pathlib.Path(path)
    try:
        # Workers started together on one configuration folder: one makes the key, the others wait
        # for it to be written whole before they read it.
        with open(f"{path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                public = keys.generate(path)
                log.warning("no signing key at %s: made one (public key %s in %s); it signs the audit log and "
                            "evidence bundles, keep it", path, keys.public_hex(public), keys.public_path(path))
            return keys.load_signing_key(path)
    except OSError as exc:
        raise SigningKeyError(f"signing key {path}: {exc.strerror or exc}") from None
    except ValueError as exc:   # its message names the file
        raise SigningKeyError(f"signing key {exc}") from None


@dataclasses.dataclass
class Problem:
    """The first thing wrong with the log: the entry (seq) and what."""

    seq: int
    what: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.what}"


@dataclasses.dataclass
class Verdict:
    """What :meth:`AuditLog.verify` found: the first problem (None: all holds), how many entries,
    the keys they are signed with, how many revisions were entered late (stored before the log)."""

    problem: Problem | None
    entries: int
    signers: set[str]
    late: int


class AuditLog:
    """The audit log of one store; ``signing_key`` is needed to append, not to read."""

    def __init__(self, store: Store, signing_key: nacl.signing.SigningKey | None = None):
        self.store = store
        self.signing_key = signing_key
        store.create_tables(metadata)

    def record_revisions(self) -> None:
        """Enter every revision the store saves from now on, in the transaction that saves it.

        On a log's first use in a database that already holds revisions (a server upgraded to
        one with the audit log), those are entered first, marked ``entered_late``: only an
        empty log takes them, so a revision slipped in later is still found by :meth:`verify`."""
        with self.store.writer.begin() as conn:
            self._lock(conn)
            if conn.execute(sa.select(audit_log.c.seq).limit(1)).first() is None:
                earlier = conn.execute(sa.select(revisions.c.incident, revisions.c.revision)
                                       .order_by(revisions.c.created_ns, revisions.c.incident, revisions.c.revision))
                self._revisions_saved(conn, [(r.incident, r.revision) for r in earlier], late=True)
        self.store.revision_hooks.append(self._revisions_saved)

    def note_registry(self, path: str | pathlib.Path) -> None:
        """Enter the registry file the server runs with, unless it is the one last entered (the
        evidence bundles take their registry snapshot from these entries)."""
        data = pathlib.Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        last = self.entries(action=REGISTRY)[-1:]
        if not last or last[0]["subject"] != digest:
            self.append(MACHINE, REGISTRY, digest, {"path": str(path), "text": data.decode("utf-8")})

    def _revisions_saved(self, conn, saved: list[tuple[str, int]], late: bool = False) -> None:
        for incident, number in saved:
            row = conn.execute(sa.select(revisions.c.status, revisions.c.body, revisions.c.meta)
                               .where(revisions.c.incident == incident, revisions.c.revision == number)).one()
            body = {"revision": number, "status": row.status, "sha256": revision_digest(row.body, row.meta)}
            self.append(MACHINE, REVISION, incident, dict(body, entered_late=True) if late else body, conn)

    def append(self, actor: str, action: str, subject: str, body: dict, conn=None) -> dict:
        """Append an entry (in ``conn``'s transaction if given, else in one of its own); returns it."""
        if self.signing_key is None:
            raise ValueError("the audit log needs the server's signing key to append")
        if conn is None:
            with self.store.writer.begin() as own:
                return self.append(actor, action, subject, body, own)
        self._lock(conn)
        last = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
        entry = {"seq": (last.seq if last else 0) + 1, "t_ns": time.time_ns(), "actor": str(actor),
                 "action": str(action), "subject": str(subject), "body": json.loads(_dumps(body)),
                 "prev": last.hash if last else GENESIS}
        entry["hash"] = entry_hash(entry)
        entry["key"] = keys.public_hex(self.signing_key.verify_key)
        entry["signature"] = self.signing_key.sign(bytes.fromhex(entry["hash"])).signature.hex()
        conn.execute(audit_log.insert().values(dict(entry, body=_dumps(entry["body"]))))
        return entry

    def _lock(self, conn) -> None:
        """One appender at a time: two workers must not both chain onto the same last entry."""
        if not self.store.is_sqlite:   # SQLite: the writer's BEGIN IMMEDIATE holds the database already
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})

    def entries(self, subject: str | None = None, action: str | None = None) -> list[dict]:
        """Stored entries in order (of one subject and/or action, or all), each a dict with its body parsed."""
        query = sa.select(audit_log).order_by(audit_log.c.seq)
        if subject is not None:
            query = query.where(audit_log.c.subject == subject)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        with self.store.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

    def verify(self, trusted: set[str] | None = None) -> "Verdict":
        """Check the chain, every hash and signature (by a ``trusted`` key if given) and that every
        stored revision has its entry."""
        chain = self.entries()
        late = sum(1 for e in chain if isinstance(e["body"], dict) and e["body"].get("entered_late"))
        return Verdict(check_chain(chain, trusted) or self._check_revisions(chain), len(chain),
                       {e["key"] for e in chain}, late)

    def _check_revisions(self, chain: list[dict]) -> Problem | None:
        entered = {(e["subject"], e["body"].get("revision")): e for e in chain
                   if e["action"] == REVISION and isinstance(e["body"], dict)}
        query = sa.select(revisions).order_by(revisions.c.created_ns, revisions.c.incident, revisions.c.revision)
        with self.store.engine.connect() as conn:
            stored = list(conn.execute(query))
        for row in stored:
            entry = entered.pop((row.incident, row.revision), None)
            if entry is None:
                after = max((e["seq"] for e in chain), default=0)
                return Problem(after + 1, f"missing: no entry for revision {row.revision} of {row.incident} "
                                          "(an entry deleted from the end, or a revision stored behind the log's back)")
            if entry["body"].get("sha256") != revision_digest(row.body, row.meta):
                return Problem(entry["seq"], f"revision {row.revision} of {row.incident} was changed after it was entered")
        for entry in entered.values():
            return Problem(entry["seq"], f"revision {entry['body'].get('revision')} of {entry['subject']} is gone from the store")
        return None


def check_chain(chain: list[dict], trusted: set[str] | None = None) -> Problem | None:
    """The first entry of a whole log (from seq 1) that is missing, out of chain, changed or badly signed."""
    prev, expected = GENESIS, 1
    for entry in chain:
        if entry["seq"] != expected:
            return Problem(expected, f"missing (deleted): the log goes from entry {expected - 1} to {entry['seq']}")
        if entry["prev"] != prev:
            return Problem(entry["seq"], "does not follow the previous entry (its prev hash differs)")
        what = check_entry(entry, trusted)
        if what:
            return Problem(entry["seq"], what)
        prev, expected = entry["hash"], expected + 1
    return None


def _entry(row) -> dict:
    try:
        body = json.loads(row.body)
    except ValueError:   # a row edited by hand: kept as text, its hash no longer matches
        body = row.body
    return {"seq": row.seq, "t_ns": row.t_ns, "actor": row.actor, "action": row.action, "subject": row.subject,
            "body": body, "prev": row.prev, "hash": row.hash, "key": row.key, "signature": row.signature}
