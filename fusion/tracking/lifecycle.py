"""The revision lifecycle of a tracked incident: its states and the transitions between them.

States:

- ``held_back``: located, but its fit may rest on no more sensors than fix a shot, none spare
  to refute it (a busy city's echoes line up on four sensors often enough to place a ghost);
  not published, located again at each new pulse until a spare sensor confirms it.
- ``preliminary``: published for the first time.
- ``revised``: published again: more pulses moved it or changed its rounds, shooters or error.
- ``final``: its window, and every earlier one, closed; classified once more.  Late pulses of
  its shots (a node's outbox after an outage, a broker's failover pause) may still revise it.
- ``withdrawn`` (terminal): its shots turned out to be another published incident's
  (the revision names it in ``merged_into``).
- ``discarded`` (terminal): dropped before it was ever published, so nobody hears of it.

Transitions (anything else raises :class:`TransitionError`):

================  ===============  ==========================================================
from              to               when
================  ===============  ==========================================================
``held_back``     ``preliminary``  a spare sensor confirms it while its window is open
``held_back``     ``final``        a spare sensor confirms it by the time its window closes
``held_back``     ``discarded``    its window closes unconfirmed, no window locates it any
                                   more, or another incident has all its shots
``preliminary``   ``revised``      a relocation changes it by more than its error says
``preliminary``   ``final``        its window closes
``preliminary``   ``withdrawn``    another incident has all its shots
``revised``       ``revised``      as from ``preliminary``
``revised``       ``final``        as from ``preliminary``
``revised``       ``withdrawn``    as from ``preliminary``
``final``         ``revised``      late pulses of its shots change it (a window of theirs
                                   locates one of its shots)
``final``         ``final``        as to ``revised``, and their window closes at once
``final``         ``withdrawn``    late pulses show its shots are another incident's
================  ===============  ==========================================================

Only a published incident can be withdrawn: one never published is discarded instead.

Example::

    status = advance(Status.HELD_BACK, Status.PRELIMINARY)
    advance(Status.WITHDRAWN, Status.REVISED)    # raises TransitionError
"""
from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """A tracked incident's place in its lifecycle; the value is the published status."""

    HELD_BACK = "held_back"
    PRELIMINARY = "preliminary"
    REVISED = "revised"
    FINAL = "final"
    WITHDRAWN = "withdrawn"
    DISCARDED = "discarded"


# The allowed transitions: each state, and the states it may go to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.HELD_BACK: frozenset({Status.PRELIMINARY, Status.FINAL, Status.DISCARDED}),
    Status.PRELIMINARY: frozenset({Status.REVISED, Status.FINAL, Status.WITHDRAWN}),
    Status.REVISED: frozenset({Status.REVISED, Status.FINAL, Status.WITHDRAWN}),
    # Reopened by late pulses of its shots: one shot is alerted under one id, however late its pulses.
    Status.FINAL: frozenset({Status.REVISED, Status.FINAL, Status.WITHDRAWN}),
    Status.WITHDRAWN: frozenset(),
    Status.DISCARDED: frozenset(),
}
TERMINAL = frozenset(state for state, targets in TRANSITIONS.items() if not targets)
# The states of an incident the world has heard of (a revision of it went out).
PUBLISHED = frozenset({Status.PRELIMINARY, Status.REVISED, Status.FINAL, Status.WITHDRAWN})


class TransitionError(ValueError):
    """A transition the lifecycle does not allow (a bug in the tracker, never bad input)."""


def advance(status: Status, to: Status) -> Status:
    """The state after going from ``status`` to ``to``; TransitionError if that is not allowed."""
    if to not in TRANSITIONS[status]:
        raise TransitionError(f"an incident {status.value} cannot become {to.value}")
    return to
