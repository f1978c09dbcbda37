"""Hardware in the loop (`make hil`): the real `earwitness node` process, started from
hardware/node/node.toml the way its systemd unit starts it, records a virtual microphone
(PulseAudio null sink, PortAudio's ALSA ``pulse`` device) playing stereo WAVs with shots in
channel 1 and GPS PPS in channel 2, reads NMEA from a GPS on a pty, and publishes over TLS
with its own client certificate to the site broker of hardware/broker/ (its ACL), where the
real `earwitness fusion` verifies and stores the pulses.

The truth of each shot: the UTC at which the WAV's ADC model (simulator.pps.Adc) took the
sample the detector names as the onset, the WAV started so that its PPS edges fall on
whole UTC seconds (hil_rig.schedule).
"""
from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

import hil_rig
import node_audio
from edge import keys
from fusion.server.registry import write_registry
from fusion.server.store import Store
from simulator.broker import LOOPBACK, Collector, Mosquitto, free_port, wait_until
from simulator.pps import Adc
from site_broker import BROKER_DIR, broker_config
from tls_certs import make_pki

pytestmark = [pytest.mark.hil, pytest.mark.integration, pytest.mark.slow]

HARDWARE = pathlib.Path(__file__).resolve().parents[1] / "hardware"
TEMPLATE = HARDWARE / "node" / "node.toml"
SITE, NODE_A, NODE_B = "pgh", "roof-a", "roof-b"
TRUTH_TOL_NS = 50_000
T0_S = 0.5  # the WAVs' sample 0 is half a second past a PPS edge
ADC_PPM = 20.0  # the WAVs' ADC runs this fast against GPS time
HEALTH_INTERVAL_S = 1
WAIT_S = 30.0
HEALTH_LAG_S = 3.0  # a state shows in the health a report or two later
LOCK_BY_S = 3.0  # a WAV's PPS edges from its second 1 on lock the clock by its second 2; one to spare

missing = [tool for tool in ("pulseaudio", "paplay", "pactl", "mosquitto", "openssl") if shutil.which(tool) is None
           and not os.path.exists(f"/usr/sbin/{tool}")]
if missing:
    pytest.skip(f"hardware-in-the-loop needs {', '.join(missing)} (.ci/run installs them)", allow_module_level=True)


def node_config(name: str, cert: str, folder: pathlib.Path, pki: dict, port: int, gps: pathlib.Path) -> pathlib.Path:
    """hardware/node/node.toml for this machine: the deployment's paths, device and broker swapped."""
    folder.mkdir(parents=True, exist_ok=True)
    public = keys.generate(folder / "node.key")
    (folder / "node.pub.hex").write_text(keys.public_hex(public))
    substitutions = {
        'name = "roof-17"': f'name = "{name}"',
        'site = "pgh"': f'site = "{SITE}"',
        '"/etc/earwitness/node.key"': f'"{folder / "node.key"}"',
        '"/var/lib/earwitness"': f'"{folder / "var"}"',
        'device = "hw:1,0"': 'device = "pulse"',
        '"/dev/ttyAMA0"': f'"{gps}"',
        '"mqtts://broker.example.org:8883"': f'"mqtts://{LOOPBACK}:{port}"',
        '"/etc/earwitness/ca.pem"': f'"{pki["ca"]}"',
        '"/etc/earwitness/node.pem"': f'"{pki[cert + "_cert"]}"',
        '"/etc/earwitness/node-key.pem"': f'"{pki[cert + "_key"]}"',
        "reconnect_max_s = 60": "reconnect_max_s = 2",
        "health_interval_s = 60": f"health_interval_s = {HEALTH_INTERVAL_S}",
    }
    return hil_rig.node_toml_from(TEMPLATE, substitutions, folder / "node.toml")


