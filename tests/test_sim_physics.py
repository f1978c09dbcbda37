"""The simulator's physics where it can be computed by hand: absorption, spreading, arrival
times, wind, the ADC clock, PPS edges, bullet cracks."""
import math

import numpy as np
import pytest
import soundfile as sf

from simulator import propagation, render, scenario, sensors, sources
from simulator.propagation import Arrivals, Atmosphere

RATE = 48000

# ISO 9613-2:1996 Table 2 (computed by ISO 9613-1 at the exact octave midbands), dB/km.
ISO_TABLE = {
    (10.0, 70.0): [0.1, 0.4, 1.0, 1.9, 3.7, 9.7, 32.8, 117.0],
    (20.0, 70.0): [0.1, 0.3, 1.1, 2.8, 5.0, 9.0, 22.9, 76.6],
    (30.0, 70.0): [0.1, 0.3, 1.0, 3.1, 7.4, 12.7, 23.1, 59.3],
    (15.0, 20.0): [0.3, 0.6, 1.2, 2.7, 8.2, 28.2, 88.8, 202.0],
    (15.0, 50.0): [0.1, 0.5, 1.2, 2.2, 4.2, 10.8, 36.2, 129.0],
    (15.0, 80.0): [0.1, 0.3, 1.1, 2.4, 4.1, 8.3, 23.7, 82.8],
}
MIDBANDS_HZ = 1000.0 * 10.0 ** (np.arange(-12, 10, 3) / 10.0)   # 63.1 Hz ... 7943 Hz


@pytest.mark.parametrize("weather", sorted(ISO_TABLE))
def test_absorption_matches_iso_9613_table(weather):
    got = propagation.air_absorption_db_per_m(MIDBANDS_HZ, *weather) * 1000.0
    want = np.array(ISO_TABLE[weather])
    # The table is rounded to 0.1 dB/km (three significant figures above 100).
    assert np.all(np.abs(got - want) <= np.maximum(0.06, 0.006 * want)), (got, want)


def test_absorption_at_1khz_20c_70pct():
    assert propagation.air_absorption_db_per_m(1000.0, 20.0, 70.0) * 1000.0 == pytest.approx(4.9, abs=0.1)


def test_speed_of_sound_and_wind():
    atm = Atmosphere(temperature_c=20.0)
    assert atm.c_mps == pytest.approx(20.03 * math.sqrt(293.15))
    windy = Atmosphere(temperature_c=20.0, wind_mps=10.0, wind_from_deg=270.0)   # blowing towards the east
    t, d = windy.travel_time_s([0, 0, 0], np.array([[1000.0, 0, 0], [-1000.0, 0, 0], [0, 1000.0, 0]]))
    c = windy.c_mps
    assert d == pytest.approx([1000.0] * 3)
    assert t == pytest.approx([1000.0 / (c + 10.0), 1000.0 / (c - 10.0), 1000.0 / c], rel=1e-9)


@pytest.mark.parametrize("dist_m", [10.0, 300.0, 1500.0])
def test_kernel_level_is_spreading_plus_absorption(dist_m):
    atm = Atmosphere(temperature_c=20.0, humidity_pct=70.0)
    arr = Arrivals(np.zeros(1, int), np.array([dist_m / atm.c_mps]), np.array([1.0 / dist_m]),
                   np.array([dist_m]), np.zeros(1), np.zeros(1, int))
    n = 1024
    kern, start = propagation.transfer_kernels(arr, atm, RATE, n)
    spec = np.abs(np.fft.rfft(kern[0]))
    f = np.fft.rfftfreq(n, 1 / RATE)
    for freq in (500.0, 1000.0, 4000.0):
        k = int(np.argmin(np.abs(f - freq)))
        want_db = -20 * math.log10(dist_m) - propagation.air_absorption_db_per_m(f[k], 20.0, 70.0) * dist_m
        assert 20 * math.log10(spec[k]) == pytest.approx(want_db, abs=0.1)
    # Causal (minimum phase): where absorption dominates the fractional delay's sinc tails,
    # next to nothing comes before the arrival (the kernel starts KERNEL_LEAD samples early).
    if dist_m >= 300.0:
        onset = dist_m / atm.c_mps * RATE - start[0]
        energy = kern[0] ** 2
        assert energy[: int(onset) - 2].sum() < 1e-3 * energy.sum()


