"""`earwitness detect --pps-channel`: a stereo WAV from an ADC running 50 ppm fast, shots on
channel 0, the GPS PPS on channel 1; --start-utc is 0.3 s off."""
import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from earwitness.units import NS_PER_S
from edge.utctime import format_utc_ns
from simulator.pps import FS_HZ, Adc, pps_channel

T0_S = 1_790_000_123.25
BLAST_TAU_S = 0.0015
SHOT_AMPLITUDE = 0.4


def shots_channel(adc, n, times_s, rng):
    """Friedlander-like blasts starting exactly at ``times_s`` over faint noise."""
    x = rng.normal(0, 0.002, n)
    t = adc.time_at(np.arange(n))
    for t0 in times_s:
        lo = int(adc.sample_at(t0)) - 2
        seg = slice(lo, lo + int(FS_HZ * 0.05))
        tau = t[seg] - t0
        x[seg] += np.where(tau >= 0, SHOT_AMPLITUDE * (1 - tau / BLAST_TAU_S) * np.exp(-tau / BLAST_TAU_S), 0)
    return x


def detect(*args):
    return subprocess.run([sys.executable, "-m", "earwitness", "detect", *args],
                          capture_output=True, text=True, timeout=120)


def test_detect_with_pps_channel_times_shots_to_microseconds(tmp_path):
    rng = np.random.default_rng(11)
    adc = Adc(t0_s=T0_S, ppm=50.0)
    n = FS_HZ * 40
    shots = np.sort(rng.uniform(T0_S + 2, T0_S + 38, 12))
    shots = shots[np.diff(shots, prepend=0) > 1.0]
    pps = pps_channel(adc, n, noise_rms=0.004, seed=12)
    wav = tmp_path / "node.wav"
    sf.write(wav, np.stack([shots_channel(adc, n, shots, rng), pps.samples], axis=1), FS_HZ,
             subtype="PCM_24")
    start = format_utc_ns(int((T0_S + 0.3) * NS_PER_S))

    out = detect("--sensor", "n1", "--start-utc", start, "--pps-channel", "1", str(wav))
    assert out.returncode == 0, out.stderr
    pulses = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(pulses) == len(shots)
    assert all(p["timing"] == "pps-audio" and 0 < p["t_unc_ns"] < 50_000 for p in pulses)

    # The same file timed from the exact start and the nominal rate gives each pulse's
    # sample index back: the PPS timing is checked against that sample's true time, apart
    # from the detector's own onset bias.
    exact = format_utc_ns(int(round(T0_S * 1e6)) * 1000)
    plain = [json.loads(line) for line in detect("--start-utc", exact, str(wav)).stdout.splitlines()]
    sample = np.array([(p["t_ns"] - int(round(T0_S * 1e6)) * 1000) * FS_HZ / NS_PER_S for p in plain])
    truth_ns = (adc.time_at(sample) - T0_S) * NS_PER_S
    clock_err = np.array([p["t_ns"] - int(round(T0_S * 1e6)) * 1000 for p in pulses]) - truth_ns
    onset_err = np.array([p["t_ns"] for p in pulses]) - shots * NS_PER_S
    print(f"\ndetect --pps-channel: clock error {np.round(clock_err / 1e3, 2)} us; "
          f"with the detector's onset {np.round(onset_err / 1e3, 1)} us")
    assert np.abs(clock_err).max() < 5_000
    assert all(abs(e) <= p["t_unc_ns"] for e, p in zip(clock_err, pulses))
    assert np.abs(onset_err).max() < 1_000_000
    # timed by a --start-utc 0.3 s off and the nominal rate, the last shot is far off
    late = [json.loads(line) for line in detect("--start-utc", start, str(wav)).stdout.splitlines()]
    assert abs(late[-1]["t_ns"] - shots[-1] * NS_PER_S) > 250_000_000

def test_pps_channel_errors_are_one_line(tmp_path):
    wav = tmp_path / "mono.wav"
    sf.write(wav, np.zeros(FS_HZ), FS_HZ)
    out = detect("--start-utc", "2026-01-01T00:00:00Z", "--pps-channel", "1", str(wav))
    assert out.returncode == 2 and "no channel 1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = detect("--pps-channel", "1", str(wav))
    assert out.returncode == 2 and "--start-utc" in out.stderr
    stereo = tmp_path / "silent.wav"
    sf.write(stereo, np.zeros((FS_HZ * 3, 2)), FS_HZ)
    out = detect("--start-utc", "2026-01-01T00:00:00Z", "--pps-channel", "1", str(stereo))
    assert out.returncode == 2 and "no GPS PPS pulse" in out.stderr
