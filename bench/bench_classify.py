"""Incident classifier on the scenario library's fireworks night and on real Pittsburgh gunfire.

Runs the full fireworks night (fleet pulses, 600 s) through ``fusion.locator.locate`` and
``fusion.locator.classify`` and prints the classes got per true kind, false gunfire alerts and
accuracy (gunfire or not, as ``simulator.score``; and the three classes), beside the
targets; then the calibration of the confidences (how often a call at a given confidence is
right, over the library scenarios run here); then the real FP1-FP3 gunfire's rate.
"""
from __future__ import annotations

import pathlib
import sys
import time
from collections import defaultdict

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fusion.locator.attribution import shot_arrivals  # noqa: E402
from fusion.locator.classify import FIREWORKS, GUNFIRE, OTHER, classify  # noqa: E402
from fusion.locator.locate import locate  # noqa: E402
from fusion.locator.sensors import Sensors  # noqa: E402
from simulator import fleet, scenario, score, sources  # noqa: E402

SCENARIOS = ("fireworks_night", "city_exchange", "city_park", "city_house")
# Targets: a fireworks night should raise no gunfire alert but its one scoring artefact (the
# second celebratory burst, one true incident with the first); real gunfire stays gunfire.
TARGET_FALSE_ALERTS = 1
TARGET_ACCURACY = 0.9
TARGET_REAL_RATE = 0.95
CONFIDENCE_BINS = (0.5, 0.7, 0.9, 1.0001)
TRUE_CLASS = {**{k: GUNFIRE for k in sources.GUNFIRE}, "firecrackers": FIREWORKS, "fireworks": FIREWORKS}


def classified(pulses, sensors, temperature_c, history=True):
    pulses = [dict(p, id=p.get("id", i)) for i, p in enumerate(pulses)]
    out = []
    for inc in locate(pulses, sensors, temperature_c):
        inc.update(classify(inc, shot_arrivals(inc, pulses, sensors, inc["c_mps"]), sensors,
                            pulses=pulses, **({"recent": out} if history else {})))
        out.append(inc)
    return out


def true_kind(inc, truth) -> str:
    return next(iter(score.classification([inc], truth)["class_by_kind"]))


def run_scenario(name: str):
    scn = scenario.load(name)
    pulses, _ = fleet.pulses(scn)
    sensors = Sensors.from_local({sid: tuple(xyz) for sid, xyz in zip(scn.array.ids, scn.array.xyz)})
    incidents = classified(pulses, sensors, scn.atmosphere.temperature_c)
    truth = scn.truth()
    s = score.score(incidents, truth, scn.array.area_m2(), scn.duration_s)
    calls = [(inc["class"], inc["confidence"], TRUE_CLASS.get(true_kind(inc, truth), OTHER)) for inc in incidents]
    return s, calls


def main() -> None:
    all_calls = []
    for name in SCENARIOS:
        start = time.perf_counter()
        s, calls = run_scenario(name)
        all_calls += calls
        three = np.mean([got == want for got, want in ((c[0], c[2]) for c in calls)]) if calls else float("nan")
        print(f"{name}: {len(calls)} incidents in {time.perf_counter() - start:.0f} s; "
              f"false gunfire alerts {s['false_alerts']} (target <= {TARGET_FALSE_ALERTS} on the fireworks night); "
              f"gunfire-or-not accuracy {s['class_accuracy']:.2f} (target >= {TARGET_ACCURACY}); "
              f"three-class accuracy {three:.2f}; gunfire detected {s['detected']}/{s['incidents']}")
        for kind, got in sorted(s["class_by_kind"].items()):
            print(f"  {kind:>14} -> " + ", ".join(f"{c} {n}" for c, n in sorted(got.items())))
    print("calibration (three classes, all scenarios above): confidence bin, calls, right")
    for lo, hi in zip(CONFIDENCE_BINS, CONFIDENCE_BINS[1:]):
        right = [got == want for got, conf, want in all_calls if lo <= conf < hi]
        rate = f"{np.mean(right):.2f}" if right else "-"
        print(f"  [{lo:.1f}, {min(hi, 1.0):.1f}]: {len(right):4d} calls, right {rate} (target >= {lo:.1f})")
    by_class = defaultdict(list)
    for got, _conf, want in all_calls:
        by_class[got].append(got == want)
    print("  precision by class: " + ", ".join(f"{c} {np.mean(v):.2f} of {len(v)}" for c, v in sorted(by_class.items())))
    real_gunfire()


def real_gunfire() -> None:
    from conftest import pittsburgh_tests
    from pittsburgh_pulses import all_pulses, temperature_c

    tests = pittsburgh_tests()
    if not tests:
        print("Pittsburgh data absent: real gunfire rate not measured")
        return
    classes = []
    for test in tests:
        positions, pulses = all_pulses(test)
        classes += [inc["class"] for inc in classified(pulses, Sensors.from_local(positions), temperature_c(test))]
    print(f"real Pittsburgh gunfire (FP1-FP3): {sum(c == GUNFIRE for c in classes)}/{len(classes)} classed gunfire "
          f"({np.mean([c == GUNFIRE for c in classes]):.2f}, target >= {TARGET_REAL_RATE})")


if __name__ == "__main__":
    main()