def test_urban_excess_attenuation_grows_with_distance_to_its_cap():
    atm = Atmosphere()
    rcv = np.array([[400.0, 0.0, 0.0], [5000.0, 0.0, 0.0]])
    plain = propagation.Environment(ground_reflection=0.0, nlos_probability=0.0, excess_db_per_km=0.0)
    city = propagation.Environment(ground_reflection=0.0, nlos_probability=0.0, excess_db_per_km=12.0, excess_max_db=25.0)
    draws = np.zeros((2, 2))
    g0 = propagation.discrete_arrivals([0, 0, 0], rcv, atm, plain, draws).gain
    g1 = propagation.discrete_arrivals([0, 0, 0], rcv, atm, city, draws).gain
    assert 20 * np.log10(g1 / g0) == pytest.approx([-4.8, -25.0])
    assert g0 == pytest.approx(1.0 / rcv[:, 0])


def test_maekawa_loss():
    # N = 2 δ f / c = 1 for δ = 0.1715 m at 1 kHz: 10 log10(23) = 13.6 dB.
    assert propagation.maekawa_loss_db(1000.0, 343.0 / 2000.0, 343.0) == pytest.approx(13.62, abs=0.01)


def _line_scenario(ppm=0.0, drift=0.0, distances=(100.0, 400.0), t_s=3.0, **sensor_extra):
    """One handgun round at the origin, sensors due east on the ground plane's level, no clutter."""
    doc = {
        "start_utc": "2026-01-01T03:00:00Z", "duration_s": 12.0, "seed": 3,
        "atmosphere": {"temperature_c": 15.0, "humidity_pct": 60.0},
        "array": {"layout": "grid", "width_m": 1.0, "height_m": 1.0, "spacing_m": 1.0, "z_m": 1.5},
        "sensors": {"ppm_sd": 0.0, "drift_ppm_per_h_sd": 0.0, "ppm": ppm, "drift_ppm_per_h": drift,
                    "gps_error_m": 0.0, "gps_vertical_error_m": 0.0, **sensor_extra},
        "environment": {"zone": "quiet", "ground_reflection": 0.0, "nlos_probability": 0.0,
                        "walls_per_event": 0, "echo_density_per_s": 0.0, "excess_db_per_km": 0.0},
        "events": [{"t_s": t_s, "kind": "handgun", "x": 0.0, "y": 0.0, "z": 1.5, "level_db": 155.0}],
    }
    scn = scenario.from_dict(doc)
    scn.array.xyz = np.array([[d, 0.0, 1.5] for d in distances])
    scn.array.ids = [f"E{int(d)}" for d in distances]
    return scn


def _onset(x, frac=0.02):
    """First crossing of ``frac`` of the peak, linearly interpolated (sub-sample)."""
    thr = frac * np.max(np.abs(x))
    k = int(np.argmax(np.abs(x) >= thr))
    a, b = abs(x[k - 1]), abs(x[k])
    return k - 1 + (thr - a) / (b - a)


def test_arrival_times_and_levels_at_distance(tmp_path):
    scn = _line_scenario(distances=(30.0, 100.0, 400.0))
    res = render.render(scn, tmp_path, dtype="float", progress=False)
    c = scn.atmosphere.c_mps
    em = scn.emissions(scn.events[0])[0]
    for clip in res["clips"]:
        dist = float(clip["sensor"][1:])
        x, rate = sf.read(tmp_path / clip["file"], dtype="float64")
        assert rate == RATE and x.shape[1] == 2
        t_arrival_ns = scn.start_ns + round((3.0 + dist / c) * 1e9)
        want = (t_arrival_ns - clip["t0_ns"]) * 1e-9 * RATE
        seg0 = int(want) - 400
        got = seg0 + _onset(x[seg0:seg0 + 2000, 0])
        if dist <= 100.0:
            assert got == pytest.approx(want, abs=2.0), dist       # 2 samples = 42 µs
        else:
            # Farther, absorption slows the rise (a minimum-phase low-pass): the onset a
            # threshold sees is late, never early.
            assert want - 0.5 <= got <= want + 8.0, dist
        # Level: the spectrum at 1 kHz is the source's less 20 log10(r) and ISO 9613-1 absorption.
        n = 8192
        y = np.fft.rfft(x[seg0:seg0 + n, 0], n)
        s = np.fft.rfft(sources.sample(em, RATE, 0.0, n), n)
        f = np.fft.rfftfreq(n, 1 / RATE)
        band = (f > 800) & (f < 1250)
        ratio_db = 10 * np.log10(np.sum(np.abs(y[band]) ** 2) / np.sum(np.abs(s[band]) ** 2))
        alpha = propagation.air_absorption_db_per_m(1000.0, 15.0, 60.0)
        want_db = -36.0 - 20 * math.log10(dist) - alpha * dist       # the mic's -36 dBFS/Pa
        assert ratio_db == pytest.approx(want_db, abs=0.5), dist


