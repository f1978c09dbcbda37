"""The detector on the real Pittsburgh recordings (FP1-FP3; TN098 supplement, ShotSpotter,
Inc., CC BY 4.0), validated leave-one-position-out: the detector settings chosen on the
Pittsburgh data are chosen on two firing positions and scored on the third, for each of the
three, so a held-out figure never comes from settings that saw its position.

Shared by tests/test_detect_pittsburgh.py (the must-show bounds) and bench/bench_detector.py
(``make bench``).  Reference pulses and the match rule are those of test_detect_pittsburgh:
the commercial system's grouped pulses, found when a detected pulse is within 3 ms.

How the median is scored: the reference times are given to the millisecond, and on the
sharpest, loudest pulses our onsets fall uniformly 0 to 1 ms after them, so they are cut
(floored), not rounded: a reference R says only that the commercial pick lies in
[R, R + 1 ms).  Measured as |dt| from R (``median_raw_ms``, the old way), a detector that
reproduced the commercial picks exactly would score 0.5 ms, so a bound of 0.5 ms would ask
for nothing or for a bias.  ``median_ms`` (the new way, the figure the bounds use) is
|dt - 0.5 ms|, the distance to the middle of the reference's millisecond: the expected pick
given the floored time (uniform inside its millisecond), scored on both sides, so an exact
copy of the commercial picks scores 0.25 ms and a constant offset still counts.  The
distance to the interval itself (``median_interval_ms``, 0 anywhere inside it) is printed
beside it but not bounded: it scores 0 for any pick inside the millisecond, however far
from the true onset.  ``spread_ms`` (median |dt - median dt|) measures the scatter with no
offset at all.

What is chosen on the data (GRID): the trigger level, chosen on two positions and scored
on the third.  Set on all three positions, so not held out: the rest of the defaults, among
them the two rules added after looking at the misses of all three positions (mostly FP1's):
a louder pulse inside a pulse's window opens its own (``retrigger_ms``, ``retrigger_db``;
with it off, FP1 scores 0.953 instead of 0.971), and the echo time after a trigger
(``echo_ms``, ``echo_trigger_db``, set on the seed city's demo and on locating the
Pittsburgh tests from their audio).

What the misses are (tests/reference_audit.py lists them with the audio's peak, clipping and
level at the reference): of FP1's 5 held-out misses, 3 are double reports (the commercial
sensor reported the sound twice, 3-4 ms apart at the same power, and the grouping took the
earlier report, where the audio holds only noise), 1 a noise-level report 32 ms before the shot
the same sensor reported (test_018; another test from the same place puts that sensor's arrival
where the detector finds it), 1 a weak third round 680 ms after the second (test_002), inside
the 750 ms echo time, where the trigger asks 12 dB: an echo time of 650 ms finds that round but
locates FP2's rounds from the audio 0.694 instead of 0.722 (and chosen on FP2 and FP3 with the
trigger level, echo times 600, 650, 750 give FP1's fold 750); an echo level falling from 12 to
9 dB over the echo time finds it too but opens windows on weak sounds that swallow a round on
FP2 (0.987 instead of 0.993), and an echo level 6 dB under the latest pulse's (between 9 and 12
dB) finds it but loses FP2's test_022 from the audio as 650 ms does. FP3's 3 misses are double
reports; FP2's one (test_020, round 3) has no sound above the noise at its reference either
(peak 1.2 times the noise rms), not examined further. Against the references with the double
reports moved to the sensor's later report (``reference_audit.corrected_references``) the folds
score FP1 0.988, FP2 0.993, FP3 1.000.
"""
from __future__ import annotations

import functools
import itertools
import json
import pathlib

import numpy as np
import soundfile as sf

from edge.detector import Detector
from edge.utctime import parse_utc_ns

MATCH_NS = 3_000_000
WARMUP_NS = 100_000_000
HALF_MS_NS = 500_000
REF_RESOLUTION_NS = 1_000_000
# The settings chosen on the Pittsburgh data, and the values tried for each.
GRID = {"trigger_db": (9.0, 10.0, 12.0)}
# Recall is chosen first; settings within this much of the best recall go to the median.
RECALL_TIE = 0.002


def reference_pulses(test_dir: pathlib.Path) -> list[tuple[pathlib.Path, int]]:
    """(wav, arrival t_ns) of the pulses the commercial system grouped into shots, on the
    sensors whose audio is provided."""
    name = test_dir.name
    by_uuid = {p["pulse_uuid"]: p for p in json.loads((test_dir / f"{name}.allpulses.json").read_text())}
    out = []
    for shot in json.loads((test_dir / f"{name}.nlos-tuples.json").read_text()):
        for uuid in shot["pulse_uuids"]:
            pulse = by_uuid.get(uuid)
            if pulse is None:
                continue
            wav = test_dir / f"{name}.audio.{pulse['serial_number']}.wav"
            if wav.exists():
                out.append((wav, parse_utc_ns(pulse["arrival_time_utc"])))
    return out


