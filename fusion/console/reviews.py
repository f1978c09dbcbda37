"""People's decisions on incidents: reviews (confirm, dismiss, reclassify) and officers' dispositions.

Each is a row that is never changed or deleted (a later review supersedes an earlier one on
screen; both stay), naming who, when, on which revision, and why.  Every one is also handed to
``on_action(actor, action, subject, body)``: the hook the hash-chained audit log
(``fusion.server.audit``) is connected to; until then it does nothing.

Who may do what is :mod:`fusion.console.roles`'s matrix: a dispatcher records dispositions but
may not confirm, dismiss or reclassify an alert; a reviewer and an admin may do all; analysts
and auditors read.

Example::

    reviews = Reviews(store)
    reviews.review("ann", "reviewer", "pgh-1", 3, "confirm", "clear gunfire on 5 sensors")
    reviews.disposition("bob", "dispatcher", "pgh-1", "casings found", "6 casings, 9 mm")
"""
from __future__ import annotations

import json
import time
from typing import Callable

import sqlalchemy as sa

from fusion.console.roles import DISPOSITION, MATRIX, REVIEW_ACTIONS, may, refusal

ACTIONS = REVIEW_ACTIONS
DISPOSITIONS = ("casings found", "victim", "damage", "nothing found", "not attended")
# fusion.locator.classify's classes: what an alert may be reclassified as.
CLASSES = ("gunfire", "fireworks", "other", "unknown")
PERMITTED = MATRIX
REASON_MAX = 2000

metadata = sa.MetaData()

actions = sa.Table(
    "console_actions", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("incident", sa.String(64), nullable=False),
    sa.Column("revision", sa.Integer, nullable=True),     # the revision reviewed (None: a disposition)
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),   # confirm, dismiss, reclassify, disposition
    sa.Column("value", sa.String(32), nullable=True),     # new class, or the disposition
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)
sa.Index("console_actions_incident", actions.c.incident)


class Forbidden(PermissionError):
    """The user's role may not do this."""


class InvalidAction(ValueError):
    """A review or disposition that is not well formed: the message says what, in one line."""


def no_audit(actor: str, action: str, subject: str, body: dict) -> None:
    """Placeholder until the audit log is connected (see the module docstring)."""


class Reviews:
    """Reviews and dispositions in the fusion store's database."""

    def __init__(self, store, on_action: Callable[[str, str, str, dict], None] = no_audit):
        self.engine, self.writer = store.engine, store.writer
        self.on_action = on_action
        metadata.create_all(self.writer)

    def review(self, actor: str, role: str, incident: str, revision: int, action: str, reason: str,
               new_class: str | None = None) -> dict:
        """Record a review of an incident's revision; Forbidden or InvalidAction if it may not be."""
        if action not in ACTIONS:
            raise InvalidAction(f"action must be one of {', '.join(ACTIONS)}")
        _allowed(role, action)
        if action == "reclassify" and new_class not in CLASSES:
            raise InvalidAction(f"reclassify needs a class: one of {', '.join(CLASSES)}")
        return self._record(incident, revision, actor, role, action, new_class if action == "reclassify" else None, reason)

    def disposition(self, actor: str, role: str, incident: str, disposition: str, note: str) -> dict:
        """Record what officers found at the scene."""
        _allowed(role, DISPOSITION)
        if disposition not in DISPOSITIONS:
            raise InvalidAction(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        return self._record(incident, None, actor, role, "disposition", disposition, note, reason_required=False)

    def _record(self, incident: str, revision: int | None, actor: str, role: str, action: str, value: str | None,
                reason: str, reason_required: bool = True) -> dict:
        reason = reason.strip()
        if reason_required and not reason:
            raise InvalidAction("a reason is required")
        if len(reason) > REASON_MAX:
            raise InvalidAction(f"the reason is longer than {REASON_MAX} characters")
        row = {"incident": incident, "revision": revision, "actor": actor, "role": role, "action": action,
               "value": value, "reason": reason, "created_ns": time.time_ns()}
        with self.writer.begin() as conn:
            conn.execute(actions.insert().values(**row))
        # One call per person's action: the audit log's append (connected by the fusion command).
        self.on_action(actor, action, f"incident/{incident}", json.loads(json.dumps(row)))
        return row

    def of(self, incident: str) -> list[dict]:
        """Every review and disposition of an incident, oldest first."""
        query = sa.select(actions).where(actions.c.incident == incident).order_by(actions.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def all(self) -> list[dict]:
        """Every review and disposition, oldest first."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(actions).order_by(actions.c.id))]

    def latest(self) -> dict[str, dict]:
        """Each incident's latest review (not disposition), by incident id."""
        query = sa.select(actions).where(actions.c.action != "disposition").order_by(actions.c.id)
        with self.engine.connect() as conn:
            return {r.incident: dict(r._mapping) for r in conn.execute(query)}


def _allowed(role: str, action: str) -> None:
    if not may(role, action):
        raise Forbidden(refusal(role, action))
