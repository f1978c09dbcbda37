"""Durable storage of the fusion server: pulses, incidents with every revision, node health, clips.

One schema, two back ends through SQLAlchemy Core: SQLite by default (one file, WAL journal,
no server) and PostgreSQL when given a ``postgresql://`` URL (driver psycopg 3).  Every write
method commits before it returns, so a caller that acknowledges a message after
:meth:`Store.add_pulses` returns never acknowledges a pulse that a ``kill -9`` could lose.

Example::

    store = Store("fusion.db")                      # or "postgresql://user@host/db"
    ids = store.add_pulses([PulseRecord(node="n1", seq=1, pulse={"sensor": "n1", "t_ns": 1}, raw=b"..")])
    rev = store.save_incident(incident_dict, status="preliminary", pulse_ids=ids)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

# Incident statuses, in the order an incident goes through them; ``withdrawn`` ends one whose
# shots turned out to be another incident's (its last revision names it in ``merged_into``).
STATUSES = ("preliminary", "revised", "final", "withdrawn")
OPEN_STATUSES = ("preliminary", "revised")
SQLITE_BUSY_TIMEOUT_MS = 10_000
CREATE_LOCK_KEY = 0x4557_5354_4F52_4500   # a PostgreSQL advisory lock key: "EWSTORE"

metadata = sa.MetaData()

pulses = sa.Table(
    "pulses", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("t_ns", sa.BigInteger, nullable=False),
    sa.Column("received_ns", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),         # the pulse as the Pulses JSONL contract
    sa.Column("raw", sa.LargeBinary, nullable=False),   # the signed message exactly as received
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("node", "seq", name="pulses_node_seq"),
)
sa.Index("pulses_t_ns", pulses.c.t_ns)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("t_ns", sa.BigInteger, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
)

revisions = sa.Table(
    "incident_revisions", metadata,
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),          # temperature, speed of sound, software version
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

incident_pulses = sa.Table(
    "incident_pulses", metadata,
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("pulse_id", sa.BigInteger, primary_key=True),
    sa.Column("used", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

health = sa.Table(
    "node_health", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("t_ns", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

# The live tracker's checkpoint (fusion.tracking.incidents.IncidentTracker.checkpoint) per
# worker, written with the revisions of the same round: a restart resumes from it.
tracker_state = sa.Table(
    "tracker_state", metadata,
    sa.Column("worker", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("saved_ns", sa.BigInteger, nullable=False),
)

# Messages a worker has committed to send (alerts, clip requests), stored with the revision that
# makes them and dropped once the broker has them: a crash between the two sends them at restart.
outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

# Each worker slot's epoch: one more at every start of the slot (its own worker's or a takeover,
# Store.take_slot).  A round is stored only under the epoch its worker started the slot with,
# checked in the round's own transaction: a worker that lost the slot's lease and has not
# noticed yet (a stalled process, a cut link) writes no revision, checkpoint or outbox for it.
slot_epochs = sa.Table(
    "slot_epochs", metadata,
    sa.Column("worker", sa.String(64), primary_key=True),
    sa.Column("epoch", sa.BigInteger, nullable=False),
)

clips = sa.Table(
    "clips", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("incident", sa.String(64), nullable=False),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("t0_ns", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("received_ns", sa.BigInteger, nullable=False),
)
sa.Index("clips_incident", clips.c.incident)


class SlotFenced(RuntimeError):
    """The slot was started again since this worker started it (another worker took it over):
    what this one would store for it is refused."""


@dataclasses.dataclass
class PulseRecord:
    """One verified pulse as it goes into the store: who sent it, its sequence, the pulse, the bytes."""

    node: str
    seq: int
    pulse: dict
    raw: bytes
    received_ns: int = 0


@dataclasses.dataclass
class Revision:
    """One revision of an incident to store: the body, its status, the pulses used and those rejected
    (id -> why), and what it was located with (``meta``)."""

    incident: dict
    status: str
    pulse_ids: object = ()
    rejected: dict | None = None
    meta: dict | None = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Sorted keys: the stored text of a record is the same whichever process wrote it.  One
# encoder for all: json.dumps with options builds a new one per call.
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def engine_url(url: str | pathlib.Path) -> sa.engine.URL:
    """SQLAlchemy URL for a file path, ``sqlite:///...`` or ``postgresql://...`` (driver psycopg 3)."""
    text = str(url)
    if "://" not in text:
        return sa.engine.make_url(f"sqlite:///{pathlib.Path(text).resolve()}")
    parsed = sa.engine.make_url(text)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif not parsed.drivername.startswith(("sqlite", "postgresql")):
        raise ValueError(f"unsupported database URL {text!r} (use a file path, sqlite:/// or postgresql://)")
    return parsed


