"""The node's timing on one recording of tests/blast_generator.py: detector onsets, PPS edges and
the clock model's stamps against the generator's truth (the tests' and bench_timing's one measure)."""
from __future__ import annotations

import functools

import numpy as np

import blast_generator as bg
from earwitness.units import NS_PER_S
from edge.clock import ClockModel
from edge.detector import Detector
from edge.pps import AudioPps


@functools.lru_cache(maxsize=None)
def measured(kind: str, ppm: float, positive_ms: tuple[float, float]) -> dict:
    """Errors in us of each onset, PPS edge and stamp (``onset_us``, ``pps_us``, ``stamp_us``), and the counts."""
    sc = bg.scene(kind=kind, ppm=ppm, positive_ms=positive_ms, seed=int(abs(ppm) * 10 + positive_ms[0]))
    rate = sc.clock.rate_hz
    det = Detector(rate)
    onsets = np.array([p.sample for p in det.process(sc.mic) + det.flush()])
    truth = sc.clock.sample_at(sc.shots_s)
    nearest = onsets[[int(np.argmin(np.abs(onsets - t))) for t in truth]]
    finder = AudioPps(rate)
    edges = finder.process(sc.pps.samples.astype(np.float32))
    model = ClockModel(rate)
    model.add_utc_hint(0, int((sc.clock.t0_s + 0.3) * NS_PER_S))
    for e in edges:
        model.add_edge(e)
    stamps_ns = np.array([model.to_utc(s)[0] for s in nearest])
    us = 1e6 / rate
    return dict(pulses=len(onsets), shots=len(truth), edges=edges, edge_truth=sc.pps.edge_samples,
                onset_us=(nearest - truth) * us, pps_us=(edges - sc.pps.edge_samples[:len(edges)]) * us,
                stamp_us=(stamps_ns - sc.shots_s * NS_PER_S) / 1e3)
