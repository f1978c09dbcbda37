"""Read one Pittsburgh 2018 test folder (ShotSpotter, CC BY 4.0) into the project's contracts.

Used by the fusion tests: pulses per the Pulses contract (``sensor``, ``t_ns``, ``snr_db``,
``spl_db``), sensor positions in the data's local frame, the survey, temperature and the WAVs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib

NS_PER_S = 1_000_000_000


def iso_to_ns(text: str) -> int:
    """ISO 8601 UTC with up to microseconds -> integer ns, without going through a float."""
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    whole = stamp.replace(microsecond=0)
    return int(whole.timestamp()) * NS_PER_S + stamp.microsecond * 1000


@dataclasses.dataclass
class PittsburghTest:
    name: str
    pulses: list[dict]
    sensors: dict[str, dict]
    survey: dict
    rounds: int
    temperature_c: float
    wavs: list[tuple[str, pathlib.Path, int]]   # (sensor, path, t_ns of the first sample)


def load(folder: pathlib.Path) -> PittsburghTest:
    folder = pathlib.Path(folder)
    stem = folder.name
    raw = json.loads((folder / f"{stem}.allpulses.json").read_text())
    pulses, sensors = [], {}
    for p in raw:
        loc = p["location"]
        sensors[p["serial_number"]] = {"x": loc["x"], "y": loc["y"], "z": loc["z"]}
        pulses.append({"sensor": p["serial_number"], "t_ns": iso_to_ns(p["arrival_time_utc"]),
                       "snr_db": p["signal_to_noise_dB"], "spl_db": p["power_dB_SPL"], "timing": "file"})
    pulses.sort(key=lambda p: p["t_ns"])
    wavs = []
    for meta_path in sorted(folder.glob(f"{stem}.audio.*.json")):
        meta = json.loads(meta_path.read_text())
        loc = meta["location"]
        sensors.setdefault(meta["serial_number"], {"x": loc["x"], "y": loc["y"], "z": loc["z"]})
        wavs.append((meta["serial_number"], meta_path.with_suffix(".wav"), iso_to_ns(meta["timestamp"])))
    survey = json.loads((folder / f"{stem}.survey.json").read_text())
    weather = json.loads((folder / f"{stem}.weather.json").read_text())
    return PittsburghTest(name=f"{folder.parent.name}/{stem}", pulses=pulses, sensors=sensors,
                          survey=survey["survey_location"], rounds=int(survey["num_rounds"]),
                          temperature_c=float(weather["temperature"]), wavs=wavs)
