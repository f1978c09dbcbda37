"""Drawing a sensor's audio clip: its samples on the incident's time axis, with units, and close-ups of picks.

Shared by the forensic report (:mod:`fusion.report_figures`) and anything else that shows a
clip (the console's incident page may draw the same panels): the clip's FLAC bytes as stored
(:meth:`fusion.server.store.Store.clips`) decoded to full-scale amplitude, a min/max envelope
that looks like the full trace at page resolution, and the window of ``PICK_HALF_WIDTH_S``
either side of a pick.

Example::

    trace = clip_trace(clip, t_ref_ns=incident["t_ns"])
    draw_trace(ax, trace)                     # ms after t_ref on x, fraction of full scale on y
    draw_pick_zoom(ax, trace, pick_ms=412.3)  # +-20 ms around the pick
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np

from earwitness.units import NS_PER_S

MS_PER_S = 1000.0
PICK_HALF_WIDTH_S = 0.020          # a pick's close-up: 20 ms either side
ENVELOPE_BUCKETS = 2000            # min/max pairs drawn per full panel
TIME_LABEL = "time (ms after the first discharge)"
PICK_TIME_LABEL = "ms from the pick"
AMPLITUDE_LABEL = "amplitude (fraction of full scale)"
AMPLITUDE_SHORT = "amplitude (FS)"


@dataclasses.dataclass
class Trace:
    """One channel of a clip: ``t_ms`` after the reference time, ``y`` in fractions of full scale."""

    node: str
    t_ms: np.ndarray
    y: np.ndarray
    rate_hz: float


def clip_trace(clip: dict, t_ref_ns: int) -> Trace:
    """The first channel of a stored clip (``data``: FLAC or WAV bytes, ``t0_ns`` of its first sample)."""
    import soundfile

    samples, rate_hz = soundfile.read(io.BytesIO(clip["data"]), dtype="float32", always_2d=True)
    mono = samples[:, 0]
    t_s = (clip["t0_ns"] - t_ref_ns) / NS_PER_S + np.arange(len(mono)) / rate_hz
    return Trace(clip["node"], t_s * MS_PER_S, mono, float(rate_hz))


def min_max_envelope(t: np.ndarray, y: np.ndarray, buckets: int = ENVELOPE_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """Min/max per bucket, interleaved: looks like the full trace at page resolution with far fewer
    points (a 10 s clip is 120,000 samples per panel, slow to draw and heavy in a PDF)."""
    per = len(y) // buckets
    if per < 2:
        return t, y
    n = per * buckets
    yb = y[:n].reshape(buckets, per)
    tb = t[:n].reshape(buckets, per)[:, 0]
    return np.repeat(tb, 2), np.column_stack([yb.min(axis=1), yb.max(axis=1)]).ravel()


def draw_trace(ax, trace: Trace, lo_ms: float | None = None, hi_ms: float | None = None, **style) -> None:
    """The trace between ``lo_ms`` and ``hi_ms`` (all of it by default) as an envelope, axes labelled with units."""
    keep = np.ones(len(trace.t_ms), bool)
    if lo_ms is not None:
        keep &= trace.t_ms >= lo_ms
    if hi_ms is not None:
        keep &= trace.t_ms <= hi_ms
    ax.plot(*min_max_envelope(trace.t_ms[keep], trace.y[keep]), lw=style.pop("lw", 0.5), color=style.pop("color", "k"),
            **style)
    ax.set_xlabel(TIME_LABEL, fontsize=7)
    ax.set_ylabel(AMPLITUDE_SHORT, fontsize=7)


def covers(trace: Trace, at_ms: float) -> bool:
    """Whether the clip holds audio at ``at_ms``."""
    return len(trace.t_ms) > 0 and trace.t_ms[0] <= at_ms <= trace.t_ms[-1]


def draw_pick_zoom(ax, trace: Trace, pick_ms: float, half_width_s: float = PICK_HALF_WIDTH_S, color: str = "tab:green",
                   dashed: bool = False) -> None:
    """Every sample within ``half_width_s`` of a pick, the pick a vertical line at 0; axes in ms and full scale."""
    half_ms = half_width_s * MS_PER_S
    keep = (trace.t_ms >= pick_ms - half_ms) & (trace.t_ms <= pick_ms + half_ms)
    ax.plot(trace.t_ms[keep] - pick_ms, trace.y[keep], lw=0.6, color="k")
    ax.axvline(0.0, color=color, ls="--" if dashed else "-", lw=1.0)
    ax.set_xlim(-half_ms, half_ms)
    ax.set_xlabel(PICK_TIME_LABEL, fontsize=6)
    ax.set_ylabel(AMPLITUDE_SHORT, fontsize=6)
    ax.tick_params(labelsize=5)
