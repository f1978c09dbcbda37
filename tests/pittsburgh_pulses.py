"""Turn one Pittsburgh test folder (TN098 supplement, ShotSpotter Inc., CC BY 4.0) into
locator input: a Sensors CSV and a pulses JSONL, written under a temporary folder.

Nothing of the data is copied into the repository; files go to the caller's tmp_path.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import pathlib

from earwitness.units import NS_PER_S

NS_PER_US = 1_000


def utc_ns(text: str) -> int:
    """ISO 8601 UTC ("2018-12-19T00:49:27.467Z") -> integer ns since the epoch, exactly."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    whole = when.replace(microsecond=0)
    return int(whole.timestamp()) * NS_PER_S + when.microsecond * NS_PER_US


def _name(test: pathlib.Path) -> str:
    return test.name


def load(test: pathlib.Path, name: str) -> object:
    """A JSON file of the test folder by suffix, e.g. ``load(test, "survey")``."""
    return json.loads((test / f"{_name(test)}.{name}.json").read_text())


def survey(test: pathlib.Path) -> tuple[tuple[float, float, float], int]:
    """Surveyed firing position (x, y, z) and the number of rounds fired."""
    s = load(test, "survey")
    loc = s["survey_location"]
    return (loc["x"], loc["y"], loc["z"]), int(s["num_rounds"])


def temperature_c(test: pathlib.Path) -> float:
    return float(load(test, "weather")["temperature"])


def speed_of_sound(temperature_c: float) -> float:
    """The publisher's c = 20.03 sqrt(T + 273.15) m/s (TN098 eq. 8), written out apart from the locator's."""
    return 20.03 * math.sqrt(temperature_c + 273.15)


def write_sensors_csv(positions: dict[str, tuple[float, float, float]], path: pathlib.Path) -> pathlib.Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sensor", "x", "y", "z"])
        for sid, (x, y, z) in sorted(positions.items()):
            writer.writerow([sid, repr(x), repr(y), repr(z)])
    return path


def all_pulses(test: pathlib.Path) -> tuple[dict[str, tuple[float, float, float]], list[dict]]:
    """Every pulse the commercial sensors reported, as locator pulses, and sensor positions."""
    positions: dict[str, tuple[float, float, float]] = {}
    pulses = []
    for p in load(test, "allpulses"):
        sid = p["serial_number"]
        loc = p["location"]
        positions.setdefault(sid, (loc["x"], loc["y"], loc["z"]))
        pulses.append({"sensor": sid, "t_ns": utc_ns(p["arrival_time_utc"]),
                       "snr_db": p["signal_to_noise_dB"], "spl_db": p["power_dB_SPL"],
                       "id": p["pulse_uuid"]})
    return positions, pulses


def commercial_shots(test: pathlib.Path) -> list[list[dict]]:
    """The commercial system's own grouping (nlos-tuples.json): per shot, its pulses."""
    _, pulses = all_pulses(test)
    by_id = {p["id"]: p for p in pulses}
    return [[by_id[u] for u in shot["pulse_uuids"] if u in by_id] for shot in load(test, "nlos-tuples")]


def write_inputs(test: pathlib.Path, out_dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``sensors.csv`` and ``pulses.jsonl`` for ``test`` into ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    positions, pulses = all_pulses(test)
    sensors = write_sensors_csv(positions, out_dir / "sensors.csv")
    pulses_path = out_dir / "pulses.jsonl"
    pulses_path.write_text("".join(json.dumps(p) + "\n" for p in pulses))
    return sensors, pulses_path
