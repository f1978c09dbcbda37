"""Impulse detector: the C detector of ``csrc/detector.c`` behind a streaming NumPy API.

Feed audio in blocks of any size; a pulse comes out once its window has passed (``window_ms``
after the trigger), with its onset counted in samples from the first sample ever given. The
results do not depend on how the audio is cut into blocks.

Example::

    det = Detector(48000)
    for block in blocks:               # float32 in [-1, 1] or int16
        for pulse in det.process(block):
            print(pulse.sample, pulse.snr_db)
    tail = det.flush()
"""
from __future__ import annotations

import dataclasses

import numpy as np

try:
    from earwitness._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the C extension earwitness._native is not built; build it with `pip install -e .` "
        "(or `make test`) on a machine with a C compiler"
    ) from exc

# Feature names of ew_pulse_t that go into Pulse.features (besides peak_dbfs, snr_db).
FEATURES = ("noise_dbfs", "rise_ms", "duration_ms", "decay_ms", "crest_db", "low_ratio_db", "high_ratio_db")
WHY_LEN = 256


def _param_names() -> tuple[str, ...]:
    return tuple(name for name, _ in ffi.typeof("ew_detector_params_t").fields)


PARAMS = _param_names()


def default_params() -> dict[str, float]:
    """The detector's default parameters, by name (see csrc/detector.h for their meaning)."""
    p = ffi.new("ew_detector_params_t *")
    lib.ew_detector_params_default(p)
    return {name: float(getattr(p, name)) for name in PARAMS}


@dataclasses.dataclass(frozen=True)
class Pulse:
    """One detected impulse.

    sample: onset (first arrival) as a fractional sample index counted from the first sample
        ever given to the Detector.
    peak_dbfs: peak of the high-passed signal in the pulse window, dB re full scale.
    snr_db: that peak over the noise-floor rms at the trigger.
    features: rise_ms, duration_ms, decay_ms, crest_db, low_ratio_db, high_ratio_db,
        noise_dbfs, for classification.
    """

    sample: float
    peak_dbfs: float
    snr_db: float
    features: dict[str, float]


class Detector:
    """Streaming impulse detector.

    Parameters
    ----------
    sample_rate_hz : float
        8000 to 192000.
    **params
        Any of :data:`PARAMS` (milliseconds, seconds, dB as their names say); the rest keep
        :func:`default_params`.

    Raises
    ------
    ValueError
        Unknown parameter name, or a value the detector cannot use (the message says why).
    """

    def __init__(self, sample_rate_hz: float, **params: float) -> None:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise ValueError(f"unknown detector parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMS)}")
        self._params = ffi.new("ew_detector_params_t *")
        lib.ew_detector_params_default(self._params)
        for name, value in params.items():
            try:
                setattr(self._params, name, float(value))
            except (TypeError, ValueError):
                raise ValueError(f"detector parameter {name} must be a number, not {value!r}") from None
        why = ffi.new("char[]", WHY_LEN)
        if lib.ew_detector_check(float(sample_rate_hz), self._params, why, WHY_LEN) != 0:
            raise ValueError(f"detector: {ffi.string(why).decode()}")
        self.sample_rate_hz = float(sample_rate_hz)
        self.params = {name: float(getattr(self._params, name)) for name in PARAMS}
        handle = lib.ew_detector_new(self.sample_rate_hz, self._params)
        if handle == ffi.NULL:
            raise MemoryError("detector: out of memory")
        self._det = ffi.gc(handle, lib.ew_detector_del)
        self._capacity = 0
        self._buffer_for = -1
        self._out = None
        self._consumed = ffi.new("size_t *")

    @property
    def samples_seen(self) -> int:
        """Samples processed so far."""
        return int(lib.ew_detector_samples(self._det))

    def _buffer(self, n: int):
        if n != self._buffer_for:
            need = int(lib.ew_detector_max_pulses(self._det, n))
            if need > self._capacity:
                self._capacity = need
                self._out = ffi.new("ew_pulse_t[]", need)
            self._buffer_for = n
        return self._out

    def process(self, samples) -> list[Pulse]:
        """Feed one block; returns the pulses whose window ended inside it.

        samples : 1-D array, float32 (full scale +-1.0; other float types are converted) or int16.
        """
        x = samples if type(samples) is np.ndarray else np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"samples must be 1-D (one channel), got shape {x.shape}")
        if x.dtype == np.float32:
            ctype, do = "float[]", lib.ew_detector_do
        elif x.dtype == np.int16:
            ctype, do = "int16_t[]", lib.ew_detector_do_s16
        elif x.dtype.kind == "f":
            x, ctype, do = x.astype(np.float32), "float[]", lib.ew_detector_do
        else:
            raise ValueError(f"samples must be float32 or int16, not {x.dtype}")
        n = len(x)
        out = self._buffer(n)
        ptr = ffi.from_buffer(ctype, x if x.flags.c_contiguous else np.ascontiguousarray(x))
        count = do(self._det, ptr, n, out, self._capacity, self._consumed)
        done = self._consumed[0]
        if not count and done == n:
            return []  # the common case: a block without a pulse end
        pulses = [self._pulse(out[i]) for i in range(count)]
        while done < n:  # only if the out buffer filled up
            count = do(self._det, ptr + done, n - done, out, self._capacity, self._consumed)
            pulses.extend(self._pulse(out[i]) for i in range(count))
            done += self._consumed[0]
        return pulses

    def flush(self) -> list[Pulse]:
        """End of stream: returns the pulse still inside its window, if any."""
        out = self._buffer(1)
        count = lib.ew_detector_flush(self._det, out, self._capacity)
        return [self._pulse(out[i]) for i in range(count)]

    @staticmethod
    def _pulse(c) -> Pulse:
        return Pulse(
            sample=float(c.onset_index) + float(c.onset_frac),
            peak_dbfs=float(c.peak_dbfs),
            snr_db=float(c.snr_db),
            features={name: float(getattr(c, name)) for name in FEATURES},
        )
