"""Must-show of issue 2: ``earwitness detect`` on the real Pittsburgh recordings (FP1-FP3)
finds the pulses the commercial system used to locate each shot.

Reference pulses: every pulse in ``test_XXX.nlos-tuples.json`` (looked up in
``allpulses.json``: sensor serial and arrival time, ms precision) on a sensor whose audio
is provided, and inside the part of the clip that holds audio (the 10 s files are padded
with digital zeros where the recording was not kept). A pulse is found when the command
reports one within 3 ms.

Issue 14's must-show (recall >= 0.98, median <= 0.5 ms) is checked leave-one-position-out
(tests/detector_lopo.py: the settings chosen on the Pittsburgh data are chosen on two firing
positions and scored on the third).  The reference times are floored to the millisecond, so
the median is |dt - 0.5 ms|, the distance to the middle of the reference's millisecond (an
exact copy of the commercial picks scores 0.25 ms); the old |dt| is bounded beside it
(detector_lopo's module doc says why).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import detector_lopo
import reference_audit
from edge.utctime import parse_utc_ns

# In-sample with the defaults (trigger_db 9, 12 within echo_ms 750 of a trigger; retrigger_ms 5):
# recall 0.982, median |dt - 0.5 ms| 0.340 ms (|dt| 0.605 ms).
MIN_RECALL = 0.98
MAX_MEDIAN_MS = 0.35
MAX_RAW_MEDIAN_MS = 0.62
# Held out (trigger_db 9 chosen in every fold): FP1 0.971 / 0.315 ms, FP2 0.993 / 0.402 ms,
# FP3 0.982 / 0.306 ms; pooled 0.982 / 0.340 ms; spread 0.310, 0.369, 0.319 ms. FP1 is under the
# must-show's 0.98 (166 of 171): of its 5 misses, 3 are double reports (tests/reference_audit.py:
# the sensor reported the sound twice, the grouping took the earlier report, 3-4 ms before any
# sound in the audio), 1 a noise-level report 32 ms before the shot the same sensor reported
# (test_018), 1 a weak third round inside the echo time of the second (test_002), hence its floor.
FOLD_MIN_RECALL = 0.97
# Against the references with the 15 double reports moved to the sensor's later report (the
# sound): FP1 0.988 / 0.290 ms, FP2 0.993 / 0.402 ms, FP3 1.000 / 0.303 ms; pooled 0.994 / 0.339 ms.
CORRECTED_FOLD_MIN_RECALL = 0.98
DOUBLE_REPORTS = 15
HELD_OUT_MIN_RECALL = 0.98
MUST_MAX_MEDIAN_MS = 0.5
HELD_OUT_MAX_MEDIAN_MS = 0.35
FOLD_MAX_SPREAD_MS = 0.375


# One interpreter runs the console script's main() on many WAVs (each with its own
# argv and stdout): the same code path as `earwitness detect FILE`, without paying the
# interpreter start-up 250 times.
DRIVER = """
import contextlib, io, json, sys
from earwitness.cli import main
for argv in json.loads(sys.stdin.read()):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    print(json.dumps([status, out.getvalue()]))
"""


def detect_argv(wav):
    start = json.loads(wav.with_suffix(".json").read_text())["timestamp"]
    return ["detect", "--sensor", wav.stem, "--start-utc", start, str(wav)]


def detect_many(wavs):
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps([detect_argv(w) for w in wavs]),
                          capture_output=True, text=True, check=True)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [status for status, _ in results] == [0] * len(wavs), done.stderr
    return [[json.loads(line) for line in text.splitlines()] for _, text in results]


def test_driver_matches_the_real_command(pittsburgh):
    wav = next(pittsburgh[0].glob("*.wav"))
    done = subprocess.run([sys.executable, "-m", "earwitness", *detect_argv(wav)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == detect_many([wav])[0]


@pytest.fixture(scope="module")
def refs(pittsburgh):
    return [r for d in pittsburgh for r in detector_lopo.reference_pulses(d)]


@pytest.fixture(scope="module")
def matches(refs):
    wavs = sorted({wav for wav, _ in refs})
    workers = os.cpu_count() or 2
    shares = [wavs[i::workers] for i in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        found = {w: p for share, res in zip(shares, pool.map(detect_many, shares)) for w, p in zip(share, res)}
    return dict(detector_lopo.score(refs, {w: [p["t_ns"] for p in ps] for w, ps in found.items()}), found=found)


def test_detect_finds_the_located_pulses(matches):
    f = detector_lopo.figures(matches)
    errors = np.abs(np.array(matches["errors_ns"]))
    pulses_per_wav = np.mean([len(v) for v in matches["found"].values()])
    print(f"\nPittsburgh FP1-FP3: {f['n']} reference pulses with audio ({matches['outside']} more fall in "
          f"the silent padding), recall {f['recall']:.3f}, median |dt - 0.5 ms| {f['median_ms']:.3f} ms "
          f"(|dt| {f['median_raw_ms']:.3f} ms), 95th pct |dt| {np.percentile(errors, 95) / 1e6:.3f} ms, "
          f"{pulses_per_wav:.1f} pulses per 10 s clip")
    assert f["n"] > 400
    assert f["recall"] >= MIN_RECALL, matches["missed"]
    assert f["median_ms"] <= MAX_MEDIAN_MS
    assert f["median_raw_ms"] <= MAX_RAW_MEDIAN_MS


def test_detect_output_follows_the_pulse_contract(matches):
    for wav, pulses in list(matches["found"].items())[:20]:
        assert pulses, wav
        for p in pulses:
            assert set(p) == {"sensor", "t_ns", "t_unc_ns", "snr_db", "peak_dbfs", "features", "timing"}
            assert p["sensor"] == wav.stem and p["timing"] == "file"
            assert isinstance(p["t_ns"], int) and p["t_unc_ns"] > 0
        assert [p["t_ns"] for p in pulses] == sorted(p["t_ns"] for p in pulses)


@pytest.mark.slow
def test_default_parameters_also_hold_at_48_khz(refs):
    """The same recordings resampled to 48 kHz (polyphase, SciPy): no retuning needed."""
    from scipy import signal

    from edge.detector import Detector

    upsample = 4
    times_ns = {}
    for wav in sorted({wav for wav, _ in refs}):
        x, rate_hz = sf.read(wav, dtype="float32")
        start_ns = parse_utc_ns(json.loads(wav.with_suffix(".json").read_text())["timestamp"])
        det = Detector(rate_hz * upsample)
        pulses = det.process(signal.resample_poly(x, upsample, 1).astype(np.float32)) + det.flush()
        times_ns[wav] = [start_ns + round(p.sample * 1e9 / (rate_hz * upsample)) for p in pulses]
    f = detector_lopo.figures(detector_lopo.score(refs, times_ns))
    print(f"\nat 48 kHz: recall {f['recall']:.3f}, median |dt - 0.5 ms| {f['median_ms']:.3f} ms "
          f"(|dt| {f['median_raw_ms']:.3f} ms)")
    assert f["recall"] >= MIN_RECALL
    assert f["median_ms"] <= MAX_MEDIAN_MS
    assert f["median_raw_ms"] <= MAX_RAW_MEDIAN_MS


@pytest.fixture(scope="module")
def folds(pittsburgh):
    return detector_lopo.leave_one_position_out(pittsburgh)


def _print_folds(folds, tests):
    for held, f in folds.items():
        label = {"all": "FP1-FP3 in-sample", "held out": "folds pooled"}.get(held, f"{held} held out")
        print(f"{label:18s} {f['params']}: recall {f['recall']:.3f}, median |dt - 0.5 ms| {f['median_ms']:.3f} ms, "
              f"|dt| {f['median_raw_ms']:.3f} ms, outside the ms {f['median_interval_ms']:.3f} ms, "
              f"spread {f['spread_ms']:.3f} ms")
        for row in reference_audit.miss_rows(f.get("missed", []), tests):
            print("    missed: " + reference_audit.format_row(row))


@pytest.mark.slow
def test_leave_one_position_out(folds, pittsburgh):
    print()
    _print_folds(folds, pittsburgh)
    assert folds["all"]["recall"] >= MIN_RECALL
    assert folds["held out"]["recall"] >= HELD_OUT_MIN_RECALL
    assert folds["held out"]["median_ms"] <= HELD_OUT_MAX_MEDIAN_MS
    for held in ("FP1", "FP2", "FP3"):
        assert folds[held]["recall"] >= FOLD_MIN_RECALL, held
        assert folds[held]["median_ms"] <= MUST_MAX_MEDIAN_MS, held
        assert folds[held]["spread_ms"] <= FOLD_MAX_SPREAD_MS, held


@pytest.mark.slow
def test_leave_one_position_out_against_the_corrected_references(pittsburgh):
    """Issue 14's must-show, every fold held out, against the references with each double report
    moved to the sensor's later report (the sound in its audio): recall >= 0.98, median <= 0.5 ms."""
    folds = detector_lopo.leave_one_position_out(pittsburgh, reference_audit.corrected_references)
    print("\ndouble reports moved to the later report:")
    _print_folds(folds, pittsburgh)
    for held in ("FP1", "FP2", "FP3"):
        assert folds[held]["recall"] >= CORRECTED_FOLD_MIN_RECALL, held
        assert folds[held]["median_ms"] <= MUST_MAX_MEDIAN_MS, held


