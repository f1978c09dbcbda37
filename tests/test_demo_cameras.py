"""`make demo`'s camera registry: a valid Cameras CSV whose cameras see the demo's gunfire (its
alerts list them) and not the confounders far from them."""
from __future__ import annotations

from fusion.forensics.cameras import cameras_seeing, read_cameras
from fusion.forensics.frame import Plane
from simulator import scenario
from simulator.demo import DEMO_SCENARIO, write_cameras

# What the registry is laid out for (simulator/demo.py): the cameras each true incident is seen by.
EXPECTED = {"house": ["main-st-ptz", "elm-ave"], "exchange": ["school-north"], "park": ["park-gate"]}


def test_demo_cameras_see_each_gunfire_incident(tmp_path):
    cameras = read_cameras(write_cameras(tmp_path / "cameras.csv"), Plane("local"))
    scn = scenario.load(DEMO_SCENARIO)
    seen: dict[str, list[str]] = {}
    for event in scn.events:
        name = event.incident or event.kind
        names = [c["camera"] for c in cameras_seeing(cameras, (float(event.pos[0]), float(event.pos[1])), 0, 0)]
        seen[name] = sorted(set(seen.get(name, [])) | set(names))
    assert {k: seen[k] for k in EXPECTED} == {k: sorted(v) for k, v in EXPECTED.items()}
    assert seen["firecrackers"] == [] and seen["backfire"] == []
