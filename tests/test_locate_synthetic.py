"""The locator against synthetic shots with known truth (seeded): bursts, two shooters,
non-line-of-sight delays and echoes, calibration of err_m, unknown temperature, geometries."""
from __future__ import annotations

import math

import numpy as np
import pytest

import synthetic_shots as syn
from fusion.locator.locate import locate
from fusion.locator.multilaterate import Geometry, mlg, speed_of_sound

RPM_950_S = 60.0 / 950.0


def dist2d(shot: dict, truth) -> float:
    return math.hypot(shot["x"] - truth[0], shot["y"] - truth[1])


def only_incident(incidents: list[dict]) -> dict:
    assert len(incidents) == 1, [i["rounds"] for i in incidents]
    return incidents[0]


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_closed_form_is_exact_on_noise_free_arrivals(mode):
    rng = np.random.default_rng(1)
    sensors = rng.uniform(-400, 400, (8, 3))
    sensors[:, 2] = rng.uniform(0, 120, 8)
    source = np.array([37.0, -52.0, 40.0])
    c = speed_of_sound(10.0)
    geometry = Geometry(mode)
    src = source[: geometry.dims]
    t = 2.5 + np.linalg.norm(geometry.sensor_coords(sensors) - src, axis=1) / c
    position, t0 = mlg(geometry.sensor_coords(sensors), t, c)
    assert np.allclose(position, src, atol=1e-6)
    assert t0 == pytest.approx(2.5, abs=1e-9)


def test_closed_form_2p5d_holds_the_source_height():
    rng = np.random.default_rng(2)
    sensors = rng.uniform(-400, 400, (8, 3))
    sensors[:, 2] = rng.uniform(0, 60, 8)
    source = np.array([-20.0, 75.0, 3.0])
    c = speed_of_sound(0.0)
    t = np.linalg.norm(sensors - source, axis=1) / c
    position, t0 = Geometry("2.5d", z_m=3.0).closed_form(sensors, t, c)
    assert np.allclose(position, source[:2], atol=1e-6)
    assert t0 == pytest.approx(0.0, abs=1e-9)


def test_burst_at_950_rounds_per_minute_counted_located_in_order():
    rng = np.random.default_rng(950)
    sensors = syn.ring_array(rng, n=10)
    source = (30.0, -40.0, 1.5)
    truth = [(*source[:3], 1.0 + k * RPM_950_S) for k in range(6)]
    scene = syn.render(sensors, truth, rng, temperature_c=5.0, echoes_per_sensor=2, noise_pulses=10)
    incident = only_incident(locate(scene.pulses, sensors, temperature_c=5.0))
    assert incident["rounds"] == 6 and incident["shooters"] == 1
    times = [syn.shot_time_s(s) for s in incident["shots"]]
    assert times == sorted(times)
    assert np.allclose(times, [t[3] for t in truth], atol=2e-3)
    assert max(dist2d(s, source) for s in incident["shots"]) <= 3.0


def test_two_shooters_exchanging_fire_are_separated_and_ordered_by_discharge_time():
    rng = np.random.default_rng(20)
    sensors = syn.ring_array(rng, n=12, radius_m=600.0)
    a, b = (-15.0, 0.0, 1.5), (15.0, 10.0, 1.5)  # about 32 m apart
    fire = [(a, 0.00), (b, 0.08), (a, 0.30), (b, 0.36), (b, 0.60), (a, 0.66)]
    truth = [(*p, 2.0 + t) for p, t in fire]
    scene = syn.render(sensors, truth, rng, temperature_c=20.0, echoes_per_sensor=3)
    # The premise: some sensor hears B's second shot before A's earlier shot, or the reverse.
    order_at = {sid: np.argsort([scene.first_arrival_s[(k, sid)] for k in range(len(truth))]).tolist()
                for sid in sensors}
    assert len({tuple(o) for o in order_at.values()}) > 1
    incident = only_incident(locate(scene.pulses, sensors, temperature_c=20.0))
    assert incident["rounds"] == 6 and incident["shooters"] == 2
    shots = incident["shots"]
    assert [s["shooter"] for s in shots] == [0, 1, 0, 1, 1, 0]
    assert np.allclose([syn.shot_time_s(s) for s in shots], [t[3] for t in truth], atol=2e-3)
    for shot, (x, y, *_rest) in zip(shots, truth):
        assert dist2d(shot, (x, y)) <= 3.0