def start_ns(wav: pathlib.Path) -> int:
    return parse_utc_ns(json.loads(wav.with_suffix(".json").read_text())["timestamp"])


@functools.lru_cache(maxsize=None)
def _audio(wav: pathlib.Path) -> tuple[np.ndarray, float]:
    x, rate_hz = sf.read(wav, dtype="int16")
    return x, float(rate_hz)


@functools.lru_cache(maxsize=None)
def audio_span_ns(wav: pathlib.Path) -> tuple[int, int]:
    """[first, last] t_ns of the non-silent part of the clip (the rest is zero padding)."""
    x, rate_hz = _audio(wav)
    sound = np.flatnonzero(x)
    t0 = start_ns(wav)
    return t0 + round(sound[0] * 1e9 / rate_hz), t0 + round(sound[-1] * 1e9 / rate_hz)


def score(refs, times_ns) -> dict:
    """Matches each reference pulse with the nearest detected time on its sensor."""
    errors_ns, missed, outside = [], [], 0
    for wav, t_ns in refs:
        first, last = audio_span_ns(wav)
        if not first + WARMUP_NS <= t_ns <= last:
            outside += 1
            continue
        dts = [t - t_ns for t in times_ns[wav]]
        best = min(dts, key=abs) if dts else None
        if best is not None and abs(best) <= MATCH_NS:
            errors_ns.append(best)
        else:
            missed.append((wav.name, t_ns, best))
    return dict(errors_ns=errors_ns, missed=missed, outside=outside)


def figures(result: dict) -> dict:
    """recall and the medians of a score() result (ms; see the module doc for which is which)."""
    e = np.asarray(result["errors_ns"], dtype=float)
    n = len(e) + len(result["missed"])
    outside = np.maximum(np.maximum(-e, e - REF_RESOLUTION_NS), 0.0)
    return dict(n=n, recall=len(e) / n, median_ms=float(np.median(np.abs(e - HALF_MS_NS))) / 1e6,
                median_raw_ms=float(np.median(np.abs(e))) / 1e6,
                median_interval_ms=float(np.median(outside)) / 1e6,
                spread_ms=float(np.median(np.abs(e - np.median(e)))) / 1e6)


def detect_times(wavs, **params) -> dict:
    """t_ns of every pulse the detector (with ``params``) finds in each WAV."""
    out = {}
    for wav in wavs:
        x, rate_hz = _audio(wav)
        det = Detector(rate_hz, **params)
        t0 = start_ns(wav)
        out[wav] = [t0 + round(p.sample * 1e9 / rate_hz) for p in det.process(x) + det.flush()]
    return out


def by_position(tests, refs_of=None) -> dict[str, list]:
    """Reference pulses per firing position (the test folder's parent: FP1, FP2, FP3), from
    ``refs_of(test)`` (default: reference_pulses)."""
    refs: dict[str, list] = {}
    for test in tests:
        refs.setdefault(test.parent.name, []).extend((refs_of or reference_pulses)(test))
    return refs


def _evaluate(refs_by_fp, settings) -> dict:
    """{settings: {position: score()}} over every setting of the grid."""
    out = {}
    for values in settings:
        params = dict(zip(GRID, values))
        out[values] = {fp: score(refs, detect_times(sorted({w for w, _ in refs}), **params))
                       for fp, refs in refs_by_fp.items()}
    return out


def _pooled(results: dict, positions) -> dict:
    return figures({"errors_ns": [e for fp in positions for e in results[fp]["errors_ns"]],
                    "missed": [m for fp in positions for m in results[fp]["missed"]]})


def choose(evaluated: dict, positions) -> tuple:
    """The grid setting with the best pooled recall on ``positions`` (ties: least median)."""
    pooled = {values: _pooled(res, positions) for values, res in evaluated.items()}
    best = max(f["recall"] for f in pooled.values())
    close = [v for v, f in pooled.items() if f["recall"] >= best - RECALL_TIE]
    return min(close, key=lambda v: (pooled[v]["median_ms"], v))


def leave_one_position_out(tests, refs_of=None) -> dict:
    """Per held-out position: the setting chosen on the other two and its figures there;
    'held out': those three pooled; 'all': the setting chosen on all three and its (in-sample)
    figures.  ``refs_of`` as in by_position; each fold keeps its misses under 'missed'."""
    refs_by_fp = by_position(tests, refs_of)
    evaluated = _evaluate(refs_by_fp, itertools.product(*GRID.values()))
    positions = sorted(refs_by_fp)
    folds, held_out = {}, {}
    for held in positions:
        chosen = choose(evaluated, [fp for fp in positions if fp != held])
        folds[held] = dict(params=dict(zip(GRID, chosen)), **_pooled(evaluated[chosen], [held]),
                           missed=evaluated[chosen][held]["missed"])
        held_out[held] = evaluated[chosen][held]
    folds["held out"] = dict(params={}, **_pooled(held_out, positions))
    chosen = choose(evaluated, positions)
    folds["all"] = dict(params=dict(zip(GRID, chosen)), **_pooled(evaluated[chosen], positions))
    return folds
