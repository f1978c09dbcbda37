"""The report's account of who did what: each revision the machine computed, apart from each change people made.

Both come from the hash-chained audit log (:mod:`fusion.server.audit`):

* the machine: the entries of actor ``fusion``, action ``revision`` on the incident, one per
  stored revision (the fusion server enters each in the transaction that stores it), shown with
  what that revision said (status, class, rounds, position, 95% radius);
* people: the entries on ``incident/<id>`` the console appends for every review (confirm,
  dismiss, reclassify) and disposition (:mod:`fusion.console.reviews`), with who, their role,
  when, on which revision, what and why.

A revision stored without an audit entry (a server run without a signing key) is still listed
as the machine's, marked so.

Example::

    hist = incident_history(log, "pgh-inc-1", revisions)
    hist.machine, hist.human        # rows (lists of str) under MACHINE_HEADER, HUMAN_HEADER
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from fusion.server import audit

HUMAN_SUBJECT = "incident/{}"       # the console's subject for an incident (fusion.console.reviews)
MACHINE_HEADER = ["entry", "when", "actor", "revision", "status", "class", "rounds", "position", "radius 95% m",
                  "entry hash"]
HUMAN_HEADER = ["entry", "when", "who", "role", "action", "value", "on revision", "why"]
HASH_SHOWN_CHARS = 16
NO_ENTRY = "none (stored without an audit log)"


@dataclasses.dataclass
class History:
    machine: list[list[str]]
    human: list[list[str]]
    entries: list[dict]             # every audit entry of the incident, machine's and people's, in order


def incident_history(log: audit.AuditLog, incident_id: str, revisions: list[dict],
                     when: Callable[[int], str], where: Callable[[dict], str]) -> History:
    """The incident's machine revisions and people's actions (``when``/``where`` format times and positions)."""
    machine_entries = [e for e in log.entries(subject=incident_id) if e["action"] == audit.REVISION]
    human_entries = log.entries(subject=HUMAN_SUBJECT.format(incident_id))
    by_revision = {e["body"].get("revision"): e for e in machine_entries if isinstance(e["body"], dict)}
    machine = []
    for r in revisions:
        entry = by_revision.get(r["revision"])
        machine.append([str(entry["seq"]) if entry else NO_ENTRY, when(entry["t_ns"] if entry else r["created_ns"]),
                        entry["actor"] if entry else audit.MACHINE, str(r["revision"]), str(r.get("status", "")),
                        str(r.get("class", "")), str(r.get("rounds", "")), where(r) if "t_ns" in r and _placed(r) else "-",
                        f"{float(r['err_m']):.1f}" if r.get("err_m") is not None else "-",
                        entry["hash"][:HASH_SHOWN_CHARS] if entry else "-"])
    human = [_human_row(e, when) for e in human_entries]
    entries = sorted(machine_entries + human_entries, key=lambda e: e["seq"])
    return History(machine=machine, human=human, entries=entries)


def _placed(r: dict) -> bool:
    return ("x" in r and "y" in r) or ("lat" in r and "lon" in r)


def _human_row(entry: dict, when: Callable[[int], str]) -> list[str]:
    body = entry["body"] if isinstance(entry["body"], dict) else {}
    revision = body.get("revision")
    return [str(entry["seq"]), when(entry["t_ns"]), entry["actor"], str(body.get("role", "")), entry["action"],
            str(body.get("value") or ""), "-" if revision is None else str(revision), str(body.get("reason", ""))]
