"""Onset and PPS timing on pulse shapes the simulator does not make (issue 14, item 4).

The recordings come from tests/blast_generator.py, written apart from simulator/: Friedlander
blasts of 1 to 4 ms positive phase at random sub-sample times, through a 2-tap FIR or an
8th-order Butterworth anti-alias front end, on an ADC running -50 to +50 ppm off, with the
GPS PPS on a second channel through the same front end.  The goal is issue 3's timing goal:
spread p99 (99th percentile of |error - median error|, as bench/bench_timing.py measures it)
at most 10 us at 48 kHz, median within 100 us.
"""
from __future__ import annotations

import numpy as np
import pytest

import blast_generator as bg
from edge.detector import Detector
from timing_measure import measured

SPREAD_P99_US = 10.0
MEDIAN_US = 100.0
CASES = [(kind, ppm, positive_ms) for kind in bg.FRONT_ENDS for ppm in (-50.0, 37.0, 50.0)
         for positive_ms in ((1.0, 1.0), (2.0, 4.0), (4.0, 4.0))]


@pytest.mark.parametrize("kind,ppm,positive_ms", CASES)
def test_onsets_hold_on_other_blasts_and_front_ends(kind, ppm, positive_ms):
    m = measured(kind, ppm, positive_ms)
    assert m["pulses"] == m["shots"]
    assert bg.spread_p99(m["onset_us"]) <= SPREAD_P99_US, np.sort(m["onset_us"])


@pytest.mark.parametrize("kind,ppm", [(kind, ppm) for kind in bg.FRONT_ENDS for ppm in (-50.0, 37.0, 50.0)])
def test_pps_edges_hold_on_band_limited_front_ends(kind, ppm):
    m = measured(kind, ppm, (2.0, 4.0))
    assert len(m["edges"]) == len(m["edge_truth"])
    assert bg.spread_p99(m["pps_us"]) <= SPREAD_P99_US, m["pps_us"]


@pytest.mark.parametrize("kind,ppm,positive_ms", CASES)
def test_pulse_timestamps_through_the_pps_clock(kind, ppm, positive_ms):
    """Onset + PPS edges + clock model: the time a node stamps on each blast.  The front end
    delays the microphone and the PPS alike, so the median stays near zero too."""
    m = measured(kind, ppm, positive_ms)
    assert bg.spread_p99(m["stamp_us"]) <= SPREAD_P99_US, np.sort(m["stamp_us"])
    assert abs(np.median(m["stamp_us"])) <= MEDIAN_US


def test_the_generator_is_what_it_says():
    """The generator's own truth: a blast's cell means integrate to the Friedlander
    integral; the PPS steps sit at whole seconds of the true clock."""
    clock = bg.Clock(48000.0, 37.0, 1_790_000_000.25)
    x = bg.blast_samples(clock, 48000, [clock.t0_s + 0.5], [0.002], [0.5], "fir2")
    first = int(np.ceil(clock.sample_at(clock.t0_s + 0.5)))
    assert np.all(x[: first - 1] == 0) and x[first - 1] >= 0 and x[first + 1] > 0.2
    # all of the positive phase and the negative one: the Friedlander integral goes to 0
    assert abs(x.sum()) / 48000 < 0.5 * 0.002 * 0.05
    pps = bg.pps_samples(clock, 48000 * 3, "butter")
    np.testing.assert_allclose(clock.time_at(pps.edge_samples), pps.edge_utc_s, atol=1e-9)
    assert np.all(pps.edge_utc_s == np.round(pps.edge_utc_s))


def test_c_and_numpy_reference_agree_on_generated_blasts():
    import detector_reference as ref

    sc = bg.scene(kind="butter", ppm=37.0, seconds=6.0, shots=8, seed=5)
    det = Detector(sc.clock.rate_hz)
    c = det.process(sc.mic) + det.flush()
    r = ref.detect(sc.mic, sc.clock.rate_hz)
    assert len(c) == len(r) == 8
    np.testing.assert_allclose([p.sample for p in c], [p["sample"] for p in r], atol=1e-6)
