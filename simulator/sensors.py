"""What a sensor node does to the sound: microphone and ADC, its sample clock, PPS, GPS, glitches.

A node records two channels at a nominal 48 kHz: the microphone, and the GPS receiver's PPS
output wired into the second input. The ADC's crystal runs tens of ppm off and drifts with
temperature, so sample n is taken at a true time that slowly walks away from n / 48000;
the PPS edges in channel 2 are what lets the node's clock model recover it.

Rather than rendering at 48 kHz and resampling by the ppm error, the renderer evaluates
every waveform directly at each sample's true time (:meth:`SensorModel.sample_times`), which
is the same resampling done exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.pps import Adc, pps_channel

NOMINAL_RATE_HZ = 48000
MEMS_SENSITIVITY_DBFS_PER_PA = -36.0   # full scale = 130 dB SPL: a rooftop sensor clips only near a shot
SELF_NOISE_DB = 30.0                   # equivalent input noise of a good MEMS microphone, dB SPL
PPS_AMPLITUDE_FS = 0.5                 # the PPS step through the input divider, fraction of full scale
PPS_WIDTH_S = 0.1                      # u-blox default PPS pulse: 100 ms high
PPS_HIGHPASS_HZ = 20.0                 # AC-coupling corner of the line input
OVERRUN_BLOCK = 1024                   # samples lost when the capture callback overruns
DROPOUT_S = (0.01, 0.1)                # zeroed stretches when the audio interface glitches


@dataclass
class SensorModel:
    """One node's hardware. Times are seconds since the scenario's start (its clock epoch).

    ``ppm`` is the ADC rate error at the start, ``drift_ppm_per_h`` its change per hour;
    ``gps_offset_m`` is what the node's GPS position is off by (east, north, up);
    ``noise_offset_db`` how much louder this rooftop is than its zone.
    """

    sensitivity_dbfs_per_pa: float = MEMS_SENSITIVITY_DBFS_PER_PA
    ppm: float = 0.0
    drift_ppm_per_h: float = 0.0
    rate_hz: int = NOMINAL_RATE_HZ
    pps_amplitude_fs: float = PPS_AMPLITUDE_FS
    pps_polarity: int = 1
    pps_width_s: float = PPS_WIDTH_S
    pps_highpass_hz: float = PPS_HIGHPASS_HZ
    gps_offset_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    noise_offset_db: float = 0.0
    dropouts_per_h: float = 0.0
    overruns_per_h: float = 0.0

    # --- the sample clock -------------------------------------------------------------
    def sample_index(self, t_s):
        """Fractional sample index at true time ``t_s``: n(t) = f0 (t + 1e-6 (e t + d t²/7200)).

        The integral of the instantaneous rate f0 (1 + 1e-6 (e + d t/3600)), a linear drift
        of the rate error e by d ppm per hour (a crystal warming up).
        """
        t = np.asarray(t_s, dtype=float)
        return self.rate_hz * (t + 1e-6 * (self.ppm * t + self.drift_ppm_per_h * t * t / 7200.0))

    def sample_times(self, n0: int, count: int) -> np.ndarray:
        """True times (s) of samples ``n0 .. n0+count-1``, inverting :meth:`sample_index`.

        Newton's method from n/f0; two steps reach float precision at these tiny rate errors.
        """
        n = n0 + np.arange(count, dtype=float)
        t = n / self.rate_hz
        for _ in range(2):
            rate = self.rate_hz * (1.0 + 1e-6 * (self.ppm + self.drift_ppm_per_h * t / 3600.0))
            t = t - (self.sample_index(t) - n) / rate
        return t

    def rate_at(self, t_s: float) -> float:
        """The true sampling rate (Hz) at true time ``t_s``."""
        return self.rate_hz * (1.0 + 1e-6 * (self.ppm + self.drift_ppm_per_h * t_s / 3600.0))

    # --- microphone and ADC -----------------------------------------------------------
    def to_full_scale(self, pressure_pa: np.ndarray) -> np.ndarray:
        """Pressure (Pa) to ADC full-scale units with the microphone's sensitivity, clipped to ±1.

        Hard clipping at full scale, as a MEMS microphone's ADC saturates on a nearby shot.
        """
        return np.clip(pressure_pa * 10.0 ** (self.sensitivity_dbfs_per_pa / 20.0), -1.0, 1.0)

    # --- PPS through an AC-coupled input -------------------------------------------------
    def pps(self, t0_s: float, n: int, epoch_offset_s: float = 0.0, seed: int = 0) -> np.ndarray:
        """The PPS channel of ``n`` samples from the sample taken at true time ``t0_s``.

        The pulse rises at every UTC second (``epoch_offset_s`` is the fractional UTC second
        of t = 0) and falls ``pps_width_s`` later, as band-limited steps through the
        AC-coupled input: :func:`simulator.pps.pps_channel` (the timing tests' model), on
        this sensor's clock from that sample on.
        """
        adc = Adc(t0_s + epoch_offset_s, ppm=self.ppm + self.drift_ppm_per_h * t0_s / 3600.0,
                  drift_ppm_per_s=self.drift_ppm_per_h / 3600.0, rate_hz=self.rate_hz)
        return pps_channel(adc, n, width_s=self.pps_width_s, amplitude=self.pps_amplitude_fs,
                           polarity=self.pps_polarity, highpass_hz=self.pps_highpass_hz, seed=seed).samples


def draw_sensor_model(rng: np.random.Generator, ppm_sd: float = 20.0, drift_ppm_per_h_sd: float = 0.5,
                      gps_error_m: float = 2.5, gps_vertical_error_m: float = 5.0, noise_sd_db: float = 3.0,
                      **fixed) -> SensorModel:
    """A node with its own crystal error, drift, GPS error and rooftop noise, drawn from ``rng``.

    ``fixed`` sets any :class:`SensorModel` field outright (sensitivity, dropouts_per_h, ...).
    A consumer GPS averaged for hours errs by a couple of metres horizontally (σ per axis
    ``gps_error_m``/√2), about twice that vertically.
    """
    model = SensorModel(
        ppm=float(rng.normal(0.0, ppm_sd)),
        drift_ppm_per_h=float(rng.normal(0.0, drift_ppm_per_h_sd)),
        gps_offset_m=np.array([*rng.normal(0.0, gps_error_m / np.sqrt(2.0), 2), rng.normal(0.0, gps_vertical_error_m)]),
        noise_offset_db=float(rng.normal(0.0, noise_sd_db)),
        pps_polarity=1,
    )
    for key, value in fixed.items():
        if not hasattr(model, key):
            raise ValueError(f"unknown sensor setting {key!r}")
        setattr(model, key, value)
    return model


def glitches(rng: np.random.Generator, model: SensorModel, n: int):
    """Dropouts and overruns for a recording of ``n`` samples: lists of (start, length) in samples.

    Dropouts zero a stretch (the interface delivered silence); overruns lose a block (the
    capture callback was late), so every later sample is earlier than its index says.
    Both are Poisson in time at the model's rates.
    """
    hours = n / model.rate_hz / 3600.0
    drops = [(int(rng.integers(0, n)), int(rng.uniform(*DROPOUT_S) * model.rate_hz))
             for _ in range(rng.poisson(model.dropouts_per_h * hours))]
    overruns = sorted(int(rng.integers(0, n)) for _ in range(rng.poisson(model.overruns_per_h * hours)))
    return drops, [(s, OVERRUN_BLOCK) for s in overruns]


def apply_glitches(audio: np.ndarray, drops, overruns) -> np.ndarray:
    """Zero the dropouts and cut the overrun blocks out of ``audio`` (samples, channels)."""
    if not drops and not overruns:
        return audio
    out = audio.copy()
    for start, length in drops:
        out[start:start + length] = 0.0
    keep = np.ones(len(out), bool)
    for start, length in overruns:
        keep[start:start + length] = False
    return out[keep]
