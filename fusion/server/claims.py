"""Claims on shots across worker slots: a shot is opened as an incident by one slot only.

Each slot locates the pulses of its cells plus a halo (:mod:`fusion.server.partition`), so a
shot near a border is located by two slots, from slightly different pulses and so at slightly
different places; each would publish it if it owns the place it found, and the shot would go
out under two ids.  So a slot's new incident is stored only if no other slot claimed one of
its shots first (the same shot: discharge times within ``same_shot_ns`` and places within
``same_shot_m``); the incident stored first claims its shots (rows of ``claimed_shots``, kept
as its latest revision has them), and its slot publishes every revision of it from then on,
wherever relocations move it.  The other slot's incident *yields*: none of its revisions is
stored or sent (``slot_incidents`` records which incident it yielded to).  Dropping it rather
than adding it to the claimant's evidence: an operator expects one alert per shot under the id
that went out first (a second id sends a second car); the claimant's tracker hears the same
sensors (its halo reaches at least as far as a shot in its cells is heard), so nothing is lost;
and an incident keeps one writer, its revisions numbered by one tracker.

The check and the claim are made in the transaction that stores the revision
(:meth:`fusion.server.store.Store.save_round`'s ``admit``), so two slots claiming one shot at
the same moment cannot both win: on PostgreSQL each transaction first takes transaction-level
advisory locks on the time buckets of its shots (every two shots that may be one share a
bucket lock; taken in order, so no deadlock), and reads the claims only then; on SQLite
writers are serialised already (BEGIN IMMEDIATE).  Claims on shots more than CLAIM_KEEP_S (8 days)
older than a round's newest shot are deleted, and so are the ``slot_incidents`` rows of incidents
that old, by each slot at most every PRUNE_EVERY_S.

Example::

    claims = ShotClaims(store, "pgh/0", same_shot_ns=100_000_000, same_shot_m=600.0, to_xy=xy_of)
    numbers = store.save_round(revisions, "pgh/0", state, outgoing, epoch=epoch, admit=claims.admit)
    claims.yielded          # {incident: the other slot's incident it yielded to}, of that round
"""
from __future__ import annotations

import hashlib
import math
import time
from typing import Callable

import sqlalchemy as sa

from earwitness.units import NS_PER_S
from fusion.server.store import Revision, Store

KEY_BYTES = 8   # an advisory lock key is a signed 64-bit integer
WITHDRAWN = "withdrawn"
# A claim is kept this long behind the newest shot its slot's round stores (data time: a replay's
# shots are years old), far beyond the tracker's association (RETAIN_S, 120 s, before its oldest
# open window) and beyond how long a broker keeps a down worker's pulses (a week: the MQTT session
# expiry, the NATS streams), so no pulse of an older shot can still come to open an incident.  A
# pruned claim would let another slot's late location of that shot out under a second id.
CLAIM_KEEP_S = 8 * 24 * 3600
# Each slot prunes the claims past CLAIM_KEEP_S this often at most (one indexed DELETE in a round).
PRUNE_EVERY_S = 600.0

LOCK_BUCKETS = sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")

metadata = sa.MetaData()

# Which slot stored which incident, and which incidents a slot did not store because another
# slot's incident had their shot (``yielded_to``).  One row per (slot, incident): two slots may
# even give one shot the same id (both name it by its time to the millisecond).
slot_incidents = sa.Table(
    "slot_incidents", metadata,
    sa.Column("worker", sa.String(64), primary_key=True),
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("yielded_to", sa.String(64), nullable=True),   # None: the slot stores and publishes it
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    # Data time: the newest shot of the incident's first revision here (pruned as claims are).
    # None in rows written before the column was added: those are kept.
    sa.Column("t_ns", sa.BigInteger, nullable=True),
)

