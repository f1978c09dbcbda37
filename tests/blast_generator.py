"""An independent generator of what a node's ADC records: Friedlander blasts and a GPS PPS
square pulse through an anti-alias front end, on a sample clock with a rate error.

Written apart from ``simulator/`` on purpose (nothing here imports it): the detector's and
the PPS edge finder's timing is checked against pulse shapes and front ends that the
simulator's render path does not make.

Method
------
* Clock: sample n is taken at true time ``t0 + n / (rate * (1 + ppm * 1e-6))`` (a constant
  rate error; ``ppm > 0`` is a fast ADC).
* Blast: the Friedlander waveform ``p(t) = A (1 - t/T) exp(-t/T)`` for ``t >= 0``
  (Friedlander 1946; positive phase T), zero before.  Its integral is ``A t exp(-t/T)``, so
  the signal's mean over any interval is exact, however the onset falls between samples.
* PPS: a square pulse (``width_s`` long, every whole UTC second), optionally AC coupled
  (first-order RC high-pass, which acts on the square wave exactly: each edge is a step
  followed by ``exp(-t/RC)``).
* Front ends, each on an exact integral of the input (no sample-grid aliasing of the onset):
  ``"fir2"``: the mean over each sample period (an integrating sample-and-hold), then the
  2-tap FIR ``[1/2, 1/2]`` (a crude anti-alias of cheap codecs);
  ``"butter"``: an 8th-order Butterworth low-pass at 0.45 of the rate (an analog anti-alias
  filter), run at ``OVERSAMPLE`` times the rate on cell means there and read every
  ``OVERSAMPLE``-th value (point sampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

FRONT_ENDS = ("fir2", "butter")
OVERSAMPLE = 16
BUTTER_ORDER = 8
BUTTER_CORNER = 0.45          # of the sample rate
RENDER_S = 0.08               # a blast is rendered over this long after its onset
LEAD_S = 0.002                # ... and this long before (the front end's support)


@dataclass(frozen=True)
class Clock:
    """The ADC's sample clock: nominal rate, rate error (ppm), true time of sample 0."""

    rate_hz: float
    ppm: float
    t0_s: float

    @property
    def true_rate_hz(self) -> float:
        return self.rate_hz * (1.0 + 1e-6 * self.ppm)

    def time_at(self, sample):
        """True time (s) of a fractional sample index."""
        return self.t0_s + np.asarray(sample, dtype=float) / self.true_rate_hz

    def sample_at(self, t_s):
        """Fractional sample index of a true time (s)."""
        return (np.asarray(t_s, dtype=float) - self.t0_s) * self.true_rate_hz


def _friedlander_integral(tau, amplitude, positive_s):
    """Integral of the Friedlander blast from its onset to tau (s; 0 before the onset)."""
    tau = np.maximum(tau, 0.0)
    return amplitude * tau * np.exp(-tau / positive_s)


def _cell_edges(first: int, count: int, oversample: int) -> np.ndarray:
    """Sample-index bounds of the cells: ``count * oversample`` cells from sample ``first``,
    each cell ending at its sample (the integrating ADC takes the period before a sample)."""
    return first - 1.0 + np.arange(count * oversample + 1) / oversample


def _front_end(cell_means: np.ndarray, kind: str, oversample: int) -> np.ndarray:
    """Samples from cell means at ``oversample`` cells per sample."""
    if kind == "fir2":
        per_sample = cell_means.reshape(-1, oversample).mean(axis=1)
        return signal.lfilter([0.5, 0.5], [1.0], per_sample)
    if kind == "butter":
        sos = signal.butter(BUTTER_ORDER, BUTTER_CORNER / oversample * 2, output="sos")
        return signal.sosfilt(sos, cell_means)[oversample - 1 :: oversample]
    raise ValueError(f"front end must be one of {FRONT_ENDS}, not {kind!r}")


def blast_samples(clock: Clock, n_samples: int, shots_s, positive_s, amplitudes, kind: str) -> np.ndarray:
    """The microphone channel: Friedlander blasts at true times ``shots_s`` (positive phases
    ``positive_s``, peak ``amplitudes``), through front end ``kind``, no noise (float64)."""
    x = np.zeros(n_samples)
    lead = int(np.ceil(LEAD_S * clock.rate_hz))
    span = int(np.ceil((RENDER_S + LEAD_S) * clock.rate_hz))
    for t_s, tpos, amp in zip(shots_s, positive_s, amplitudes):
        first = int(np.floor(clock.sample_at(t_s))) - lead
        count = min(span, n_samples - first)
        if count <= 0 or first < 0:
            continue
        edges = clock.time_at(_cell_edges(first, count, OVERSAMPLE)) - t_s
        big = _friedlander_integral(edges, amp, tpos)
        means = np.diff(big) / np.diff(edges)
        x[first : first + count] += _front_end(means, kind, OVERSAMPLE)
    return x


