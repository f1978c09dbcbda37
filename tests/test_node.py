"""`earwitness node` end to end against a real mosquitto: a real subprocess replays a WAV
with blasts at known times; pulses arrive signed and timed, through a 30 s broker outage and
a SIGKILL of the node, none lost, none duplicated after de-duplication by (node, sequence)."""
import base64
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import soundfile as sf

import node_audio
from earwitness import topics, wire
from edge import keys
from edge.utctime import parse_utc_ns
from simulator.broker import Collector, free_port, wait_until

NODE, SITE = "roof-7", "testsite"
START_UTC = "2026-01-01T00:00:00Z"
START_NS = parse_utc_ns(START_UTC)
ONE_SAMPLE_NS = 1e9 / node_audio.RATE_HZ
OUTAGE_S = 30
PIECE_S = 0.1   # raw PCM to a stdin node a piece at a time, as a live capture pipe (the node's read block)


def make_node(tmp_path, broker, wav, *, realtime, drain_timeout_s=30, health_interval_s=60):
    key = tmp_path / "node.key"
    if not key.exists():
        keys.generate(key)
    cfg = tmp_path / "node.toml"
    cfg.write_text(f"""
[node]
name = "{NODE}"
site = "{SITE}"
key = "node.key"
data_dir = "var"

[audio]
source = "wav"
path = "{wav}"
realtime = {str(realtime).lower()}
start_utc = "{START_UTC}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 1
reconnect_max_s = 1
keepalive_s = 5
health_interval_s = {health_interval_s}

[outbox]
drain_timeout_s = {drain_timeout_s}

[evidence]
chunk_s = 5
""")
    return cfg, wire.Keyring({NODE: keys.load_verify_key(keys.public_path(key))})


def sink_of(broker):
    """Everything the node publishes, in a persistent session: nothing is lost through an outage."""
    return Collector(broker.url, "ew/v1/#", client_id="test-sink", persistent=True).start()


