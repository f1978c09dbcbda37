"""fusion.tracking on one shot whose pulses come in two parts, the second after the first's window
closed (a node's outbox after an outage, a broker's failover pause): one incident, revised."""
from __future__ import annotations

import math

import nacl.signing
import pytest

from earwitness.units import NS_PER_S
from fusion.server.registry import registry_from_nodes
from fusion.tracking.incidents import IncidentTracker

GRID_SIDE, GRID_SPACING_M = 5, 250.0   # 25 sensors, a shot heard by all of them
C_M_S = 340.0
SOURCE_XY = (30.0, -40.0)
T0_NS = 1_700_000_000 * NS_PER_S
PLACED_M = 5.0   # a clean synthetic shot is located this close


def _grid_nodes() -> list[dict]:
    nodes = []
    for i in range(GRID_SIDE):
        for j in range(GRID_SIDE):
            key = nacl.signing.SigningKey(bytes([i, j]) * 16).verify_key
            half = (GRID_SIDE - 1) / 2
            nodes.append({"id": f"g{i}{j}", "public_key": bytes(key).hex(),
                          "x": GRID_SPACING_M * (i - half), "y": GRID_SPACING_M * (j - half), "z": 0.0})
    return nodes


def _shot_pulses(nodes: list[dict]) -> list[dict]:
    """One shot's first arrivals at every sensor, in time order."""
    return sorted(({"id": k, "sensor": n["id"], "t_unc_ns": 10**5,
                    "t_ns": T0_NS + round(math.hypot(n["x"] - SOURCE_XY[0], n["y"] - SOURCE_XY[1]) / C_M_S * NS_PER_S)}
                   for k, n in enumerate(nodes, 1)), key=lambda p: p["t_ns"])


def _tracker(nodes: list[dict]) -> IncidentTracker:
    return IncidentTracker(registry_from_nodes(nodes).sensors, "late", temperature_c=15.0)


@pytest.mark.parametrize("first_part", [6, 10])
def test_late_pulses_of_a_final_incident_revise_it_under_its_id(first_part):
    nodes = _grid_nodes()
    pulses = _shot_pulses(nodes)
    tracker = _tracker(nodes)
    updates = tracker.add(pulses[:first_part], received_ns=0)
    updates += tracker.expire(tracker.window_ns + 1)
    assert [u.status for u in updates] == ["preliminary", "final"] and tracker.open_windows == 0
    late_ns = 3 * tracker.window_ns   # the rest comes well after the window closed
    late = tracker.add(pulses[first_part:], received_ns=late_ns)
    late += tracker.expire(late_ns + tracker.window_ns + 1)
    assert [u.status for u in late] == ["revised", "final"]
    assert {u.incident["incident"] for u in updates + late} == {updates[0].incident["incident"]}
    final = late[-1].incident
    assert len(final["sensors"]) > first_part    # the late sensors are its evidence now
    assert math.hypot(final["x"] - SOURCE_XY[0], final["y"] - SOURCE_XY[1]) <= PLACED_M


def test_a_resumed_tracker_revises_a_final_incident_with_its_late_pulses():
    """The worker that takes a slot over resumes its tracker from the store: the final incidents
    stored are taken back too, and late pulses of their shots revise them."""
    nodes = _grid_nodes()
    pulses = _shot_pulses(nodes)
    first = _tracker(nodes)
    updates = first.add(pulses[:6], received_ns=0) + first.expire(first.window_ns + 1)
    final = updates[-1]
    assert final.status == "final"
    stored = dict(final.incident, revision=len(updates), status=final.status)   # as Store.incidents lists it
    late_ns = 3 * first.window_ns
    resumed = _tracker(nodes)
    held = [dict(p, received_ns=0) for p in pulses[:6]]   # as the store gives them back
    assert resumed.resume(first.checkpoint(), held, [], [stored], late_ns) == []
    late = resumed.add(pulses[6:], received_ns=late_ns) + resumed.flush()
    assert [u.status for u in late] == ["revised", "final"]
    assert {u.incident["incident"] for u in late} == {final.incident["incident"]}


def test_a_new_shot_at_the_same_place_after_a_final_one_is_a_new_incident():
    """Only late pulses of a final incident's shots revise it: a shot fired there later is news."""
    nodes = _grid_nodes()
    pulses = _shot_pulses(nodes)
    tracker = _tracker(nodes)
    updates = tracker.add(pulses, received_ns=0) + tracker.expire(tracker.window_ns + 1)
    later_ns = 3 * tracker.window_ns
    again = [dict(p, id=p["id"] + len(pulses), t_ns=p["t_ns"] + later_ns) for p in pulses]
    updates += tracker.add(again, received_ns=later_ns) + tracker.flush()
    ids = [u.incident["incident"] for u in updates]
    assert [u.status for u in updates] == ["preliminary", "final", "preliminary", "final"]
    assert ids[0] == ids[1] != ids[2] == ids[3]
