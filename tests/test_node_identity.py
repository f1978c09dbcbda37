"""A node's identity across a re-flash: sequence epochs, key rotation, one key per node.

A node re-flashed with its key but an empty data folder numbers its pulses from 1 again in a
new epoch; the server takes them as new (and says so), while a replayed message is still a
repeat and a forged one still fails its signature.  End to end with the real `earwitness node`
and `earwitness fusion` processes on a real mosquitto.
"""
from __future__ import annotations

import math
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import nacl.signing
import pytest

import node_audio
from earwitness import topics, wire
from edge import keys
from edge.outbox import Outbox
from fusion.server.registry import RegistryError, load_registry, write_registry
from fusion.server.store import Store
from simulator.broker import Collector, publish_all, wait_until

SITE = "flash"
WAIT_S = 90.0
EPOCH_TICK_WAIT_S = 2.0   # past the wall-clock second a new epoch is counted in
TEMPERATURE_C = 20.0
SPEED_M_S = 20.03 * math.sqrt(TEMPERATURE_C + 273.15)   # DESIGN.md, "Physics worth knowing"
NODES = {"n-a": (0.0, 0.0), "n-b": (400.0, 0.0), "n-c": (400.0, 400.0), "n-d": (0.0, 400.0), "n-e": (200.0, -150.0)}
SHOT_XY = (150.0, 220.0)
SHOT_S = 1.0          # into each recording
RECORDING_S = 4.0
FIRST_UTC, SECOND_UTC = "2026-03-01T12:00:00Z", "2026-03-01T12:10:00Z"   # the re-flashed run, 10 min later


def _key(seed: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([seed]) * 32)


# -- registry and wire ----------------------------------------------------------------------

def _registry_text(nodes: list[tuple[str, str, str]]) -> str:
    return "\n".join(f'[[node]]\nid = "{name}"\npublic_key = "{key}"\nx = 0.0\ny = {i * 10.0}\n{extra}\n'
                     for i, (name, key, extra) in enumerate(nodes))


def test_registry_refuses_one_key_for_two_nodes(tmp_path):
    path = tmp_path / "nodes.toml"
    same = keys.public_hex(_key(1).verify_key)
    path.write_text(_registry_text([("a", same, ""), ("b", same, "")]))
    with pytest.raises(RegistryError, match="public key of node 'a'"):
        load_registry(path)


def test_a_replaced_nodes_old_key_verifies_only_what_it_signed_before(tmp_path):
    old, new = _key(2), _key(3)
    path = tmp_path / "nodes.toml"
    retired = f'retired_keys = [{{ public_key = "{keys.public_hex(old.verify_key)}", until = 2026-03-01T12:05:00Z }}]'
    path.write_text(_registry_text([("roof", keys.public_hex(new.verify_key), retired),
                                    ("other", keys.public_hex(_key(4).verify_key), "")]))
    ring = load_registry(path).keyring
    before_ns = 1_772_366_400 * 10**9          # 2026-03-01T12:00:00Z
    after_ns = before_ns + 600 * 10**9
    nid = wire.node_id("roof")

    def msg(t_ns: int, seq: int = 1) -> wire.PulseMessage:
        return wire.PulseMessage(nid, seq, t_ns, 1000, "pps-audio", epoch=5)

    assert wire.decode(wire.encode(msg(before_ns), old), ring).t_ns == before_ns       # stored pulses still verify
    assert wire.decode(wire.encode(msg(after_ns), new), ring).t_ns == after_ns
    with pytest.raises(wire.WireError) as err:
        wire.decode(wire.encode(msg(after_ns), old), ring)                          # the old key, after replacement
    assert err.value.reason == "retired-key"
    with pytest.raises(wire.WireError) as err:
        wire.decode(wire.encode(msg(before_ns), _key(9)), ring)                     # forged
    assert err.value.reason == "signature"
    # The retired key may not belong to another node either; `until` must be a date-time.
    path.write_text(_registry_text([("roof", keys.public_hex(new.verify_key), retired.replace(
        keys.public_hex(old.verify_key), keys.public_hex(_key(4).verify_key))),
        ("other", keys.public_hex(_key(4).verify_key), "")]))
    with pytest.raises(RegistryError, match="public key of node 'roof'"):
        load_registry(path)
    path.write_text(_registry_text([("roof", keys.public_hex(new.verify_key),
                                     retired.replace("2026-03-01T12:05:00Z", '"tomorrow"'))]))
    with pytest.raises(RegistryError, match="date-time"):
        load_registry(path)


