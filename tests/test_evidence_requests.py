"""Clip requests (fusion/server/evidence.py): the nodes that triggered, and the nearby ones that did not."""
from __future__ import annotations

import math

from earwitness.units import NS_PER_S
from fusion.locator.sensors import Sensors
from fusion.server import evidence

C_M_S = 340.0
T0_NS = 1_700_000_000 * NS_PER_S


def _incident(shots_xy, heard):
    return {"incident": "site-1", "c_mps": C_M_S, "sensors": heard,
            "shots": [{"x": x, "y": y, "z": 0.0, "t_ns": T0_NS + k * NS_PER_S // 2} for k, (x, y) in enumerate(shots_xy)]}


def test_nearby_nodes_that_did_not_trigger_are_asked_for_when_the_shots_passed_them():
    # Heard by A (100 m) and B (300 m); Q1 at 200 m did not trigger: asked; Q2 at 900 m is farther
    # than any node that heard: not asked; the nodes that heard are asked by clip_requests, not here.
    sensors = Sensors.from_local({"A": (100.0, 0.0, 5.0), "B": (0.0, 300.0, 5.0), "Q1": (-200.0, 0.0, 5.0),
                                  "Q2": (900.0, 0.0, 5.0)})
    inc = _incident([(0.0, 0.0), (0.0, 0.0), (0.0, 0.0)], ["A", "B"])
    requests = evidence.quiet_clip_requests(inc, sensors)
    assert list(requests) == ["Q1"]
    q1 = requests["Q1"]
    passed_first_ns = T0_NS + round(200.0 / C_M_S * NS_PER_S)
    passed_last_ns = T0_NS + NS_PER_S + round(200.0 / C_M_S * NS_PER_S)
    assert math.isclose(q1["t0_ns"], passed_first_ns - evidence.CLIP_BEFORE_S * NS_PER_S, abs_tol=1e3)
    assert math.isclose(q1["t1_ns"], passed_last_ns + evidence.CLIP_AFTER_S * NS_PER_S, abs_tol=1e3)
    assert q1["cmd"] == "clip" and q1["id"] == "site-1|Q1"


def test_no_quiet_requests_without_shots_or_nodes_that_heard():
    sensors = Sensors.from_local({"A": (100.0, 0.0, 5.0), "Q": (50.0, 0.0, 5.0)})
    assert evidence.quiet_clip_requests(_incident([], ["A"]), sensors) == {}
    assert evidence.quiet_clip_requests(_incident([(0.0, 0.0)], []), sensors) == {}
    assert evidence.quiet_clip_requests(_incident([(0.0, 0.0)], ["nobody-in-the-registry"]), sensors) == {}
