"""A Pittsburgh 2018 test (ShotSpotter Inc., TN098 supplement, CC BY 4.0) as a fusion site.

Stand-in nodes: one Ed25519 key per sensor, a registry file for the server, and every pulse
of the test's allpulses.json as a signed wire message (earwitness.wire) from its sensor, in
arrival order.  Nothing of the data is copied into the repository.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import pathlib
import signal
import subprocess
import sys

import nacl.signing

from earwitness import wire
from fusion.server.registry import write_registry
from pittsburgh_pulses import all_pulses, survey, temperature_c, utc_ns
from simulator.broker import Collector

# allpulses.json gives arrival times to the millisecond.
REPORTED_T_UNC_NS = 1_000_000


@dataclasses.dataclass
class Site:
    name: str
    registry_path: pathlib.Path
    keys: dict[str, nacl.signing.SigningKey]
    pulses: list[dict]                     # contract pulses in arrival order, with "seq"
    messages: list[tuple[str, bytes]]      # (node, signed message) in arrival order
    survey_xyz: tuple[float, float, float]
    rounds: int
    temperature_c: float
    wavs: list[tuple[str, pathlib.Path, int]]   # (sensor, WAV, t_ns of its first sample)
    positions: dict[str, tuple[float, float, float]]

    def topic(self, site: str, node: str) -> str:
        return f"ew/v1/{site}/node/{node}/pulse"


def build_site(test: pathlib.Path, out_dir: pathlib.Path, seed: int = 0) -> Site:
    positions, pulses = all_pulses(test)
    pulses.sort(key=lambda p: p["t_ns"])
    keys = {name: nacl.signing.SigningKey(bytes([seed % 256, *name.encode()[:31].ljust(31, b"k")]))
            for name in sorted(positions)}
    out_dir.mkdir(parents=True, exist_ok=True)
    registry = write_registry(out_dir / "nodes.toml", {
        n: (bytes(k.verify_key).hex(), dict(zip("xyz", positions[n]))) for n, k in keys.items()})
    seqs: dict[str, int] = {}
    messages, out = [], []
    for p in pulses:
        seq = seqs[p["sensor"]] = seqs.get(p["sensor"], 0) + 1
        msg = wire.PulseMessage(node_id=wire.node_id(p["sensor"]), seq=seq, t_ns=p["t_ns"],
                                t_unc_ns=REPORTED_T_UNC_NS, timing="file", features={"snr_db": p["snr_db"]})
        messages.append((p["sensor"], wire.encode(msg, keys[p["sensor"]])))
        out.append({"sensor": p["sensor"], "t_ns": p["t_ns"], "seq": seq, "snr_db": p["snr_db"]})
    wavs = []
    for meta_path in sorted(test.glob(f"{test.name}.audio.*.json")):
        meta = json.loads(meta_path.read_text())
        wavs.append((meta["serial_number"], meta_path.with_suffix(".wav"), utc_ns(meta["timestamp"])))
    xyz, rounds = survey(test)
    return Site(name=f"{test.parent.name}/{test.name}", registry_path=registry, keys=keys, pulses=out,
                messages=messages, survey_xyz=xyz, rounds=rounds, temperature_c=temperature_c(test), wavs=wavs,
                positions=positions)


def write_fusion_config(path: pathlib.Path, site: str, broker_url: str, registry: pathlib.Path, client_id: str,
                        temperature_c: float, database: str = "fusion.db", extra: str = "") -> pathlib.Path:
    """A fusion.toml for `earwitness fusion` (the database relative to it unless a URL)."""
    path.write_text(f'site = "{site}"\nbroker = "{broker_url}"\nregistry = "{registry}"\n'
                    f'database = "{database}"\nclient_id = "{client_id}"\ntemperature_c = {temperature_c}\n{extra}')
    return path


def fusion_process(config_path: pathlib.Path, log_path: pathlib.Path) -> subprocess.Popen:
    """The real `earwitness fusion` process on a configuration, its log appended to ``log_path``."""
    return subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", str(config_path)],
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"))


class EvidenceNodes:
    """Stand-in nodes answering clip commands: real audio of the test's WAVs, signed as edge.evidence does."""

    def __init__(self, broker_url: str, site: Site, site_name: str):
        import io

        import soundfile

        from earwitness.clip import clip_message

        self.site, self.site_name, self.answered = site, site_name, []
        self._audio = {}
        for node, path, t0_ns in site.wavs:
            samples, rate_hz = soundfile.read(path, dtype="int16")
            self._audio[node] = (samples, rate_hz, t0_ns)
        self._io, self._sf, self._clip_message = io, soundfile, clip_message
        self.c = Collector(broker_url, f"ew/v1/{site_name}/node/+/cmd", client_id="evidence-nodes",
                           on_message=self._on_command).start()

    def _on_command(self, collector, msg):
        client = collector.client   # in the network thread: publish, do not wait
        node = msg.topic.split("/")[4]
        cmd = json.loads(msg.payload)
        topic = f"ew/v1/{self.site_name}/node/{node}/clip"
        if node not in self._audio:
            client.publish(topic, json.dumps({"id": cmd["id"], "node": node, "error": "no evidence audio"}), qos=1)
            return
        samples, rate_hz, t0_ns = self._audio[node]
        i0 = max(0, (cmd["t0_ns"] - t0_ns) * rate_hz // 10**9)
        i1 = min(len(samples), (cmd["t1_ns"] - t0_ns) * rate_hz // 10**9)
        buf = self._io.BytesIO()
        self._sf.write(buf, samples[i0:i1], rate_hz, format="FLAC", subtype="PCM_16")
        flac = buf.getvalue()
        clip = {"t0_ns": t0_ns + i0 * 10**9 // rate_hz, "t1_ns": t0_ns + (i1 - 1) * 10**9 // rate_hz, "rate_hz": rate_hz,
                "frames": int(i1 - i0), "t_unc_ns": 10**6, "timing": "file", "sha256": hashlib.sha256(flac).hexdigest(),
                "flac": flac}
        answer = self._clip_message(clip, cmd["id"], node, self.site.keys[node])
        client.publish(topic, json.dumps(answer), qos=1)
        if not self.answered:   # the same clip with its audio altered: must be refused
            forged = dict(answer, audio_b64=base64.b64encode(flac[:-1] + bytes([flac[-1] ^ 1])).decode())
            client.publish(topic, json.dumps(forged), qos=1)
        self.answered.append(node)

    def close(self):
        self.c.close()


def final_with_clips(store, clips: int) -> dict | None:
    """The first final incident of ``store`` once it holds ``clips`` clips, else None."""
    done = [i for i in store.incidents() if i["status"] == "final"]
    return done[0] if done and len(store.clips(done[0]["incident"])) == clips else None


@contextlib.contextmanager
def fusion_run(work: pathlib.Path, site: Site, site_name: str, client_id: str, extra: str = "", wait_s: float = 120.0):
    """A real mosquitto, the stand-in evidence nodes and the real `earwitness fusion` process (config in
    ``work``, database ``work/fusion.db``), running: yields (broker URL, its log, the database, the config);
    stopped by SIGTERM after, which must end it cleanly."""
    from simulator.broker import Mosquitto, wait_until

    broker = Mosquitto(work / "mosquitto").start()
    nodes = EvidenceNodes(broker.url, site, site_name)
    config = write_fusion_config(work / "fusion.toml", site_name, broker.url, site.registry_path, client_id,
                                 site.temperature_c, extra=extra)
    log = work / "fusion.log"
    proc = fusion_process(config, log)
    try:
        assert wait_until(lambda: "running" in log.read_text(), wait_s), log.read_text()
        yield broker.url, log, work / "fusion.db", config
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        nodes.close()
        broker.stop()
    assert code == 0, log.read_text()
