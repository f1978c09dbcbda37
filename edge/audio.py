"""Audio sources for the node and the ring buffer between capture and processing.

A source only copies blocks of frames into a :class:`Ring`; the node's worker reads them
out.  Sources: a live input through sounddevice (PortAudio), a WAV file replayed at its
recorded pace or as fast as possible, and raw interleaved PCM on stdin.

Samples are counted as *delivered* (those that reached the ring).  Samples that never did
(a PortAudio input overflow, a full ring) are a gap: the ring records where it happened
and, when known, how many were lost, so the clock model can keep sample -> UTC right
(``ClockModel.report_gap``).
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import sys
import threading
import time
from collections import deque
from typing import Any, BinaryIO, cast

import numpy as np

from earwitness.units import NS_PER_S
from edge.config import AudioSection
from edge.wavio import INT16_SUBTYPE, WavError, wav_info

log = logging.getLogger(__name__)

# A live stream is checked this often; no callback for STALL_S (more than a sound server's
# 1.6-2.3 s to the first one) means it stalled; a dead stream is reopened every REOPEN_S.
WATCH_S = 0.5
STALL_S = 5.0
REOPEN_S = 2.0
# Host-time marks kept in the ring for the clock model (one per written block).
BLOCK_MARKS_KEPT = 4096
HOLD_POLL_S = 0.2


class AudioError(ValueError):
    """An audio source that cannot be opened as configured (one line, says why)."""


@dataclasses.dataclass
class Chunk:
    """Frames read from the ring.

    start: delivered index of the first frame; data: (frames, channels) array;
    gap: samples were lost just before ``start``; lost_frames: how many (None: unknown);
    marks: (delivered index after a block, host time ns when it was captured).
    """

    start: int
    data: np.ndarray
    gap: bool = False
    lost_frames: int | None = None
    marks: list[tuple[int, int]] = dataclasses.field(default_factory=list)


class Ring:
    """Bounded single-producer single-consumer ring of audio frames.

    ``write`` never waits (the capture side must never block): when the block does not
    fit it is dropped, counted in ``overruns``/``frames_lost`` and recorded as a gap.
    ``write_wait`` waits for room instead (a file replayed as fast as possible).
    """

    def __init__(self, capacity_frames: int, channels: int, dtype):
        self.capacity = int(capacity_frames)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=dtype)
        self._cond = threading.Condition()
        self._written = 0  # delivered frames written (monotonic)
        self._read = 0
        self._closed = False
        self._gaps: deque[tuple[int, int | None]] = deque()  # (delivered index, lost or None)
        self._marks: deque[tuple[int, int]] = deque(maxlen=BLOCK_MARKS_KEPT)
        self.overruns = 0
        self.frames_lost = 0
        self._want = 1  # the reader is woken once this many frames wait (fewer wake-ups, less CPU)

    @property
    def dtype(self):
        return self._buf.dtype

    def fill(self) -> int:
        """Frames waiting to be read."""
        return self._written - self._read

    def _put(self, block: np.ndarray, host_ns: int) -> None:
        n = len(block)
        i = self._written % self.capacity
        first = min(n, self.capacity - i)
        self._buf[i:i + first] = block[:first]
        self._buf[:n - first] = block[first:]
        self._written += n
        self._marks.append((self._written, host_ns))
        if self._written - self._read >= self._want:
            self._cond.notify()

    def write(self, block: np.ndarray, host_ns: int | None = None) -> bool:
        """Copy ``block`` (frames, channels) in; False if it was dropped for lack of room."""
        host_ns = time.time_ns() if host_ns is None else host_ns
        with self._cond:
            if self.capacity - (self._written - self._read) < len(block):
                self.report_lost(len(block))
                return False
            self._put(block, host_ns)
            return True

    def write_wait(self, block: np.ndarray, stop: threading.Event, host_ns: int | None = None) -> bool:
        """Copy ``block`` in, waiting for room; False if ``stop`` was set meanwhile."""
        with self._cond:
            while self.capacity - (self._written - self._read) < len(block):
                if stop.is_set() or self._closed:
                    return False
                self._cond.wait(0.1)
            self._put(block, time.time_ns() if host_ns is None else host_ns)
            return True

    def report_lost(self, n_frames: int | None) -> None:
        """Samples were lost before the next delivered one (``None``: how many is unknown)."""
        with self._cond:
            self.overruns += 1
            if n_frames:
                self.frames_lost += n_frames
            if self._gaps and self._gaps[-1][0] == self._written:
                prev = self._gaps[-1][1]
                self._gaps[-1] = (self._written, None if prev is None or n_frames is None else prev + n_frames)
            else:
                self._gaps.append((self._written, n_frames))

    def close(self) -> None:
        """End of stream: ``read`` returns None once the ring is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, max_frames: int, timeout_s: float, min_frames: int = 1) -> Chunk | None:
        """Up to ``max_frames`` frames, never across a gap; None at end of stream.

        Waits until ``min_frames`` are there (or the stream ends, or ``timeout_s`` passes);
        returns an empty chunk if nothing arrived.
        """
        with self._cond:
            self._want = max(1, min(min_frames, self.capacity // 2))
            if self._written - self._read < self._want and not self._closed:
                self._cond.wait(timeout_s)
            avail = self._written - self._read
            if avail == 0:
                return None if self._closed else Chunk(self._read, self._buf[:0].copy())
            gap = False
            lost: int | None = 0
            while self._gaps and self._gaps[0][0] <= self._read:
                n_lost = self._gaps.popleft()[1]
                gap, lost = True, None if lost is None or n_lost is None else lost + n_lost
            n = min(avail, max_frames)
            if self._gaps:
                n = min(n, self._gaps[0][0] - self._read)
            i = self._read % self.capacity
            first = min(n, self.capacity - i)
            data = np.concatenate([self._buf[i:i + first], self._buf[:n - first]])
            start = self._read
            self._read += n
            marks = []
            while self._marks and self._marks[0][0] <= self._read:
                marks.append(self._marks.popleft())
            self._cond.notify()
            return Chunk(start, data, gap, lost if gap else None, marks)


class Source:
    """Common face of the audio sources: ``start(ring)``, ``stop()``, ``rate_hz``, ``channels``."""

    rate_hz: int
    channels: int
    dtype: str
    finite = False  # True: the stream ends (file, pipe) and the node exits after draining
    start_ns: int | None = None  # UTC of sample 0 when the source knows it (a replayed file)
    host_times: bool | None = None  # do host clock times of blocks mean anything? None: a live input's do

    def start(self, ring: Ring) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def status(self) -> dict:
        """For the node's health: ``error`` (why the input is down, else None) and counters."""
        return {"error": None}


class _ThreadSource(Source):
    def __init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, ring: Ring) -> None:
        self._thread = threading.Thread(target=self._guarded, args=(ring,), name=type(self).__name__, daemon=True)
        self._thread.start()

    def status(self) -> dict:
        return {"error": str(self.error) if self.error else None}

    def _guarded(self, ring: Ring) -> None:
        try:
            self._run(ring)
        except BaseException as exc:  # reported by the node; the ring is closed either way
            self.error = exc
        finally:
            ring.close()

    def _run(self, ring: Ring) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


class WavSource(_ThreadSource):
    """A WAV file replayed at its recorded pace (``realtime``) or as fast as processed.

    Paced replay behaves like a live input: a worker that falls behind loses blocks
    (overruns).  Fast replay waits for the worker instead and loses nothing.
    """

    finite = True

    def __init__(self, cfg: AudioSection):
        super().__init__()
        try:
            self.info = wav_info(cast(pathlib.Path, cfg.path))  # config.load checked: a wav source has a path
        except WavError as exc:
            raise AudioError(str(exc)) from None
        self.rate_hz, self.channels = self.info.rate_hz, self.info.channels
        self.dtype = "int16" if self.info.subtype == INT16_SUBTYPE else "float32"
        self.block, self.realtime = cfg.block, cfg.realtime
        if cfg.start_utc is not None:
            from edge.utctime import parse_utc_ns
            self.start_ns = parse_utc_ns(cfg.start_utc)

    def _run(self, ring: Ring) -> None:
        import soundfile as sf

        t0 = time.monotonic()
        frames = 0
        with sf.SoundFile(self.info.path) as f:
            for block in f.blocks(blocksize=self.block, dtype=self.dtype, always_2d=True):
                if self._stop.is_set():
                    return
                frames += len(block)
                if self.realtime:
                    # The block is "captured" when its last frame has been recorded.
                    delay = t0 + frames / self.rate_hz - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    ring.write(block)
                elif not ring.write_wait(block, self._stop):
                    return


class ArraySource(_ThreadSource):
    """Audio already in memory, in segments with known samples lost between them.

    For nodes that are not fed by a device: the simulator's virtual nodes, tests.

    Parameters
    ----------
    segments : list of (int, numpy.ndarray)
        ``(first sample index, frames)`` in order, each array (frames, channels) of one
        dtype; the samples between the end of one segment and the start of the next were
        lost and are reported as a gap of that many frames (an interface that knows what it
        dropped), so the clock model keeps sample -> UTC right across it.
    rate_hz : int
        Nominal sample rate.
    start_ns : int, optional
        UTC of the first segment's first sample (a hint for labelling PPS seconds).
    block : int
        Frames written to the ring at a time.
    speed : float, optional
        None (default): as fast as the node takes it, losing nothing.  Else paced at
        ``speed`` times the recorded pace from ``origin``.
    origin : (float, int), optional
        ``(time.monotonic() seconds, UTC ns)`` pairing a moment with the audio's time, so
        that several paced sources stay in step (default: the start, with ``start_ns``).
    hold : threading.Event, optional
        When given, the stream ends only once it is set, not after the last segment: the
        node stays up (answering commands, e.g. for evidence clips) until then.

    Segments are dropped as they are written: memory goes with the audio fed.
    """

    finite = True
    host_times = False

    def __init__(self, segments, rate_hz: int, start_ns: int | None = None, block: int = 4800,
                 speed: float | None = None, origin: tuple[float, int] | None = None,
                 hold: threading.Event | None = None):
        super().__init__()
        self._segments = deque(segments)
        if not self._segments:
            raise AudioError("an array source needs at least one segment of audio")
        first = self._segments[0][1]
        if first.ndim != 2:
            raise AudioError("array source segments must be (frames, channels) arrays")
        self.rate_hz, self.channels, self.dtype = int(rate_hz), first.shape[1], str(first.dtype)
        self.start_ns, self.block, self.speed, self.origin, self.hold = start_ns, int(block), speed, origin, hold
        self.fed = threading.Event()  # set once every segment is in the ring

    def _run(self, ring: Ring) -> None:
        base = self._segments[0][0]
        origin_s, origin_ns = self.origin or (time.monotonic(), self.start_ns or 0)
        expected = base
        while self._segments:
            at, frames = self._segments.popleft()
            if at < expected:
                raise AudioError(f"array source segments overlap at sample {at}")
            if at > expected:
                ring.report_lost(at - expected)
            for i in range(0, len(frames), self.block):
                block = frames[i:i + self.block]
                if self.speed:
                    # The block is "captured" when its last frame has been recorded.
                    end_ns = (self.start_ns or 0) + (at - base + i + len(block)) * NS_PER_S / self.rate_hz
                    delay = origin_s + (end_ns - origin_ns) / NS_PER_S / self.speed - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                if not ring.write_wait(block, self._stop):
                    return
            expected = at + len(frames)
        self.fed.set()
        while self.hold is not None and not self.hold.is_set() and not self._stop.is_set():
            self.hold.wait(HOLD_POLL_S)


class StdinSource(_ThreadSource):
    """Raw interleaved PCM (``format``, ``channels``, ``rate_hz`` from the config) on a pipe."""

    finite = True

    def __init__(self, cfg: AudioSection, stream: BinaryIO | None = None):
        super().__init__()
        self.rate_hz, self.channels, self.dtype = cfg.rate_hz, cfg.channels, cfg.format
        self.block = cfg.block
        self.stream = stream if stream is not None else sys.stdin.buffer

    def _run(self, ring: Ring) -> None:
        frame_bytes = self.channels * np.dtype(self.dtype).itemsize
        pending = b""
        while not self._stop.is_set():
            data = self.stream.read(self.block * frame_bytes - len(pending))
            if not data:
                return  # a trailing partial frame is not audio
            pending += data
            whole = len(pending) - len(pending) % frame_bytes
            if whole:
                block = np.frombuffer(pending[:whole], dtype=self.dtype).reshape(-1, self.channels)
                pending = pending[whole:]
                if not ring.write_wait(block, self._stop):
                    return


class DeviceSource(Source):
    """A live input through sounddevice; its callback only copies into the ring.

    A stream that dies (the sound server or a USB interface went away: PortAudio ends it) or
    stalls (no callback for ``STALL_S``) is reported in ``status()`` and reopened every
    ``REOPEN_S`` until it runs again, the samples missed reported to the ring as a gap of
    unknown length (the clock model then relabels from the next PPS edges).
    """

    def __init__(self, cfg: AudioSection):
        try:
            import sounddevice as sd
        except OSError as exc:  # the module is there but the PortAudio library is not
            raise AudioError(f"PortAudio library not found ({exc}); install it (apt-get install libportaudio2)") from None
        except ImportError:
            raise AudioError("live audio needs the sounddevice package (pip install 'sounddevice>=0.4,<0.6')") from None
        self._sd = sd
        self.rate_hz, self.channels, self.dtype = cfg.rate_hz, cfg.channels, cfg.format
        self.block, self.device = cfg.block, cfg.device
        self.device_overflows = 0
        self.reopens = 0
        self.fault: str | None = None  # why the stream is down, while it is (not `error`: that stops the node)
        self._next_adc_s: float | None = None
        self._stream: Any = None
        self._last_callback_s = 0.0
        self._died = threading.Event()
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        try:
            sd.check_input_settings(device=self.device, channels=self.channels, dtype=self.dtype,
                                    samplerate=self.rate_hz)
        except Exception as exc:  # sounddevice raises ValueError or PortAudioError
            raise AudioError(f"audio device {self.device!r}: {exc}") from None

    def start(self, ring: Ring) -> None:
        self._open(ring)
        self._watch = threading.Thread(target=self._supervise, args=(ring,), name="ew-audio-watch", daemon=True)
        self._watch.start()

    def _open(self, ring: Ring) -> None:
        rate = self.rate_hz

        def callback(indata, frames, when, status):
            self._last_callback_s = time.monotonic()
            adc_s = when.inputBufferAdcTime
            if status.input_overflow:
                self.device_overflows += 1
                lost = None
                if self._next_adc_s and adc_s:  # PortAudio's ADC times, when the host API gives them
                    lost = max(0, round((adc_s - self._next_adc_s) * rate)) or None
                ring.report_lost(lost)
            self._next_adc_s = adc_s + frames / rate if adc_s else None
            ring.write(indata)

        self._died.clear()
        # The first callback may take seconds (a sound server's start-up): the stall clock starts now.
        self._last_callback_s = time.monotonic()
        self._stream = self._sd.InputStream(device=self.device, channels=self.channels, dtype=self.dtype,
                                            samplerate=rate, blocksize=self.block, callback=callback,
                                            finished_callback=self._died.set)
        self._stream.start()

    def _supervise(self, ring: Ring) -> None:
        while not self._stop.wait(WATCH_S):
            stalled = time.monotonic() - self._last_callback_s > STALL_S
            if not (self._died.is_set() or stalled) or self._stop.is_set():
                continue
            self.fault = f"audio device {self.device!r}: the stream {'stopped' if self._died.is_set() else 'stalled'}"
            log.warning("%s; reopening it every %.0f s", self.fault, REOPEN_S)
            self._close()
            while not self._stop.wait(REOPEN_S):
                try:
                    # PortAudio lists devices once: a sound server that came back needs a new list
                    self._sd._terminate()
                    self._sd._initialize()
                    self._open(ring)
                except Exception as exc:  # sounddevice raises ValueError or PortAudioError
                    self.fault = f"audio device {self.device!r}: {exc}"
                    continue
                ring.report_lost(None)  # how much was missed is unknown: the clock relabels
                self.reopens += 1
                log.warning("audio device %r reopened", self.device)
                self.fault = None
                break

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # a stream whose server is gone may fail to close; it is dropped anyway
                log.debug("closing a dead stream failed", exc_info=True)

    def status(self) -> dict:
        return {"error": self.fault, "reopens": self.reopens, "device_overflows": self.device_overflows}

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(5)
        self._close()


def open_source(cfg: AudioSection) -> Source:
    """The source ``cfg.source`` names, checked (AudioError if it cannot be opened)."""
    if cfg.source == "wav":
        src: Source = WavSource(cfg)
    elif cfg.source == "stdin":
        src = StdinSource(cfg)
    else:
        src = DeviceSource(cfg)
    for key in ("mic_channel", "pps_channel"):
        ch = getattr(cfg, key)
        if ch is not None and ch >= src.channels:
            raise AudioError(f"audio.{key} = {ch} but the source has {src.channels} channel(s)")
    return src
