"""PPS sources: where the GPS pulse-per-second edges come from.

Three sources, best first (see ``edge.clock.ClockModel`` for how each is used):

``AudioPps``
    The PPS pulse wired into a spare audio input channel; the C edge finder
    (``csrc/pps.c``) places each leading edge to a fraction of a sample on the same
    sample clock as the microphone: timing ``"pps-audio"``.
``KernelPps``
    The Linux PPS API (``/dev/ppsN``, RFC 2783 ``PPS_FETCH``): the kernel's system-clock
    timestamp of each pulse, to be matched with audio block times: timing ``"pps-kernel"``.
``SYSTEM``
    No PPS at all: the (chrony-disciplined) system clock, flagged as degraded:
    timing ``"system"``.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from dataclasses import dataclass

import numpy as np

from earwitness.units import NS_PER_S

TIMING_AUDIO = "pps-audio"
TIMING_KERNEL = "pps-kernel"
TIMING_SYSTEM = "system"
SYSTEM = TIMING_SYSTEM

DEFAULT_THRESHOLD_SNR = 12.0
# PPS pulses are 1 us-200 ms wide; the pairing rule needs them under half a second.
DEFAULT_MAX_PULSE_WIDTH_S = 0.45


class AudioPps:
    """Finds PPS leading edges in an audio channel, streaming.

    Parameters
    ----------
    sample_rate_hz : float
        Nominal sample rate of the channel.
    polarity : {0, 1, -1}, optional
        ``1`` if the leading (on-time) edge rises, ``-1`` if it falls, ``0`` (default) to
        learn it: the leading edge is the one followed by an edge of the other sign within
        ``max_pulse_width_s``.
    threshold_snr : float, optional
        Edge height over the noise RMS of the first difference needed to accept an edge.
    max_pulse_width_s : float, optional
        Longest PPS pulse expected; must be under half a second.

    Notes
    -----
    Method: the first difference turns every edge, AC-coupled or not, into a band-limited
    impulse; the edge is the centroid of that impulse less half a sample, which is the
    50 % point of the band-limited step (moment estimator of a band-limited pulse's delay).
    Results are identical whatever the block sizes.
    """

    def __init__(self, sample_rate_hz: float, polarity: int = 0,
                 threshold_snr: float = DEFAULT_THRESHOLD_SNR,
                 max_pulse_width_s: float = DEFAULT_MAX_PULSE_WIDTH_S):
        if polarity not in (0, 1, -1):
            raise ValueError(f"polarity must be 0, 1 or -1, not {polarity!r}")
        if not 0 < max_pulse_width_s < 0.5:
            raise ValueError("max_pulse_width_s must be between 0 and 0.5 s")
        # ImportError here: the C extension is not built (`make test` or `pip install -e .`)
        from earwitness._native import ffi, lib

        self._ffi, self._lib = ffi, lib
        obj = self._lib.ew_pps_new(float(sample_rate_hz), int(polarity), float(threshold_snr),
                                   float(max_pulse_width_s))
        if obj == self._ffi.NULL:
            raise ValueError("invalid PPS edge finder parameters")
        self._obj = self._ffi.gc(obj, self._lib.ew_pps_del)
        self.sample_rate_hz = float(sample_rate_hz)
        self._refractory = max(1, int(0.0005 * sample_rate_hz))
        self._out = self._ffi.new("ew_pps_edge_t[]", 16)
        self.snr = np.zeros(0)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feeds one block; returns the leading edges found, as fractional sample indices
        from the start of the stream (float64 array, ascending).  ``self.snr`` holds their
        signal-to-noise ratios."""
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError("AudioPps.process takes one channel (1-D array)")
        room = x.size // self._refractory + 4
        if len(self._out) < room:
            self._out = self._ffi.new("ew_pps_edge_t[]", room)
        n = self._lib.ew_pps_do(self._obj, self._ffi.cast("float *", x.ctypes.data), x.size,
                                self._out, len(self._out))
        edges = np.frombuffer(self._ffi.buffer(self._out, n * self._ffi.sizeof("ew_pps_edge_t")),
                              dtype=[("sample", "f8"), ("height", "f4"), ("snr", "f4")])
        self.snr = edges["snr"].astype(float)
        return edges["sample"].copy()

    @property
    def polarity(self) -> int:
        """Leading-edge polarity in use: 1, -1, or 0 while still learning."""
        return int(self._lib.ew_pps_polarity(self._obj))

    @property
    def noise_rms(self) -> float:
        """RMS of the first difference's noise, full scale 1."""
        return float(self._lib.ew_pps_noise_rms(self._obj))

    @property
    def samples(self) -> int:
        """Samples consumed so far."""
        return int(self._lib.ew_pps_samples(self._obj))


# --- Linux PPS API (RFC 2783 as implemented by linux/pps.h) -------------------------------

class _PpsKtime(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_int64), ("nsec", ctypes.c_int32), ("flags", ctypes.c_uint32)]


