"""The node's clock model: audio sample index -> UTC nanoseconds, with an honest uncertainty.

A pulse's time comes from the audio sample clock, not from when software saw it.  The model
is fed, in any interleaving, with what the node learns about that clock:

- ``add_edge(sample)``: a PPS leading edge found on an audio channel (``edge.pps.AudioPps``),
  at a fractional sample index: timing ``"pps-audio"``;
- ``add_block(sample_end, host_ns)`` + ``add_kernel_pps(assert_ns)``: audio callback times
  and kernel PPS timestamps (``edge.pps.KernelPps``), matched through the host clock:
  timing ``"pps-kernel"``; the block times alone give timing ``"system"`` (degraded);
- ``add_nmea_time(sample, utc_s)``: an NMEA sentence (RMC/ZDA/GGA) for whole UTC second
  ``utc_s`` was received when the audio stream was at ``sample``: labels the PPS edges
  (``add_nmea_fix_time(fix.received_ns, fix.t_ns)`` does the same from host times);
- ``add_utc_hint(sample, t_ns)``: a coarse UTC time of a sample, right to +-0.4 s (the user's
  ``--start-utc``, the system clock): labels the edges when no NMEA is at hand;
- ``report_gap(sample, n_samples)``: the audio source lost ``n_samples`` (None: unknown)
  just before delivered sample ``sample`` (overrun, dropped blocks, restart).

``to_utc(sample) -> (t_ns, t_unc_ns)`` then maps any sample index, with ``t_unc_ns`` the
expanded uncertainty (coverage factor ``COVERAGE`` = 3 times the standard uncertainty).

Sample indices are counted in samples *delivered* by the audio source since the stream
began, monotonic; fractional where a detector or edge finder interpolates.

Method (see ``ClockModel``): PPS edges are grouped into *segments* of continuous sample
clock; within a segment each edge gets an integer second count and a straight line
``sample = a + b * second`` is fitted by least squares over a sliding window of edges nearest
the sample asked for, with MAD-based outlier rejection; the rate error is ``b / nominal - 1``.
An edge off the prediction by more than the tolerance is held as a suspect: isolated
suspects are outliers, ``STEP_CONFIRM_EDGES`` mutually consistent ones are a step (GPS
reacquisition, audio restart, unreported dropped samples) and open a new segment.
"""
from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from earwitness.units import MAD_TO_SIGMA, NS_PER_S
from edge.hostmap import HostMap
from edge.pps import TIMING_AUDIO, TIMING_KERNEL, TIMING_SYSTEM

COVERAGE = 3.0                      # t_unc_ns = COVERAGE x standard uncertainty
MAX_RATE_ERROR_PPM = 300.0          # any audio ADC crystal is within this of nominal
STEP_MIN_NS = 20_000                # an edge this far off the prediction may be a step
STEP_SIGMAS = 6.0                   # ... or this many standard uncertainties, if larger
STEP_CONFIRM_EDGES = 3              # consistent off-prediction edges that make a step
OUTLIER_SIGMAS = 4.0
SUSPECTS_KEPT = 8
RECENT_LABELS_KEPT = 32
HINT_MAX_UNC_NS = 450_000_000       # a coarse time must be this good to label a second
LOCK_MAX_EDGE_AGE_S = 2.5           # "locked": an edge this recent and the seconds labelled
MAX_SEGMENTS = 64                   # older stretches of clock are forgotten


class ClockUnavailable(RuntimeError):
    """Nothing is known yet that maps this sample to UTC."""


@dataclass(frozen=True)
class Stamp:
    """A sample's UTC time: ``t_ns``, expanded uncertainty ``t_unc_ns``, and how it was got."""

    t_ns: int
    t_unc_ns: int
    timing: str


@dataclass
class _Fit:
    a: float            # sample index at second count kc
    b: float            # samples per second
    kc: int
    kbar: float
    skk: float
    n: int
    sigma: float        # residual standard deviation, samples
    k_lo: int
    k_hi: int