# The sound begins at the later report: the audio peaks there at LATER_SOUND_RATIO times its noise
# rms or more (measured 9-475) and the detector's onset lies within LATER_REPORT_MAX_MS of that
# report's floored millisecond (measured -0.2 to +1.1 ms: the ms floor and the onset's usual 0-1 ms).
LATER_SOUND_RATIO = 2 * reference_audit.NO_SOUND_RATIO
LATER_REPORT_MAX_MS = 1.5


def test_double_reports_time_the_sound_at_the_later_report(pittsburgh):
    """Each double-reported reference (tests/reference_audit.py: no sound in the audio there,
    though the sensor reported one clearly over its noise, and the same sound reported again
    1-4 ms later): the audio holds the sound at the later report, and the detector times it there."""
    reports = {k: v for d in pittsburgh for k, v in reference_audit.double_reports(d).items()}
    print()
    for (wav, ref_ns), later_ns in sorted(reports.items()):
        found = detector_lopo.detect_times([wav])[wav]
        onset_ns = min(found, key=lambda t, r=later_ns: abs(t - r))
        ratio = reference_audit.sound_ratio(wav, later_ns)
        print(f"{wav.name}: later report +{(later_ns - ref_ns) / 1e6:.0f} ms, peak/noise there {ratio:.0f} "
              f"(at the reference {reference_audit.sound_ratio(wav, ref_ns):.1f}), onset {(onset_ns - later_ns) / 1e6:+.2f} ms")
        assert ratio >= LATER_SOUND_RATIO, wav.name
        assert abs(onset_ns - later_ns) <= LATER_REPORT_MAX_MS * 1e6, wav.name
    assert len(reports) == DOUBLE_REPORTS


