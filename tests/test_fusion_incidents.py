"""fusion.incidents on a real Pittsburgh test: revisions as pulses arrive, final when the window closes."""
from __future__ import annotations

import math

from fusion.incidents import IncidentTracker
from fusion.registry import load_registry
from fusion_site import build_site

NS_PER_S = 1_000_000_000


def test_revisions_then_final_when_the_window_closes(pittsburgh, tmp_path):
    site = build_site(pittsburgh[0], tmp_path)
    tracker = IncidentTracker(load_registry(site.registry_path), "pgh", temperature_c=site.temperature_c)
    pulses = [dict(p, id=i) for i, p in enumerate(site.pulses, 1)]
    received_ns, updates = 0, []
    for k in range(0, len(pulses), 10):            # ten pulses per batch, one batch per second
        received_ns = k // 10 * NS_PER_S
        updates += tracker.add(pulses[k:k + 10], received_ns)
        assert all(u.status != "final" for u in updates)
    statuses = [u.status for u in updates]
    assert statuses[0] == "preliminary" and set(statuses[1:]) <= {"revised"}
    assert len({u.incident["incident"] for u in updates}) == 1
    assert tracker.add(pulses[:5], received_ns) == []          # the same stored pulses again change nothing
    assert tracker.expire(received_ns + tracker.window_ns) == []     # the window is still open
    final, = tracker.expire(received_ns + tracker.window_ns + 1)
    assert final.status == "final" and final.incident["incident"] == updates[0].incident["incident"]
    assert final.incident["rounds"] == site.rounds and tracker.groups == []
    x, y, _ = site.survey_xyz
    assert math.hypot(final.incident["x"] - x, final.incident["y"] - y) <= 25.0
    assert len(final.used) >= 4 * site.rounds and set(final.used).isdisjoint(final.rejected)
    assert final.meta["temperature_c"] == site.temperature_c and final.meta["sensors"]


def test_pulses_far_apart_in_time_are_separate_groups(pittsburgh, tmp_path):
    site = build_site(pittsburgh[0], tmp_path)
    tracker = IncidentTracker(load_registry(site.registry_path), "pgh", temperature_c=site.temperature_c)
    base = site.pulses[0]["t_ns"]
    far = 10 * tracker.window_ns
    tracker.add([{"id": 1, "sensor": site.pulses[0]["sensor"], "t_ns": base}], 0)
    tracker.add([{"id": 2, "sensor": site.pulses[0]["sensor"], "t_ns": base + far}], 0)
    tracker.add([{"id": 3, "sensor": site.pulses[0]["sensor"], "t_ns": base + far // 2}], 0)
    assert len(tracker.groups) == 3
    # With a window of half the span, one more pulse in the middle bridges all three groups.
    tracker.window_ns = far // 2 + 10
    tracker.add([{"id": 4, "sensor": site.pulses[0]["sensor"], "t_ns": base + far // 2 + 1}], 0)
    assert len(tracker.groups) == 1 and sorted(p["id"] for p in tracker.groups[0].pulses) == [1, 2, 3, 4]