class Store:
    """The fusion server's database, SQLite file or PostgreSQL.

    Parameters
    ----------
    url : str or path
        A file path or ``sqlite:///FILE`` (SQLite, WAL journal, full sync), or
        ``postgresql://user@host:port/db``.
    schema : str, optional
        PostgreSQL only: the schema to keep the tables in (created if missing); lets several
        sites or tests share one database.
    """

    def __init__(self, url: str | pathlib.Path, schema: str | None = None):
        self.url = engine_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        connect_args = {}
        if schema and not self.is_sqlite:
            if not schema.isidentifier():
                raise ValueError(f"bad schema name {schema!r}")
            connect_args["options"] = f"-csearch_path={schema}"
        self.engine = sa.create_engine(self.url, connect_args=connect_args)
        # Writes go through their own engine: on SQLite its transactions start with BEGIN
        # IMMEDIATE, so two writers (two workers) wait for each other (busy timeout) instead of
        # failing when a read transaction cannot be upgraded.
        self.writer = self.engine
        # Called in save_round's transaction with its (incident, revision number) pairs (the audit log).
        self.revision_hooks: list[Callable[[sa.Connection, list[tuple[str, int]]], None]] = []
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            self.writer = sa.create_engine(self.url)
            sa.event.listen(self.writer, "connect", _sqlite_pragmas)
            sa.event.listen(self.writer, "connect", _sqlite_manual_transactions)
            sa.event.listen(self.writer, "begin", _sqlite_begin_immediate)
        elif schema:
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": CREATE_LOCK_KEY})   # see create_tables
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        self.create_tables(metadata)
        insert = (sqlite_insert if self.is_sqlite else postgresql_insert)(pulses)
        self._insert_new = (insert.on_conflict_do_nothing(index_elements=["node", "seq"])
                            .returning(pulses.c.id, pulses.c.node, pulses.c.seq))

    def create_tables(self, tables: sa.MetaData) -> None:
        """Create ``tables`` where missing; on PostgreSQL under a lock: workers starting together on a
        new database would race to create them."""
        if self.is_sqlite:
            tables.create_all(self.writer)
            return
        with self.writer.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": CREATE_LOCK_KEY})
            tables.create_all(conn)

    def close(self) -> None:
        self.engine.dispose()
        self.writer.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- pulses -------------------------------------------------------------------------------
    def add_pulses(self, records: list[PulseRecord]) -> list[int | None]:
        """Store pulses in one transaction, committed on return.

        Returns, per record, the new row id, or None where (node, seq) was already stored
        (earlier, or earlier in this same batch).
        """
        if not records:
            return []
        now_ns = time.time_ns()
        rows = [{"node": r.node, "seq": r.seq, "t_ns": int(r.pulse["t_ns"]),
                 "received_ns": r.received_ns or now_ns, "body": _dumps(r.pulse),
                 "raw": bytes(r.raw), "sha256": sha256_hex(r.raw)} for r in records]
        # De-duplication is the UNIQUE (node, seq) constraint's: one executemany per batch
        # and no look-up round trip.  Rows come back in no particular order,
        # so they are matched to records by key; within a batch the first of a key wins.
        with self.writer.begin() as conn:
            if self.is_sqlite:
                new = self._insert_sqlite(conn, rows)
            else:
                new = {(node, seq): row_id for row_id, node, seq in conn.execute(self._insert_new, rows)}
        ids: list[int | None] = []
        for r in records:
            ids.append(new.pop((r.node, r.seq), None))
        return ids

    @staticmethod
    def _insert_sqlite(conn, rows: list[dict]) -> dict:
        # SQLAlchemy's RETURNING path compiles parameters row by row (tens of us each, most of
        # ingest's time beside the signature check); sqlite3's executemany runs the loop in C.
        # The transaction began IMMEDIATE (write lock held), so the rows above the highest id
        # before the insert are exactly this batch's new ones.
        cur = conn.connection.driver_connection.cursor()
        (before,) = cur.execute("SELECT coalesce(max(id), 0) FROM pulses").fetchone()
        cur.executemany("INSERT INTO pulses (node, seq, t_ns, received_ns, body, raw, sha256) "
                        "VALUES (:node, :seq, :t_ns, :received_ns, :body, :raw, :sha256) "
                        "ON CONFLICT (node, seq) DO NOTHING", rows)
        new = {(node, seq): row_id for row_id, node, seq in cur.execute(
            "SELECT id, node, seq FROM pulses WHERE id > ?", (before,))}
        cur.close()
        return new

    def pulse_sha256(self, node: str, seq: int) -> str | None:
        """SHA-256 of the stored message of (node, seq), or None if not stored."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(pulses.c.sha256).where(pulses.c.node == node, pulses.c.seq == seq)).scalar()

    def pulses(self, t0_ns: int | None = None, t1_ns: int | None = None, ids=None) -> list[dict]:
        """Stored pulses, by time range [t0_ns, t1_ns] and/or ids, in time order.

        Each is the contract pulse plus ``id``, ``node``, ``seq``, ``received_ns``, ``sha256``.
        """
        query = sa.select(pulses).order_by(pulses.c.t_ns, pulses.c.id)
        if t0_ns is not None:
            query = query.where(pulses.c.t_ns >= t0_ns)
        if t1_ns is not None:
            query = query.where(pulses.c.t_ns <= t1_ns)
        if ids is not None:
            query = query.where(pulses.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return [_pulse_row(row) for row in conn.execute(query)]

    def count_pulses(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(pulses)).scalar_one()

    def pulse_raw(self, pulse_id: int) -> bytes:
        with self.engine.connect() as conn:
            return bytes(conn.execute(sa.select(pulses.c.raw).where(pulses.c.id == pulse_id)).scalar_one())

    # -- incidents ----------------------------------------------------------------------------
    def save_incident(self, incident: dict, status: str, pulse_ids=(), rejected: dict | None = None,
                      meta: dict | None = None) -> int:
        """Store a new revision of ``incident`` (keyed by ``incident["incident"]``); returns its number.

        ``pulse_ids`` are the stored pulses the locator used; ``rejected`` maps other pulse ids of
        the incident's time window to why they were not used.  ``meta`` (temperature, speed of
        sound, software version, ...) is kept with the revision.
        """
        number = self.save_round([Revision(incident, status, pulse_ids, rejected, meta)])[0]
        if number is None:   # save_round without ``admit`` stores every revision: a broken invariant
            raise RuntimeError(f"incident {incident.get('incident')!r}: the revision was not stored")
        return number

    def save_round(self, revisions_: list["Revision"], worker: str | None = None, state: dict | None = None,
                   outgoing: Callable[[int, "Revision"], list[tuple[str, bytes]]] | None = None,
                   epoch: int | None = None,
                   admit: Callable[[sa.Connection, list["Revision"]], list[bool]] | None = None) -> list[int | None]:
        """Store revisions and, with ``worker``, that worker's tracker checkpoint ``state`` (unless
        None) and the messages ``outgoing(number, revision)`` makes of each revision (its outbox),
        in one transaction (a crash keeps all or none); returns each revision's number.  With
        ``epoch`` (:meth:`take_slot`'s), nothing is stored and SlotFenced raised if the slot was
        started again since.  With ``admit`` (called in the transaction: which revisions may be
        stored, :meth:`fusion.server.claims.ShotClaims.admit`), the others are not stored, sent
        or audited, and their number is None."""
        for r in revisions_:
            if r.status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, not {r.status!r}")
        now_ns = time.time_ns()
        with self.writer.begin() as conn:
            if epoch is not None:
                self._check_epoch(conn, worker, epoch)
            admitted = admit(conn, revisions_) if admit is not None else [True] * len(revisions_)
            numbers = [self._save_revision(conn, r, now_ns) if ok else None for r, ok in zip(revisions_, admitted)]
            stored = [(r, n) for r, n in zip(revisions_, numbers) if n is not None]
            for hook in self.revision_hooks:
                hook(conn, [(str(r.incident["incident"]), n) for r, n in stored])
            messages = [m for r, n in stored for m in outgoing(n, r)] if outgoing else []
            if messages:
                conn.execute(outbox.insert(), [{"worker": worker, "topic": t, "payload": bytes(p), "created_ns": now_ns}
                                               for t, p in messages])
            if worker is not None and state is not None:
                row = {"body": _dumps(state), "saved_ns": now_ns}
                if conn.execute(sa.update(tracker_state).where(tracker_state.c.worker == worker).values(**row)).rowcount == 0:
                    conn.execute(tracker_state.insert().values(worker=worker, **row))
        return numbers

    def take_slot(self, worker: str) -> int:
        """Start worker slot ``worker`` (its own worker's start or a takeover): its new epoch, under
        which :meth:`save_round` stores for it from now on (and no longer under the one before)."""
        with self.writer.begin() as conn:
            bump = sa.update(slot_epochs).where(slot_epochs.c.worker == worker).values(epoch=slot_epochs.c.epoch + 1)
            epoch = conn.execute(bump.returning(slot_epochs.c.epoch)).scalar()
            if epoch is None:
                epoch = 1
                conn.execute(slot_epochs.insert().values(worker=worker, epoch=epoch))
        return int(epoch)

    @staticmethod
    def _check_epoch(conn, worker: str | None, epoch: int) -> None:
        """Raise SlotFenced unless the slot is at ``epoch``; its row stays locked to the end of the
        transaction, so a takeover's :meth:`take_slot` waits for the round (and its resume sees it)."""
        query = sa.select(slot_epochs.c.epoch).where(slot_epochs.c.worker == worker).with_for_update()
        now = conn.execute(query).scalar()
        if now != epoch:
            raise SlotFenced(f"slot {worker} was started again elsewhere (epoch {now}, this worker's {epoch}): "
                             f"this worker stores nothing more for it")

    @staticmethod
    def _save_revision(conn, r: "Revision", now_ns: int) -> int:
        key = str(r.incident["incident"])
        last = conn.execute(sa.select(sa.func.max(revisions.c.revision)).where(revisions.c.incident == key)).scalar()
        revision = (last or 0) + 1
        text = _dumps(dict(r.incident, revision=revision, status=r.status))
        conn.execute(revisions.insert().values(incident=key, revision=revision, status=r.status, body=text,
                                               meta=_dumps(r.meta or {}), created_ns=now_ns))
        row = {"t_ns": int(r.incident["t_ns"]), "revision": revision, "status": r.status, "body": text, "updated_ns": now_ns}
        if last is None:
            conn.execute(incidents.insert().values(incident=key, **row))
        else:
            conn.execute(incidents.update().where(incidents.c.incident == key).values(**row))
        conn.execute(incident_pulses.delete().where(incident_pulses.c.incident == key))
        links = [{"incident": key, "pulse_id": int(p), "used": True, "reason": "used"} for p in r.pulse_ids]
        used = {int(p) for p in r.pulse_ids}
        links += [{"incident": key, "pulse_id": int(p), "used": False, "reason": str(why)}
                  for p, why in (r.rejected or {}).items() if int(p) not in used]
        if links:
            conn.execute(incident_pulses.insert(), links)
        return revision

    def outbox(self, worker: str) -> list[tuple[int, str, bytes]]:
        """The messages ``worker`` committed to send and the broker has not confirmed: (id, topic, payload)."""
        query = sa.select(outbox.c.id, outbox.c.topic, outbox.c.payload).where(outbox.c.worker == worker).order_by(outbox.c.id)
        with self.engine.connect() as conn:
            return [(row.id, row.topic, bytes(row.payload)) for row in conn.execute(query)]

    def drop_outbox(self, ids) -> None:
        """Forget outbox messages the broker has confirmed."""
        ids = [int(i) for i in ids]
        if ids:
            with self.writer.begin() as conn:
                conn.execute(outbox.delete().where(outbox.c.id.in_(ids)))

    def tracker_state(self, worker: str) -> dict | None:
        """The tracker checkpoint last saved by :meth:`save_round` for ``worker``, or None."""
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(tracker_state.c.body).where(tracker_state.c.worker == worker)).scalar()
        return json.loads(text) if text is not None else None

    def open_incidents(self) -> list[dict]:
        """Latest revision of every incident published and not yet final or withdrawn, in time order."""
        query = sa.select(incidents.c.body).where(incidents.c.status.in_(OPEN_STATUSES)).order_by(incidents.c.t_ns)
        with self.engine.connect() as conn:
            return [json.loads(t) for (t,) in conn.execute(query)]

    def pulses_since(self, t_ns: int | None, received_ns: int | None) -> list[dict]:
        """Stored pulses from ``t_ns`` on or received from ``received_ns`` on (None: no such rule), in time order."""
        rules = [c >= v for c, v in ((pulses.c.t_ns, t_ns), (pulses.c.received_ns, received_ns)) if v is not None]
        if not rules:
            return []
        query = sa.select(pulses).where(sa.or_(*rules)).order_by(pulses.c.t_ns, pulses.c.id)
        with self.engine.connect() as conn:
            return [_pulse_row(row) for row in conn.execute(query)]

    def incident(self, incident_id: str) -> dict | None:
        """The latest revision of an incident (contract dict plus ``revision``, ``status``), or None."""
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(incidents.c.body).where(incidents.c.incident == incident_id)).scalar()
        return json.loads(text) if text is not None else None

    def incidents(self, t0_ns: int | None = None, t1_ns: int | None = None) -> list[dict]:
        """Latest revision of every incident, in time order."""
        query = sa.select(incidents.c.body).order_by(incidents.c.t_ns)
        if t0_ns is not None:
            query = query.where(incidents.c.t_ns >= t0_ns)
        if t1_ns is not None:
            query = query.where(incidents.c.t_ns <= t1_ns)
        with self.engine.connect() as conn:
            return [json.loads(t) for (t,) in conn.execute(query)]

    def revisions(self, incident_id: str) -> list[dict]:
        """Every stored revision of an incident, oldest first, each with ``meta`` and ``created_ns``."""
        query = sa.select(revisions).where(revisions.c.incident == incident_id).order_by(revisions.c.revision)
        with self.engine.connect() as conn:
            return [dict(json.loads(r.body), meta=json.loads(r.meta), created_ns=r.created_ns) for r in conn.execute(query)]

    def incident_pulses(self, incident_id: str) -> list[dict]:
        """Pulses linked to an incident's latest revision, each with ``used`` and ``reason``."""
        query = (sa.select(pulses, incident_pulses.c.used, incident_pulses.c.reason)
                 .join(incident_pulses, incident_pulses.c.pulse_id == pulses.c.id)
                 .where(incident_pulses.c.incident == incident_id).order_by(pulses.c.t_ns))
        with self.engine.connect() as conn:
            return [dict(_pulse_row(r), used=bool(r.used), reason=r.reason) for r in conn.execute(query)]

    # -- health and evidence ------------------------------------------------------------------
    def record_health(self, node: str, t_ns: int, body: dict) -> None:
        with self.writer.begin() as conn:
            conn.execute(health.insert().values(node=node, t_ns=int(t_ns), body=_dumps(body)))

    def health(self, node: str | None = None) -> list[dict]:
        query = sa.select(health).order_by(health.c.t_ns)
        if node is not None:
            query = query.where(health.c.node == node)
        with self.engine.connect() as conn:
            return [dict(json.loads(r.body), node=r.node, t_ns=r.t_ns) for r in conn.execute(query)]

    def add_clip(self, incident_id: str, node: str, t0_ns: int, data: bytes, meta: dict | None = None) -> str:
        """Store an audio clip sent as evidence for an incident; returns its SHA-256 (hex)."""
        digest = sha256_hex(data)
        with self.writer.begin() as conn:
            conn.execute(clips.insert().values(incident=incident_id, node=node, t0_ns=int(t0_ns), sha256=digest,
                                               data=bytes(data), meta=_dumps(meta or {}), received_ns=time.time_ns()))
        return digest

    def clips(self, incident_id: str) -> list[dict]:
        query = sa.select(clips).where(clips.c.incident == incident_id).order_by(clips.c.node, clips.c.t0_ns)
        with self.engine.connect() as conn:
            return [{"node": r.node, "t0_ns": r.t0_ns, "sha256": r.sha256, "data": bytes(r.data),
                     "meta": json.loads(r.meta), "received_ns": r.received_ns} for r in conn.execute(query)]


def _pulse_row(row) -> dict:
    return dict(json.loads(row.body), id=row.id, node=row.node, seq=row.seq,
                received_ns=row.received_ns, sha256=row.sha256)


def _sqlite_manual_transactions(dbapi_conn, _record) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN, not the sqlite3 module.
    dbapi_conn.isolation_level = None


def _sqlite_begin_immediate(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL: readers never block the writer; FULL sync: a committed pulse survives power loss too.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()
