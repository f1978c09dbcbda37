"""The C detector (through edge.detector) against its NumPy reference and against the
behaviour the node needs: streaming invariance, both sample formats, all rates, bursts
of automatic fire, echo tails, parameter errors."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import detector_reference as ref
from edge.detector import PARAMS, Detector, Pulse, default_params
from simulator.demo import friedlander, gunshot_clip

TIME_TOL_SAMPLES = 1.0
LEVEL_TOL_DB = 0.5
RATES_HZ = (8000, 11025, 16000, 44100, 48000, 96000, 192000)


def run_c(x, rate_hz, block=None, **params) -> list[Pulse]:
    det = Detector(rate_hz, **params)
    block = block or max(1, len(x))
    pulses = [p for i in range(0, len(x), block) for p in det.process(x[i : i + block])]
    return pulses + det.flush()


def random_scene(rate_hz: int, seconds: float, seed: int, n_impulses: int = 12):
    """Gaussian noise with impulses of random size, width and sign at random times."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * rate_hz)) * 10 ** (rng.uniform(-60, -30) / 20)
    times = np.sort(rng.uniform(0.2, seconds - 0.05, n_impulses))
    for t in times:
        blast = friedlander(rate_hz, positive_ms=rng.uniform(0.3, 3.0), amplitude=rng.uniform(0.01, 0.9))
        i = int(t * rate_hz)
        x[i : i + len(blast)] += rng.choice([-1, 1]) * blast[: len(x) - i]
    return np.clip(x, -1, 1).astype(np.float32), times


def assert_agree(c_pulses, r_pulses):
    assert len(c_pulses) == len(r_pulses), ([p.sample for p in c_pulses], [p["sample"] for p in r_pulses])
    for c, r in zip(c_pulses, r_pulses):
        assert abs(c.sample - r["sample"]) <= TIME_TOL_SAMPLES
        assert abs(c.peak_dbfs - r["peak_dbfs"]) <= LEVEL_TOL_DB
        assert abs(c.snr_db - r["snr_db"]) <= LEVEL_TOL_DB
        for name, value in c.features.items():
            tol = TIME_TOL_SAMPLES * 1e3 / 8000 if name.endswith("_ms") else LEVEL_TOL_DB
            assert abs(value - r[name]) <= tol, name


@pytest.mark.parametrize("seed", range(6))
def test_c_agrees_with_numpy_reference_on_random_input(seed):
    rate_hz = RATES_HZ[seed % len(RATES_HZ)]
    x, _ = random_scene(rate_hz, 2.0, seed)
    if seed % 2:  # the int16 entry point
        x = np.round(x * 32767).astype(np.int16)
    c = run_c(x, rate_hz)
    assert c, "the scene has impulses well above the noise"
    assert_agree(c, ref.detect(x, rate_hz))


def test_c_agrees_with_numpy_reference_with_other_parameters():
    params = dict(highpass_hz=120.0, sta_ms=0.5, mta_ms=10.0, trigger_db=9.0, jump_db=3.0,
                  window_ms=25.0, lookback_ms=5.0, gap_ms=0.3, envelope_ms=0.0, onset_rel_db=-12.0)
    x, _ = random_scene(48000, 2.0, 42)
    assert_agree(run_c(x, 48000, **params), ref.detect(x, 48000, **params))


def test_c_agrees_with_numpy_reference_on_real_recordings(pittsburgh):
    wavs = [next(d.glob("*.wav")) for d in pittsburgh[::9]]
    for wav in wavs:
        x, rate_hz = sf.read(wav, dtype="int16")
        c = run_c(x, rate_hz)
        assert c, wav
        assert_agree(c, ref.detect(x, rate_hz))


@pytest.mark.parametrize("rate_hz", [12000, 48000])
def test_results_do_not_depend_on_block_size(rate_hz):
    x = gunshot_clip(rate_hz, 2.5, (0.5, 0.9, 0.963, 2.45), seed=3)
    whole = run_c(x, rate_hz)
    assert len(whole) == 4
    blocks = (7, 1024) if rate_hz > 12000 else (1, 7, 1024)
    for block in blocks:
        assert run_c(x, rate_hz, block=block) == whole, block


def test_irregular_blocks_give_the_same_pulses():
    x = gunshot_clip(16000, 2.0, (0.4, 1.1, 1.99), seed=4)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), 300, replace=False))
    det = Detector(16000)
    pulses = [p for part in np.split(x, cuts) for p in det.process(part)] + det.flush()
    assert pulses == run_c(x, 16000)
    assert det.samples_seen == len(x)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), cuts=st.lists(st.integers(1, 4000), min_size=1, max_size=40))