def test_outbox_keeps_its_epoch_and_a_new_one_gets_a_new_epoch(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="edge.outbox"):
        with Outbox(tmp_path / "a" / "outbox.db") as box:
            epoch = box.epoch
            box.append(lambda seq: b"x")
    assert epoch >= 1 and "new outbox" in caplog.text and f"epoch {epoch}" in caplog.text
    caplog.clear()
    with Outbox(tmp_path / "a" / "outbox.db") as box:
        assert box.epoch == epoch and box.append(lambda seq: b"y") == 2
    assert "new outbox" not in caplog.text
    # An outbox from before epochs (pulses numbered, no epoch stored) goes on in epoch 0.
    legacy = tmp_path / "b" / "outbox.db"
    legacy.parent.mkdir()
    with sqlite3.connect(legacy) as db:
        db.executescript("CREATE TABLE pulse (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB);"
                         "INSERT INTO pulse (payload) VALUES (x'00');")
    with Outbox(legacy) as box:
        assert box.epoch == 0 and box.append(lambda seq: b"z") == 2


# -- end to end -------------------------------------------------------------------------------

def _node_config(folder, broker_url: str, name: str, wav, start_utc: str):
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "node.toml"
    cfg.write_text(f'node = {{ name = "{name}", site = "{SITE}", key = "node.key", data_dir = "var" }}\n'
                   f'audio = {{ source = "wav", path = "{wav}", realtime = false, start_utc = "{start_utc}" }}\n'
                   f'mqtt = {{ url = "{broker_url}", reconnect_min_s = 1, reconnect_max_s = 1 }}\n'
                   'outbox = { drain_timeout_s = 30 }\nevidence = { enabled = false }\n')
    return cfg


