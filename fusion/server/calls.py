"""911 / CAD calls in the fusion store, and their matches to incidents (each with the rule that made it).

Two tables beside the store's own, in the same database (SQLite file or PostgreSQL), created on
first use: ``calls`` (one row per call id, the call as read) and ``call_matches`` (call id,
incident, time after the first discharge, distance, the rule as JSON, when matched). A call
stored twice (a CAD export imported again) keeps its first row; so does a match.

Example::

    log = CallLog(store)
    log.add_calls(read_calls("cad.csv"))
    log.match_stored_incidents(MatchRule())
    log.matches(incident="inc-7")
"""
from __future__ import annotations

import json
import time

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fusion.forensics.calls import MatchRule, call_window_ns, match
from fusion.server.store import Store

metadata = sa.MetaData()

calls = sa.Table(
    "calls", metadata,
    sa.Column("call_id", sa.String(128), primary_key=True),
    sa.Column("t_ns", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("imported_ns", sa.BigInteger, nullable=False),
)
sa.Index("calls_t_ns", calls.c.t_ns)

call_matches = sa.Table(
    "call_matches", metadata,
    sa.Column("call_id", sa.String(128), primary_key=True),
    sa.Column("incident", sa.String(64), primary_key=True),
    sa.Column("dt_s", sa.Float, nullable=False),
    sa.Column("dist_m", sa.Float, nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("matched_ns", sa.BigInteger, nullable=False),
)
sa.Index("call_matches_incident", call_matches.c.incident)

# A withdrawn revision's shots are another incident's: the call is that one's. Every class is
# matched: a "shots fired" call beside an incident classed fireworks is a reason to look again,
# and `earwitness unreported` chooses the classes it counts.
WITHDRAWN = "withdrawn"
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


class CallLog:
    """The calls and matches of one store (its engines, its schema)."""

    def __init__(self, store: Store):
        self.store = store
        store.create_tables(metadata)

    def _insert(self, table):
        return (sqlite_insert if self.store.is_sqlite else postgresql_insert)(table)

    def add_calls(self, rows: list[dict]) -> int:
        """Store calls (dicts of :func:`fusion.forensics.calls.read_calls`); returns how many were new."""
        if not rows:
            return 0
        now_ns = time.time_ns()
        values = [{"call_id": c["call_id"], "t_ns": int(c["t_ns"]), "body": _dumps(c), "imported_ns": now_ns} for c in rows]
        with self.store.writer.begin() as conn:
            before = conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one()
            conn.execute(self._insert(calls).on_conflict_do_nothing(index_elements=["call_id"]), values)
            after = conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one()
        return after - before

    def calls(self, t0_ns: int | None = None, t1_ns: int | None = None) -> list[dict]:
        """Stored calls in [t0_ns, t1_ns], in time order."""
        query = sa.select(calls.c.body).order_by(calls.c.t_ns, calls.c.call_id)
        if t0_ns is not None:
            query = query.where(calls.c.t_ns >= t0_ns)
        if t1_ns is not None:
            query = query.where(calls.c.t_ns <= t1_ns)
        with self.store.engine.connect() as conn:
            return [json.loads(t) for (t,) in conn.execute(query)]

    def save_matches(self, found: list[dict]) -> int:
        """Store matches (of :func:`fusion.forensics.calls.match`); returns how many were new."""
        if not found:
            return 0
        now_ns = time.time_ns()
        values = [{"call_id": m["call_id"], "incident": m["incident"], "dt_s": float(m["dt_s"]), "dist_m": float(m["dist_m"]),
                   "rule": _dumps(m["rule"]), "matched_ns": now_ns} for m in found]
        with self.store.writer.begin() as conn:
            before = conn.execute(sa.select(sa.func.count()).select_from(call_matches)).scalar_one()
            conn.execute(self._insert(call_matches).on_conflict_do_nothing(index_elements=["call_id", "incident"]), values)
            after = conn.execute(sa.select(sa.func.count()).select_from(call_matches)).scalar_one()
        return after - before

    def matches(self, incident: str | None = None) -> list[dict]:
        """Stored matches (of one incident, or all), each with its ``rule`` and ``matched_ns``."""
        query = sa.select(call_matches).order_by(call_matches.c.incident, call_matches.c.dt_s)
        if incident is not None:
            query = query.where(call_matches.c.incident == incident)
        with self.store.engine.connect() as conn:
            return [{"call_id": r.call_id, "incident": r.incident, "dt_s": r.dt_s, "dist_m": r.dist_m,
                     "rule": json.loads(r.rule), "matched_ns": r.matched_ns} for r in conn.execute(query)]

    def match_incident(self, incident: dict, rule: MatchRule) -> list[dict]:
        """Match one incident against the stored calls of its window; store and return the matches."""
        found = self._match(incident, rule)
        self.save_matches(found)
        return found

    def match_stored_incidents(self, rule: MatchRule, t0_ns: int | None = None, t1_ns: int | None = None) -> int:
        """Match every stored gunfire incident (latest revisions) to the stored calls; returns new matches."""
        return sum(self.save_matches(self._match(inc, rule)) for inc in self.store.incidents(t0_ns, t1_ns))

    def _match(self, incident: dict, rule: MatchRule) -> list[dict]:
        if incident.get("status") == WITHDRAWN:
            return []
        return match(incident, self.calls(*call_window_ns(incident, rule)), rule)


def counted_incidents(store: Store, classes: set[str], t0_ns: int | None = None,
                      t1_ns: int | None = None) -> tuple[list[dict], set[str]]:
    """What `earwitness unreported` and the console count: the latest revisions of incidents of
    ``classes`` in [t0_ns, t1_ns] (withdrawn ones left out), and the ids a stored call matched."""
    incidents = [i for i in store.incidents(t0_ns, t1_ns) if i.get("class") in classes and i.get("status") != WITHDRAWN]
    return incidents, {m["incident"] for m in CallLog(store).matches()}
