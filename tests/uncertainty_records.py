"""Located shots with known truth, for calibrating and scoring the error budget (fusion.locator.calibration).

Each shot the locator outputs is kept with what its final fit's error budget needs (the
:class:`fusion.locator.uncertainty.Arrivals` the locator built for it, observed as the real
locator runs) and its true horizontal error:

- Pittsburgh FP1-FP3 (TN098 supplement, ShotSpotter Inc., CC BY 4.0): every reported pulse of
  a test in, shots within WITHIN_M of the surveyed firing position scored against it, grouped
  by firing position for leave-one-position-out; or the audio path (`detect` on the test's WAVs),
  every shot put out;
- simulated shots: the simulator's fleet pulses of a library scenario (sensors where their GPS
  says, i.e. with survey error; wind, NLOS, echoes) or tests/synthetic_shots.py scenes, each
  shot matched to the true discharge nearest in time within WITHIN_M.
"""
from __future__ import annotations

import contextlib
import logging
import math

import numpy as np

import pittsburgh_pulses as pp
from earwitness.units import NS_PER_MS, NS_PER_S
from fusion.locator import locate as locate_module
from fusion.locator.calibration import Record
from fusion.locator.sensors import Sensors

WITHIN_M = 25.0
MATCH_S = 0.1            # a located shot's discharge time against the true one
POSITION_TOL_M = 1e-3    # a recorded fit's shot against the output shot (positions go out to the mm)


@contextlib.contextmanager
def recording():
    """While open, every final fit's (positions, Arrivals) the locator builds is appended to the list yielded."""
    seen = []
    real = locate_module.arrivals_of_fit

    def observe(fit, *args, **kwargs):
        arr = real(fit, *args, **kwargs)
        seen.append((np.asarray(fit.positions, dtype=float)[:, :2].copy(), arr))
        return arr

    locate_module.arrivals_of_fit = observe
    try:
        yield seen
    finally:
        locate_module.arrivals_of_fit = real


def _find(seen, xy) -> tuple | None:
    """The (Arrivals, shot index) of a located shot at ``xy``."""
    for positions, arr in seen:
        d = np.hypot(*(positions - xy).T)
        if d.min() <= POSITION_TOL_M:
            return arr, int(np.argmin(d))
    return None


def locate_recorded(pulses, sensors, temperature_c, **told) -> list[tuple[dict, Record | None]]:
    """Every output shot (local frame) with its record (true error left NaN for the caller); ``told``:
    locate's wind_m_s and frame_m."""
    logging.getLogger("fusion").setLevel(logging.ERROR)
    with recording() as seen:
        incidents = locate_module.locate(pulses, sensors, temperature_c, **told)
    out = []
    for inc in incidents:
        for shot in inc["shots"]:
            found = _find(seen, np.array([shot["x"], shot["y"]]))
            out.append((shot, Record(found[0], found[1], math.nan) if found else None))
    return out


def pittsburgh_error_vectors(tests, with_temperature: bool = True) -> dict[str, list[tuple[np.ndarray, Record]]]:
    """Per firing position (FP1, ...) each shot within WITHIN_M of the survey: its error vector
    (located minus surveyed, east and north, m) and its record."""
    by_position: dict[str, list[tuple[np.ndarray, Record]]] = {}
    for test in tests:
        positions, pulses = pp.all_pulses(test)
        survey, _ = pp.survey(test)
        temperature = pp.temperature_c(test) if with_temperature else None
        for shot, rec in locate_recorded(pulses, Sensors.from_local(positions), temperature):
            vec = np.array([shot["x"] - survey[0], shot["y"] - survey[1]])
            err = float(np.hypot(*vec))
            if rec is not None and err <= WITHIN_M:
                by_position.setdefault(test.parent.name, []).append((vec, Record(rec.arrivals, rec.shot, err)))
    return by_position


def pittsburgh_records(tests, with_temperature: bool = True) -> dict[str, list[Record]]:
    """Per firing position (FP1, ...) the records of its shots within WITHIN_M of the survey."""
    return {fp: [rec for _, rec in shots] for fp, shots in pittsburgh_error_vectors(tests, with_temperature).items()}


