"""Synthetic pulses with known truth: arrival times from geometry, seeded noise, echoes, NLOS.

Sound travels in straight lines at c; each sensor reports the first arrival (timing noise
sigma, optionally a non-line-of-sight delay), later echoes, and unrelated noise pulses.
"""
from __future__ import annotations

import csv
import json
import math
import pathlib
from dataclasses import dataclass, field

import numpy as np

from earwitness.units import NS_PER_S

EPOCH_NS = 1_750_000_000 * NS_PER_S  # an arbitrary start, well after 2001


def speed_of_sound(temperature_c: float) -> float:
    """c = 20.03 sqrt(T + 273.15), written out here so the test does not trust the code under test."""
    return 20.03 * math.sqrt(temperature_c + 273.15)


@dataclass
class Scene:
    sensors: dict[str, tuple[float, float, float]]
    shots: list[tuple[float, float, float, float]]  # x, y, z, t0 (s after EPOCH_NS)
    pulses: list[dict] = field(default_factory=list)
    first_arrival_s: dict = field(default_factory=dict)  # (shot, sensor) -> arrival (s)


def ring_array(rng: np.random.Generator, n: int = 10, radius_m: float = 500.0) -> dict[str, tuple[float, float, float]]:
    """Sensors scattered around a circle (rooftops: z 5-30 m), as a city array surrounds a shooter."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius_m * rng.uniform(0.4, 1.0, n)
    return {f"S{i:02d}": (float(r[i] * np.cos(a)), float(r[i] * np.sin(a)), float(rng.uniform(5, 30)))
            for i, a in enumerate(angles)}


# The scene's knobs are keyword-only, each with a default: a settings object would only rename them.
def render(sensors, shots, rng: np.random.Generator, *, temperature_c: float = 15.0, sigma_s: float = 5e-4,  # noqa: PLR0913
           echoes_per_sensor: int = 3, noise_pulses: int = 5, nlos_delay_s: dict | None = None,
           missing: set | None = None, horizontal: bool = True) -> Scene:
    """Pulses of ``shots`` as the sensors would report them, shuffled.

    ``nlos_delay_s`` maps sensor -> extra delay of its first arrival; ``missing`` holds
    (shot index, sensor) pairs that hear nothing. Distances are horizontal when
    ``horizontal`` (the 2D model), else 3D.
    """
    c = speed_of_sound(temperature_c)
    scene = Scene(dict(sensors), list(shots))
    nlos_delay_s = nlos_delay_s or {}
    missing = missing or set()
    t_end = max(s[3] for s in shots) + 3.0
    for k, (x, y, z, t0) in enumerate(shots):
        for sid, (sx, sy, sz) in sensors.items():
            if (k, sid) in missing:
                continue
            d = math.hypot(x - sx, y - sy) if horizontal else math.dist((x, y, z), (sx, sy, sz))
            t = t0 + d / c + rng.normal(0, sigma_s) + nlos_delay_s.get(sid, 0.0)
            scene.first_arrival_s[(k, sid)] = t
            scene.pulses.append({"sensor": sid, "t_ns": EPOCH_NS + round(t * NS_PER_S)})
            for delay in rng.uniform(0.02, 1.5, echoes_per_sensor):
                scene.pulses.append({"sensor": sid, "t_ns": EPOCH_NS + round((t + delay) * NS_PER_S)})
    ids = list(sensors)
    for _ in range(noise_pulses):
        scene.pulses.append({"sensor": ids[rng.integers(len(ids))],
                             "t_ns": EPOCH_NS + round(rng.uniform(-1.0, t_end) * NS_PER_S)})
    order = rng.permutation(len(scene.pulses))
    scene.pulses = [scene.pulses[i] for i in order]
    return scene


def write(scene: Scene, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Sensors CSV (local frame) and pulses JSONL for ``scene``."""
    folder.mkdir(parents=True, exist_ok=True)
    sensors_path = folder / "sensors.csv"
    with open(sensors_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sensor", "x", "y", "z"])
        for sid, xyz in scene.sensors.items():
            w.writerow([sid, *xyz])
    pulses_path = folder / "pulses.jsonl"
    pulses_path.write_text("".join(json.dumps(p) + "\n" for p in scene.pulses))
    return sensors_path, pulses_path


def shot_time_s(shot: dict) -> float:
    """A located shot's discharge time in seconds after EPOCH_NS."""
    return (shot["t_ns"] - EPOCH_NS) / NS_PER_S