class _PpsKinfo(ctypes.Structure):
    _fields_ = [("assert_sequence", ctypes.c_uint32), ("clear_sequence", ctypes.c_uint32),
                ("assert_tu", _PpsKtime), ("clear_tu", _PpsKtime), ("current_mode", ctypes.c_int)]


class _PpsFdata(ctypes.Structure):
    _fields_ = [("info", _PpsKinfo), ("timeout", _PpsKtime)]


PPS_TIME_INVALID = 1 << 0
_IOC_READ_WRITE = 3
# linux/pps.h declares PPS_FETCH as _IOWR('p', 0xa4, struct pps_fdata *): the size field
# is that of the *pointer*, a quirk of the header that the kernel matches exactly.
PPS_FETCH = ((_IOC_READ_WRITE << 30) | (ctypes.sizeof(ctypes.c_void_p) << 16)
             | (ord("p") << 8) | 0xA4)


@dataclass(frozen=True)
class PpsEvent:
    """One kernel PPS event: the assert edge's system-clock time and sequence number."""

    assert_ns: int
    sequence: int
    clear_ns: int
    clear_sequence: int


class PpsError(OSError):
    """The PPS device is missing, not a PPS device, or gave no pulse in time."""


def decode_fdata(buf: bytes | bytearray) -> PpsEvent:
    """Decodes a ``struct pps_fdata`` as filled by ``PPS_FETCH`` into a ``PpsEvent``."""
    if len(buf) < ctypes.sizeof(_PpsFdata):
        raise ValueError(f"pps_fdata is {ctypes.sizeof(_PpsFdata)} bytes, got {len(buf)}")
    info = _PpsFdata.from_buffer_copy(bytes(buf[:ctypes.sizeof(_PpsFdata)])).info
    return PpsEvent(
        assert_ns=info.assert_tu.sec * NS_PER_S + info.assert_tu.nsec,
        sequence=info.assert_sequence,
        clear_ns=info.clear_tu.sec * NS_PER_S + info.clear_tu.nsec,
        clear_sequence=info.clear_sequence,
    )


def encode_fetch_request(timeout_s: float | None) -> bytearray:
    """A ``struct pps_fdata`` ready for ``PPS_FETCH``: wait at most ``timeout_s`` (None: forever)."""
    req = _PpsFdata()
    if timeout_s is None:
        req.timeout.flags = PPS_TIME_INVALID
    else:
        req.timeout.sec = int(timeout_s)
        req.timeout.nsec = int(round((timeout_s - int(timeout_s)) * NS_PER_S))
    return bytearray(bytes(req))


class KernelPps:
    """Reads PPS events from a Linux PPS device (``/dev/ppsN``, RFC 2783).

    Raises ``PpsError`` with a one-line reason when the device is missing or unusable.
    Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str = "/dev/pps0"):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise PpsError(errno.ENOENT, f"no PPS device {path} (is the pps-gpio overlay or "
                           "ldattach loaded?)", path) from None
        except PermissionError:
            raise PpsError(errno.EACCES, f"no permission to read PPS device {path}", path) from None

    def fetch(self, timeout_s: float | None = 1.5) -> PpsEvent:
        """Waits for the next pulse (at most ``timeout_s``) and returns it."""
        buf = encode_fetch_request(timeout_s)
        try:
            fcntl.ioctl(self._fd, PPS_FETCH, buf, True)
        except OSError as exc:
            if exc.errno == errno.ETIMEDOUT:
                raise PpsError(errno.ETIMEDOUT, f"no pulse on {self.path} within {timeout_s} s",
                               self.path) from None
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                raise PpsError(exc.errno, f"{self.path} is not a PPS device", self.path) from None
            raise
        return decode_fdata(buf)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