def pittsburgh_audio_records(tests, workdir) -> dict[str, list[Record]]:
    """Per firing position the records of every shot located through the audio path (`earwitness detect`
    on the test's 4-5 WAVs, then the locator), each scored against the survey however far off, as the
    accuracy scoring counts a misplaced shot (tests/locator_scoring.py)."""
    import locator_lopo
    from fusion.locator.pulses import read_pulses
    from fusion.locator.sensors import read_sensors

    by_position: dict[str, list[Record]] = {}
    for test in tests:
        sensors_csv, pulses_jsonl = locator_lopo.detect_inputs(test, workdir / test.name / "audio")
        sensors = read_sensors(sensors_csv)
        survey, _ = pp.survey(test)
        for shot, rec in locate_recorded(read_pulses(pulses_jsonl, sensors), sensors, pp.temperature_c(test)):
            if rec is not None:
                err = math.hypot(shot["x"] - survey[0], shot["y"] - survey[1])
                by_position.setdefault(test.parent.name, []).append(Record(rec.arrivals, rec.shot, err))
    return by_position


def match_truth(shots_and_records, truth: list[dict]) -> list[Record]:
    """Records of the located shots matched to a true discharge (``t_ns``, ``x``, ``y``): nearest in time
    within MATCH_S and WITHIN_M."""
    out = []
    t_true = np.array([t["t_ns"] for t in truth], dtype=np.int64)
    for shot, rec in shots_and_records:
        if rec is None:
            continue
        dt = np.abs(t_true - int(shot["t_ns"])) / NS_PER_S
        best = [i for i in np.argsort(dt) if dt[i] <= MATCH_S]
        for i in best:
            err = math.hypot(shot["x"] - truth[i]["x"], shot["y"] - truth[i]["y"])
            if err <= WITHIN_M:
                out.append(Record(rec.arrivals, rec.shot, err))
                break
    return out


def fleet_records(name: str, told: bool = False, exact: bool = False, readings: int = 1) -> list[Record]:
    """Records of a library scenario's fleet pulses, located with the sensors where their GPS puts them;
    ``told``: told the scenario's wind as the live run tells it (simulator.live.wind_reading: the wind
    plus a seeded reading error, ``readings`` of them one after another; ``exact``: without it), frame 0."""
    return [r for group in fleet_records_by_reading(name, told, exact, readings) for r in group]


def fleet_sensors(scn) -> Sensors:
    """The scenario's sensors where their GPS puts them (as its nodes report themselves)."""
    surveyed = scn.array.xyz + np.array([m.gps_offset_m for m in scn.sensor_models()])
    return Sensors.from_local({sid: tuple(map(float, xyz)) for sid, xyz in zip(scn.array.ids, surveyed)})


def fleet_records_by_reading(name: str, told: bool = False, exact: bool = False, readings: int = 1) -> list[list[Record]]:
    """:func:`fleet_records` kept apart by reading: each list shares one reading's error (one draw of it)."""
    from simulator import fleet, live, scenario

    scn = scenario.load(name)
    pulses, _ = fleet.pulses(scn)
    sensors = fleet_sensors(scn)
    truth = [t for t in scn.truth() if t["gunfire"]]
    sd_m_s = 0.0 if exact else live.WEATHER_READING_SD_M_S
    out = []
    for reading in range(readings if told else 1):
        kwargs = {"wind_m_s": tuple(live.wind_reading(scn, sd_m_s, reading)), "frame_m": 0.0} if told else {}
        out.append(match_truth(locate_recorded(pulses, sensors, scn.atmosphere.temperature_c, **kwargs), truth))
    return out


def pittsburgh_like_records(tests, n: int, seed: int) -> list[Record]:
    """Records of every shot put out on ``n`` Pittsburgh-like scenes (tests/pittsburgh_like.py), each
    scored against its scene's source (a misplaced shot too, as the accuracy scoring counts it)."""
    import pittsburgh_like as pl

    out = []
    for sc in pl.scenes(tests, n, seed=seed):
        sensors = Sensors.from_local(sc.sensors)
        for shot, rec in locate_recorded(sc.pulses, sensors, sc.temperature_told_c):
            if rec is not None:
                out.append(Record(rec.arrivals, rec.shot, math.hypot(shot["x"] - sc.source_m[0],
                                                                     shot["y"] - sc.source_m[1])))
    return out


def shot_evidence(rec: Record) -> dict:
    """What a located shot's own fit shows of itself: ``sensors_n`` (arrivals it rests on),
    ``residual_rms_ms`` and ``off_centre`` (the source's distance from the centroid of its sensors
    over their median range: 0 in the middle of the array, about 1 at its edge)."""
    arr = rec.arrivals
    mine = arr.shot == rec.shot
    range_m = arr.travel_s[mine] * arr.c_m_s
    sensors_xy = arr.toward_xy[mine] * range_m[:, None]   # relative to the source
    return {"sensors_n": int(mine.sum()),
            "residual_rms_ms": float(np.sqrt(np.mean(arr.residual_s[mine] ** 2)) * NS_PER_S / NS_PER_MS),
            "off_centre": float(np.hypot(*sensors_xy.mean(axis=0)) / np.median(range_m))}