# The shots of each stored incident as its latest revision has them (east, north metres).
claimed_shots = sa.Table(
    "claimed_shots", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("incident", sa.String(64), nullable=False),
    sa.Column("t_ns", sa.BigInteger, nullable=False),
    sa.Column("x_m", sa.Float, nullable=False),
    sa.Column("y_m", sa.Float, nullable=False),
)
sa.Index("claimed_shots_t_ns", claimed_shots.c.t_ns)
sa.Index("claimed_shots_incident", claimed_shots.c.incident, claimed_shots.c.worker)


def bucket_lock_key(bucket: int) -> int:
    """The PostgreSQL advisory lock key of a claim time bucket."""
    digest = hashlib.sha256(f"earwitness-claim:{bucket}".encode()).digest()
    return int.from_bytes(digest[:KEY_BYTES], "big", signed=True)


class ShotClaims:
    """Slot ``worker``'s claims on shots in ``store`` (see the module's docstring).

    ``to_xy`` gives a shot's (east, north) metres in the site's frame (every slot the same).
    """

    def __init__(self, store: Store, worker: str, same_shot_ns: int, same_shot_m: float,
                 to_xy: Callable[[dict], tuple[float, float]]):
        if same_shot_ns <= 0 or same_shot_m < 0:
            raise ValueError("claims need same_shot_ns > 0 and same_shot_m >= 0")
        self.store, self.worker = store, worker
        self.same_shot_ns, self.same_shot_m, self.to_xy = int(same_shot_ns), float(same_shot_m), to_xy
        # Two shots that may be one lie less than a bucket apart in time, so in the same or
        # neighbouring buckets: a shot locks its own bucket and the next, and any two such pairs meet.
        self.bucket_ns = self.same_shot_ns
        self.yielded: dict[str, str] = {}   # of the last admit: incident -> the other slot's it yielded to
        self._prune_due = time.monotonic()   # the first round with shots prunes
        store.create_tables(metadata)
        _add_t_ns_column(store)

    def admit(self, conn: sa.Connection, revisions: list[Revision]) -> list[bool]:
        """Whether each revision may be stored (called in its transaction): its incident is this
        slot's, or new and no other slot claimed one of its shots; records the claims and yields.
        A withdrawal merged into an incident that yielded names the one it yielded to instead
        (its ``merged_into`` is changed in place: the incident stored and sent)."""
        self.yielded = {}
        shots = [self._shots(r.incident) for r in revisions]
        times_ns = sorted({t_ns for s in shots for t_ns, _ in s})
        self._lock(conn, times_ns)
        if times_ns and time.monotonic() >= self._prune_due:
            self._prune(conn, times_ns[-1] - CLAIM_KEEP_S * NS_PER_S)
        now_ns = time.time_ns()
        admitted = [False] * len(revisions)
        # Withdrawals last: the incident one merges into may be new in this round.
        for k in sorted(range(len(revisions)), key=lambda k: revisions[k].status == WITHDRAWN):
            r = revisions[k]
            key = str(r.incident["incident"])
            row = self._row(conn, key)
            if row is None:   # new to this slot
                rival = self._rival(conn, key, shots[k])
                t_ns = max((t for t, _ in shots[k]), default=r.incident.get("t_ns"))
                conn.execute(slot_incidents.insert().values(worker=self.worker, incident=key, yielded_to=rival,
                                                            created_ns=now_ns, t_ns=t_ns))
                if rival is not None:
                    self.yielded[key] = rival
            else:
                rival = row.yielded_to
            if rival is not None:
                continue
            into = self._row(conn, str(r.incident.get("merged_into"))) if r.status == WITHDRAWN else None
            if into is not None and into.yielded_to is not None:
                r.incident["merged_into"] = into.yielded_to
            self._claim(conn, key, [] if r.status == WITHDRAWN else shots[k])
            admitted[k] = True
        return admitted

    def opened(self, incident_ids) -> set[str]:
        """Those of ``incident_ids`` this slot stores (opened, not yielded)."""
        return self._ids(incident_ids, slot_incidents.c.worker == self.worker, slot_incidents.c.yielded_to.is_(None))

    def known(self, incident_ids) -> set[str]:
        """Those of ``incident_ids`` some slot stored or yielded (the others were stored before slots claimed shots)."""
        return self._ids(incident_ids)

    def _ids(self, incident_ids, *rules) -> set[str]:
        ids = [str(i) for i in incident_ids]
        if not ids:
            return set()
        query = sa.select(slot_incidents.c.incident).where(slot_incidents.c.incident.in_(ids), *rules).distinct()
        with self.store.engine.connect() as conn:
            return {i for (i,) in conn.execute(query)}

    def _row(self, conn: sa.Connection, key: str):
        """This slot's row of incident ``key`` (its ``yielded_to``), None if the slot never stored nor yielded it."""
        query = sa.select(slot_incidents.c.yielded_to).where(slot_incidents.c.worker == self.worker,
                                                            slot_incidents.c.incident == key)
        return conn.execute(query).first()

    def _shots(self, incident: dict) -> list[tuple[int, tuple[float, float]]]:
        out = []
        for shot in incident.get("shots") or ():
            x_m, y_m = self.to_xy(shot)
            out.append((int(shot["t_ns"]), (float(x_m), float(y_m))))
        return out

    def _lock(self, conn: sa.Connection, times_ns: list[int]) -> None:
        if self.store.is_sqlite or not times_ns:   # SQLite: the write transaction is the lock
            return
        buckets = sorted({b for t_ns in times_ns for b in (t_ns // self.bucket_ns, t_ns // self.bucket_ns + 1)})
        # In order (unnest gives the array's order): two rounds never wait for each other's locks in
        # a cycle; one statement, not one round trip a bucket.
        conn.execute(LOCK_BUCKETS, {"keys": [bucket_lock_key(b) for b in buckets]})

    def _rival(self, conn: sa.Connection, key: str, shots: list) -> str | None:
        """The incident of another slot that has this one's id or one of its shots, or None."""
        same_id = sa.select(slot_incidents.c.incident).where(
            slot_incidents.c.worker != self.worker, slot_incidents.c.incident == key, slot_incidents.c.yielded_to.is_(None))
        if conn.execute(same_id).first() is not None:
            return key
        for t_ns, xy in shots:
            near = sa.select(claimed_shots.c.incident, claimed_shots.c.x_m, claimed_shots.c.y_m).where(
                claimed_shots.c.worker != self.worker, claimed_shots.c.t_ns.between(t_ns - self.same_shot_ns,
                                                                                     t_ns + self.same_shot_ns))
            for incident, x_m, y_m in conn.execute(near.order_by(claimed_shots.c.id)):
                if math.dist(xy, (x_m, y_m)) <= self.same_shot_m:
                    return str(incident)
        return None

    def _prune(self, conn: sa.Connection, before_ns: int) -> None:
        """Forget every slot's claims on shots before ``before_ns``, and its incidents as old (see CLAIM_KEEP_S)."""
        conn.execute(claimed_shots.delete().where(claimed_shots.c.t_ns < before_ns))
        conn.execute(slot_incidents.delete().where(slot_incidents.c.t_ns < before_ns))
        self._prune_due = time.monotonic() + PRUNE_EVERY_S

    def _claim(self, conn: sa.Connection, key: str, shots: list) -> None:
        """This slot's incident ``key`` has ``shots`` now (a withdrawn one none: another of ours has them)."""
        conn.execute(claimed_shots.delete().where(claimed_shots.c.incident == key, claimed_shots.c.worker == self.worker))
        if shots:
            conn.execute(claimed_shots.insert(), [{"worker": self.worker, "incident": key, "t_ns": t_ns, "x_m": xy[0],
                                                   "y_m": xy[1]} for t_ns, xy in shots])


def _add_t_ns_column(store: Store) -> None:
    """A slot_incidents table made before its rows were pruned gets their data time column (empty)."""
    if "t_ns" in {c["name"] for c in sa.inspect(store.writer).get_columns(slot_incidents.name)}:
        return
    exists = "" if store.is_sqlite else "IF NOT EXISTS "   # PostgreSQL: workers starting together
    with store.writer.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {slot_incidents.name} ADD COLUMN {exists}t_ns BIGINT"))