def test_adc_rate_error_shifts_samples_by_the_ppm(tmp_path):
    ppm = 80.0
    scn = _line_scenario(ppm=ppm, distances=(60.0,), t_s=8.0)
    clip = render.render(scn, tmp_path, dtype="float", progress=False)["clips"][0]
    x, _ = sf.read(tmp_path / clip["file"], dtype="float64")
    model = scn.sensor_models()[0]
    n0 = model.sample_index((clip["t0_ns"] - scn.start_ns) * 1e-9)
    t_arr = 8.0 + 60.0 / scn.atmosphere.c_mps
    want = t_arr * RATE * (1 + ppm * 1e-6) - n0
    nominal = t_arr * RATE - n0                                       # 13 samples earlier
    seg0 = int(want) - 400
    got = seg0 + _onset(x[seg0:seg0 + 2000, 0])
    assert got == pytest.approx(want, abs=2.0)
    assert abs(got - nominal) > 10


def test_sample_clock_inverse_with_drift():
    m = sensors.SensorModel(ppm=-35.0, drift_ppm_per_h=2.0)
    n = np.array([0, 48000 * 3600, 48000 * 7200 + 17])
    t = np.array([m.sample_times(int(k), 1)[0] for k in n])
    assert m.sample_index(t) == pytest.approx(n, abs=1e-6)
    # After an hour the rate error has drifted from -35 to -33 ppm: the integral is -34 ppm.
    assert t[1] == pytest.approx(3600.0 / (1 - 34e-6), abs=1e-6)


def test_pps_edges_land_at_the_right_sample(tmp_path):
    from edge.pps import AudioPps

    scn = _line_scenario(ppm=-42.0, drift=3.0, distances=(150.0,), t_s=5.0)
    clip = render.render(scn, tmp_path, dtype="float", progress=False)["clips"][0]
    x, _ = sf.read(tmp_path / clip["file"], dtype="float32")
    model = scn.sensor_models()[0]
    n0 = model.sample_index((clip["t0_ns"] - scn.start_ns) * 1e-9)
    found = AudioPps(RATE, polarity=1).process(x[:, 1])        # the node's own C edge finder
    t_first = (clip["t0_ns"] - scn.start_ns) * 1e-9
    seconds = np.arange(math.ceil(t_first), t_first + len(x) / RATE)
    want = model.sample_index(seconds) - n0                       # on this sensor's clock
    assert len(found) == len(want) >= 2
    assert found == pytest.approx(want, abs=0.05)
    # The 42 ppm rate error is visible: the edges are not a whole 48000 samples apart.
    assert np.diff(found) == pytest.approx(RATE * (1 - 42e-6), abs=0.1)


def test_clipping_and_sensitivity():
    m = sensors.SensorModel(sensitivity_dbfs_per_pa=-36.0)
    assert m.to_full_scale(np.array([1.0]))[0] == pytest.approx(10 ** (-36 / 20))
    assert m.to_full_scale(np.array([1e4, -1e4])).tolist() == [1.0, -1.0]


def test_overruns_shorten_the_recording_and_dropouts_zero_it():
    rng = np.random.default_rng(0)
    m = sensors.SensorModel(dropouts_per_h=3600.0 * 3, overruns_per_h=3600.0 * 2)
    drops, overruns = sensors.glitches(rng, m, 48000 * 10)
    assert len(drops) > 5 and len(overruns) > 5
    audio = np.ones((48000 * 10, 2))
    out = sensors.apply_glitches(audio, drops, overruns)
    lost = np.zeros(len(audio), bool)
    for s, n in overruns:
        lost[s:s + n] = True
    assert len(out) == len(audio) - lost.sum()
    assert np.sum(out[:, 0] == 0) > 0


