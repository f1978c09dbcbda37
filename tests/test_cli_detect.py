"""``earwitness detect`` on real WAV files of every kind, and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edge.utctime import format_utc_ns, parse_utc_ns
from simulator.demo import gunshot_clip

RATE_HZ = 48000
SHOTS_S = (0.5, 1.2)
START = "2024-06-01T12:00:00.25Z"


def detect(*args):
    return subprocess.run([sys.executable, "-m", "earwitness", "detect", *map(str, args)],
                          capture_output=True, text=True)


def pulses(done):
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def clip():
    return gunshot_clip(RATE_HZ, 2.0, SHOTS_S, seed=21)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_every_wav_sample_format_gives_the_shots(tmp_path, clip, subtype):
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, RATE_HZ, subtype=subtype)
    out = pulses(detect("--sensor", "roof-7", "--start-utc", START, wav))
    t0 = parse_utc_ns(START)
    assert [p["sensor"] for p in out] == ["roof-7"] * len(SHOTS_S)
    assert np.allclose([(p["t_ns"] - t0) / 1e9 for p in out], SHOTS_S, atol=0.5e-3)
    assert all(p["timing"] == "file" and p["snr_db"] > 20 for p in out)


def test_channel_picks_one_of_many_and_default_time_counts_from_the_file_start(tmp_path, clip):
    wav = tmp_path / "stereo.wav"
    quiet = gunshot_clip(RATE_HZ, 2.0, (), seed=22)
    sf.write(wav, np.stack([quiet, clip], axis=1), RATE_HZ, subtype="PCM_16")
    assert pulses(detect(wav)) == []
    out = pulses(detect("--channel", "1", wav))
    assert np.allclose([p["t_ns"] / 1e9 for p in out], SHOTS_S, atol=0.5e-3)
    assert out[0]["sensor"] == "stereo"


def test_start_utc_shifts_every_time_by_the_same_amount(tmp_path, clip):
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, RATE_HZ, subtype="PCM_16")
    rel = pulses(detect(wav))
    shift_ns = 1_700_000_000_123_456_789
    ab = pulses(detect("--start-utc", format_utc_ns(shift_ns), wav))
    assert [p["t_ns"] - shift_ns for p in ab] == [p["t_ns"] for p in rel]


def test_bad_inputs_get_one_line_and_a_nonzero_exit(tmp_path, clip):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), RATE_HZ)
    flac = tmp_path / "clip.flac"
    sf.write(flac, clip, RATE_HZ)
    good = tmp_path / "good.wav"
    sf.write(good, clip, RATE_HZ)
    slow = tmp_path / "slow.wav"
    sf.write(slow, clip[:4000], 4000)
    cases = [
        ((text,), "not a WAV"),
        ((empty,), "empty"),
        ((flac,), "not a WAV"),
        ((tmp_path / "missing.wav",), "No such file"),
        (("--channel", "2", good), "no channel 2"),
        (("--channel", "-1", good), "--channel"),
        (("--start-utc", "yesterday noon", good), "--start-utc"),
        (("--pps-channel", "1", good), "needs --start-utc"),
        (("--start-utc", "2026-01-01T00:00:00Z", "--pps-channel", "1", good), "no channel 1"),
        ((slow,), "sample rate"),
    ]
    for args, reason in cases:
        done = detect(*args)
        assert done.returncode != 0, args
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("earwitness detect: error:"), done.stderr
        assert reason in lines[0], lines[0]


def test_utc_parsing_keeps_nanoseconds_and_zones():
    assert parse_utc_ns("2018-12-19T00:49:26.000Z") == 1545180566 * 10**9
    assert parse_utc_ns("2018-12-19T01:49:26.123456789+01:00") == 1545180566123456789
    assert parse_utc_ns("2018-12-19T00:49:26") == parse_utc_ns("2018-12-19 00:49:26Z")
    assert format_utc_ns(1545180566123456789) == "2018-12-19T00:49:26.123456789Z"
    for bad in ("2018-12-19", "2018-13-01T00:00:00Z", "noon"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_utc_ns(bad)


def test_wav_reader_keeps_int16_and_picks_the_channel(tmp_path, clip):
    from edge.wavio import read_channel

    stereo = np.stack([clip, -clip], axis=1)
    for subtype, dtype in (("PCM_16", np.int16), ("PCM_24", np.float32), ("FLOAT", np.float32)):
        wav = tmp_path / f"{subtype}.wav"
        sf.write(wav, stereo, RATE_HZ, subtype=subtype)
        x, rate_hz = read_channel(wav, 1)
        assert rate_hz == RATE_HZ and x.dtype == dtype and x.shape == clip.shape
        scale = 32768 if dtype == np.int16 else 1
        assert np.allclose(x / scale, -clip, atol=1e-4)