def start(cfg):
    return subprocess.Popen([sys.executable, "-m", "earwitness", "node", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def received(sink, ring):
    """Every pulse message decoded and verified (raises on any bad one), in arrival order."""
    return [wire.decode(p, ring, topic_node=NODE) for p in sink.payloads(topics.pulse(SITE, NODE))]


def unique(msgs):
    guard = wire.ReplayGuard()
    return [m for m in msgs if guard.accept(m)]


def assert_times(msgs, wav, onsets):
    """Every blast was heard once, at the time the detector's onset maps to from start_utc."""
    found = node_audio.detected(wav)
    assert len(found) == len(onsets)
    assert max(abs(f - o) for f, o in zip(found, onsets)) < 20  # the blasts themselves (< 0.5 ms)
    got = sorted(m.t_ns for m in msgs)
    assert got == [START_NS + round(f * 1e9 / node_audio.RATE_HZ) for f in found]


@pytest.mark.integration
def test_replayed_wav_pulses_arrive_verified(mosquitto, tmp_path):
    wav = tmp_path / "in.wav"
    onsets = node_audio.write(wav, 10.2, np.arange(0.5, 10, 0.5))
    cfg, ring = make_node(tmp_path, mosquitto, wav, realtime=False)
    sink = sink_of(mosquitto)
    proc = start(cfg)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert wait_until(lambda: len(received(sink, ring)) >= len(onsets), 10), err
    msgs = unique(received(sink, ring))
    assert [m.seq for m in msgs] == list(range(1, len(onsets) + 1))
    assert_times(msgs, wav, onsets)
    for m in msgs:
        assert m.timing == "file" and m.t_unc_ns == round(ONE_SAMPLE_NS)
        assert m.features["peak_dbfs"] == pytest.approx(-6.5, abs=1.0) and m.features["snr_db"] > 30
    assert wait_until(lambda: sink.has(topics.status(SITE, NODE), b"offline", retained=False), 5)
    sink.close()


@pytest.mark.integration
@pytest.mark.slow
def test_broker_outage_of_30_s_loses_nothing_and_clips_come_back(mosquitto, tmp_path):
    wav = tmp_path / "in.wav"
    shots = np.arange(0.5, 44, 0.5)
    onsets = node_audio.write(wav, 45, shots)
    cfg, ring = make_node(tmp_path, mosquitto, wav, realtime=True, drain_timeout_s=30, health_interval_s=1)
    sink = sink_of(mosquitto)
    proc = start(cfg)
    try:
        assert wait_until(lambda: len(received(sink, ring)) >= 5, 20)
        mosquitto.stop()
        t_down = time.monotonic()
        time.sleep(OUTAGE_S)  # the node keeps hearing blasts: two a second
        seen = len(sink.payloads(topics.health(SITE, NODE)))
        mosquitto.start()
        assert time.monotonic() - t_down >= OUTAGE_S
        # A clip of the evidence while the node still runs: the blast at 20 s, in the outage.
        assert wait_until(lambda: len(sink.payloads(topics.health(SITE, NODE))) > seen, 15)  # the node is back
        t_shot = START_NS + 20 * 10**9
        assert sink.publish(topics.command(SITE, NODE),
                            json.dumps({"cmd": "clip", "id": "c1", "t0_ns": t_shot - 10**8, "t1_ns": t_shot + 10**8}))
        assert wait_until(lambda: sink.payloads(topics.clip(SITE, NODE)), 15)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_until(lambda: len(unique(received(sink, ring))) >= len(onsets), 10)
    msgs = unique(received(sink, ring))
    assert sorted(m.seq for m in msgs) == list(range(1, len(onsets) + 1))
    assert_times(msgs, wav, onsets)
    healths = [json.loads(h) for h in sink.payloads(topics.health(SITE, NODE))]
    assert max(h["outbox_depth_max"] for h in healths) > 20  # the backlog of the outage, reported
    assert {"pps_locked", "clock_unc_ns", "adc_rate_error_ppm", "noise_floor_dbfs", "pulses_per_min", "overruns",
            "cpu_load_1m", "cpu_temp_c", "disk_free_bytes"} <= set(healths[-1])
    assert healths[-1]["noise_floor_dbfs"] == pytest.approx(20 * np.log10(node_audio.NOISE_RMS), abs=3)
    clip = json.loads(sink.payloads(topics.clip(SITE, NODE))[0])
    assert clip["id"] == "c1" and clip["node"] == NODE
    flac = base64.b64decode(clip["audio_b64"])
    assert hashlib.sha256(flac).hexdigest() == clip["sha256"]
    audio, rate = sf.read(io.BytesIO(flac))
    assert abs(clip["t0_ns"] + np.argmax(np.abs(audio)) * 1e9 / rate - t_shot) < 1e6
    sink.close()


def outbox_depth(cfg):
    db = cfg.parent / "var" / "outbox.db"
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        try:
            return con.execute("SELECT count(*) FROM pulse").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_with_a_full_outbox_then_restart_delivers_all(mosquitto, tmp_path):
    wav = tmp_path / "in.wav"
    onsets = node_audio.write(wav, 10.2, np.arange(0.5, 10, 0.5))
    cfg, ring = make_node(tmp_path, mosquitto, wav, realtime=False, drain_timeout_s=120)
    sink = sink_of(mosquitto)
    mosquitto.stop()
    proc = start(cfg)
    wait_until(lambda: outbox_depth(cfg) >= len(onsets), 60, 0.1)
    assert outbox_depth(cfg) == len(onsets)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert outbox_depth(cfg) == len(onsets)  # on disk, not sent
    mosquitto.start()
    proc = start(cfg)  # the same node comes back: replays its outbox, then the file once more
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    n = 2 * len(onsets)
    assert wait_until(lambda: len(unique(received(sink, ring))) >= n, 10)
    msgs = unique(received(sink, ring))
    assert sorted(m.seq for m in msgs) == list(range(1, n + 1))
    assert_times([m for m in msgs if m.seq <= len(onsets)], wav, onsets)
    assert_times([m for m in msgs if m.seq > len(onsets)], wav, onsets)
    assert outbox_depth(cfg) == 0
    sink.close()


@pytest.mark.integration
def test_killed_node_is_marked_offline_by_its_last_will(mosquitto, tmp_path):
    wav = tmp_path / "in.wav"
    node_audio.write(wav, 20, [1.0])
    cfg, _ = make_node(tmp_path, mosquitto, wav, realtime=True)
    sink = sink_of(mosquitto)
    status = topics.status(SITE, NODE)
    proc = start(cfg)
    assert wait_until(lambda: sink.has(status, b"online", retained=False), 20)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wait_until(lambda: sink.has(status, b"offline", retained=False), 10)
    sink.close()


@pytest.mark.integration
def test_bad_config_and_missing_key_are_one_line_errors(tmp_path, mosquitto):
    wav = tmp_path / "in.wav"
    node_audio.write(wav, 1, [])
    cfg, _ = make_node(tmp_path, mosquitto, wav, realtime=False)
    (tmp_path / "node.key").unlink()
    proc = subprocess.run([sys.executable, "-m", "earwitness", "node", "--config", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("earwitness node: error: no node key at")
    assert len(proc.stderr.strip().splitlines()) == 1
    cfg.write_text(cfg.read_text().replace('source = "wav"', 'source = "tape"'))
    proc = subprocess.run([sys.executable, "-m", "earwitness", "node", "--config", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2 and "audio.source must be one of" in proc.stderr


def test_keygen(tmp_path):
    path = tmp_path / "k"
    out = subprocess.run([sys.executable, "-m", "earwitness", "node", "--keygen", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == keys.public_path(path).read_text().strip()
    again = subprocess.run([sys.executable, "-m", "earwitness", "node", "--keygen", str(path)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.integration
def test_pps_in_the_second_channel_times_pulses_to_microseconds(mosquitto, tmp_path):
    from simulator.pps import Adc

    wav = tmp_path / "in.wav"
    shots = np.arange(1.3, 11, 0.7)
    adc = Adc(t0_s=START_NS / 1e9 + 0.1, ppm=40.0)  # start_utc is 0.1 s off: a hint only
    onsets = node_audio.write(wav, 12, shots, pps=adc)
    cfg, ring = make_node(tmp_path, mosquitto, wav, realtime=False)
    cfg.write_text(cfg.read_text().replace("[mqtt]", 'pps_channel = 1\n\n[timing]\npps = "audio"\n\n[mqtt]'))
    sink = sink_of(mosquitto)
    proc = start(cfg)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert wait_until(lambda: len(received(sink, ring)) >= len(onsets), 10), err
    msgs = sorted(unique(received(sink, ring)), key=lambda m: m.t_ns)
    assert len(msgs) == len(onsets)
    # The truth: the UTC at which the ADC took the sample the detector names as the onset.
    truth_ns = [adc.time_at(f) * 1e9 for f in node_audio.detected(wav)]
    errors = [m.t_ns - t for m, t in zip(msgs, truth_ns)]
    assert all(m.timing == "pps-audio" for m in msgs)
    # float64 UTC seconds resolve 0.24 us; the clock model is good to a few us here.
    assert max(abs(e) for e in errors) < 5_000
    assert all(abs(e) <= m.t_unc_ns for e, m in zip(errors, msgs))
    sink.close()


@pytest.mark.integration
@pytest.mark.slow
def test_raw_pcm_on_stdin_in_real_time_is_timed_by_the_system_clock(mosquitto, tmp_path):
    wav = tmp_path / "in.wav"
    shots = [0.5, 1.5, 2.5]
    node_audio.write(wav, 3.2, shots)
    audio, rate = sf.read(wav, dtype="int16")
    proc, sink, ring = stdin_node(mosquitto, tmp_path, wav)
    t_first_ns = time.time_ns()
    CapturePipe(proc, audio).feed_to(len(audio))
    proc.stdin.close()
    assert proc.wait(60) == 0, proc.stderr.read()
    assert wait_until(lambda: len(received(sink, ring)) >= len(shots), 10)
    msgs = sorted(unique(received(sink, ring)), key=lambda m: m.t_ns)
    assert [m.timing for m in msgs] == ["system"] * len(shots)
    found = node_audio.detected(wav)
    for m, f in zip(msgs, found):  # when the sample was captured, by the host clock
        assert abs(m.t_ns - (t_first_ns + f / rate * 1e9)) < 0.5e9
    # Spacing follows the sample clock to within the stated uncertainty.
    for a, b, fa, fb in zip(msgs, msgs[1:], found, found[1:]):
        assert abs((b.t_ns - a.t_ns) - (fb - fa) / rate * 1e9) <= a.t_unc_ns + b.t_unc_ns
    sink.close()


@pytest.mark.integration
@pytest.mark.slow
def test_health_reports_the_gps_on_a_serial_port(mosquitto, tmp_path):
    import pathlib
    import threading

    wav = tmp_path / "in.wav"
    node_audio.write(wav, 4, [1.0])
    cfg, _ = make_node(tmp_path, mosquitto, wav, realtime=True, health_interval_s=1)
    master, slave = os.openpty()
    cfg.write_text(cfg.read_text().replace("[mqtt]", f'[timing]\ngps_port = "{os.ttyname(slave)}"\ngps_baud = 115200\n\n[mqtt]'))
    raw = (pathlib.Path(__file__).parent / "data" / "nmea" / "bds_mix.nmea").read_bytes()
    sink = sink_of(mosquitto)
    proc = start(cfg)
    talker = threading.Thread(target=os.write, args=(master, raw + raw), daemon=True)
    try:
        assert wait_until(lambda: sink.payloads(topics.status(SITE, NODE)), 20)  # the port is open
        talker.start()  # the receiver's output, written as the node reads it
        def fixed() -> bool:
            return any((json.loads(h)["gps"] or {}).get("fix") == 3 for h in sink.payloads(topics.health(SITE, NODE)))

        assert wait_until(fixed, 20)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
        if talker.is_alive():
            talker.join(5)
        os.close(master)
        os.close(slave)
    gps = [json.loads(h)["gps"] for h in sink.payloads(topics.health(SITE, NODE))][-1]
    assert gps["fix"] == 3 and 12 <= gps["sats"] <= 15 and gps["error"] is None
    sink.close()


def test_lost_samples_are_told_to_the_clock_and_counted(tmp_path):
    from edge.config import load
    from edge.node import Node

    wav = tmp_path / "in.wav"
    node_audio.write(wav, 2, [0.5, 1.5])
    audio, rate = sf.read(wav, dtype="int16")
    nobody = types.SimpleNamespace(url=f"mqtt://127.0.0.1:{free_port()}")
    cfg, ring = make_node(tmp_path, nobody, wav, realtime=True)
    node = Node(load(cfg))  # driven by hand: the worker alone, no broker needed
    lost = 4800  # 0.1 s the audio interface never delivered
    cut = rate  # after 1 s
    node.ring.write(audio[:cut])
    node.ring.report_lost(lost)
    node.ring.write(audio[cut:])
    node.ring.close()
    node._work()
    assert node.error is None
    msgs = [wire.decode(p, ring) for _, p in node.outbox.pending()]
    found = node_audio.detected(wav)
    # The second blast was delivered `lost` samples early: its time puts them back.
    assert [m.t_ns for m in msgs] == [START_NS + round(found[0] * 1e9 / rate), START_NS + round((found[1] + lost) * 1e9 / rate)]
    health = node.health()
    assert (health["overruns"], health["frames_lost"], health["pulses_total"]) == (1, lost, 2)
    node.outbox.close()


@pytest.mark.integration
def test_a_health_report_lost_does_not_take_the_backlog_peak_with_it(mosquitto, tmp_path):
    """A report handed to the client but delivered to nobody (QoS 0, the subscriber still
    reconnecting after an outage): the next report, within the minute, still has the peak."""
    import threading

    from edge.config import load
    from edge.node import Node

    wav = tmp_path / "in.wav"
    shots = [0.5, 1.0, 1.5, 2.0, 2.5]
    node_audio.write(wav, 3, shots)
    audio, _ = sf.read(wav, dtype="int16")
    cfg, _ = make_node(tmp_path, mosquitto, wav, realtime=True, health_interval_s=0.2)
    node = Node(load(cfg))  # driven by hand: the pulses queue up with the publisher not yet started
    node.ring.write(audio)
    node.ring.close()
    node._work()
    assert node.outbox.depth() == len(shots)
    handed = []   # whether each health report was handed to the client (the real publisher's answer)

    def publish_json(topic, obj, qos=0, real=node.publisher.publish_json):
        ok = real(topic, obj, qos)
        handed.append(ok and topic == node.publisher.topics.health)
        return ok

    node.publisher.publish_json = publish_json
    node.publisher.start()
    reports = threading.Thread(target=node._health_loop, daemon=True)
    try:
        assert wait_until(lambda: node.outbox.depth() == 0, 20)   # the backlog went out
        reports.start()
        assert wait_until(lambda: any(handed), 10)   # one report out, to no subscriber: lost
        with Collector(mosquitto.url, topics.health(SITE, NODE)) as sink:
            assert wait_until(lambda: sink.payloads(topics.health(SITE, NODE)), 10)
            health = json.loads(sink.payloads(topics.health(SITE, NODE))[0])
    finally:
        node._stop.set()
        if reports.is_alive():
            reports.join(5)
        node.publisher.stop()
        node.outbox.close()
    assert (health["outbox_depth"], health["outbox_depth_max"], health["pulses_per_min"]) == (0, len(shots), len(shots))


def stdin_node(mosquitto, tmp_path, wav, *, health_interval_s=60):
    """A node process reading raw int16 PCM on its stdin (a live capture pipe), online at the broker;
    returns (process, sink of all it publishes, keyring)."""
    cfg, ring = make_node(tmp_path, mosquitto, wav, realtime=True, health_interval_s=health_interval_s)
    cfg.write_text(cfg.read_text().replace('source = "wav"', 'source = "stdin"\nrate_hz = 48000\nchannels = 2\nformat = "int16"'))
    sink = sink_of(mosquitto)
    proc = subprocess.Popen([sys.executable, "-m", "earwitness", "node", "--config", str(cfg)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_until(lambda: sink.has(topics.status(SITE, NODE), b"online", retained=False), 20)  # up and reading
    return proc, sink, ring


class CapturePipe:
    """Raw PCM to a stdin node's pipe as a live capture gives it: a piece of PIECE_S (the node's read
    block) once its last frame is recorded, by the wall clock from the stream's start; what was held
    back goes at once when let go (the backlog of a reader fallen behind), then the pace again."""

    def __init__(self, proc, audio):
        self.proc, self.audio, self.fed, self.t0_s = proc, audio, 0, None

    def feed_to(self, last: int) -> None:
        """Frames up to (not including) ``last``."""
        rate = node_audio.RATE_HZ
        piece = round(PIECE_S * rate)
        if self.t0_s is None:
            self.t0_s = time.monotonic()
        while self.fed < last:
            end = min(self.fed + piece, last)
            delay = self.t0_s + end / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.proc.stdin.write(self.audio[self.fed:end].tobytes())
            self.proc.stdin.flush()
            self.fed = end


# A node asked for a clip of audio it has not heard yet: 3 s of audio, blasts at 0.5 s (its pulse
# times the request) and 2 s; the first second fed before the request, which is for 1.9-2.1 s.
CLIP_SHOTS_S, CLIP_AUDIO_LENGTH_S, CLIP_FED_FIRST_S, CLIP_WINDOW_S = (0.5, 2.0), 3.0, 1.0, (1.9, 2.1)
NO_PERIODIC_HEALTH_S = 3600   # health reports come only as answers to a request
ANSWER_WAIT_S = 30


def clip_node(mosquitto, tmp_path):
    """A stdin node fed CLIP_FED_FIRST_S of its audio, and the fusion server's clip request for
    CLIP_WINDOW_S of it, timed by the node's own pulse of the first blast as the server times its
    requests by the pulses: {"cmd": "clip", "id": "<incident>|<node>", "t0_ns", "t1_ns"}.
    Returns a namespace: proc, sink, ring, pipe (the CapturePipe), request, registry."""
    from fusion.server import evidence
    from fusion.server.registry import registry_from_nodes

    wav = tmp_path / "in.wav"
    node_audio.write(wav, CLIP_AUDIO_LENGTH_S, CLIP_SHOTS_S)
    audio, rate = sf.read(wav, dtype="int16")
    proc, sink, ring = stdin_node(mosquitto, tmp_path, wav, health_interval_s=NO_PERIODIC_HEALTH_S)
    pipe = CapturePipe(proc, audio)
    pipe.feed_to(round(CLIP_FED_FIRST_S * rate))
    assert wait_until(lambda: received(sink, ring), ANSWER_WAIT_S)   # the first blast's pulse
    first, onset = received(sink, ring)[0], node_audio.detected(wav)[0]

    def at_ns(t_s):   # the node's time of the sample t_s into the audio, from its first pulse
        return first.t_ns + round((t_s * rate - onset) * 1e9 / rate)

    request = {"cmd": "clip", "id": f"incident-1{evidence.ID_SEPARATOR}{NODE}",
               "t0_ns": at_ns(CLIP_WINDOW_S[0]), "t1_ns": at_ns(CLIP_WINDOW_S[1])}
    public_key = keys.public_path(tmp_path / "node.key").read_text().strip()
    registry = registry_from_nodes([{"id": NODE, "public_key": public_key, "x": 0.0, "y": 0.0}])
    return types.SimpleNamespace(proc=proc, sink=sink, ring=ring, pipe=pipe, request=request, registry=registry)


def finish_with_the_clip(node):
    """Feed the rest of the audio, wait for the clip answer, end the stream (the node exits cleanly),
    and check the answer as the server does: the one on .../clip, not an error, passing
    fusion.server.evidence.verify_clip (topic, signature, digest), its first and last samples at the
    request's times.  Returns (its metadata, its audio)."""
    from fusion.server import evidence

    node.pipe.feed_to(len(node.pipe.audio))
    assert wait_until(lambda: node.sink.payloads(topics.clip(SITE, NODE)), ANSWER_WAIT_S)
    node.proc.stdin.close()
    assert node.proc.wait(60) == 0, node.proc.stderr.read()
    (payload,) = node.sink.payloads(topics.clip(SITE, NODE))
    assert "error" not in json.loads(payload), json.loads(payload)["error"]
    incident, meta, flac = evidence.verify_clip(NODE, payload, node.registry)
    assert incident == "incident-1"
    assert abs(meta["t0_ns"] - node.request["t0_ns"]) < 10**6 and abs(meta["t1_ns"] - node.request["t1_ns"]) < 10**6
    clip, rate = sf.read(io.BytesIO(flac))
    assert len(clip) == meta["frames"] and rate == meta["rate_hz"]
    return meta, clip


@pytest.mark.integration
@pytest.mark.slow
def test_a_clip_request_for_audio_not_yet_processed_waits_for_it(mosquitto, tmp_path):
    """A node behind its input (the simulator's nodes under load) is asked for audio it has not
    heard: it answers once the audio is in, not "no kept audio"."""
    node = clip_node(mosquitto, tmp_path)
    try:
        assert node.sink.publish(topics.command(SITE, NODE), json.dumps(node.request))
        meta, clip = finish_with_the_clip(node)
        # The second blast is in it, where the node's pulse of it says (within the pulse's stated uncertainty).
        assert wait_until(lambda: len(received(node.sink, node.ring)) == len(CLIP_SHOTS_S), ANSWER_WAIT_S)
        second = received(node.sink, node.ring)[1]
        peak = int(np.argmax(np.abs(clip)))
        assert np.abs(clip[peak]) > node_audio.BLAST_AMPLITUDE / 2
        assert abs(meta["t0_ns"] + peak * 1e9 / meta["rate_hz"] - second.t_ns) <= second.t_unc_ns
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
        node.sink.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_health_request_is_answered_while_a_clip_request_waits_for_its_audio(mosquitto, tmp_path):
    """A clip request for audio the node has not heard waits for it (edge.evidence.CLIP_WAIT_S); a health
    request published after it is answered meanwhile, not behind it."""
    node = clip_node(mosquitto, tmp_path)
    health, clip = topics.health(SITE, NODE), topics.clip(SITE, NODE)
    try:
        assert node.sink.publish(topics.command(SITE, NODE), json.dumps(node.request))
        assert node.sink.publish(topics.command(SITE, NODE), json.dumps({"cmd": "health"}))
        # The clip's audio withheld, its request waits; with no audio coming it gives up after
        # edge.evidence.CLIP_STALL_S with an error, which a node answering one command at a time sends
        # before the health report. (Audio short of the clip's fed meanwhile would not keep it waiting:
        # the host clock times it late, and the request's window falls in it.)
        assert wait_until(lambda: node.sink.payloads(health), ANSWER_WAIT_S)
        assert not node.sink.payloads(clip), "the health request was answered behind the clip request"
        report = json.loads(node.sink.payloads(health)[0])
        assert report["node"] == NODE and report["frames_delivered"] <= node.pipe.fed   # the clip's audio withheld
        finish_with_the_clip(node)
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
        node.sink.close()


@pytest.mark.integration
def test_a_node_runs_in_process_from_a_dict(mosquitto, tmp_path):
    """As the simulator runs virtual nodes: no TOML file, Node.run() in the caller's process."""
    from edge.config import from_dict
    from edge.node import Node

    wav = tmp_path / "in.wav"
    onsets = node_audio.write(wav, 3, [0.5, 1.5, 2.5])
    keys.generate(tmp_path / "k")
    cfg = from_dict({"node": {"name": NODE, "site": SITE, "key": str(tmp_path / "k"), "data_dir": str(tmp_path / "var")},
                     "audio": {"source": "wav", "path": str(wav), "realtime": False, "start_utc": START_UTC},
                     "mqtt": {"url": mosquitto.url}, "evidence": {"enabled": False}})
    sink = sink_of(mosquitto)
    assert Node(cfg).run() == 0  # returns the pulses left unsent
    ring = wire.Keyring({NODE: keys.load_verify_key(keys.public_path(tmp_path / "k"))})
    assert wait_until(lambda: len(received(sink, ring)) == len(onsets), 10)
    assert_times(unique(received(sink, ring)), wav, onsets)
    sink.close()