# First rounds missed at the nearest, clipping sensor: (position, test, sensor).
OFF_REFERENCES = (("FP1", "test_013", "SCP-00-BNG-5567"), ("FP3", "test_038", "SCP-00-BNG-5515"),
                  ("FP3", "test_043", "SCP-00-BNQ-2143"))
# The reference's round 1 -> 2 interval at that sensor is off the other sensors' by this much
# or more (measured 4.0 ms in all three), ours within AGREE_MS (measured 0.02-0.30 ms).
REFERENCE_OFF_MS = 3.0
AGREE_MS = 1.0


def _round_times_ns(test_dir) -> dict[str, dict[int, int]]:
    """{sensor serial: {shot index: reference arrival t_ns}} of the commercial grouping."""
    name = test_dir.name
    by_uuid = {p["pulse_uuid"]: p for p in json.loads((test_dir / f"{name}.allpulses.json").read_text())}
    out: dict[str, dict[int, int]] = {}
    for shot in json.loads((test_dir / f"{name}.nlos-tuples.json").read_text()):
        for uuid in shot["pulse_uuids"]:
            if uuid in by_uuid:
                pulse = by_uuid[uuid]
                out.setdefault(pulse["serial_number"], {})[shot["shot_index"]] = parse_utc_ns(pulse["arrival_time_utc"])
    return out