def start_node(config: pathlib.Path, env: dict, log: pathlib.Path) -> subprocess.Popen:
    """The unit's ExecStart, this venv's program and the test's config in place of /opt and /etc."""
    unit = (HARDWARE / "node" / "earwitness-node.service").read_text()
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = [str(pathlib.Path(sys.executable).parent / "earwitness") if a == "/opt/earwitness/.venv/bin/earwitness"
            else str(config) if a == "/etc/earwitness/node.toml" else a for a in shlex.split(exec_start)]
    assert str(config) in argv, f"the unit's ExecStart changed: {exec_start}"
    return subprocess.Popen(argv, env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("hil")
    pki = make_pki(root / "pki", clients=(NODE_A, NODE_B, "fusion"))
    port = free_port()
    broker = Mosquitto(root / "broker", port=port,
                       conf=broker_config((BROKER_DIR / "mosquitto.conf").read_text(), port, root / "pki", root / "broker"))
    broker.start()
    mic = hil_rig.VirtualMic(root / "pulse").start()
    gps = hil_rig.PtyGps(root / "gps0").plug()
    gps_b = hil_rig.PtyGps(root / "gps1").plug()
    a = node_config(NODE_A, NODE_A, root / NODE_A, pki, port, gps.path)
    # B holds A's certificate: it can speak to the broker, but only as A
    b = node_config(NODE_B, NODE_A, root / NODE_B, pki, port, gps_b.path)
    registry = write_registry(root / "nodes.toml", {
        n: ((root / n / "node.pub.hex").read_text(), {"x": 0.0, "y": float(i)}) for i, n in enumerate((NODE_A, NODE_B))})
    fusion_toml = root / "fusion.toml"
    fusion_toml.write_text(f'site = "{SITE}"\nbroker = "mqtts://{LOOPBACK}:{port}"\nregistry = "{registry}"\n'
                           f'database = "fusion.db"\nclient_id = "fusion-hil"\n'
                           f'[tls]\nca = "{pki["ca"]}"\ncert = "{pki["fusion_cert"]}"\nkey = "{pki["fusion_key"]}"\n')
    fusion_log = root / "fusion.log"
    fusion = subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", str(fusion_toml)],
                              stdout=subprocess.DEVNULL, stderr=open(fusion_log, "ab"))
    watch = Collector(f"mqtts://{LOOPBACK}:{port}", f"ew/v1/{SITE}/node/#", client_id="hil-watch",
                      tls={"ca": pki["ca"], "cert": pki["fusion_cert"], "key": pki["fusion_key"]})
    node = start_node(a, mic.env, root / "node-a.log")
    r = {"root": root, "broker": broker, "mic": mic, "gps": gps, "node": node, "node_b_config": b,
         "db": root / "fusion.db", "watch": watch, "logs": [root / "node-a.log", fusion_log]}
    try:
        assert wait_until(lambda: "running" in fusion_log.read_text(), WAIT_S), fusion_log.read_text()
        watch.start()
        # PortAudio's first callback comes seconds after the stream starts: play once frames flow
        assert wait_until(lambda: (latest_health(r) or {}).get("frames_delivered", 0) > 0, WAIT_S), logs(r)
        yield r
    finally:
        for proc in (node, fusion):
            proc.terminate()
            proc.wait(15)
        watch.close()
        gps.unplug()
        gps_b.unplug()
        mic.kill()
        broker.stop()


def logs(rig) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in rig["logs"] if p.exists())


def healths(rig, node: str = NODE_A) -> list[tuple[float, dict]]:
    """(wall-clock arrival time, report) of every health report of ``node`` so far."""
    offset = time.time() - time.monotonic()
    return [(m.at_s + offset, json.loads(m.payload)) for m in rig["watch"].received(f"ew/v1/{SITE}/node/{node}/health")]


def latest_health(rig, node: str = NODE_A) -> dict | None:
    got = healths(rig, node)
    return got[-1][1] if got else None


def stored(rig, node: str = NODE_A) -> list[dict]:
    """The pulses `earwitness fusion` verified and stored, in time order."""
    with Store(rig["db"]) as store:
        return [p for p in store.pulses() if p["node"] == node]