def test_nlos_delays_and_echoes_do_not_pull_the_location():
    rng = np.random.default_rng(30)
    sensors = syn.ring_array(rng, n=12)
    ids = list(sensors)
    # Four sensors hear only a diffracted or reflected first arrival, 1 to 30 ms late.
    nlos = {ids[1]: 0.001, ids[4]: 0.008, ids[7]: 0.017, ids[10]: 0.030}
    source = (-60.0, 25.0, 1.5)
    truth = [(*source, 1.0), (*source, 1.25), (*source, 1.5)]
    scene = syn.render(sensors, truth, rng, nlos_delay_s=nlos, echoes_per_sensor=2, noise_pulses=15)
    incident = only_incident(locate(scene.pulses, sensors, temperature_c=15.0))
    assert incident["rounds"] == 3
    for shot in incident["shots"]:
        assert dist2d(shot, source) <= 3.0
        # The 30 ms late arrival is beyond any consistent set; it is not used.
        assert ids[10] not in shot["sensors"]


def test_err_m_is_calibrated_95_percent_of_true_positions_inside():
    rng = np.random.default_rng(95)
    inside = trials = 0
    for _ in range(150):
        sensors = syn.ring_array(rng, n=int(rng.integers(6, 11)), radius_m=400.0)
        source = (*rng.uniform(-150, 150, 2), 1.5)
        scene = syn.render(sensors, [(*source, 1.0)], rng, sigma_s=float(rng.uniform(2e-4, 2e-3)),
                           echoes_per_sensor=0, noise_pulses=0)
        incidents = locate(scene.pulses, sensors, temperature_c=15.0)
        if len(incidents) != 1:
            continue
        shot = incidents[0]["shots"][0]
        trials += 1
        inside += dist2d(shot, source) <= shot["err_m"]
    coverage = inside / trials
    print(f"\nerr_m calibration: {inside}/{trials} = {coverage:.3f} of true positions within err_m (target 0.95)")
    assert trials >= 145
    # These scenes lack the survey, speed-of-sound and NLOS errors of real data that the shipped
    # budget (calibrated on Pittsburgh) allows for: it must not be overconfident here; its
    # calibration where a scene's errors are those it states is in tests/test_locate_uncertainty.py.
    assert coverage >= 0.95


def test_speed_of_sound_estimated_when_temperature_unknown():
    rng = np.random.default_rng(7)
    sensors = syn.ring_array(rng, n=12, radius_m=700.0)
    source = (80.0, 60.0, 1.5)
    truth = [(*source, 1.0 + 0.4 * k) for k in range(3)]
    scene = syn.render(sensors, truth, rng, temperature_c=-12.0, echoes_per_sensor=3)
    incident = only_incident(locate(scene.pulses, sensors))
    assert incident["rounds"] == 3
    assert incident["c_mps"] == pytest.approx(speed_of_sound(-12.0), abs=1.5)
    assert max(dist2d(s, source) for s in incident["shots"]) <= 3.0


def test_shots_far_apart_in_time_are_separate_incidents():
    rng = np.random.default_rng(3)
    sensors = syn.ring_array(rng, n=8)
    truth = [(10.0, 10.0, 1.5, 1.0), (-120.0, 40.0, 1.5, 40.0)]
    scene = syn.render(sensors, truth, rng)
    incidents = locate(scene.pulses, sensors, temperature_c=15.0)
    assert [i["rounds"] for i in incidents] == [1, 1]
    for incident, (x, y, _z, t0) in zip(incidents, truth):
        assert dist2d(incident, (x, y)) <= 3.0
        assert syn.shot_time_s(incident) == pytest.approx(t0, abs=2e-3)


def test_3d_mode_recovers_an_elevated_source_over_a_hilly_array():
    rng = np.random.default_rng(33)
    sensors = {sid: (x, y, float(rng.uniform(0, 150))) for sid, (x, y, _z) in syn.ring_array(rng, n=12).items()}
    source = (20.0, -30.0, 60.0)
    scene = syn.render(sensors, [(*source, 1.0)], rng, sigma_s=2e-4, horizontal=False, echoes_per_sensor=2)
    shot = only_incident(locate(scene.pulses, sensors, temperature_c=15.0, mode="3d"))["shots"][0]
    assert dist2d(shot, source) <= 3.0
    assert shot["z"] == pytest.approx(source[2], abs=15.0)