def test_friedlander_and_n_wave_shapes():
    t = np.linspace(0, 5e-3, 5001)
    p = sources.friedlander(t, 100.0, 1e-3, 1.6)
    assert p[0] == 100.0 and np.argmin(np.abs(p[1:]) ) + 1 == 1000       # zero crossing at T+
    assert p.min() < 0 and sources.friedlander(-1e-3, 100.0, 1e-3) == 0.0
    nw = sources.n_wave(t, 50.0, 2e-4)
    nw = sources.n_wave(t, 50.0, 2e-4, rise_s=2e-6)
    assert nw.max() == pytest.approx(49.0, rel=0.01) and nw.min() == pytest.approx(-50.0, rel=0.01)
    # Whitham: P ∝ b^(-3/4), T ∝ b^(1/4).
    p1, d1 = sources.whitham_n_wave(1.0, 2.6, 5.7e-3, 23e-3)
    p16, d16 = sources.whitham_n_wave(16.0, 2.6, 5.7e-3, 23e-3)
    assert p1 / p16 == pytest.approx(8.0) and d16 / d1 == pytest.approx(2.0)
    assert 100e-6 < d1 < 300e-6 and 200.0 < p1 < 2000.0


def test_gunfire_levels_are_calibrated():
    rng = np.random.default_rng(1)
    for weapon in ("handgun", "rifle"):
        for em in sources.gunfire(weapon, rng, rounds=20):
            x = sources.sample(em, RATE * 8, 0.0, int(em.duration_s * RATE * 8))
            peak_db = sources.pa_to_db(np.max(np.abs(x)))
            assert 140.0 <= peak_db <= 168.0
            # The band-limited step overshoots a little (Gibbs), never more than 1 dB.
            assert em.peak_db - 0.3 <= peak_db <= em.peak_db + 1.0


def test_bullet_crack_geometry():
    atm = Atmosphere(temperature_c=20.0)
    c, v = atm.c_mps, 900.0
    rcv = np.array([[300.0, 20.0, 0.0], [50.0, -40.0, 0.0], [-100.0, 5.0, 0.0]])
    t, b = propagation.bullet_crack([0, 0, 0], 90.0, 0.0, v, 1000.0, rcv, atm)   # fired due east
    x = rcv[:, 0]
    want = x / v + np.abs(rcv[:, 1]) * math.sqrt(1 - (c / v) ** 2) / c
    assert b == pytest.approx(np.abs(rcv[:, 1]))
    assert t[:2] == pytest.approx(want[:2], rel=1e-9)
    assert np.isnan(t[2])                          # behind the muzzle: no crack
    # The crack beats the muzzle blast to a sensor down range.
    assert t[0] < math.hypot(300.0, 20.0) / c


def test_background_level_by_place_and_hour():
    night = propagation.background_level_db("residential", 3.5)
    day = propagation.background_level_db("residential", 15.5)
    assert day - night == pytest.approx(propagation.NIGHT_DIP_DB)
    assert propagation.background_level_db("arterial", 15.5) > day > propagation.background_level_db("park", 15.5)
    x = propagation.urban_noise(48000, RATE, 60.0, np.random.default_rng(0))
    assert sources.pa_to_db(np.sqrt(np.mean(x ** 2))) == pytest.approx(60.0, abs=0.01)


def test_wall_echo_carries_the_muzzle_directivity_toward_the_wall():
    # A wall 20 m east of the muzzle, a sensor 10 m west of it: the echo leaves the muzzle due
    # east (toward the sensor's image in the wall) whatever the direct path does, so aiming at
    # the wall rather than away changes the echo by the whole front-to-back difference.
    atm = Atmosphere()
    env = propagation.Environment(ground_reflection=0.0, nlos_probability=0.0, excess_db_per_km=0.0,
                                  walls=[propagation.Wall(20.0, -50.0, 20.0, 50.0)])
    src, rcv = np.array([0.0, 0.0, 1.5]), np.array([[-10.0, 0.0, 1.5]])

    def echo_gain(azimuth_deg):
        arr = propagation.discrete_arrivals(src, rcv, atm, env, np.ones((1, 2)), azimuth_deg)
        return float(arr.gain[arr.kind == propagation.WALL][0])

    at_wall, away = echo_gain(90.0), echo_gain(270.0)
    assert 20 * np.log10(at_wall / away) == pytest.approx(propagation.FRONT_TO_BACK_DB, abs=0.01)
    assert at_wall == pytest.approx(echo_gain(None)) == pytest.approx(0.8 / 50.0)