@dataclass
class _Segment:
    start: float                     # first continuous sample index belonging here
    source: str
    serial: int = 0
    xs: list = field(default_factory=list)     # continuous sample index of each edge
    ks: list = field(default_factory=list)     # integer second count of each edge
    sig: list = field(default_factory=list)    # random uncertainty of each edge, samples
    sysu: list = field(default_factory=list)   # systematic uncertainty of each edge, samples
    nmea_votes: Counter = field(default_factory=Counter)
    hint_votes: Counter = field(default_factory=Counter)
    tail_unc_samples: float = 0.0    # a step ended this segment: samples after its last edge
    ended: bool = False
    end: float = math.inf            # an audio restart ended it here: nothing beyond is known

    @property
    def label(self):
        """UTC second of second count 0, or None while unknown."""
        votes = self.nmea_votes or self.hint_votes
        return votes.most_common(1)[0][0] if votes else None


class ClockModel:
    """Maps audio sample indices to UTC nanoseconds from PPS edges, NMEA and host time.

    Parameters
    ----------
    nominal_rate_hz : float
        Nominal sample rate of the audio stream.
    window_edges : int, optional
        PPS edges in the sliding least-squares window (one per second).
    nmea_delay_s : float, optional
        Typical delay from a PPS edge to the NMEA sentence naming its second.  A sentence
        labels the edge nearest to its arrival less this delay, so with the default 0.2 s
        both receivers that send after the pulse (up to 0.7 s late) and receivers that
        announce the coming pulse (up to 0.3 s early) are labelled right.
    rate_wander_ppm_per_s : float, optional
        Standard rate of change of the ADC's rate error (temperature), for the holdover
        uncertainty: ``0.5 * wander * dt**2`` from the window's centre.
    pps_audio_unc_ns : float, optional
        Systematic standard uncertainty of an audio PPS edge (analogue path, edge finder).
    kernel_latency_ns, kernel_latency_unc_ns : float, optional
        Mean delay from an audio block's last sample to its callback's host timestamp, and
        its standard uncertainty; used by the ``pps-kernel`` and ``system`` paths.
    system_clock_unc_ns : float, optional
        Standard uncertainty of the host clock against UTC when there is no PPS at all.
    host_window : int, optional
        Audio callbacks kept for the sample -> host time fit.
    history_edges : int, optional
        Edges kept per segment (older ones are forgotten).

    Feed one PPS source per model (audio edges or kernel PPS, not both).  Not thread-safe:
    call it from the one worker that runs the detector.

    Examples
    --------
    >>> clock = ClockModel(48_000)
    >>> clock.add_utc_hint(0, start_ns)            # or add_nmea_time(...)
    >>> for edge in pps.process(block[:, 1]):
    ...     clock.add_edge(edge)
    >>> t_ns, t_unc_ns = clock.to_utc(pulse.sample)
    """

    # The settings are keyword-only, each with its default and documented above.
    def __init__(self, nominal_rate_hz: float, *, window_edges: int = 64,  # noqa: PLR0913
                 nmea_delay_s: float = 0.2, rate_wander_ppm_per_s: float = 0.002,
                 pps_audio_unc_ns: float = 2_000.0, kernel_latency_ns: float = 0.0,
                 kernel_latency_unc_ns: float = 200_000.0,
                 system_clock_unc_ns: float = 10_000_000.0, host_window: int = 2048,
                 history_edges: int = 4096):
        if not nominal_rate_hz > 0:
            raise ValueError("nominal_rate_hz must be positive")
        if window_edges < 2:
            raise ValueError("window_edges must be at least 2")
        self.nominal_rate_hz = float(nominal_rate_hz)
        self.window_edges = int(window_edges)
        self.nmea_delay_s = float(nmea_delay_s)
        self.rate_wander = rate_wander_ppm_per_s * 1e-6
        self.pps_audio_unc_ns = float(pps_audio_unc_ns)
        self.kernel_latency_ns = float(kernel_latency_ns)
        self.kernel_latency_unc_ns = float(kernel_latency_unc_ns)
        self.system_clock_unc_ns = float(system_clock_unc_ns)
        self.history_edges = int(history_edges)
        self._segments: list[_Segment] = []
        self._gaps: list[tuple[float, int]] = []   # (delivered sample, cumulative shift)
        self._host = HostMap(host_window)
        self._suspects: list[tuple[float, float, float]] = []
        self._nmea: deque = deque(maxlen=RECENT_LABELS_KEPT)
        self._hints: deque = deque(maxlen=RECENT_LABELS_KEPT)
        self._fits: dict = {}
        self._latest = 0.0
        self._pending_start: float | None = None
        self._serial = 0
        self.counts: Counter[str] = Counter()
        self.last_timing = TIMING_SYSTEM

    # --- input --------------------------------------------------------------------------

    def add_edge(self, sample: float, sigma_ns: float | None = None,
                 systematic_ns: float | None = None, source: str = TIMING_AUDIO) -> bool:
        """Adds a PPS leading edge at fractional ``sample``.

        ``sigma_ns`` is its random and ``systematic_ns`` its systematic standard uncertainty
        (defaults: a tenth of a sample, ``pps_audio_unc_ns``).  Returns True if accepted into
        the current segment, False if held as a suspect (outlier or start of a step)."""
        x = self._continuous(sample)
        self._seen(sample)
        sig = (sigma_ns if sigma_ns is not None else 0.1 * NS_PER_S / self.nominal_rate_hz)
        sysu = systematic_ns if systematic_ns is not None else self.pps_audio_unc_ns
        sig_s, sys_s = self._ns_to_samples(sig), self._ns_to_samples(sysu)
        self.counts["edges"] += 1
        seg = self._segments[-1] if self._segments and not self._segments[-1].ended else None
        if seg is None or seg.source != source:
            start = self._open_start(x)
            self._new_segment(start, source, [(x, sig_s, sys_s)])
            return True
        k, pred, pred_sigma = self._predict_edge(seg, x)
        tol = max(STEP_MIN_NS * self.nominal_rate_hz / NS_PER_S,
                  STEP_SIGMAS * math.hypot(pred_sigma, sig_s))
        if abs(x - pred) <= tol and k > seg.ks[-1]:
            self._append(seg, x, k, sig_s, sys_s)
            self._suspects.clear()
            if seg.label is None:
                self._vote_labels()
            return True
        self._suspects.append((x, sig_s, sys_s))
        del self._suspects[:-SUSPECTS_KEPT]
        self.counts["outliers"] += 1
        if self._suspects_consistent():
            step = x - pred
            seg.ended = True
            seg.tail_unc_samples = abs(step)
            self.counts["steps"] += 1
            self.counts["outliers"] -= len(self._suspects)
            self._new_segment(self._suspects[0][0], source, self._suspects, carry_from=seg)
            self._suspects.clear()
        return False

    def add_nmea_time(self, sample: float, utc_s: int) -> None:
        """An NMEA sentence naming whole UTC second ``utc_s`` arrived at ``sample``."""
        self._seen(sample)
        self._nmea.append((self._continuous(sample), int(utc_s)))
        self._vote_labels()

    def add_nmea_fix_time(self, received_ns: int, utc_ns: int) -> bool:
        """Like ``add_nmea_time`` for a sentence stamped with host time on arrival
        (``edge.nmea.Fix.received_ns``, ``Fix.t_ns``): placed on the audio stream through
        the callback times of ``add_block``.  Returns False when there are too few yet."""
        if not self._host.ready() or received_ns is None or utc_ns is None:
            return False
        x, _ = self._host.sample_at(int(received_ns))
        self.add_nmea_time(self._delivered(x), int(round(utc_ns / NS_PER_S)))
        return True

    def add_utc_hint(self, sample: float, t_ns: int, unc_ns: int = 400_000_000) -> None:
        """A coarse UTC time ``t_ns`` of ``sample`` (e.g. ``--start-utc``), good to ``unc_ns``
        (must be under half a second to label seconds)."""
        if unc_ns > HINT_MAX_UNC_NS:
            return
        self._hints.append((self._continuous(sample), int(t_ns)))
        self._vote_labels()

    def add_block(self, sample_end: float, host_ns: int) -> None:
        """An audio callback delivered samples up to (not including) ``sample_end`` at host
        time ``host_ns`` (``time.time_ns()``).  Feeds the ``pps-kernel`` and ``system`` paths."""
        self._seen(sample_end)
        self._host.add(self._continuous(sample_end), int(host_ns - self.kernel_latency_ns))

    def add_kernel_pps(self, assert_ns: int) -> bool:
        """A kernel PPS assert timestamp (host clock, ``edge.pps.PpsEvent.assert_ns``).

        Matched to the audio stream through the callback times of ``add_block``; returns
        False if there are too few callbacks yet to place it."""
        if not self._host.ready():
            self.counts["kernel_unmatched"] += 1
            return False
        x, sig_samples = self._host.sample_at(int(assert_ns))
        delivered = self._delivered(x)
        accepted = self.add_edge(delivered, sigma_ns=self._samples_to_ns(sig_samples),
                                 systematic_ns=math.hypot(self.kernel_latency_unc_ns,
                                                          self._samples_to_ns(sig_samples)),
                                 source=TIMING_KERNEL)
        # The host clock labels the second too (chrony keeps it well within half a second).
        self._hints.append((x, int(assert_ns)))
        self._vote_labels()
        return accepted

    def advance(self, sample: float) -> None:
        """The stream has been delivered up to ``sample``: ``status()`` speaks of that moment
        (how old the last PPS edge is, whether still locked) even when no edge came since."""
        self._seen(sample)

    def report_gap(self, sample: float, n_samples: int | None = None) -> None:
        """The audio source lost ``n_samples`` just before delivered ``sample``; None when
        the number is unknown (restart): the clock then starts a new segment there."""
        self.counts["gaps"] += 1
        if n_samples is None:
            x = self._continuous(sample)
            if self._segments:
                self._segments[-1].ended = True
                self._segments[-1].end = x
            self._host.clear()
            self._suspects.clear()
            self._pending_start = x
            return
        shift = (self._gaps[-1][1] if self._gaps else 0) + int(n_samples)
        self._gaps.append((float(sample), shift))
        self._fits.clear()

    # --- output -------------------------------------------------------------------------

    def to_utc(self, sample: float) -> tuple[int, int]:
        """UTC time of a (fractional) sample index: ``(t_ns, t_unc_ns)``.

        Uses what the model holds at the moment of the call (edges after the sample, when
        already known, make it an interpolation).  ``t_unc_ns`` is the expanded uncertainty
        (``COVERAGE`` standard uncertainties).  Raises ``ClockUnavailable`` when nothing
        maps the sample yet."""
        st = self.stamp(sample)
        return st.t_ns, st.t_unc_ns

    def stamp(self, sample: float) -> Stamp:
        """Like ``to_utc`` but also says how the time was obtained (``Stamp.timing``)."""
        x = self._continuous(sample)
        best = None
        seg = self._segment_for(x)
        if seg is not None and seg.label is not None:
            best = self._from_pps(seg, x)
        fallback = self._from_host(x) or self._from_hint(x)
        if best is None or (fallback is not None and fallback.t_unc_ns < best.t_unc_ns):
            best = fallback
        if best is None:
            raise ClockUnavailable("no PPS, host time or UTC hint covers this sample yet")
        self.last_timing = best.timing
        return best

    @property
    def timing(self) -> str:
        """How new samples are timed now: ``"pps-audio"``, ``"pps-kernel"`` or ``"system"``."""
        try:
            return self.stamp(self._latest).timing
        except ClockUnavailable:
            return TIMING_SYSTEM

    def status(self) -> dict:
        """Health figures: ``timing``, ``locked``, ``rate_error_ppm``, ``unc_ns`` (at the
        newest sample), ``edge_age_s``, ``residual_rms_ns``, ``system_offset_ns`` (host
        clock minus UTC, when both are known), ``labelled``, counts of ``edges``,
        ``outliers``, ``steps``, ``gaps``."""
        out = {"timing": TIMING_SYSTEM, "locked": False, "rate_error_ppm": None,
               "unc_ns": None, "edge_age_s": None, "residual_rms_ns": None,
               "system_offset_ns": None, "labelled": False}
        out.update({k: self.counts[k] for k in ("edges", "outliers", "steps", "gaps")})
        try:
            st = self.stamp(self._latest)
            out["timing"], out["unc_ns"] = st.timing, st.t_unc_ns
        except ClockUnavailable:
            return out
        seg = self._segments[-1] if self._segments else None
        if seg is not None and len(seg.xs) >= 2:
            fit = self._fit(seg, len(seg.xs) - 1)
            out["rate_error_ppm"] = (fit.b / self.nominal_rate_hz - 1.0) * 1e6
            out["residual_rms_ns"] = self._samples_to_ns(fit.sigma)
        if seg is not None and seg.xs:
            age = (self._continuous(self._latest) - seg.xs[-1]) / self.nominal_rate_hz
            out["edge_age_s"] = age
            out["labelled"] = seg.label is not None
            out["locked"] = (not seg.ended and seg.label is not None
                             and age <= LOCK_MAX_EDGE_AGE_S and len(seg.xs) >= 2)
        if out["labelled"] and self._host.ready():
            host_ns, _ = self._host.host_ns(self._continuous(self._latest))
            out["system_offset_ns"] = host_ns - st.t_ns
        return out

    # --- internals ----------------------------------------------------------------------

    def _ns_to_samples(self, ns: float) -> float:
        return ns * self.nominal_rate_hz / NS_PER_S

    def _samples_to_ns(self, samples: float) -> float:
        return samples * NS_PER_S / self.nominal_rate_hz

    def _seen(self, sample: float) -> None:
        self._latest = max(self._latest, float(sample))

    def _continuous(self, sample: float) -> float:
        """Delivered index -> continuous ADC index (known gaps added back)."""
        if not self._gaps:
            return float(sample)
        i = bisect.bisect_right(self._gaps, (float(sample), float("inf")))
        return float(sample) + (self._gaps[i - 1][1] if i else 0)

    def _delivered(self, x: float) -> float:
        for at, shift in reversed(self._gaps):
            if x - shift >= at:
                return x - shift
        return x

    def _open_start(self, x: float) -> float:
        start, self._pending_start = self._pending_start, None
        if start is not None:
            return start
        return self._segments[-1].xs[-1] + 1 if self._segments else 0.0

    def _new_segment(self, start, source, edges, carry_from=None) -> None:
        self._serial += 1
        seg = _Segment(start=start, source=source, serial=self._serial)
        self._segments.append(seg)
        del self._segments[:-MAX_SEGMENTS]
        x0 = edges[0][0]
        for x, sig_s, sys_s in edges:
            k = int(round((x - x0) / self.nominal_rate_hz))
            self._append(seg, x, k, sig_s, sys_s)
        if carry_from is not None and carry_from.label is not None and carry_from.xs:
            # A sub-second step keeps the second numbering: the old model names the second.
            t_ns = self._from_pps(carry_from, x0, allow_ended=True).t_ns
            seg.hint_votes[int(round(t_ns / NS_PER_S))] += 1
        self._vote_labels()

    def _append(self, seg, x, k, sig_s, sys_s) -> None:
        seg.xs.append(x)
        seg.ks.append(k)
        seg.sig.append(sig_s)
        seg.sysu.append(sys_s)
        if len(seg.xs) > self.history_edges:
            for lst in (seg.xs, seg.ks, seg.sig, seg.sysu):
                del lst[0]
            self._fits.clear()

    def _segment_for(self, x: float):
        for seg in reversed(self._segments):
            if seg.start <= x < seg.end and seg.xs:
                return seg
        return None

    def _predict_edge(self, seg, x):
        """Nearest second count to ``x``, the sample the fit predicts for it, its sigma."""
        if len(seg.xs) == 1:
            k = seg.ks[0] + int(round((x - seg.xs[0]) / self.nominal_rate_hz))
            dk = k - seg.ks[0]
            pred = seg.xs[0] + dk * self.nominal_rate_hz
            return k, pred, abs(dk) * self.nominal_rate_hz * MAX_RATE_ERROR_PPM * 1e-6 / COVERAGE
        fit = self._fit(seg, len(seg.xs) - 1)
        k = fit.kc + int(round((x - fit.a) / fit.b))
        pred = fit.a + fit.b * (k - fit.kc)
        return k, pred, self._pred_sigma(fit, seg, k, random_only=True)

    def _window(self, seg, idx: int) -> tuple[int, int]:
        n = len(seg.xs)
        lo = max(0, idx - self.window_edges // 2)
        hi = min(n, lo + self.window_edges)
        return max(0, hi - self.window_edges), hi

    def _fit(self, seg, idx: int) -> _Fit:
        """Least-squares line sample = a + b (k - kc) over the window around edge ``idx``,
        refitted once without residuals beyond ``OUTLIER_SIGMAS`` robust sigmas (MAD)."""
        lo, hi = self._window(seg, idx)
        key = (seg.serial, seg.ks[lo], seg.ks[hi - 1], hi - lo)
        fit = self._fits.get(key)
        if fit is not None:
            return fit
        k = np.array(seg.ks[lo:hi], dtype=float)
        x = np.array(seg.xs[lo:hi])
        floor = float(np.median(seg.sig[lo:hi]))
        keep = np.ones(k.size, bool)
        for _ in range(2):
            kc = int(k[keep][0])
            kk, xx = k[keep] - kc, x[keep]
            if kk.size < 2 or np.ptp(kk) == 0:
                b, a = self.nominal_rate_hz, float(xx.mean() - self.nominal_rate_hz * kk.mean())
            else:
                b, a = np.polyfit(kk, xx, 1)
            res = x - (a + b * (k - kc))
            mad = MAD_TO_SIGMA * float(np.median(np.abs(res[keep] - np.median(res[keep]))))
            new_keep = np.abs(res) <= OUTLIER_SIGMAS * max(mad, floor, 1e-6)
            if new_keep.sum() < 2 or (new_keep == keep).all():
                break
            keep = new_keep
        kk = k[keep] - kc
        n = int(keep.sum())
        dof = max(n - 2, 1)
        rss = float(((x[keep] - (a + b * kk)) ** 2).sum())
        sigma = max(math.sqrt(rss / dof) if n > 2 else 0.0, floor)
        fit = _Fit(a=float(a), b=float(b), kc=kc, kbar=float(kk.mean()),
                   skk=float(((kk - kk.mean()) ** 2).sum()), n=n, sigma=sigma,
                   k_lo=int(k[0]), k_hi=int(k[-1]))
        if len(self._fits) > 4096:
            self._fits.clear()
        self._fits[key] = fit
        return fit

    def _pred_sigma(self, fit: _Fit, seg, kq: float, random_only=False) -> float:
        """Standard uncertainty (samples) of the fitted line at second count ``kq``:
        regression prediction error, plus rate wander from the window's centre when
        outside the window, plus the edges' systematic part."""
        dk = kq - fit.kc - fit.kbar
        if fit.skk > 0:
            var = fit.sigma ** 2 * (1.0 / fit.n + dk * dk / fit.skk)
        else:
            var = fit.sigma ** 2 + (abs(dk) * fit.b * MAX_RATE_ERROR_PPM * 1e-6 / COVERAGE) ** 2
        outside = max(fit.k_lo - kq, kq - fit.k_hi, 0.0)
        if outside > 0:
            span = outside + 0.5 * (fit.k_hi - fit.k_lo)
            var += (0.5 * self.rate_wander * span * span * fit.b) ** 2
        if not random_only:
            var += float(np.median(seg.sysu)) ** 2
        return math.sqrt(var)

    def _from_pps(self, seg, x: float, allow_ended=False):
        idx = min(bisect.bisect_left(seg.xs, x), len(seg.xs) - 1)
        fit = self._fit(seg, idx)
        kq = fit.kc + (x - fit.a) / fit.b
        sec = seg.label + fit.kc
        frac_ns = (x - fit.a) / fit.b * NS_PER_S
        t_ns = sec * NS_PER_S + int(round(frac_ns))
        var = self._pred_sigma(fit, seg, kq) ** 2
        if seg.ended and x > seg.xs[-1]:
            var += seg.tail_unc_samples ** 2
        unc = COVERAGE * math.sqrt(var) * NS_PER_S / fit.b
        return Stamp(t_ns, max(1, int(math.ceil(unc))), seg.source)

    def _from_host(self, x: float):
        if not self._host.ready():
            return None
        host_ns, sigma = self._host.host_ns(x)
        unc = COVERAGE * math.sqrt(sigma ** 2 + self.kernel_latency_unc_ns ** 2
                                   + self.system_clock_unc_ns ** 2)
        return Stamp(host_ns, int(math.ceil(unc)), TIMING_SYSTEM)

    def _from_hint(self, x: float):
        if not self._hints:
            return None
        hx, ht = min(self._hints, key=lambda h: abs(h[0] - x))
        dt_s = (x - hx) / self.nominal_rate_hz
        unc = HINT_MAX_UNC_NS + abs(dt_s) * MAX_RATE_ERROR_PPM * 1e3
        return Stamp(ht + int(round(dt_s * NS_PER_S)), int(unc), TIMING_SYSTEM)

    def _suspects_consistent(self) -> bool:
        if len(self._suspects) < STEP_CONFIRM_EDGES:
            return False
        xs = [s[0] for s in self._suspects[-STEP_CONFIRM_EDGES:]]
        tol = STEP_MIN_NS * self.nominal_rate_hz / NS_PER_S
        for a, b in zip(xs, xs[1:]):
            secs = (b - a) / self.nominal_rate_hz
            k = round(secs)
            if k < 1 or abs(b - a - k * self.nominal_rate_hz) > tol + k * self.nominal_rate_hz \
                    * MAX_RATE_ERROR_PPM * 1e-6:
                return False
        self._suspects = self._suspects[-STEP_CONFIRM_EDGES:]
        return True

    def _vote_labels(self) -> None:
        """Recounts each segment's label votes from the recent NMEA times and hints."""
        for seg in self._segments:
            if not seg.xs:
                continue
            fit = self._fit(seg, len(seg.xs) - 1)
            # Votes are recounted from the recent labels that fall in the segment; a segment
            # none of them reaches keeps the votes it had.
            votes: Counter[int] = Counter()
            for x, utc_s in self._nmea:
                if self._segment_for(x) is seg:
                    kq = fit.kc + (x - fit.a) / fit.b - self.nmea_delay_s
                    votes[utc_s - int(round(kq))] += 1
            if votes:
                seg.nmea_votes = votes
            votes = Counter()
            for x, t_ns in self._hints:
                if self._segment_for(x) is seg:
                    kq = fit.kc + (x - fit.a) / fit.b
                    votes[int(round(t_ns / NS_PER_S - kq))] += 1
            if votes:
                seg.hint_votes = votes
            elif seg.label is None and self._host.ready():
                # No NMEA, no hint: the (chrony-disciplined) host clock names the second.
                host_ns, _ = self._host.host_ns(seg.xs[-1])
                seg.hint_votes[int(round(host_ns / NS_PER_S)) - seg.ks[-1]] += 1
