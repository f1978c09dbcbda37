"""A told wind: the fit models it along each path (c + w.u), err_m states it as told, and the frame term is settable;
`earwitness locate --wind/--frame-m`, the fusion server's wind_mps/wind_from_deg/frame_m, the live run's weather."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from earwitness.cli import main
from fusion.locator.locate import locate
from fusion.locator.multilaterate import Geometry, fit_shots
from fusion.locator.uncertainty import BUDGET, FRAME_TYPICAL_M, arrivals_of_fit, shot_uncertainties
from fusion.locator.wind import travel_gradient, travel_s, wind_east_north
from simulator.propagation import Atmosphere

T_C = 15.0
WIND = (3.0, 240.0)            # the simulator's city scenarios: 3 m/s from the WSW
SOURCE = np.array([40.0, -60.0, 0.0])
ROUNDS = 3
ROUND_GAP_NS = 200_000_000
PICK_SD_S = 2e-4


def _sensors(seed: int = 1) -> dict:
    """Eight sensors 450-600 m around the origin, on the ground."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0.0, 2.0 * np.pi, 9)[:-1] + 0.3
    r = 450.0 + 150.0 * rng.random(8)
    return {f"s{i}": (float(r[i] * np.cos(a)), float(r[i] * np.sin(a)), 0.0) for i, a in enumerate(angles)}


def _pulses_in_wind(sensors: dict, seed: int = 2) -> list[dict]:
    """A burst of ROUNDS rounds at SOURCE, heard through the simulator's propagation model in WIND."""
    rng = np.random.default_rng(seed)
    air = Atmosphere(temperature_c=T_C, wind_mps=WIND[0], wind_from_deg=WIND[1])
    xyz = np.array(list(sensors.values()))
    pulses = []
    for k in range(ROUNDS):
        travel, _ = air.travel_time_s(SOURCE, xyz)
        t_ns = 10**9 + k * ROUND_GAP_NS + np.round((travel + rng.normal(0.0, PICK_SD_S, len(xyz))) * 1e9).astype(np.int64)
        pulses += [{"sensor": sid, "t_ns": int(t)} for sid, t in zip(sensors, t_ns)]
    return pulses


def _errors(incidents: list[dict]) -> list[tuple[float, float]]:
    """(true error, err_m) of every shot."""
    return [(math.hypot(s["x"] - SOURCE[0], s["y"] - SOURCE[1]), s["err_m"]) for inc in incidents for s in inc["shots"]]


@pytest.mark.parametrize("mode, dims", [("2d", 2), ("3d", 3), ("2.5d", 2)])
def test_travel_gradient_is_the_exact_derivative(mode, dims):
    rng = np.random.default_rng(3)
    coords = rng.uniform(-500.0, 500.0, (6, 2 if mode == "2d" else 3))
    source = np.array([30.0, -20.0, 4.0])[:coords.shape[1]]
    wind, c, h = np.array(wind_east_north(*WIND)), 340.0, 1e-4

    def t(p, speed=c):
        diff = p - coords
        return travel_s(diff, np.linalg.norm(diff, axis=1), speed, wind)

    diff = source - coords
    by_pos, by_c = travel_gradient(diff, np.linalg.norm(diff, axis=1), c, wind, dims)
    for j in range(dims):
        step = np.zeros(len(source))
        step[j] = h
        assert np.allclose(by_pos[:, j], (t(source + step) - t(source - step)) / (2 * h), rtol=1e-6, atol=1e-12)
    assert np.allclose(by_c, (t(source, c + h) - t(source, c - h)) / (2 * h), rtol=1e-6)


def test_a_shot_in_wind_is_located_closer_told_and_its_err_m_covers_it():
    """Untold, the burst is placed ~4.6 m downwind (every round alike, nothing in the residuals); told, within cm."""
    sensors = _sensors()
    pulses = _pulses_in_wind(sensors)
    untold = _errors(locate(pulses, sensors, T_C))
    told = _errors(locate(pulses, sensors, T_C, wind_m_s=wind_east_north(*WIND), frame_m=0.0))
    assert len(told) == len(untold) == ROUNDS
    assert max(e for e, _ in told) < 0.5 < 3.0 < min(e for e, _ in untold)
    assert all(e <= r for e, r in told)
    # Untold and without the frame's floor the radius misses the wind's offset: the frame alone covered it.
    untold_no_frame = _errors(locate(pulses, sensors, T_C, frame_m=0.0))
    assert all(e > r for e, r in untold_no_frame)


