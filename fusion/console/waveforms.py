"""The incident page's waveforms: each stored clip drawn as SVG geometry, its picks marked, and a
zoom of ±INSET_HALF_MS round every pick; and the clip as a WAV file for the page's player.

Times are milliseconds after the incident's first discharge (its earliest shot), so the panels of
all sensors share one axis. Amplitudes are the clip's samples as fractions of the node's digital
full scale (FS, ±1): the server does not know each microphone's sensitivity in Pa.  A long clip
is drawn as its min/max envelope over ENVELOPE_BUCKETS columns (what a screen shows anyway); an
inset, a few hundred samples, is drawn sample by sample.

Example::

    panels = waveform_panels(store.clips(incident_id), pulses, first_discharge_ns)
    wav_bytes = clip_wav(store.clips(incident_id)[0]["data"])
"""
from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import soundfile

from fusion.waveforms import min_max_envelope

MS_PER_S = 1000.0
NS_PER_MS = 1_000_000
# The zoom round each pick: enough for the onset and the first echo of a nearby wall.
INSET_HALF_MS = 20.0
# A sensor may pick many pulses (a long burst): zoom on the first few, the table lists every one.
MAX_INSETS = 6
ENVELOPE_BUCKETS = 900
# SVG user units (pixels at 100 %) of a panel and an inset, and about how many time ticks each has;
# the margins hold the axes' labels.
PANEL = (900.0, 150.0, 8)
INSET = (210.0, 120.0, 4)
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58.0, 10.0, 8.0, 34.0
# A silent clip still gets an amplitude axis: ±this much of full scale.
MIN_AMPLITUDE_FS = 1e-3


@dataclasses.dataclass
class Axis:
    """One plot area in SVG units: data (ms, FS) to pixels, and its ticks."""

    lo_ms: float
    hi_ms: float
    amp_fs: float          # the y axis spans ±amp_fs
    width: float
    height: float
    tick_count: int

    def x(self, t_ms: float) -> float:
        inner = self.width - MARGIN_L - MARGIN_R
        return MARGIN_L + (t_ms - self.lo_ms) / (self.hi_ms - self.lo_ms) * inner

    def y(self, amp: float) -> float:
        inner = self.height - MARGIN_T - MARGIN_B
        return MARGIN_T + (1.0 - (amp + self.amp_fs) / (2 * self.amp_fs)) * inner

    def x_ticks(self) -> list[tuple[float, str]]:
        return [(self.x(t), _label(t)) for t in _nice_ticks(self.lo_ms, self.hi_ms, self.tick_count)]

    def y_ticks(self) -> list[tuple[float, str]]:
        return [(self.y(a), _label(a)) for a in (-self.amp_fs, 0.0, self.amp_fs)]


@dataclasses.dataclass
class Plot:
    """A drawn trace: its axis, the polyline's points, the picks (x, used, label) inside it."""

    axis: Axis
    points: str
    picks: list[dict]
    title: str


@dataclasses.dataclass
class ClipPanel:
    """One sensor's clip: the whole trace and a zoom per pick."""

    index: int             # the clip's place in the store's list: its WAV route
    node: str
    rate_hz: int
    duration_ms: float
    start_ms: float        # the clip's first sample, ms after the first discharge
    sha256: str
    full: Plot
    insets: list[Plot]
    picks_outside: int     # the node's picks before or after the clip (the server asks for the used ones' span)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """A stored clip (FLAC) as its first channel's samples, int16, and the rate."""
    samples, rate_hz = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return samples[:, 0], int(rate_hz)


def clip_wav(data: bytes) -> bytes:
    """A stored clip (FLAC) as a 16-bit PCM WAV file: the same samples, for any browser's player."""
    samples, rate_hz = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate_hz, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def waveform_panels(clips: list[dict], pulses: list[dict], first_ns: int) -> list[ClipPanel]:
    """Every clip (the store's dicts, in its order) drawn with the incident's ``pulses`` of its node."""
    panels = []
    for index, clip in enumerate(clips):
        samples, rate_hz = decode(clip["data"])
        fs = samples.astype(np.float64) / -np.iinfo(np.int16).min
        t_ms = (clip["t0_ns"] - first_ns) / NS_PER_MS + np.arange(len(fs)) * MS_PER_S / rate_hz
        picks = [p for p in pulses if p.get("node") == clip["node"]]
        inside = [p for p in picks if len(t_ms) and t_ms[0] <= (p["t_ns"] - first_ns) / NS_PER_MS <= t_ms[-1]]
        full = _plot(t_ms, fs, inside, first_ns, PANEL, f"{clip['node']}: whole clip")
        insets = []
        for p in inside[:MAX_INSETS]:
            at_ms = (p["t_ns"] - first_ns) / NS_PER_MS
            keep = (t_ms >= at_ms - INSET_HALF_MS) & (t_ms <= at_ms + INSET_HALF_MS)
            if keep.sum() >= 2:
                insets.append(_plot(t_ms[keep], fs[keep], [p], first_ns, INSET,
                                    f"pick at {_label(at_ms)} ms, ±{INSET_HALF_MS:g} ms",
                                    (at_ms - INSET_HALF_MS, at_ms + INSET_HALF_MS)))
        panels.append(ClipPanel(index, clip["node"], rate_hz, len(fs) * MS_PER_S / rate_hz,
                                float(t_ms[0]) if len(t_ms) else 0.0, clip["sha256"], full, insets,
                                len(picks) - len(inside)))
    return panels


def _plot(t_ms: np.ndarray, fs: np.ndarray, picks: list[dict], first_ns: int, frame: tuple[float, float, int],
          title: str, span_ms: tuple[float, float] | None = None) -> Plot:
    lo, hi = span_ms or (float(t_ms[0]), float(t_ms[-1]))
    hi = hi if hi > lo else lo + 1.0
    amp = max(float(np.max(np.abs(fs))) if len(fs) else 0.0, MIN_AMPLITUDE_FS)
    axis = Axis(lo, hi, _nice_ceiling(amp), *frame)
    xs, ys = min_max_envelope(t_ms, fs, ENVELOPE_BUCKETS)
    points = " ".join(f"{axis.x(x):.1f},{axis.y(y):.1f}" for x, y in zip(xs, ys))
    marks = []
    for p in picks:
        at_ms = (p["t_ns"] - first_ns) / NS_PER_MS
        if lo <= at_ms <= hi:
            marks.append({"x": axis.x(at_ms), "used": bool(p.get("used")), "label": f"{_label(at_ms)} ms"})
    return Plot(axis, points, marks, title)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (an axis limit easy to read)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= value * (1 - 1e-9))


def _nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    step = _nice_ceiling((hi - lo) / count)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def first_discharge_ns(incident: dict) -> int:
    """The incident's first discharge: its earliest shot, else its own time."""
    return min([int(s["t_ns"]) for s in incident.get("shots") or []] or [int(incident["t_ns"])])