def shots_wav(path: pathlib.Path, seconds: float, shot_times_s, pps_off_s: tuple[float, float] | None = None):
    """A stereo WAV (shots, PPS of an ``ADC_PPM`` ADC whose sample 0 is ``T0_S`` past an edge); the
    PPS silent over ``pps_off_s``. Returns the ADC times of the onsets the detector finds."""
    adc = Adc(t0_s=T0_S, ppm=ADC_PPM)
    node_audio.write(path, seconds, shot_times_s, pps=adc)
    if pps_off_s is not None:
        audio, rate = sf.read(path, dtype="int16")
        audio[round(pps_off_s[0] * rate):round(pps_off_s[1] * rate), 1] = 0
        sf.write(path, audio, rate, subtype="PCM_16")
    return [float(adc.time_at(f)) for f in node_audio.detected(path)]


def play_scheduled(rig, wav: pathlib.Path) -> int:
    """Starts the WAV so that its PPS edges land on whole UTC seconds; returns the base second."""
    base_s, start = hil_rig.schedule(T0_S)
    hil_rig.sleep_until(start)
    rig["player"] = rig["mic"].play(wav)
    return base_s


def assert_on_time(pulses: list[dict], truth_s: list[float], base_s: int) -> list[int]:
    """Each truth matched by one pulse within TRUTH_TOL_NS; returns the errors (ns)."""
    truth_ns = [base_s * 10**9 + round(t * 1e9) for t in truth_s]
    errors = []
    for t in truth_ns:
        nearest = min(pulses, key=lambda p: abs(p["t_ns"] - t))
        errors.append(nearest["t_ns"] - t)
    assert max(map(abs, errors)) < TRUTH_TOL_NS, errors
    print(f"HIL pulse time errors (us): {[round(e / 1000, 1) for e in errors]}")
    return errors


def wait_pulses(rig, n: int, since: int, node: str = NODE_A) -> list[dict]:
    ok = wait_until(lambda: len([p for p in stored(rig, node) if p["t_ns"] >= since]) >= n, WAIT_S)
    got = [p for p in stored(rig, node) if p["t_ns"] >= since]
    assert ok, f"{len(got)} of {n} pulses stored\n{logs(rig)}"
    return got


def test_pulses_arrive_verified_within_50_us_with_gps_fix_and_pps_lock(rig, tmp_path):
    seconds = 12.0
    truth = shots_wav(tmp_path / "shots.wav", seconds, [3.2, 4.7, 6.1, 7.3])
    base = play_scheduled(rig, tmp_path / "shots.wav")
    got = wait_pulses(rig, len(truth), base * 10**9)
    assert len(got) == len(truth)
    assert all(p["timing"] == "pps-audio" for p in got)
    errors = assert_on_time(got, truth, base)
    assert all(abs(e) <= p["t_unc_ns"] for e, p in zip(errors, got))
    # Lock needs two labelled edges (base + 2 s); the sink's playback buffer and the report
    # interval delay what a health report can say by up to HEALTH_LAG_S.
    hil_rig.sleep_until(base + seconds)
    locked = [h for t, h in healths(rig) if base + LOCK_BY_S + HEALTH_LAG_S < t < base + seconds]
    assert locked and all(h["pps_locked"] and h["gps"]["fix"] == 3 and h["gps"]["error"] is None for h in locked), locked