def test_no_wind_told_is_still_air_and_a_calm_told_moves_nothing():
    """Default: still air. A told calm (0, 0) is the same model: the same positions, a narrower err_m."""
    sensors = _sensors()
    pulses = _pulses_in_wind(sensors)
    still = locate(pulses, sensors, T_C)
    calm = locate(pulses, sensors, T_C, wind_m_s=(0.0, 0.0))
    for a, b in zip(still[0]["shots"], calm[0]["shots"]):
        assert math.hypot(a["x"] - b["x"], a["y"] - b["y"]) < 1e-6
        assert b["err_m"] < a["err_m"]   # the wind's sd: TOLD_WIND_SD_M_S against WIND_SD_M_S


def test_frame_m_sets_the_floor_and_is_checked():
    sensors = _sensors()
    pulses = _pulses_in_wind(sensors)
    default = locate(pulses, sensors, T_C)[0]["shots"][0]["err_m"]
    assert locate(pulses, sensors, T_C, frame_m=FRAME_TYPICAL_M)[0]["shots"][0]["err_m"] == default
    assert locate(pulses, sensors, T_C, frame_m=0.0)[0]["shots"][0]["err_m"] < default - 1.0
    assert locate(pulses, sensors, T_C, frame_m=10.0)[0]["shots"][0]["err_m"] > default + 5.0
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="frame_m"):
            locate(pulses, sensors, T_C, frame_m=bad)
    with pytest.raises(ValueError, match="wind"):
        locate(pulses, sensors, T_C, wind_m_s=(math.nan, 0.0))


def test_the_budget_jacobian_is_the_fits_own_in_wind():
    """arrivals_of_fit with the fit's wind: its Jacobian is the one the fit converged with (the err_m of a told
    fit does not depend on how far the start was)."""
    sensors = np.array(list(_sensors().values()))
    air = Atmosphere(temperature_c=T_C, wind_mps=WIND[0], wind_from_deg=WIND[1])
    travel, _ = air.travel_time_s(SOURCE, sensors)
    group = (sensors, travel, np.full(len(sensors), 1e-3))
    wind = wind_east_north(*WIND)
    fit = fit_shots([group], air.c_mps, Geometry("2d"), [(SOURCE[:2] + 20.0, 0.0)], wind_m_s=wind)
    assert np.hypot(*(fit.positions[0] - SOURCE[:2])) < 1e-3
    arr = arrivals_of_fit(fit, [group], [np.full(len(sensors), np.nan)], Geometry("2d"), False, wind_m_s=wind)
    diff = fit.positions[0] - sensors[:, :2]
    by_pos, _ = travel_gradient(diff, np.linalg.norm(diff, axis=1), fit.c, np.array(wind), 2)
    assert np.allclose(arr.jac_s[:, :2], by_pos) and np.allclose(arr.travel_s, travel, atol=1e-9)
    assert math.isfinite(shot_uncertainties(arr)[0]["err_m"])


def _write(tmp_path, sensors: dict, pulses: list[dict]):
    csv = tmp_path / "sensors.csv"
    csv.write_text("sensor,x,y,z\n" + "".join(f"{k},{x},{y},{z}\n" for k, (x, y, z) in sensors.items()))
    jsonl = tmp_path / "pulses.jsonl"
    jsonl.write_text("".join(json.dumps(p) + "\n" for p in pulses))
    return csv, jsonl


