"""Synthetic node input: a stereo WAV with gunshot-like impulses at known times.

Channel 0 is the microphone: low background noise plus Friedlander-shaped blasts
(p(t) = (1 - t/T) exp(-b t/T), a few ms long) at the given times; channel 1 is silent or,
with ``pps``, carries a GPS PPS pulse from the timing tests' known-truth generator.
"""
from __future__ import annotations

import numpy as np
import soundfile as sf

RATE_HZ = 48_000
NOISE_RMS = 0.001
BLAST_AMPLITUDE = 0.5
BLAST_LENGTH_S = 0.004
FRIEDLANDER_B = 2.0


def blast(rate_hz: int = RATE_HZ) -> np.ndarray:
    t = np.arange(int(BLAST_LENGTH_S * rate_hz)) / (BLAST_LENGTH_S * rate_hz)
    return BLAST_AMPLITUDE * (1 - t) * np.exp(-FRIEDLANDER_B * t)


def write(path, seconds: float, shot_times_s, rate_hz: int = RATE_HZ, pps=None, seed: int = 0,  # noqa: PLR0913
          pps_missing=()):
    """Write the WAV (16-bit stereo) and return the onset sample index of each blast.

    ``pps``: a ``simulator.pps.Adc`` whose clock the PPS in channel 1 is rendered by;
    ``pps_missing``: (from_s, to_s) UTC spans in which it is silent.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    mic = rng.standard_normal(n) * NOISE_RMS
    b = blast(rate_hz)
    onsets = []
    for t in shot_times_s:
        i = int(round(t * rate_hz))
        mic[i:i + len(b)] += b[:n - i]
        onsets.append(i)
    if pps is not None:
        from simulator.pps import pps_channel

        second = pps_channel(pps, n, missing=pps_missing).samples
    else:
        second = np.zeros(n)
    sf.write(path, np.stack([mic, second], axis=1), rate_hz, subtype="PCM_16")
    return onsets


def detected(wav):
    """Onsets (fractional samples) the detector finds in the WAV's microphone channel, offline."""
    from edge.detector import Detector
    from edge.wavio import read_channel

    x, rate = read_channel(wav, 0)
    det = Detector(rate)
    return [p.sample for p in det.process(x) + det.flush()]
