"""``make demo`` (until the simulator lands): a synthetic shooting through ``earwitness detect``.

Writes a 48 kHz WAV of a few Friedlander-like blasts with an echo each over background
noise, runs the real command line on it and prints the pulses it finds beside the true
onsets. The clip generator is also what the detector tests and benchmark feed in.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

DEMO_RATE_HZ = 48000
DEMO_SECONDS = 4.0
DEMO_SHOTS_S = (1.0, 1.25, 1.313, 1.376, 3.0)  # one shot, a burst at 950 rounds/min, one more
NOISE_DBFS = -50.0
BLAST_AMPLITUDE = 0.5
BLAST_POSITIVE_MS = 1.5
ECHO_DELAY_MS = 23.0
ECHO_GAIN = 0.35
TAIL_DECAY_S = 0.15
TAIL_GAIN = 0.04


def friedlander(rate_hz: float, positive_ms: float = BLAST_POSITIVE_MS, amplitude: float = BLAST_AMPLITUDE) -> np.ndarray:
    """Friedlander waveform p(t) = A (1 - t/T) exp(-t/T) (Friedlander 1946), four T long."""
    t = np.arange(int(round(4 * positive_ms * 1e-3 * rate_hz))) / rate_hz
    tau = positive_ms * 1e-3
    return amplitude * (1 - t / tau) * np.exp(-t / tau)


def gunshot_clip(rate_hz: float, seconds: float, shots_s, seed: int = 0, noise_dbfs: float = NOISE_DBFS) -> np.ndarray:
    """float32 clip: white background noise, and at each time in ``shots_s`` a blast, one
    discrete echo ``ECHO_DELAY_MS`` later and a decaying diffuse reverberation tail."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate_hz))
    x = rng.standard_normal(n) * 10 ** (noise_dbfs / 20)
    blast = friedlander(rate_hz)
    tail_n = int(4 * TAIL_DECAY_S * rate_hz)
    tail_env = TAIL_GAIN * np.exp(-np.arange(tail_n) / (TAIL_DECAY_S * rate_hz))
    echo = int(round(ECHO_DELAY_MS * 1e-3 * rate_hz))
    for t_s in shots_s:
        for start, part in (
            (int(round(t_s * rate_hz)), blast),
            (int(round(t_s * rate_hz)) + echo, ECHO_GAIN * blast),
            (int(round(t_s * rate_hz)) + len(blast), tail_env * rng.standard_normal(tail_n)),
        ):
            stop = min(n, start + len(part))
            if start < n:
                x[start:stop] += part[: stop - start]
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def main() -> int:
    import soundfile as sf

    out_dir = pathlib.Path(tempfile.mkdtemp(prefix="earwitness-demo-"))
    wav = out_dir / "demo-shots.wav"
    sf.write(wav, gunshot_clip(DEMO_RATE_HZ, DEMO_SECONDS, DEMO_SHOTS_S), DEMO_RATE_HZ, subtype="PCM_16")
    print(f"synthetic clip: {wav} ({DEMO_SECONDS:g} s at {DEMO_RATE_HZ} Hz); true onsets (s): {list(DEMO_SHOTS_S)}")
    done = subprocess.run(
        [sys.executable, "-m", "earwitness", "detect", "--sensor", "demo", str(wav)],
        capture_output=True, text=True,
    )
    if done.returncode:
        print(done.stderr, file=sys.stderr, end="")
        return done.returncode
    pulses = [json.loads(line) for line in done.stdout.splitlines()]
    for pulse in pulses:
        print(f"pulse at {pulse['t_ns'] / 1e9:9.6f} s  snr {pulse['snr_db']:5.1f} dB  peak {pulse['peak_dbfs']:6.1f} dBFS")
    print(f"{len(pulses)} pulses for {len(DEMO_SHOTS_S)} shots; one JSONL line: {json.dumps(pulses[0]) if pulses else '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