def test_cli_wind_and_frame(tmp_path, capsys):
    sensors = _sensors()
    csv, jsonl = _write(tmp_path, sensors, _pulses_in_wind(sensors))
    runs = {}
    for label, extra in (("untold", []), ("told", ["--wind", *map(str, WIND), "--frame-m", "0"])):
        assert main(["locate", str(jsonl), "--sensors", str(csv), "--temperature-c", str(T_C), *extra]) == 0
        runs[label] = _errors([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    assert max(e for e, _ in runs["told"]) < 0.5 < 3.0 < min(e for e, _ in runs["untold"])
    assert all(e <= r for e, r in runs["told"])


@pytest.mark.parametrize("args, message", [
    (["--wind", "-1", "240"], "--wind: wind speed must be 0 to 40 m/s"),
    (["--wind", "nan", "240"], "--wind: wind speed must be"),
    (["--wind", "3", "400"], "--wind: wind direction must be a compass bearing 0 to 360"),
    (["--wind", "3", "-10"], "--wind: wind direction must be"),
    (["--wind", "3", "nan"], "--wind: wind direction must be"),
    (["--frame-m", "-1"], "--frame-m must be a distance >= 0 metres"),
    (["--frame-m", "nan"], "--frame-m must be a distance >= 0 metres"),
])
def test_cli_bad_wind_or_frame_is_one_line(tmp_path, capsys, args, message):
    sensors = _sensors()
    csv, jsonl = _write(tmp_path, sensors, _pulses_in_wind(sensors))
    assert main(["locate", str(jsonl), "--sensors", str(csv), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("earwitness locate: error: ") and message in err[0], err


BASE = 'site = "s"\nbroker = "mqtt://127.0.0.1:1883"\nregistry = "nodes.toml"\n'


@pytest.fixture
def registry(tmp_path):
    from fusion.server.registry import write_registry

    return write_registry(tmp_path / "nodes.toml", {f"n{i}": (f"{i:02x}" * 32, {"x": x, "y": y, "z": z})
                                                    for i, (x, y, z) in enumerate(_sensors().values())})


@pytest.mark.parametrize("text, message", [
    ("wind_mps = 3.0\n", "wind_mps and wind_from_deg go together"),
    ("wind_from_deg = 240.0\n", "wind_mps and wind_from_deg go together"),
    ("wind_mps = -1.0\nwind_from_deg = 240.0\n", "wind speed must be 0 to 40 m/s"),
    ("wind_mps = nan\nwind_from_deg = 240.0\n", "wind speed must be"),
    ("wind_mps = 3.0\nwind_from_deg = 361\n", "wind direction must be a compass bearing"),
    ('wind_mps = "calm"\nwind_from_deg = 240.0\n', "wind_mps must be a int or float"),
    ("frame_m = -0.5\n", "frame_m must be a distance >= 0 metres"),
    ("frame_m = inf\n", "frame_m must be a distance >= 0 metres"),
])
def test_fusion_bad_wind_or_frame_is_one_line(tmp_path, registry, capsys, text, message):
    config = tmp_path / "fusion.toml"
    config.write_text(BASE + text)
    assert main(["fusion", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("earwitness fusion: error: ") and message in err[0], err


def test_fusion_settings_reach_the_locator(tmp_path, registry):
    """wind_mps, wind_from_deg and frame_m load and reach the tracker's locator; absent: still air, 2.5 m."""
    from fusion.cli_fusion import load_config
    from fusion.server.service import FusionService

    config = tmp_path / "fusion.toml"
    config.write_text(BASE + "wind_mps = 3\nwind_from_deg = 240.0\nframe_m = 0\n")
    loaded = load_config(config)
    assert (loaded.wind_mps, loaded.wind_from_deg, loaded.frame_m) == (3, 240.0, 0)
    service = FusionService(loaded, lambda client_id, subscribed: object())
    try:
        assert np.allclose(service.tracker.fix.wind_m_s, wind_east_north(*WIND)) and service.tracker.fix.frame_m == 0
    finally:
        service.store.close()
    config.write_text(BASE)
    service = FusionService(load_config(config), lambda client_id, subscribed: object())
    try:
        assert service.tracker.fix.wind_m_s is None and service.tracker.fix.frame_m == FRAME_TYPICAL_M
    finally:
        service.store.close()


def test_the_live_run_tells_fusion_a_weather_reading_and_frame_0():
    """The wind told is the scenario's plus a reading error drawn from its seed: the same seed the same
    reading, another seed another, within a few sd of the wind the simulator blows; 0 sd tells it exactly."""
    from simulator import live, scenario

    scn = scenario.load("city_demo")
    told = live.weather_settings(scn)
    assert told.keys() == {"temperature_c", "wind_mps", "wind_from_deg", "frame_m"}
    assert told["temperature_c"] == scn.atmosphere.temperature_c and told["frame_m"] == 0.0
    assert live.weather_settings(scn, told=False) == {"frame_m": 0.0}
    assert live.weather_settings(scenario.load("city_demo")) == told
    blown = scn.atmosphere.wind_vector()
    reading_error = np.subtract(wind_east_north(told["wind_mps"], told["wind_from_deg"]), blown)
    assert 0.0 < np.hypot(*reading_error) < 4 * live.WEATHER_READING_SD_M_S
    assert np.allclose(wind_east_north(told["wind_mps"], told["wind_from_deg"]), live.wind_reading(scn))
    exact = live.weather_settings(scn, reading_sd_m_s=0.0)
    assert np.allclose(wind_east_north(exact["wind_mps"], exact["wind_from_deg"]), blown)
    readings = {live.weather_settings(dataclasses.replace(scn, seed=seed))["wind_mps"] for seed in range(5)}
    assert len(readings) == 5


def test_the_reports_residuals_are_in_the_wind_the_fit_was_told():
    """The forensic report's per-sensor residuals (fusion.report_fit) use the revision's told wind: near the
    picks' own scatter in it, the wind's lags (ms) without it."""
    from fusion.report_fit import residuals

    sensors = _sensors()
    pulses = _pulses_in_wind(sensors)
    wind = wind_east_north(*WIND)
    (incident,) = locate(pulses, sensors, T_C, wind_m_s=wind, frame_m=0.0)
    used = [dict(p, used=True, node=p["sensor"]) for p in pulses]
    meta = {"sensors": {k: {"x": x, "y": y, "z": z} for k, (x, y, z) in sensors.items()}, "mode": "2d",
            "speed_of_sound_m_s": incident["c_mps"]}
    told = [abs(r["residual_ms"]) for r in residuals(incident, used, {**meta, "wind_m_s": list(wind)})]
    still = [abs(r["residual_ms"]) for r in residuals(incident, used, meta)]
    assert len(told) == len(still) == ROUNDS * len(sensors)
    assert max(told) < 1.5 < 5.0 < max(still)


def test_a_misread_wind_moves_the_fix_as_the_budget_wind_term_states():
    """The told wind's term is the reading's error per axis (simulator.live.wind_reading draws it so): a
    reading off by e (m/s, east and north) moves the fit by S e, and the term's covariance, per unit sd,
    is S S^T. Checked against the fits themselves, so a term stated as a magnitude (sqrt 2 off per axis)
    or with the wrong lag fails."""
    sensors = _sensors()
    xyz = np.array(list(sensors.values()))
    wind = np.array(wind_east_north(*WIND))
    air = Atmosphere(temperature_c=T_C, wind_mps=WIND[0], wind_from_deg=WIND[1])
    t_s, _ = air.travel_time_s(SOURCE, xyz)
    group = [(xyz, t_s, np.full(len(xyz), PICK_SD_S))]
    geometry, c = Geometry("2d"), air.c_mps

    def fitted_xy(told_m_s):
        fit = fit_shots(group, c, geometry, [(SOURCE[:2] + 3.0, -0.01)], wind_m_s=told_m_s)
        return fit, np.asarray(fit.positions[0][:2], dtype=float)

    exact, at_exact = fitted_xy(wind)
    step_m_s = 0.5
    moved = np.column_stack([fitted_xy(wind + step_m_s * axis)[1] - at_exact for axis in np.eye(2)]) / step_m_s
    arr = arrivals_of_fit(exact, group, [np.full(len(xyz), np.nan)], geometry, False, wind)
    no_wind = dataclasses.replace(BUDGET, wind_sd_m_s=0.0, frame_sd_m=0.0)
    unit_wind = dataclasses.replace(no_wind, wind_sd_m_s=1.0)
    per_unit = shot_uncertainties(arr, unit_wind)[0]["cov_m2"] - shot_uncertainties(arr, no_wind)[0]["cov_m2"]
    assert np.abs(moved).max() > 0.5                                   # the misreading matters (~d / c per m/s)
    assert np.allclose(per_unit, moved @ moved.T, rtol=0.05, atol=0.01 * np.abs(per_unit).max())