def _run_nodes(configs) -> list[str]:
    """Run every node process until its WAV is replayed and its outbox drained; their stderr."""
    procs = [subprocess.Popen([sys.executable, "-m", "earwitness", "node", "--config", str(c)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in configs]
    errs = [p.communicate(timeout=WAIT_S)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errs
    return errs


def _incidents(collector, status: str | None = None) -> set[str]:
    return {a["incident"] for a in collector.json(topics.incident(SITE)) if status in (None, a.get("status"))}


class _Site:
    """Five real nodes around a shot, their registry, and the real fusion server on one broker."""

    def __init__(self, tmp_path, broker):
        self.tmp, self.broker = tmp_path, broker
        self.registry: dict[str, tuple[str, dict]] = {}
        self.folders = {}
        for name, xy in NODES.items():
            folder = tmp_path / name
            folder.mkdir()
            node_audio.write(folder / "shot.wav", RECORDING_S, [SHOT_S + math.dist(xy, SHOT_XY) / SPEED_M_S])
            self.registry[name] = (keys.public_hex(keys.generate(folder / "node.key")), {"x": xy[0], "y": xy[1], "z": 0.0})
            self.folders[name] = folder
        write_registry(tmp_path / "nodes.toml", self.registry)
        (tmp_path / "fusion.toml").write_text(
            f'site = "{SITE}"\nbroker = "{broker.url}"\nregistry = "nodes.toml"\ndatabase = "fusion.db"\n'
            f'client_id = "fusion-flash"\ntemperature_c = {TEMPERATURE_C}\nrequest_clips = false\n')
        self.log = tmp_path / "fusion.log"
        self.watch = Collector(broker.url, topics.incident(SITE), topics.deadletter(SITE),
                               f"ew/v1/{SITE}/node/+/pulse").start()
        self.server: subprocess.Popen | None = None

    def start_server(self) -> None:
        self.log.write_text("")
        self.server = subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", "fusion.toml"],
                                       cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        assert wait_until(lambda: "running" in self.log.read_text(), WAIT_S), self.log.read_text()

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            assert self.server.wait(timeout=30) == 0, self.log.read_text()
            self.server = None

    def run_nodes(self, start_utc: str) -> list[str]:
        return _run_nodes([_node_config(f, self.broker.url, n, f / "shot.wav", start_utc) for n, f in self.folders.items()])

    def deadletters(self) -> list[dict]:
        return self.watch.json(topics.deadletter(SITE))

    def close(self) -> None:
        try:
            self.stop_server()
        finally:
            self.watch.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_reflashed_node_is_welcome_and_a_replay_is_not(mosquitto, tmp_path):
    site = _Site(tmp_path, mosquitto)
    try:
        site.start_server()
        first = site.run_nodes(FIRST_UTC)
        assert all("new outbox" in err for err in first)
        assert wait_until(lambda: len(_incidents(site.watch)) == 1, WAIT_S), site.log.read_text()
        sent_before = list(site.watch.received(f"ew/v1/{SITE}/node/+/pulse"))
        # Re-flash every node: same key, an empty data folder; it hears a second shot 10 min later. A
        # re-flash takes more than the second a new sequence's epoch counts in (wire.new_epoch): nodes
        # restarted within the second their first outbox was made would take its epoch again.
        made = wire.new_epoch(time.time_ns())
        assert wait_until(lambda: wire.new_epoch(time.time_ns()) > made, EPOCH_TICK_WAIT_S)
        for folder in site.folders.values():
            shutil.rmtree(folder / "var")
        second = site.run_nodes(SECOND_UTC)
        assert all("new outbox" in err for err in second)
        assert wait_until(lambda: len(_incidents(site.watch)) == 2, WAIT_S), site.log.read_text()
        assert site.deadletters() == []        # no pulse of the re-flashed nodes refused
        # A replay of a pulse from before the re-flash: still a repeat, dead-lettered.
        replayed = sent_before[0]
        publish_all(mosquitto.url, [(replayed.topic, replayed.payload)], client_id="replayer")
        assert wait_until(site.deadletters, WAIT_S)
        assert [d["reason"] for d in site.deadletters()] == ["replay"]
        server_log = site.log.read_text()
        assert sum(f"node {name} started a new sequence" in server_log for name in NODES) == len(NODES)
    finally:
        site.close()
    assert len(sent_before) == len(NODES)


@pytest.mark.integration
@pytest.mark.slow
def test_a_replaced_node_with_a_new_key_is_welcome_and_its_old_key_retired(mosquitto, tmp_path):
    """Node n-a is replaced (new hardware: a new key, an empty data folder); the registry gives its
    new key and retires the old one from 12:05; the server, restarted on it, takes the new node's
    pulses into the second incident, refuses a message the old key signed after 12:05, and the
    first incident's stored pulses still verify."""
    site = _Site(tmp_path, mosquitto)
    replaced = "n-a"
    try:
        site.start_server()
        site.run_nodes(FIRST_UTC)
        assert wait_until(lambda: len(_incidents(site.watch)) == 1, WAIT_S), site.log.read_text()
        site.stop_server()
        folder = site.folders[replaced]
        old_key = keys.load_signing_key(folder / "node.key")
        new_public = keys.generate(folder / "node.key", overwrite=True)
        shutil.rmtree(folder / "var")
        old_hex, position = site.registry[replaced]
        site.registry[replaced] = (keys.public_hex(new_public), position)
        write_registry(tmp_path / "nodes.toml", site.registry)
        text = (tmp_path / "nodes.toml").read_text().replace(
            f'public_key = "{keys.public_hex(new_public)}"',
            f'public_key = "{keys.public_hex(new_public)}"\n'
            f'retired_keys = [{{ public_key = "{old_hex}", until = 2026-03-01T12:05:00Z }}]')
        (tmp_path / "nodes.toml").write_text(text)
        site.start_server()
        site.run_nodes(SECOND_UTC)
        assert wait_until(lambda: len(_incidents(site.watch)) == 2, WAIT_S), site.log.read_text()
        second = [a for a in site.watch.json(topics.incident(SITE)) if a["t_ns"] > 1_772_366_700 * 10**9]
        assert replaced in second[-1]["sensors"]
        assert site.deadletters() == []
        late = wire.PulseMessage(wire.node_id(replaced), 1, 1_772_367_000 * 10**9, 1000, "file", epoch=7)  # 12:10
        publish_all(mosquitto.url, [(topics.pulse(SITE, replaced), wire.encode(late, old_key))], client_id="old-node")
        assert wait_until(site.deadletters, WAIT_S)
        assert [d["reason"] for d in site.deadletters()] == ["retired-key"]
    finally:
        site.close()
    ring = load_registry(tmp_path / "nodes.toml").keyring
    with Store(tmp_path / "fusion.db") as store:
        stored = [p for p in store.pulses() if p["node"] == replaced]
        assert len(stored) == 2                              # one pulse per shot, old key and new
        for p in stored:
            assert wire.decode(store.pulse_raw(p["id"]), ring, topic_node=replaced).t_ns == p["t_ns"]
