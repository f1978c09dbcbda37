"""Sensor node: CPU for 48 kHz stereo in real time, and bytes per pulse on the wire.

A real ``earwitness node`` process replays, at its recorded pace, a 48 kHz stereo WAV
(microphone with a blast every 2 s, GPS PPS in the second channel; timing ``pps-audio``,
evidence buffer on) to a real mosquitto; its CPU time (utime + stime from /proc) is read
over a steady 20 s window and divided by the wall time.
"""
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from earwitness import wire
from edge import keys
from edge.config import AudioSection
from simulator.pps import Adc

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import node_audio  # noqa: E402  (the tests' synthetic node input, shared rather than copied)
from simulator.broker import Mosquitto  # noqa: E402

TARGET_CPU_PCT = 2.0
DEFAULT_BLOCK = AudioSection.block
LOW_LATENCY_BLOCK = 1024
WARMUP_S = 4.0
WINDOW_S = 20.0
SHOT_EVERY_S = 2.0
START_UTC = "2026-01-01T00:00:00Z"
MQTT_FIXED_HEADER = 2  # type byte + remaining length (1 byte below 128)
MQTT_TOPIC_LEN = 2
MQTT_PACKET_ID = 2
MQTT5_PROPERTIES_LEN = 1  # no properties: one zero length byte


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    import os

    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_cpu_pct(tmp: pathlib.Path, broker, wav: pathlib.Path, block: int) -> tuple[float, float, str]:
    """CPU % of one core of a real node process replaying ``wav`` in real time, over WINDOW_S."""
    cfg = tmp / f"node-{block}.toml"
    cfg.write_text(f"""
[node]
name = "bench"
site = "bench"
key = "node.key"
data_dir = "var-{block}"
[audio]
source = "wav"
path = "{wav}"
realtime = true
start_utc = "{START_UTC}"
pps_channel = 1
block = {block}
[timing]
pps = "audio"
[mqtt]
url = "{broker.url}"
health_interval_s = 5
""")
    proc = subprocess.Popen([sys.executable, "-m", "earwitness", "node", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(WARMUP_S)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(WINDOW_S)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return 100 * (c1 - c0) / (t1 - t0), t1 - t0, err if proc.returncode else ""


def main() -> None:
    seconds = WARMUP_S + WINDOW_S + 3
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        wav = tmp / "in.wav"
        adc = Adc(t0_s=1_767_225_600.05, ppm=30.0)
        node_audio.write(wav, seconds, np.arange(1.0, seconds - 1, SHOT_EVERY_S), pps=adc)
        keys.generate(tmp / "node.key")
        broker = Mosquitto(tmp / "broker").start()
        try:
            for block, what in ((DEFAULT_BLOCK, "default"), (LOW_LATENCY_BLOCK, "low-latency")):
                pct, wall_s, err = node_cpu_pct(tmp, broker, wav, block)
                verdict = "meets" if pct < TARGET_CPU_PCT else "MISSES"
                print(f"node CPU, 48 kHz stereo in real time, {what} blocks of {block} frames "
                      f"({block / node_audio.RATE_HZ * 1e3:.0f} ms): {pct:.2f} % of one core over {wall_s:.0f} s "
                      f"(target < {TARGET_CPU_PCT:g} %: {verdict}); detector, PPS + clock, evidence FLAC, outbox, MQTT")
                if err:
                    print(f"  the node failed: {err.strip().splitlines()[-1:]}")
        finally:
            broker.stop()
    topic = "ew/v1/pgh/node/roof-17/pulse"
    packet = wire.MESSAGE_LEN + MQTT_FIXED_HEADER + MQTT_TOPIC_LEN + len(topic) + MQTT_PACKET_ID + MQTT5_PROPERTIES_LEN
    print(f"bytes per pulse: {wire.MESSAGE_LEN} B signed payload (limit {wire.MAX_MESSAGE_LEN} B; "
          f"{wire.BODY_LEN} B body + {wire.SIGNATURE_LEN} B Ed25519), {packet} B as an MQTT v5 PUBLISH on {topic!r} "
          f"(vs ~{len(example_json())} B for the same pulse as JSON, unsigned)")


def example_json() -> str:
    import json

    return json.dumps({"sensor": "roof-17", "t_ns": 1_767_225_600_123_456_789, "t_unc_ns": 7000, "timing": "pps-audio",
                       "seq": 12345, "snr_db": 38.51, "peak_dbfs": -6.49,
                       "features": {"noise_dbfs": -60.16, "rise_ms": 0.019, "duration_ms": 2.5, "decay_ms": 2.5,
                                    "crest_db": 22.07, "low_ratio_db": -1.77, "high_ratio_db": -9.49}})