def test_any_cut_into_blocks_gives_the_pulses_of_the_whole(seed, cuts):
    x, _ = random_scene(16000, 1.5, seed, n_impulses=6)
    det = Detector(16000)
    pulses = [p for part in np.split(x, np.cumsum(cuts)[np.cumsum(cuts) < len(x)]) for p in det.process(part)]
    assert pulses + det.flush() == run_c(x, 16000)


def test_strided_and_float64_input_are_taken_as_float32():
    x = gunshot_clip(12000, 2.0, (0.5, 1.5), seed=13)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)
    assert run_c(stereo[:, 0], 12000) == run_c(x, 12000)
    assert run_c(x.astype(np.float64), 12000) == run_c(x, 12000)


def test_nan_and_infinity_count_as_silence_and_do_not_kill_the_detector():
    x = gunshot_clip(12000, 2.0, (0.5, 1.5), seed=14)
    broken = x.copy()
    broken[[3000, 3001, 9000]] = [np.nan, np.inf, -np.inf]
    clean = x.copy()
    clean[[3000, 3001, 9000]] = 0
    assert run_c(broken, 12000) == run_c(clean, 12000)
    assert len(run_c(broken, 12000)) == 2
    assert_agree(run_c(broken, 12000), ref.detect(broken, 12000))


def test_int16_and_float32_give_the_same_pulses():
    x16 = (gunshot_clip(48000, 2.0, (0.5, 1.2), seed=5) * 32767).astype(np.int16)
    a = run_c(x16, 48000)
    b = run_c(x16.astype(np.float32) / 32768, 48000)
    assert len(a) == len(b) == 2
    for p, q in zip(a, b):
        assert abs(p.sample - q.sample) < 1e-3
        assert abs(p.snr_db - q.snr_db) < 1e-3


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_onsets_found_at_every_rate(rate_hz):
    shots = (0.4, 0.8, 1.5)
    pulses = run_c(gunshot_clip(rate_hz, 2.0, shots, seed=rate_hz), rate_hz)
    onsets_s = np.array([p.sample / rate_hz for p in pulses])
    assert len(pulses) == len(shots)
    # a clean blast over noise: the onset to within one sample of the truth
    assert np.max(np.abs(onsets_s - shots)) < 1.0 / rate_hz


def test_automatic_fire_60_ms_apart_gives_one_pulse_per_shot():
    shots = tuple(0.5 + 0.060 * k for k in range(12))
    for rate_hz in (12000, 48000):
        pulses = run_c(gunshot_clip(rate_hz, 2.0, shots, seed=7), rate_hz)
        onsets_s = np.array([p.sample / rate_hz for p in pulses])
        assert len(pulses) == len(shots), onsets_s
        assert np.max(np.abs(onsets_s - shots)) < 0.5e-3


def test_echo_tail_does_not_give_dozens_of_pulses():
    rate_hz = 48000
    rng = np.random.default_rng(8)
    x = rng.standard_normal(4 * rate_hz) * 0.002
    blast = friedlander(rate_hz)
    x[rate_hz : rate_hz + len(blast)] += blast
    tail = int(2.5 * rate_hz)
    x[rate_hz + len(blast) : rate_hz + len(blast) + tail] += (
        0.1 * np.exp(-np.arange(tail) / (0.4 * rate_hz)) * rng.standard_normal(tail))
    for k in range(1, 25):  # a flutter of discrete echoes, weaker and weaker
        i = rate_hz + int(rate_hz * 0.021 * k)
        x[i : i + len(blast)] += blast * 0.4 / k
    pulses = run_c(x.astype(np.float32), rate_hz)
    assert 1 <= len(pulses) <= 3
    assert abs(pulses[0].sample - rate_hz) < 0.5e-3 * rate_hz


def test_first_arrival_not_the_louder_echo():
    rate_hz = 48000
    x = gunshot_clip(rate_hz, 1.0, (), seed=9)
    x[24000 : 24000 + 288] += friedlander(rate_hz, amplitude=0.05)         # weak direct path
    x[24000 + 96 : 24000 + 96 + 288] += friedlander(rate_hz, amplitude=0.8)  # loud echo 2 ms later
    (pulse,) = run_c(x, rate_hz)
    assert abs(pulse.sample - 24000) < 0.5e-3 * rate_hz


def test_silence_then_noise_does_not_trigger_at_the_start():
    rate_hz = 12000
    x = np.zeros(3 * rate_hz, np.float32)
    x[rate_hz:] = np.random.default_rng(10).standard_normal(2 * rate_hz) * 0.01
    x[2 * rate_hz : 2 * rate_hz + 72] += friedlander(rate_hz)
    (pulse,) = run_c(x, rate_hz)
    assert abs(pulse.sample - 2 * rate_hz) < 6


