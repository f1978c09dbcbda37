"""The node says when its timing degrades (PPS silent: holdover, then the system clock) and when
it recovers: with the real clock model, and with the real node process replaying a WAV whose
PPS channel goes silent for a while."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import node_audio
from edge.clock import ClockModel
from edge.timing_watch import HOLDOVER, LOCKED, SYSTEM, TimingWatch
from simulator.pps import Adc
from test_node import START_NS, make_node

RATE_HZ = 48_000
SILENT_FROM_S, SILENT_TO_S = 6, 14     # seconds into the recording without PPS


def _edges(clock: ClockModel, adc: Adc, seconds) -> None:
    for s in seconds:
        clock.add_edge(float(adc.sample_at(s)))


def test_watch_follows_the_real_clock_model_down_and_back(caplog):
    adc = Adc(t0_s=1_772_366_400.25, ppm=30.0, rate_hz=RATE_HZ)
    clock = ClockModel(RATE_HZ)
    clock.add_utc_hint(0, round(adc.t0_s * 1e9))
    watch = TimingWatch()
    start = int(adc.t0_s) + 1
    with caplog.at_level(logging.INFO, logger="edge.timing_watch"):
        _edges(clock, adc, range(start, start + 5))
        watch.update(clock.status())
        assert watch.state == LOCKED
        clock.advance(adc.sample_at(start + 10))          # 6 s of audio, no edge: holdover
        watch.update(clock.status())
        assert watch.state == HOLDOVER
        watch.update(clock.status())                      # no change: no second line
        _edges(clock, adc, range(start + 11, start + 15))
        watch.update(clock.status())
        assert watch.state == LOCKED
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["INFO", "WARNING", "WARNING"], lines
    assert "PPS silent for 6.0 s, holding over" in lines[1][1] and "timing recovered: PPS back" in lines[2][1]
    assert watch.degradations == 1


def test_watch_says_when_it_falls_to_the_system_clock(caplog):
    watch = TimingWatch()
    with caplog.at_level(logging.WARNING, logger="edge.timing_watch"):
        watch.update({"timing": "pps-kernel", "locked": True, "unc_ns": 3_000})
        watch.update({"timing": "pps-kernel", "locked": False, "unc_ns": 90_000, "edge_age_s": 4.0})
        watch.update({"timing": "system", "locked": False, "unc_ns": 450_000_000, "edge_age_s": 30.0})
        watch.update({"timing": "pps-kernel", "locked": True, "unc_ns": 3_000})
    assert watch.state == LOCKED and watch.degradations == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and SYSTEM in messages[1] and "uncertainty 450.0 ms" in messages[1]


@pytest.mark.integration
@pytest.mark.slow
def test_the_node_process_warns_when_pps_goes_silent_and_when_it_is_back(mosquitto, tmp_path):
    wav = tmp_path / "in.wav"
    adc = Adc(t0_s=START_NS / 1e9 + 0.1, ppm=40.0)
    t0 = START_NS // 10**9
    node_audio.write(wav, 20, [2.3, 17.3], pps=adc, pps_missing=[(t0 + SILENT_FROM_S, t0 + SILENT_TO_S)])
    cfg, _ = make_node(tmp_path, mosquitto, wav, realtime=False)
    cfg.write_text(cfg.read_text().replace("[mqtt]", 'pps_channel = 1\n\n[timing]\npps = "audio"\n\n[mqtt]'))
    run = subprocess.run([sys.executable, "-m", "earwitness", "node", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    degraded = [line for line in run.stderr.splitlines() if "timing degraded" in line]
    recovered = [line for line in run.stderr.splitlines() if "timing recovered" in line]
    assert len(degraded) == 1 and "WARNING" in degraded[0] and "holding over" in degraded[0], run.stderr
    assert len(recovered) == 1 and "WARNING" in recovered[0] and "pps-audio locked again" in recovered[0], run.stderr
    assert run.stderr.index("timing degraded") < run.stderr.index("timing recovered")