def test_gps_unplugged_degrades_health_and_replugged_recovers(rig, tmp_path):
    """The GPS goes away (its NMEA port and its PPS); the node holds over and says so; it recovers."""
    off = (6.0, 16.0)
    truth = shots_wav(tmp_path / "gps.wav", 26.0, [3.4, 20.3, 22.6, 24.1], pps_off_s=off)
    base = play_scheduled(rig, tmp_path / "gps.wav")
    hil_rig.sleep_until(base + T0_S + off[0])
    rig["gps"].unplug()
    hil_rig.sleep_until(base + T0_S + off[1])
    rig["gps"].plug()
    got = wait_pulses(rig, len(truth), base * 10**9)
    during = [h for t, h in healths(rig) if base + T0_S + off[0] + HEALTH_LAG_S < t < base + T0_S + off[1]]
    assert len(during) >= 4
    for h in during:
        assert h["gps"]["fix"] == 1 and h["gps"]["error"], h["gps"]
        assert not h["pps_locked"] and h["timing"] == "pps-audio"  # holdover on the last fit
    unc = [h["clock_unc_ns"] for h in during]
    assert all(b > a for a, b in zip(unc, unc[1:])), unc
    assert wait_until(lambda: latest_health(rig)["pps_locked"] and latest_health(rig)["gps"]["fix"] == 3, WAIT_S), logs(rig)
    after = [p for p in got if p["t_ns"] > (base + off[1] + 1) * 10**9]
    assert len(after) == 3 and all(p["timing"] == "pps-audio" for p in after)
    assert_on_time(after, truth[1:], base)
    print(f"HIL holdover: clock_unc_ns {unc[0]} -> {unc[-1]} over {len(during)} reports")


def test_audio_server_killed_is_reported_and_survived(rig, tmp_path):
    rig["mic"].kill()
    assert wait_until(lambda: (latest_health(rig) or {}).get("audio", {}).get("error"), WAIT_S), logs(rig)
    assert rig["node"].poll() is None
    rig["mic"].start()
    reopens = latest_health(rig)["audio"]["reopens"]
    assert wait_until(lambda: latest_health(rig)["audio"]["reopens"] > reopens
                      and latest_health(rig)["audio"]["error"] is None, WAIT_S), logs(rig)
    frames = latest_health(rig)["frames_delivered"]
    assert wait_until(lambda: latest_health(rig)["frames_delivered"] > frames, WAIT_S), logs(rig)
    truth = shots_wav(tmp_path / "after.wav", 9.0, [3.3, 5.5, 7.1])
    base = play_scheduled(rig, tmp_path / "after.wav")
    got = wait_pulses(rig, len(truth), base * 10**9)
    assert len(got) == len(truth) and all(p["timing"] == "pps-audio" for p in got)
    assert_on_time(got, truth, base)


def test_a_broker_restart_loses_no_pulse(rig, tmp_path):
    shots = list(np.arange(2.5, 15.0, 1.0))
    truth = shots_wav(tmp_path / "outage.wav", 17.0, shots)
    seq0 = max((p["seq"] for p in stored(rig)), default=0)
    base = play_scheduled(rig, tmp_path / "outage.wav")
    hil_rig.sleep_until(base + 5)
    rig["broker"].stop()
    time.sleep(6)
    rig["broker"].start()
    got = wait_pulses(rig, len(truth), base * 10**9)
    assert len(got) == len(truth)
    assert sorted(p["seq"] for p in got) == list(range(seq0 + 1, seq0 + len(truth) + 1))
    assert_on_time(got, truth, base)


def test_node_a_cannot_publish_as_node_b(rig, tmp_path):
    """Node B's process holds node A's certificate: the broker's ACL drops all it says as B."""
    b = start_node(rig["node_b_config"], rig["mic"].env, tmp_path / "node-b.log")
    try:
        time.sleep(5)  # B's stream is up (PortAudio's first callback takes seconds) and says it is online
        truth = shots_wav(tmp_path / "b.wav", 7.0, [3.1, 5.2])
        base = play_scheduled(rig, tmp_path / "b.wav")
        got_a = wait_pulses(rig, len(truth), base * 10**9)
        assert_on_time(got_a, truth, base)
        time.sleep(3)
        assert b.poll() is None, (tmp_path / "node-b.log").read_text()
        assert stored(rig, NODE_B) == []
        assert rig["watch"].count(f"ew/v1/{SITE}/node/{NODE_B}/#") == 0
    finally:
        b.terminate()
        b.wait(15)
