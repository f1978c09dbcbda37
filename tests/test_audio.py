"""edge.audio: the ring buffer's bounds and gaps, and the WAV, stdin and device sources."""
import ctypes.util
import io
import time

import numpy as np
import pytest
import soundfile as sf

from edge.audio import AudioError, DeviceSource, Ring, StdinSource, WavSource, open_source
from edge.config import AudioSection


def drain(ring, max_frames=1000):
    chunks = []
    while (c := ring.read(max_frames, 1.0)) is not None:
        chunks.append(c)
    return chunks


def test_ring_wraps_and_keeps_order():
    ring = Ring(100, 2, "int16")
    x = np.arange(2 * 1000, dtype=np.int16).reshape(-1, 2)
    out = []
    for i in range(0, 1000, 30):
        assert ring.write(x[i:i + 30])
        out.append(ring.read(17, 0.1).data)
        out.append(ring.read(100, 0.1).data)
    ring.close()
    out += [c.data for c in drain(ring)]
    assert np.array_equal(np.concatenate(out), x)


def test_full_ring_drops_never_blocks_and_marks_the_gap():
    ring = Ring(64, 1, "float32")
    blocks = [np.full((32, 1), k, np.float32) for k in range(5)]
    t0 = time.monotonic()
    ok = [ring.write(b, host_ns=1000 + k) for k, b in enumerate(blocks)]
    assert time.monotonic() - t0 < 0.1
    assert ok == [True, True, False, False, False]
    assert (ring.overruns, ring.frames_lost) == (3, 96)
    first = ring.read(1000, 0.1)
    assert (first.start, len(first.data), first.gap) == (0, 64, False)
    assert first.marks == [(32, 1000), (64, 1001)]
    assert ring.write(blocks[4], host_ns=2000)
    after = ring.read(1000, 0.1)
    assert after.gap and after.lost_frames == 96 and after.start == 64
    assert np.all(after.data == 4)


def test_read_does_not_cross_a_gap_and_unknown_loss_is_unknown():
    ring = Ring(100, 1, "int16")
    ring.write(np.zeros((10, 1), np.int16))
    ring.report_lost(None)
    ring.write(np.ones((10, 1), np.int16))
    a, b = ring.read(100, 0.1), ring.read(100, 0.1)
    assert (len(a.data), a.gap) == (10, False)
    assert (len(b.data), b.gap, b.lost_frames, b.start) == (10, True, None, 10)


def test_empty_read_times_out_then_end_of_stream():
    ring = Ring(10, 1, "int16")
    c = ring.read(5, 0.05)
    assert c is not None and len(c.data) == 0
    ring.close()
    assert ring.read(5, 0.05) is None


def write_wav(path, frames, rate=8000, channels=2, subtype="PCM_16"):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((frames, channels)) * 3000).astype(np.int16)
    sf.write(path, x, rate, subtype=subtype)
    return x


def test_wav_fast_replay_is_exact(tmp_path):
    x = write_wav(tmp_path / "a.wav", 50_000)
    src = WavSource(AudioSection(source="wav", path=tmp_path / "a.wav", realtime=False, block=999,
                                 start_utc="2018-12-19T00:49:26.5Z"))
    assert (src.rate_hz, src.channels, src.dtype, src.finite) == (8000, 2, "int16", True)
    assert src.start_ns == 1545180566_500_000_000
    ring = Ring(2000, 2, src.dtype)  # far smaller than the file: replay waits for the reader
    src.start(ring)
    got = np.concatenate([c.data for c in drain(ring, 700)])
    assert np.array_equal(got, x) and ring.overruns == 0


def test_wav_realtime_replay_keeps_pace(tmp_path):
    write_wav(tmp_path / "a.wav", 2400)  # 0.3 s
    src = WavSource(AudioSection(source="wav", path=tmp_path / "a.wav", realtime=True, block=400))
    ring = Ring(8000, 2, src.dtype)
    t0 = time.monotonic()
    src.start(ring)
    assert sum(len(c.data) for c in drain(ring)) == 2400
    assert 0.25 < time.monotonic() - t0 < 1.5


def test_bad_wav_is_a_clear_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(AudioError, match="not a WAV"):
        open_source(AudioSection(source="wav", path=tmp_path / "bad.wav"))
    write_wav(tmp_path / "mono.wav", 100, channels=1)
    with pytest.raises(AudioError, match="pps_channel = 1"):
        open_source(AudioSection(source="wav", path=tmp_path / "mono.wav", pps_channel=1))


def test_stdin_pcm_including_a_trailing_partial_frame():
    x = np.arange(3 * 1001, dtype=np.int16).reshape(-1, 3)
    stream = io.BufferedReader(io.BytesIO(x.tobytes() + b"\x01"))
    src = StdinSource(AudioSection(source="stdin", channels=3, format="int16", block=64), stream=stream)
    ring = Ring(500, 3, "int16")
    src.start(ring)
    assert np.array_equal(np.concatenate([c.data for c in drain(ring)]), x)


def test_device_source_errors_are_one_clear_line():
    cfg = AudioSection(source="device", device="no such device", channels=2)
    with pytest.raises(AudioError) as err:
        DeviceSource(cfg)
    if ctypes.util.find_library("portaudio") is None:
        assert "PortAudio library not found" in str(err.value)
    else:
        assert "no such device" in str(err.value)
    assert "\n" not in str(err.value)
