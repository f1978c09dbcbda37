"""fusion.tracking.lifecycle on its own: every allowed transition, every forbidden one, the terminal states
(a final incident is not one: late pulses of its shots revise it)."""
from __future__ import annotations

import itertools

import pytest

from fusion.tracking.lifecycle import PUBLISHED, TERMINAL, TRANSITIONS, Status, TransitionError, advance

ALLOWED = [
    (Status.HELD_BACK, Status.PRELIMINARY),
    (Status.HELD_BACK, Status.FINAL),
    (Status.HELD_BACK, Status.DISCARDED),
    (Status.PRELIMINARY, Status.REVISED),
    (Status.PRELIMINARY, Status.FINAL),
    (Status.PRELIMINARY, Status.WITHDRAWN),
    (Status.REVISED, Status.REVISED),
    (Status.REVISED, Status.FINAL),
    (Status.REVISED, Status.WITHDRAWN),
    (Status.FINAL, Status.REVISED),      # late pulses of its shots (issue 19: one shot, one id)
    (Status.FINAL, Status.FINAL),
    (Status.FINAL, Status.WITHDRAWN),
]
FORBIDDEN = [pair for pair in itertools.product(Status, Status) if pair not in ALLOWED]


def test_the_table_is_the_documented_one():
    assert set(TRANSITIONS) == set(Status)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == set(ALLOWED)


@pytest.mark.parametrize(("start", "to"), ALLOWED, ids=lambda s: s.value)
def test_an_allowed_transition_goes_to_its_target(start, to):
    assert advance(start, to) is to


@pytest.mark.parametrize(("start", "to"), FORBIDDEN, ids=lambda s: s.value)
def test_a_forbidden_transition_raises(start, to):
    with pytest.raises(TransitionError, match=f"{start.value} cannot become {to.value}"):
        advance(start, to)


def test_withdrawn_and_discarded_are_terminal():
    assert TERMINAL == {Status.WITHDRAWN, Status.DISCARDED}
    for state in TERMINAL:
        for to in Status:
            with pytest.raises(TransitionError):
                advance(state, to)


def test_only_a_published_incident_is_withdrawn_and_a_withdrawn_one_was_published():
    never_out = set(Status) - PUBLISHED
    assert never_out == {Status.HELD_BACK, Status.DISCARDED}
    assert all(Status.WITHDRAWN not in TRANSITIONS[s] for s in never_out)
    assert all(Status.DISCARDED not in TRANSITIONS[s] for s in PUBLISHED)


def test_every_state_is_reached_from_held_back():
    reached, frontier = {Status.HELD_BACK}, [Status.HELD_BACK]
    while frontier:
        for to in TRANSITIONS[frontier.pop()] - reached:
            reached.add(to)
            frontier.append(to)
    assert reached == set(Status)


def test_the_published_statuses_are_the_update_strings():
    assert [s.value for s in (Status.PRELIMINARY, Status.REVISED, Status.FINAL, Status.WITHDRAWN)] == [
        "preliminary", "revised", "final", "withdrawn"]
