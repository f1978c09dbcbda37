"""Evidence buffer: the last hours of the microphone channel on disk, at a reduced rate.

Audio is low-passed and decimated to about ``rate_hz`` (12 kHz by default; the exact rate
is the input rate over an integer factor), collected in memory for ``chunk_s`` seconds and
then written as one FLAC file (libsndfile through soundfile) with a JSON sidecar holding
the UTC of its first and last samples.  Oldest chunks go first when the folder exceeds its
byte budget or its hours.  A crash loses at most the chunk in memory.

:meth:`EvidenceBuffer.clip` cuts an interval out of it, as FLAC bytes with the UTC of the
first and last samples it holds and their SHA-256.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import threading
import time
from typing import Callable

import numpy as np
import scipy.signal
import soundfile as sf

from earwitness.clip import MAX_CLIP_S
from earwitness.units import NS_PER_S

INT16_FULL_SCALE = 32768.0
# Anti-alias filter as scipy.signal.decimate's default: Chebyshev type I, order 8,
# 0.05 dB ripple, corner at 0.8 of the new Nyquist frequency.
AA_ORDER, AA_RIPPLE_DB, AA_CORNER = 8, 0.05, 0.8
FLAC_SUBTYPE = "PCM_16"
CHUNK_GLOB = "ev-*.flac"
# A clip request for audio not kept yet (a node behind its input: the simulator's under load) waits
# for it while it keeps coming: at most CLIP_WAIT_S, and no longer than CLIP_STALL_S without progress.
CLIP_WAIT_S = 30.0
CLIP_STALL_S = 2.0
CLIP_POLL_S = 0.1

# stamp(sample index at the input rate) -> (t_ns, t_unc_ns, timing label)
Stamp = Callable[[float], "tuple[int, int, str]"]


class ClipError(ValueError):
    """A clip that cannot be cut (bad interval, no audio there)."""


@dataclasses.dataclass
class _Chunk:
    first_sample: int  # input-rate index of the first kept sample
    blocks: list
    frames: int = 0


# Linear sample <-> time within a chunk: the clock's rate over 30 s is constant to far better
# than one evidence sample.
def _chunk_index(meta: dict, t_ns: int) -> float:
    """The fractional index in a chunk of the sample at ``t_ns``."""
    n, span_ns = meta["frames"], max(1, meta["t1_ns"] - meta["t0_ns"])
    return (t_ns - meta["t0_ns"]) * (n - 1) / span_ns if n > 1 else 0.0


def _chunk_time(meta: dict, i: int) -> int:
    """The time of sample ``i`` of a chunk."""
    n, span_ns = meta["frames"], max(1, meta["t1_ns"] - meta["t0_ns"])
    return meta["t0_ns"] + round(i * span_ns / max(1, n - 1))


class EvidenceBuffer:
    """Keeps the microphone audio of the last ``hours`` in ``folder``, within ``budget_bytes``.

    Parameters
    ----------
    folder : path-like
        Where the chunks live (created if missing); chunks already there are kept.
    input_rate_hz : int
        Rate of the audio given to :meth:`write`.
    rate_hz : int
        Wanted evidence rate; the kept rate is ``input_rate_hz / round(input_rate_hz / rate_hz)``.
    hours, budget_bytes, chunk_s : float
        Retention in time and bytes, and the length of one file.
    stamp : callable(sample) -> (t_ns, t_unc_ns, timing)
        The node's clock, to timestamp the chunks.
    """

    def __init__(self, folder, input_rate_hz: int, stamp: Stamp, rate_hz: int = 12000, hours: float = 30.0,
                 budget_bytes: float = 2 * 1024**3, chunk_s: float = 30.0):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.factor = max(1, round(input_rate_hz / rate_hz))
        self.input_rate_hz = int(input_rate_hz)
        self.rate_hz = self.input_rate_hz / self.factor
        if self.rate_hz != int(self.rate_hz):
            raise ValueError(f"evidence rate {self.rate_hz} Hz is not a whole number; choose another rate_hz")
        self.rate_hz = int(self.rate_hz)
        self.stamp = stamp
        self.hours, self.budget_bytes = float(hours), float(budget_bytes)
        self.chunk_frames = max(1, int(chunk_s * self.rate_hz))
        self._sos = (scipy.signal.cheby1(AA_ORDER, AA_RIPPLE_DB, AA_CORNER / self.factor, output="sos")
                     if self.factor > 1 else None)
        self._lock = threading.Lock()
        self._reset(0)
        self.evicted_files = 0

    def _reset(self, next_sample: int) -> None:
        self._zi = np.zeros((self._sos.shape[0], 2)) if self._sos is not None else None
        self._next = next_sample  # input index of the next sample to keep
        self._expect: int | None = None  # input index the next block should start at
        self._chunk: _Chunk | None = None

    def write(self, samples: np.ndarray, start: int, gap: bool = False) -> None:
        """Add one block of the microphone channel whose first sample has input index ``start``.

        ``gap``: samples were lost before this block; the chunk in memory is closed so that
        each file stays continuous.
        """
        x = samples.astype(np.float32) / INT16_FULL_SCALE if samples.dtype == np.int16 else np.asarray(samples, np.float32)
        with self._lock:
            if gap or start != (self._expect if self._expect is not None else self._next):
                self._close_chunk()
                self._reset(start)
            self._expect = start + len(x)
            if self._sos is not None:
                y, self._zi = scipy.signal.sosfilt(self._sos, x, zi=self._zi)
            else:
                y = x
            offset = self._next - start
            kept = y[offset::self.factor] if offset < len(y) else y[:0]
            if len(kept):
                if self._chunk is None:
                    self._chunk = _Chunk(self._next, [])
                self._chunk.blocks.append(np.clip(np.round(kept * INT16_FULL_SCALE), -32768, 32767).astype(np.int16))
                self._chunk.frames += len(kept)
                self._next += len(kept) * self.factor
            if self._chunk is not None and self._chunk.frames >= self.chunk_frames:
                self._close_chunk()

    def heard_through_ns(self) -> int | None:
        """UTC ns of the newest sample kept (in memory or on disk), None before the first."""
        with self._lock:
            last = self._next - self.factor
            return self.stamp(last)[0] if last >= 0 and self._expect is not None else None

    def wait_heard(self, t_ns, stop: threading.Event) -> None:
        """Wait until audio up to ``t_ns`` is kept, while it still comes (see CLIP_WAIT_S), or ``stop``."""
        deadline = time.monotonic() + CLIP_WAIT_S
        heard, moved = None, time.monotonic()
        while isinstance(t_ns, int) and not stop.is_set():
            now, now_heard = time.monotonic(), self.heard_through_ns()
            if now_heard is not None and now_heard >= t_ns:
                return
            if now_heard != heard:
                heard, moved = now_heard, now
            if now >= deadline or now - moved >= CLIP_STALL_S:
                return
            stop.wait(CLIP_POLL_S)

    def _meta(self, chunk: _Chunk) -> dict:
        last = chunk.first_sample + (chunk.frames - 1) * self.factor
        t0, unc0, timing = self.stamp(chunk.first_sample)
        t1, unc1, _ = self.stamp(last)
        return {"first_sample": chunk.first_sample, "last_sample": last, "frames": chunk.frames,
                "rate_hz": self.rate_hz, "t0_ns": t0, "t1_ns": t1, "t_unc_ns": max(unc0, unc1), "timing": timing}

    def _close_chunk(self) -> None:
        chunk, self._chunk = self._chunk, None
        if chunk is None or chunk.frames == 0:
            return
        meta = self._meta(chunk)
        name = f"ev-{meta['t0_ns']:020d}"
        tmp = self.folder / (name + ".tmp")
        sf.write(tmp, np.concatenate(chunk.blocks), self.rate_hz, format="FLAC", subtype=FLAC_SUBTYPE)
        os.replace(tmp, self.folder / (name + ".flac"))
        (self.folder / (name + ".json")).write_text(json.dumps(meta))
        self._prune()

    def flush(self) -> None:
        """Write the chunk in memory now (at shutdown)."""
        with self._lock:
            self._close_chunk()

    def _files(self) -> list[pathlib.Path]:
        return sorted(self.folder.glob(CHUNK_GLOB))

    def _prune(self) -> None:
        files = self._files()
        sizes = {f: f.stat().st_size for f in files}
        total = sum(sizes.values())
        newest_ns = int(files[-1].stem[3:]) if files else 0
        horizon_ns = newest_ns - int(self.hours * 3600 * NS_PER_S)
        for f in files[:-1]:  # the newest chunk is always kept
            if total <= self.budget_bytes and int(f.stem[3:]) >= horizon_ns:
                break
            total -= sizes[f]
            f.unlink(missing_ok=True)
            f.with_suffix(".json").unlink(missing_ok=True)
            self.evicted_files += 1

    def disk_bytes(self) -> int:
        """Bytes the stored chunks take."""
        return sum(f.stat().st_size for f in self._files())

    def _segments(self):
        """(meta, loader) of every stored chunk and of the one in memory, oldest first."""
        for f in self._files():
            try:
                meta = json.loads(f.with_suffix(".json").read_text())
            except (OSError, ValueError):
                continue  # a chunk without its sidecar cannot be timed: not evidence
            yield meta, (lambda f=f: sf.read(f, dtype="int16")[0])
        if self._chunk is not None and self._chunk.frames:
            blocks = list(self._chunk.blocks)
            yield self._meta(self._chunk), (lambda: np.concatenate(blocks))

    def clip(self, t0_ns: int, t1_ns: int) -> dict:
        """The audio from ``t0_ns`` to ``t1_ns`` (UTC ns) as FLAC, with its times and SHA-256.

        Returns a dict: ``t0_ns``/``t1_ns`` (times of the first and last samples returned),
        ``rate_hz``, ``frames``, ``t_unc_ns``, ``timing``, ``sha256`` (hex, of the FLAC
        bytes) and ``flac`` (bytes).  Raises ClipError when the interval is malformed or no
        kept audio overlaps it.  A gap in the audio ends the clip at the gap.
        """
        if not (isinstance(t0_ns, int) and isinstance(t1_ns, int)) or t1_ns <= t0_ns:
            raise ClipError("t0_ns and t1_ns must be integers with t0_ns < t1_ns")
        if t1_ns - t0_ns > MAX_CLIP_S * NS_PER_S:
            raise ClipError(f"a clip is at most {MAX_CLIP_S:g} s")
        pieces, t_first, t_last, prev, unc, timing = [], None, None, None, 0, None
        with self._lock:
            for meta, load in self._segments():
                if meta["t1_ns"] < t0_ns or meta["t0_ns"] > t1_ns:
                    continue
                n = meta["frames"]
                i0 = max(0, int(np.ceil(_chunk_index(meta, t0_ns))))
                i1 = min(n - 1, int(np.floor(_chunk_index(meta, t1_ns))))
                if i1 < i0:
                    continue
                if prev is not None and (prev != meta["first_sample"] - self.factor or i0 != 0):
                    break  # a gap: the clip stops at it
                pieces.append(load()[i0:i1 + 1])
                t_first = _chunk_time(meta, i0) if t_first is None else t_first
                t_last = _chunk_time(meta, i1)
                prev = meta["first_sample"] + i1 * self.factor if i1 == n - 1 else -1
                unc, timing = max(unc, meta["t_unc_ns"]), meta["timing"]
        if not pieces:
            raise ClipError("no kept audio overlaps the interval")
        audio = np.concatenate(pieces)
        buf = io.BytesIO()
        sf.write(buf, audio, self.rate_hz, format="FLAC", subtype=FLAC_SUBTYPE)
        flac = buf.getvalue()
        return {"t0_ns": t_first, "t1_ns": t_last, "rate_hz": self.rate_hz, "frames": int(len(audio)),
                "t_unc_ns": int(unc), "timing": timing, "sha256": hashlib.sha256(flac).hexdigest(), "flac": flac}
