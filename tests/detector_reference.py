"""NumPy/SciPy reference of the C impulse detector (csrc/detector.c): the tests' oracle.

Same algorithm, written the array way and from independent parts (SciPy's Butterworth
design and ``sosfilt``, ``lfilter`` for the one-pole averages), so that agreement with the
C code checks the C code's filters, recursions, state machine and onset search:

1. ``y = sosfilt(butter(4, highpass_hz, 'highpass'), x)``; ``e = y**2``.
2. STA and MTA: one-pole averages of ``e`` (Allen 1978 recursive STA/LTA).
3. The noise floor LTA is constant inside each step of D samples and updated at its end
   from the step's mean energy: a running mean during warm-up, then rising with time
   constant ``lta_s`` and falling with ``lta_fall_s``; frozen when the step held an open
   pulse; a silent step (digital zeros) restarts the warm-up.
4. Trigger at the first sample where STA > on*LTA and STA > jump*MTA, outside a pulse
   window (``on``: ``echo_trigger_db`` within ``echo_ms`` of the latest trigger, while its
   echoes arrive, else ``trigger_db``); the pulse closes W samples later, or, when at least ``retrigger_ms`` after the
   trigger a sample passes the trigger test with STA above ``retrigger_db`` over the highest
   STA of the pulse's first ``retrigger_ms``, G + 1 samples before that new trigger.
5. Onset: peak of |y| from the look-back start to ``peak_search_ms`` after the trigger and
   at least to the top of the rise the trigger fired on (no further back than the previous
   pulse window), threshold max(onset_snr*background rms,
   onset_rel*peak) with background = max(LTA, MTA) at the trigger; earliest sample whose
   centred mean energy over ``envelope_ms`` clears it, joined to the peak by gaps of at
   most G samples; then the first sample itself above the threshold within half an
   envelope width after that (the centred envelope rises early); linear interpolation of
   the crossing.
6. Timing of that rise (when a sample crossed the threshold): the foot of its leading edge,
   the tangent at half the first lobe's peak extended to zero (constant-fraction timing,
   Gedcke & McDonald 1968, with leading-edge extrapolation), plus half a sample.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal

SILENCE_ENERGY = 1e-20
TINY = 1e-30
BAND_LOW_HZ = 1000.0
BAND_HIGH_HZ = 3000.0
MAX_BAND_FRACTION = 0.45
DURATION_REL = 0.1
NO_TRIGGER = -(2**61)  # the latest trigger before any (csrc/detector.c: INT64_MIN / 4)
HP_ORDER = 4
BAND_ORDER = 2

DEFAULTS = dict(
    highpass_hz=300.0, sta_ms=1.0, mta_ms=20.0, lta_s=2.0, lta_fall_s=0.5, lta_step_ms=5.0,
    warmup_ms=100.0, trigger_db=9.0, echo_ms=750.0, echo_trigger_db=12.0, jump_db=6.0, window_ms=15.0, lookback_ms=10.0,
    peak_search_ms=0.0, onset_snr_db=3.0, onset_rel_db=-20.0, gap_ms=1.0, envelope_ms=0.5,
    retrigger_ms=5.0, retrigger_db=6.0,
)


def _samples(ms: float, rate_hz: float) -> int:
    return int(math.floor(ms * 1e-3 * rate_hz + 0.5))


def _db10(v: float) -> float:
    return 10.0 * math.log10(max(v, TINY))


def _one_pole(tau_samples: float) -> float:
    return 1.0 - math.exp(-1.0 / tau_samples)


# The C state machine in one function, step by step as detector.c reads.
def detect(samples: np.ndarray, rate_hz: float, **params: float) -> list[dict]:  # noqa: C901, PLR0915
    """All pulses of ``samples`` (float in +-1 or int16), as dicts of ew_pulse_t fields."""
    p = {**DEFAULTS, **params}
    x = np.asarray(samples)
    x = x / 32768.0 if x.dtype == np.int16 else x.astype(np.float32).astype(np.float64)
    x[~np.isfinite(x)] = 0.0
    n_total = len(x)
    y = signal.sosfilt(signal.butter(HP_ORDER, p["highpass_hz"], "highpass", fs=rate_hz, output="sos"), x)
    e = y * y
    a_sta = _one_pole(p["sta_ms"] * 1e-3 * rate_hz)
    a_mta = _one_pole(p["mta_ms"] * 1e-3 * rate_hz)
    sta = signal.lfilter([a_sta], [1.0, a_sta - 1.0], e)
    mta = signal.lfilter([a_mta], [1.0, a_mta - 1.0], e)
    step = _samples(p["lta_step_ms"], rate_hz)
    a_up = _one_pole(p["lta_s"] * rate_hz / step)
    a_down = _one_pole(p["lta_fall_s"] * rate_hz / step)
    on = 10 ** (p["trigger_db"] / 10)
    on_echo = 10 ** (p["echo_trigger_db"] / 10)
    hold = _samples(p["echo_ms"], rate_hz)
    jump = 10 ** (p["jump_db"] / 10)
    warm_steps = -(-_samples(p["warmup_ms"], rate_hz) // step)
    window = _samples(p["window_ms"], rate_hz)
    jump_mta = jump * mta
    steps = n_total // step
    means = e[: steps * step].reshape(steps, step).mean(axis=1)
    # per step, the largest STA that also clears the MTA test: a step whose value stays
    # under on*LTA cannot trigger, which spares the loop below most of its work
    jumping = np.where(sta > jump_mta, sta, 0.0)
    step_max = np.maximum.reduceat(jumping, np.arange(0, n_total, step)) if n_total else jumping
    shape = dict(
        y=y, rate_hz=rate_hz, lookback=_samples(p["lookback_ms"], rate_hz),
        peak_search=_samples(p["peak_search_ms"], rate_hz), gap=_samples(p["gap_ms"], rate_hz),
        onset_snr=10 ** (p["onset_snr_db"] / 20), onset_rel=10 ** (p["onset_rel_db"] / 20),
        env_half=_samples(p["envelope_ms"] / 2, rate_hz),
    )
    retrigger = _samples(p["retrigger_ms"], rate_hz)
    if p["retrigger_ms"] > 0:
        retrigger = max(retrigger, 1)
    rise = 10 ** (p["retrigger_db"] / 10)
    pulses: list[dict] = []
    lta, warm, active, trig, trig_lta, trig_mta, last_end = 0.0, 0, False, NO_TRIGGER, 0.0, 0.0, -1

    def threshold(a, b):
        # on*LTA for samples [a, b), against the latest trigger and LTA at the time of the call
        return np.where(np.arange(a, b) - trig <= hold, on_echo, on) * lta

    for k in range(-(-n_total // step)):
        s0, s1 = k * step, min((k + 1) * step, n_total)
        n, busy = s0, False
        while True:
            if active:
                end = trig + window
                second = _second_trigger(trig, (max(n, trig + 1), min(end, s1)), (retrigger, rise), threshold, sta,
                                         jump_mta)
                if second is not None:
                    # a louder pulse inside the window: this one ends a gap before it
                    busy = True
                    cut = max(second - 1 - shape["gap"], trig)
                    pulses.append(_finish(trig, cut, trig_lta, trig_mta, last_end, **shape))
                    active, last_end = False, cut
                    active, trig, trig_lta, trig_mta = True, second, lta, float(mta[second])
                    n = second + 1
                    continue
                if end >= s1:
                    busy = True
                    break
                busy |= end > s0
                pulses.append(_finish(trig, end, trig_lta, trig_mta, last_end, **shape))
                active, n, last_end = False, end, end
            if warm < warm_steps or step_max[k] <= min(on, on_echo) * lta:
                break
            hits = np.flatnonzero((sta[n:s1] > threshold(n, s1)) & (sta[n:s1] > jump_mta[n:s1]))
            if not len(hits):
                break
            active, trig, trig_lta, busy = True, n + int(hits[0]), lta, True
            trig_mta = float(mta[trig])
        if s1 - s0 == step:
            mean = float(means[k])
            if mean <= SILENCE_ENERGY:
                warm, lta = 0, 0.0
            elif warm < warm_steps:
                lta += (mean - lta) / (warm + 1)
                warm += 1
            elif not busy:
                lta += (a_up if mean > lta else a_down) * (mean - lta)
    if active:
        pulses.append(_finish(trig, n_total - 1, trig_lta, trig_mta, last_end, **shape))
    return pulses


def _second_trigger(trig, span, retrigger, threshold, sta, jump_mta):
    """First sample in span = [start, stop) where a louder pulse opens inside the window of
    the one triggered at trig: at least ``retrigger[0]`` after trig, the trigger test passes
    and STA is above ``retrigger[1]`` times the highest STA of the pulse's first
    ``retrigger[0]`` samples; None if none."""
    (start, stop), (hold, rise) = span, retrigger
    frm = max(start, trig + hold)
    if hold <= 0 or stop <= frm:
        return None
    top = float(np.max(sta[trig : trig + hold]))
    win = sta[frm:stop]
    hits = np.flatnonzero((win > threshold(frm, stop)) & (win > jump_mta[frm:stop]) & (win > rise * top))
    return frm + int(hits[0]) if len(hits) else None


def _leading_edge(y, k, lo, end, fallback):
    """Foot of the leading edge from sample k: half the first lobe's peak, crossed by linear
    interpolation walking back from that peak, the tangent there extended to zero, plus half
    a sample (the middle of the sample interval in which an unresolved step began)."""
    v = y if y[k] > 0 else -y
    top = k
    while top < end and v[top + 1] > v[top]:
        top += 1
    half = 0.5 * v[top]
    j = top
    while j > lo + 1 and v[j - 1] > half:
        j -= 1
    below, above = v[j - 1], v[j]
    if not above > below:
        return fallback
    t_half = (j - 1) + min(1.0, max(0.0, (half - below) / (above - below)))
    return max(float(lo), t_half - half / (above - below) + 0.5)


# The pulse and the detector settings it needs, each by name.
def _finish(trig, end, trig_lta, trig_mta, last_end, *, y, rate_hz, lookback, peak_search, gap,  # noqa: PLR0913
            onset_snr, onset_rel, env_half) -> dict:
    ay = np.abs(y)
    lo = max(0, trig - lookback, min(last_end + 1, trig))
    pk_end = min(trig + peak_search, end)
    while pk_end < end and ay[pk_end + 1] > ay[pk_end]:
        pk_end += 1
    pk = lo + int(np.argmax(ay[lo : pk_end + 1]))
    peak = ay[pk]
    sigma = math.sqrt(max(trig_lta, trig_mta))
    thr = max(onset_snr * sigma, onset_rel * peak)
    # centred moving sum of y**2 over 2h+1 samples, zero outside [lo, end]
    width = 2 * env_half + 1
    env = np.convolve(np.pad(y[lo : end + 1] ** 2, env_half), np.ones(width), "valid")

    def level(i):
        return env[i - lo]

    a, i = pk, pk - 1
    while i >= lo and a - i <= gap + 1:
        if level(i) >= thr * thr * width:
            a = i
        i -= 1
    # the centred envelope rises up to env_half samples early: prefer the first sample
    # itself above thr within that reach
    reach = min(a + env_half, pk)
    k = a
    while k < reach and ay[k] < thr:
        k += 1
    onset = float(a)
    if ay[k] >= thr and k > lo:
        below, above = ay[k - 1], ay[k]
        frac = (thr - below) / (above - below) if above > below else 1.0
        onset = _leading_edge(y, k, lo, end, (k - 1) + min(1.0, max(0.0, frac)))
        a = k
    elif a > lo:
        below, above = math.sqrt(level(a - 1) / width), math.sqrt(level(a) / width)
        frac = (thr - below) / (above - below) if above > below else 1.0
        onset = (a - 1) + min(1.0, max(0.0, frac))
    w = y[a : end + 1]
    gpk = a + int(np.argmax(np.abs(w)))
    gpeak = float(ay[gpk])
    energy = float(np.sum(w * w))
    dthr = max(onset_snr * sigma, DURATION_REL * gpeak)
    above = np.flatnonzero(ay[gpk + 1 : end + 1] >= dthr)
    last = gpk + 1 + int(above[-1]) if len(above) else gpk
    nyq_safe = MAX_BAND_FRACTION * rate_hz
    low = signal.sosfilt(signal.butter(BAND_ORDER, min(BAND_LOW_HZ, nyq_safe), "lowpass", fs=rate_hz, output="sos"), w)
    high = signal.sosfilt(signal.butter(BAND_ORDER, min(BAND_HIGH_HZ, nyq_safe), "highpass", fs=rate_hz, output="sos"), w)
    ms = 1e3 / rate_hz
    return dict(
        sample=onset,
        trigger_index=trig,
        peak_dbfs=2 * _db10(gpeak),
        snr_db=2 * _db10(gpeak) - _db10(trig_lta),
        noise_dbfs=_db10(trig_lta),
        rise_ms=(gpk - onset) * ms,
        duration_ms=(last - onset) * ms,
        decay_ms=(last - gpk) * ms,
        crest_db=2 * _db10(gpeak) - _db10(energy / len(w)),
        low_ratio_db=_db10(float(np.sum(low * low))) - _db10(energy),
        high_ratio_db=_db10(float(np.sum(high * high))) - _db10(energy),
    )
