"""edge.evidence: decimated FLAC chunks on disk, bounded; clips with the right times and hash."""
import base64
import hashlib
import io
import json

import nacl.exceptions
import nacl.signing
import numpy as np
import pytest
import soundfile as sf

from earwitness.clip import canonical_json, clip_message
from edge.evidence import ClipError, EvidenceBuffer

RATE = 48_000
START_NS = 1_700_000_000 * 10**9
BLOCK = 4800


def stamp(sample):
    return START_NS + round(sample * 1e9 / RATE), 21_000, "file"


def signal(seconds, clicks_s, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(seconds * RATE)) * 100).astype(np.int16)
    for t in clicks_s:
        i = int(t * RATE)
        x[i:i + 48] = 20000  # a 1 ms click, far above the noise
    return x


def feed(ev, x, start=0, gap_at=None):
    for i in range(0, len(x), BLOCK):
        ev.write(x[i:i + BLOCK], start + i, gap=(gap_at is not None and start + i == gap_at))


def click_time_ns(clip):
    audio, rate = sf.read(io.BytesIO(clip["flac"]), dtype="float32")
    assert rate == clip["rate_hz"] == 12_000
    peak = int(np.argmax(np.abs(audio)))
    return clip["t0_ns"] + round(peak * 1e9 / rate)


def test_clip_has_the_event_at_its_time_and_a_true_hash(tmp_path):
    ev = EvidenceBuffer(tmp_path, RATE, stamp, chunk_s=10)
    feed(ev, signal(65, [12.5, 31.25, 63.0]))
    assert len(list(tmp_path.glob("ev-*.flac"))) == 6
    for t_click in (12.5, 31.25, 63.0):  # on disk, and (63 s) still in memory
        t_ns = START_NS + int(t_click * 1e9)
        clip = ev.clip(t_ns - 200_000_000, t_ns + 300_000_000)
        assert abs(clip["t0_ns"] - (t_ns - 200_000_000)) <= 100_000
        assert clip["frames"] == pytest.approx(0.5 * 12_000, abs=2)
        assert hashlib.sha256(clip["flac"]).hexdigest() == clip["sha256"]
        assert abs(click_time_ns(clip) - t_ns) < 500_000  # the anti-alias filter delays a little
        assert clip["timing"] == "file" and clip["t_unc_ns"] == 21_000


def test_clip_spanning_two_chunks_is_continuous(tmp_path):
    ev = EvidenceBuffer(tmp_path, RATE, stamp, chunk_s=10)
    feed(ev, signal(25, [10.2]))
    clip = ev.clip(START_NS + 9 * 10**9, START_NS + 11 * 10**9)
    assert clip["frames"] == pytest.approx(2 * 12_000, abs=2)
    assert abs(click_time_ns(clip) - (START_NS + 10_200_000_000)) < 500_000


def test_bounded_by_bytes_and_hours(tmp_path):
    ev = EvidenceBuffer(tmp_path / "a", RATE, stamp, chunk_s=5, budget_bytes=200_000)
    feed(ev, signal(60, []))
    assert ev.disk_bytes() <= 200_000 + 150_000 and ev.evicted_files > 0
    with pytest.raises(ClipError, match="no kept audio"):
        ev.clip(START_NS, START_NS + 10**9)  # evicted
    ev2 = EvidenceBuffer(tmp_path / "b", RATE, stamp, chunk_s=5, hours=20 / 3600)
    feed(ev2, signal(60, []))
    assert len(list((tmp_path / "b").glob("ev-*.flac"))) == 5  # 20 s back from the newest chunk


def test_a_gap_ends_the_clip(tmp_path):
    ev = EvidenceBuffer(tmp_path, RATE, stamp, chunk_s=100)
    x = signal(20, [])
    feed(ev, x[:10 * RATE])
    feed(ev, x[10 * RATE:], start=11 * RATE, gap_at=11 * RATE)  # one second lost
    clip = ev.clip(START_NS + 9 * 10**9, START_NS + 13 * 10**9)
    assert clip["t1_ns"] <= START_NS + 10 * 10**9
    assert clip["frames"] == pytest.approx(12_000, abs=2)


def test_bad_requests(tmp_path):
    ev = EvidenceBuffer(tmp_path, RATE, stamp)
    with pytest.raises(ClipError):
        ev.clip(5, 5)
    with pytest.raises(ClipError, match="at most"):
        ev.clip(0, 10**12)
    with pytest.raises(ClipError):
        ev.clip("a", 7)


def test_clip_message_is_signed_json(tmp_path):
    ev = EvidenceBuffer(tmp_path, RATE, stamp, chunk_s=10)
    feed(ev, signal(3, [1.0]))
    key = nacl.signing.SigningKey.generate()
    msg = json.loads(json.dumps(clip_message(ev.clip(START_NS, START_NS + 2 * 10**9), "req-1", "roof-1", key)))
    assert msg["id"] == "req-1" and msg["format"] == "flac"
    flac = base64.b64decode(msg["audio_b64"])
    assert hashlib.sha256(flac).hexdigest() == msg["sha256"]
    signature = bytes.fromhex(msg.pop("signature"))
    key.verify_key.verify(canonical_json(msg), signature)
    msg["t0_ns"] += 1
    with pytest.raises(nacl.exceptions.BadSignatureError):
        key.verify_key.verify(canonical_json(msg), signature)