@dataclass(frozen=True)
class PpsTruth:
    samples: np.ndarray            # the PPS channel (float64)
    edge_samples: np.ndarray       # true leading-edge positions, fractional sample index
    edge_utc_s: np.ndarray         # their true times


def pps_samples(clock: Clock, n_samples: int, kind: str, *, width_s: float = 0.1,  # noqa: PLR0913
                amplitude: float = 0.5, highpass_hz: float = 0.0) -> PpsTruth:
    """The PPS channel: a square pulse of ``width_s`` at every whole second, AC coupled by
    a first-order high-pass at ``highpass_hz`` (0: DC coupled), through front end ``kind``."""
    t_first, t_last = float(clock.time_at(0.0)), float(clock.time_at(n_samples - 1.0))
    seconds = np.arange(np.ceil(t_first + LEAD_S), np.floor(t_last - width_s - RENDER_S))
    x = np.zeros(n_samples)
    lead = int(np.ceil(LEAD_S * clock.rate_hz))
    for sec in seconds:
        first = int(np.floor(clock.sample_at(sec))) - lead
        count = min(int(np.ceil((width_s + RENDER_S + LEAD_S) * clock.rate_hz)), n_samples - first)
        edges = clock.time_at(_cell_edges(first, count, OVERSAMPLE)) - sec
        big = _step_integral(edges, amplitude, highpass_hz) - _step_integral(edges - width_s, amplitude, highpass_hz)
        x[first : first + count] += _front_end(np.diff(big) / np.diff(edges), kind, OVERSAMPLE)
    return PpsTruth(x, clock.sample_at(seconds), seconds)


def _step_integral(tau, amplitude, highpass_hz):
    """Integral from the step to tau of a step, DC coupled or through an RC high-pass."""
    tau = np.maximum(tau, 0.0)
    if highpass_hz <= 0:
        return amplitude * tau
    rc = 1.0 / (2 * np.pi * highpass_hz)
    return amplitude * rc * (1.0 - np.exp(-tau / rc))


@dataclass(frozen=True)
class Scene:
    mic: np.ndarray                # float32 microphone channel
    pps: PpsTruth
    shots_s: np.ndarray            # true onset times of the blasts
    positive_s: np.ndarray
    clock: Clock


def scene(*, kind: str, ppm: float, seconds: float = 40.0, rate_hz: float = 48000.0,  # noqa: PLR0913
          positive_ms=(1.0, 4.0), shots: int = 60, noise_rms: float = 0.002, seed: int = 0) -> Scene:
    """A recording of ``shots`` blasts (positive phase uniform in ``positive_ms``, peak 0.1 to
    0.6 of full scale, at random sub-sample phases) and the PPS channel, with white noise."""
    rng = np.random.default_rng(seed)
    clock = Clock(rate_hz, ppm, 1_790_000_000.0 + rng.uniform(0.1, 0.9))
    n = int(seconds * rate_hz)
    slots = np.linspace(clock.t0_s + 1.2, clock.t0_s + seconds - 0.5, shots)
    shots_s = slots + rng.uniform(0.0, 0.25 * (slots[1] - slots[0]), shots)
    positive_s = rng.uniform(*positive_ms, shots) * 1e-3
    amps = rng.uniform(0.1, 0.6, shots)
    mic = blast_samples(clock, n, shots_s, positive_s, amps, kind) + rng.normal(0, noise_rms, n)
    pps = pps_samples(clock, n, kind, highpass_hz=20.0)
    pps_noisy = PpsTruth(pps.samples + rng.normal(0, noise_rms, n), pps.edge_samples, pps.edge_utc_s)
    return Scene(mic.astype(np.float32), pps_noisy, shots_s, positive_s, clock)


def spread_p99(errors) -> float:
    """The timing goal's measure (bench/bench_timing.py): the 99th percentile of the errors'
    distance from their median (a constant offset is the median's, not the spread's)."""
    e = np.asarray(errors, dtype=float)
    return float(np.percentile(np.abs(e - np.median(e)), 99))