def test_the_first_rounds_still_missed_are_off_in_the_reference_not_in_the_audio(pittsburgh):
    """Round 1 -> 2 interval at the sensor whose first-round reference is missed: the reference's
    disagrees with every other sensor's (the shooter did not move), the detector's agrees, so
    the reference time of that first round, not the detected onset, is off."""
    folders = {(d.parent.name, d.name): d for d in pittsburgh}
    for fp, test, sensor in OFF_REFERENCES:
        rounds = _round_times_ns(folders[fp, test])
        others_ms = float(np.median([(t[1] - t[0]) / 1e6 for s, t in rounds.items() if s != sensor and {0, 1} <= set(t)]))
        ref_ms = (rounds[sensor][1] - rounds[sensor][0]) / 1e6
        wav = folders[fp, test] / f"{test}.audio.{sensor}.wav"
        found = detector_lopo.detect_times([wav])[wav]
        ours = [min(found, key=lambda t, r=r: abs(t - r)) for r in (rounds[sensor][0], rounds[sensor][1])]
        ours_ms = (ours[1] - ours[0]) / 1e6
        print(f"\n{test} {sensor}: round 1 -> 2 {ref_ms:.1f} ms by its reference, {ours_ms:.2f} ms detected, "
              f"{others_ms:.1f} ms at the other sensors")
        assert abs(ref_ms - others_ms) >= REFERENCE_OFF_MS, test
        assert abs(ours_ms - others_ms) <= AGREE_MS, test


# test_018 (FP1, one round) at its nearest sensor: the reference is a noise-level report (SNR 3.3 dB)
# 32 ms before the shot the same sensor reported 31 dB louder. test_002 was fired from the same
# position: every other sensor's reference relative to the anchor's agrees between the two tests
# (median within SAME_PLACE_MS; measured 1.0 ms), so does our onset at that sensor against ours at
# the anchor (measured 1.2 ms); the reference's is off by REFERENCE_OFF_MS or more (measured 29 ms).
SAME_PLACE = ("FP1", "test_018", "test_002", "SCP-00-BNG-5567", "SCP-00-BNQ-1409")
SAME_PLACE_MS = 3.0
SHOT_AFTER_MS = 50.0


def test_a_noise_level_reference_before_the_shot_is_off_by_the_same_places_other_test(pittsburgh):
    """The one first-round miss that is no double report (FP1 test_018): its reference at the
    nearest sensor is off by tens of ms against another test fired from the same place, while
    the other sensors' references and our onsets agree between the two."""
    fp, test, twin, sensor, anchor = SAME_PLACE
    folders = {(d.parent.name, d.name): d for d in pittsburgh}
    first = {name: {s: t[0] for s, t in _round_times_ns(folders[fp, name]).items() if 0 in t} for name in (test, twin)}
    relative_ms = {name: {s: (t - first[name][anchor]) / 1e6 for s, t in first[name].items()} for name in first}
    others = [abs(relative_ms[test][s] - relative_ms[twin][s]) for s in relative_ms[test]
              if s in relative_ms[twin] and s not in (sensor, anchor)]
    ours_ms = {}
    for name in (test, twin):
        wavs = [folders[fp, name] / f"{name}.audio.{s}.wav" for s in (sensor, anchor)]
        found = detector_lopo.detect_times(wavs)
        # the shot: our first pulse after the sensor's reference, within SHOT_AFTER_MS; at the
        # anchor our pulse nearest its reference
        onset = min(t for t in found[wavs[0]] if 0 <= t - first[name][sensor] <= SHOT_AFTER_MS * 1e6)
        at_anchor = min(found[wavs[1]], key=lambda t, r=first[name][anchor]: abs(t - r))
        ours_ms[name] = (onset - at_anchor) / 1e6
    print(f"\n{test} vs {twin} at {sensor}: reference {relative_ms[test][sensor] - relative_ms[twin][sensor]:+.1f} ms, "
          f"ours {ours_ms[test] - ours_ms[twin]:+.2f} ms, other sensors median {np.median(others):.1f} ms ({len(others)})")
    assert np.median(others) <= SAME_PLACE_MS
    assert abs(ours_ms[test] - ours_ms[twin]) <= SAME_PLACE_MS
    assert abs(relative_ms[test][sensor] - relative_ms[twin][sensor]) >= REFERENCE_OFF_MS
