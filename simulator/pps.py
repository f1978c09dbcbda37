"""A GPS PPS pulse as a sensor node's audio input records it, on an ADC clock with a rate error.

For virtual nodes and for the timing tests and benchmarks, where the truth must be known.

The ADC's sample n is taken at true UTC time ``t(n)``, the inverse of
``n(t) = f0 * (t + 1e-6 * (ppm * t + drift/2 * t**2))`` (t since the first sample), so the
sample index of any true instant is known exactly.  The PPS square pulse is rendered as
band-limited steps (the step response of a Blackman-windowed sinc, as an ADC's decimation
filter would deliver) through a first-order high-pass (AC coupling), plus white noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

FS_HZ = 48_000
STEP_HALF = 32            # samples either side of an edge where the band-limited step moves
STEP_GRID = 64            # points per sample in the tabulated step response
LOWPASS_CUTOFF = 0.45     # of the sample rate: an ADC's anti-alias corner


def _step_table():
    x = np.arange(-STEP_HALF * STEP_GRID, STEP_HALF * STEP_GRID + 1) / STEP_GRID
    h = 2 * LOWPASS_CUTOFF * np.sinc(2 * LOWPASS_CUTOFF * x) * np.blackman(x.size)
    s = np.cumsum(h)
    s -= s[0]
    return x, s / s[-1]


_STEP_X, _STEP_S = _step_table()


@dataclass
class Adc:
    """Sample clock: nominal rate, constant rate error (ppm) and its drift (ppm/s)."""

    t0_s: float                 # true UTC seconds of sample 0
    ppm: float = 50.0
    drift_ppm_per_s: float = 0.0
    rate_hz: float = FS_HZ

    def sample_at(self, t_s):
        """Fractional sample index of true UTC time ``t_s`` (float or array)."""
        t = np.asarray(t_s, dtype=float) - self.t0_s
        return self.rate_hz * (t + 1e-6 * (self.ppm * t + 0.5 * self.drift_ppm_per_s * t * t))

    def time_at(self, sample):
        """True UTC seconds of a fractional sample index (Newton on ``sample_at``)."""
        n = np.asarray(sample, dtype=float)
        t = n / self.rate_hz
        for _ in range(3):
            f = self.sample_at(t + self.t0_s) - n
            df = self.rate_hz * (1 + 1e-6 * (self.ppm + self.drift_ppm_per_s * t))
            t = t - f / df
        return t + self.t0_s


@dataclass
class PpsSignal:
    samples: np.ndarray
    edge_samples: np.ndarray          # true leading-edge sample positions
    edge_utc_s: np.ndarray            # their UTC seconds
    adc: Adc = field(repr=False)


# The signal's settings are keyword-only, each with its default.
def pps_channel(adc: Adc, n_samples: int, *, width_s=0.1, amplitude=0.5, polarity=1,  # noqa: PLR0913
                highpass_hz=20.0, noise_rms=0.003, missing=(), seed=0) -> PpsSignal:
    """Renders the PPS channel; ``missing`` is a list of (from_s, to_s) UTC spans with no pulse.

    Method: each edge is the tabulated step response of a Blackman-windowed sinc low-pass,
    interpolated at the edge's fractional sample position (band-limited step synthesis);
    AC coupling is a first-order RC high-pass discretised by backward Euler."""
    rng = np.random.default_rng(seed)
    t_first = adc.time_at(0.0)
    t_last = adc.time_at(n_samples - 1.0)
    seconds = np.arange(np.ceil(t_first), np.floor(t_last) + 1)
    for a, b in missing:
        seconds = seconds[(seconds < a) | (seconds >= b)]
    diff = np.zeros(n_samples + 1)
    for sec in seconds:
        for t, sign in ((sec, 1.0), (sec + width_s, -1.0)):
            e = float(adc.sample_at(t))
            lo = max(int(np.ceil(e - STEP_HALF)), 0)
            hi = min(int(np.floor(e + STEP_HALF)), n_samples - 1)
            if hi < lo:
                continue
            m = np.arange(lo, hi + 1)
            step = np.interp(m - e, _STEP_X, _STEP_S)
            local = np.diff(step, prepend=np.interp(lo - 1 - e, _STEP_X, _STEP_S))
            diff[lo:hi + 1] += sign * local
            diff[hi + 1] += sign * (1.0 - step[-1])
    x = np.cumsum(diff[:n_samples]) * amplitude * polarity
    if highpass_hz:
        # First-order RC high-pass, backward-Euler form of the analogue coupling capacitor.
        a = 1.0 / (1.0 + 2 * np.pi * highpass_hz / adc.rate_hz)
        x = signal.lfilter([a, -a], [1, -a], x)
    x = x + rng.normal(0.0, noise_rms, n_samples)
    lead = np.array([adc.sample_at(s) for s in seconds])
    inside = (lead >= 0) & (lead < n_samples)
    return PpsSignal(x.astype(np.float32), lead[inside], seconds[inside], adc)