def test_pulse_features_are_present_and_plausible():
    (pulse,) = run_c(gunshot_clip(48000, 1.0, (0.5,), seed=11), 48000)
    assert -8 < pulse.peak_dbfs < -5            # a 0.5 full-scale blast, high-passed
    assert pulse.snr_db > 30
    assert set(pulse.features) == {"noise_dbfs", "rise_ms", "duration_ms", "decay_ms", "crest_db",
                                   "low_ratio_db", "high_ratio_db"}
    assert 0 <= pulse.features["rise_ms"] < 1
    assert pulse.features["duration_ms"] >= pulse.features["decay_ms"] >= 0
    assert pulse.features["crest_db"] > 3
    assert pulse.features["low_ratio_db"] <= 0 and pulse.features["high_ratio_db"] <= 0


def test_flush_closes_a_pulse_cut_by_the_end_of_the_stream():
    x = gunshot_clip(12000, 1.0, (0.995,), seed=12)
    det = Detector(12000)
    assert det.process(x) == []
    (pulse,) = det.flush()
    assert abs(pulse.sample - 0.995 * 12000) < 6
    assert det.flush() == []


def test_parameters_are_validated_with_clear_errors():
    assert set(default_params()) == set(PARAMS)
    with pytest.raises(ValueError, match="unknown detector parameter.*no_such"):
        Detector(48000, no_such=1)
    with pytest.raises(ValueError, match="sample rate"):
        Detector(4000)
    with pytest.raises(ValueError, match="highpass_hz"):
        Detector(8000, highpass_hz=5000)
    with pytest.raises(ValueError, match="must be a number"):
        Detector(8000, sta_ms="fast")
    with pytest.raises(ValueError, match="retrigger_ms"):
        Detector(8000, retrigger_ms=20)
    with pytest.raises(ValueError, match="echo_ms"):
        Detector(8000, echo_ms=-1)
    with pytest.raises(ValueError, match="echo_trigger_db"):
        Detector(8000, echo_trigger_db=0)
    with pytest.raises(ValueError, match="time constants"):
        Detector(8000, sta_ms=30, mta_ms=20)
    det = Detector(8000)
    with pytest.raises(ValueError, match="1-D"):
        det.process(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="float32 or int16"):
        det.process(np.zeros(10, np.int32))


def _two_blasts(rate_hz, amplitudes, gap_s=0.009):
    x = gunshot_clip(rate_hz, 1.0, (), seed=15)
    for k, amplitude in enumerate(amplitudes):
        i = int((0.5 + k * gap_s) * rate_hz)
        blast = friedlander(rate_hz, positive_ms=0.5, amplitude=amplitude)
        x[i : i + len(blast)] += blast
    return x


def test_a_louder_pulse_inside_the_window_gets_its_own_pulse():
    """A weak pulse, then 9 ms later (inside the 15 ms window) a shot 12 dB louder: by default
    (retrigger_ms 5, retrigger_db 6) the louder one opens its own pulse, timed on its own
    leading edge; retrigger_ms=0 keeps the one-window rule, and a second pulse no louder than
    the first (an echo, a crack's blast) does not split the window."""
    rate_hz = 12000
    x = _two_blasts(rate_hz, (0.1, 0.4))
    pulses = run_c(x, rate_hz)
    assert [round(p.sample / rate_hz, 4) for p in pulses] == pytest.approx([0.5, 0.509], abs=2 / rate_hz)
    assert_agree(pulses, ref.detect(x, rate_hz))
    assert len(run_c(x, rate_hz, retrigger_ms=0.0)) == 1
    same = _two_blasts(rate_hz, (0.4, 0.4))
    assert len(run_c(same, rate_hz)) == 1
    assert_agree(run_c(same, rate_hz, retrigger_db=0.0), ref.detect(same, rate_hz, retrigger_db=0.0))


def test_a_weak_pulse_counts_outside_a_shots_echo_time_only():
    """A pulse 10-11 dB over the noise floor (between trigger_db 9 and echo_trigger_db 12) is
    detected on its own, but not within echo_ms (750) of a shot's trigger, where the shot's
    echoes arrive; echo_ms=0 takes it there too."""
    rate_hz = 12000
    x = gunshot_clip(rate_hz, 2.0, (), seed=15)
    for t_s, amplitude in ((0.5, 0.4), (0.7, 0.035), (1.6, 0.035)):
        i = int(t_s * rate_hz)
        blast = friedlander(rate_hz, positive_ms=0.5, amplitude=amplitude)
        x[i : i + len(blast)] += blast
    pulses = run_c(x, rate_hz)
    assert [round(p.sample / rate_hz, 3) for p in pulses] == [0.5, 1.6]
    assert_agree(pulses, ref.detect(x, rate_hz))
    no_hold = run_c(x, rate_hz, echo_ms=0.0)
    assert [round(p.sample / rate_hz, 3) for p in no_hold] == [0.5, 0.7, 1.6]
    assert_agree(no_hold, ref.detect(x, rate_hz, echo_ms=0.0))
