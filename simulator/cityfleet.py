"""A city's fleet of nodes as MQTT publishers, for the cluster tests and benchmarks.

The fleet simulator's pulses (:mod:`simulator.fleet`) of a grid city, each signed by its node
(:mod:`earwitness.wire`, one Ed25519 key per node) and published QoS 1 on the node's topic at the
pace of the simulated clock, over a few MQTT connections that fail over among the brokers (the
servers of a cluster) as a node's publisher does.  A pulse is *accepted* when a broker
acknowledged it (PUBACK); the publishers keep and re-send the others after a failover.

Example::

    scn = city_scenario(seconds=20.0)
    pulses, _ = fleet.pulses(scn)
    signers, registry = provision(scn, workdir)
    fleet_pub = FleetPublisher(cluster.mqtt_urls, protocol="3.1.1").start()
    fleet_pub.publish_paced(signed(pulses, signers), scn.start_ns)
"""
from __future__ import annotations

import pathlib
import threading
import time

import paho.mqtt.client as mqtt

from earwitness import topics, wire
from earwitness.units import NS_PER_S
from edge import keys
from simulator import live, scenario
from simulator.broker import wait_until
from simulator.sensors import MEMS_SENSITIVITY_DBFS_PER_PA

SQ_MI_M = 1609.344
CITY_SENSORS = 1024           # a 32 x 32 grid at 15 per square mile: "a 1,000-sensor city"
CITY_PER_MINUTE = 100         # incidents a minute
SOUND_CLEARS_S = 10.0         # the last shots are heard across the array within this
SPL_AT_1_PA_DB = 94.0         # dB SPL of 1 Pa: the fleet's SPL to the node's dBFS
STAMP_WAIT_S = 1.0            # a node publishes a pulse once the next PPS edge has timed it
CONNECTIONS = 4               # MQTT connections the virtual nodes' messages share
INFLIGHT = 1000
RECONNECT_S = 1
CONNECT_TIMEOUT_S = 10.0


def city_scenario(seconds: float, sensors: int = CITY_SENSORS, per_minute: int = CITY_PER_MINUTE, seed: int = 21):
    """A grid city at 15 sensors per square mile with ``per_minute`` incidents a minute for ``seconds``
    (half single handgun shots, 30% three-round handguns, 20% six-round rifles)."""
    side_m = (sensors / 15.0) ** 0.5 * SQ_MI_M
    n = max(1, int(per_minute * seconds / 60.0))
    return scenario.from_dict({
        "name": "city-cluster", "duration_s": seconds + SOUND_CLEARS_S, "seed": seed,
        "array": {"layout": "grid", "width_m": side_m, "height_m": side_m, "density_per_sq_mi": 15.0},
        "environment": {"zone": "residential", "nlos_probability": 0.3},
        "random_events": [
            {"kind": "handgun", "count": max(1, n // 2), "rounds": 1, "t1_s": seconds},
            {"kind": "handgun", "count": 3 * n // 10, "rounds": 3, "interval_s": 0.4, "t1_s": seconds},
            {"kind": "rifle", "count": n // 5, "rounds": 6, "rate_rpm": 600.0, "t1_s": seconds}]})


def provision(scn, workdir: pathlib.Path) -> tuple[dict, pathlib.Path]:
    """A signing key per sensor and the fusion registry file."""
    key_paths, registry = live.provision(scn, workdir)
    return {sid: keys.load_signing_key(p) for sid, p in key_paths.items()}, registry


def signed(pulses: list[dict], signers: dict, site: str = live.SITE) -> list[tuple[int, str, bytes]]:
    """Each pulse as its node sends it: (t_ns, topic, signed message), numbered per node from 1."""
    seqs = dict.fromkeys(signers, 0)
    out = []
    for p in pulses:
        sid = p["sensor"]
        seqs[sid] += 1
        msg = wire.PulseMessage(wire.node_id(sid), seqs[sid], p["t_ns"], p["t_unc_ns"], p["timing"],
                                {"snr_db": p["snr_db"],
                                 "peak_dbfs": p["spl_db"] - SPL_AT_1_PA_DB + MEMS_SENSITIVITY_DBFS_PER_PA})
        out.append((p["t_ns"], topics.pulse(site, sid), wire.encode(msg, signers[sid])))
    return out


class FleetPublisher:
    """``connections`` MQTT clients publishing QoS 1, each failing over round the broker list.

    ``accepted`` counts PUBACKs, ``sent`` publishes handed to the clients; paho keeps the
    unacknowledged ones and sends them again on the next connection.
    """

    def __init__(self, urls: list[str], protocol: str = "5", connections: int = CONNECTIONS, name: str = "fleet"):
        from fusion.transport.mqttlink import parse_mqtt_url

        self.brokers = [parse_mqtt_url(u)[:2] for u in urls]
        self.protocol = protocol
        self.sent = 0
        self._lock = threading.Lock()
        self.accepted = 0
        self.clients = [self._client(f"{name}-{k}", k) for k in range(connections)]

    def _client(self, client_id: str, k: int) -> mqtt.Client:
        v311 = self.protocol == "3.1.1"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311 if v311 else mqtt.MQTTv5, **({"clean_session": False} if v311 else {}))
        c.max_inflight_messages_set(INFLIGHT)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(RECONNECT_S, RECONNECT_S)
        c.broker_index = k % len(self.brokers)
        c.on_publish = self._on_publish
        c.on_disconnect = self._next_broker
        c.on_connect_fail = lambda client, _: self._next_broker(client)
        return c

    def _on_publish(self, *_):
        with self._lock:
            self.accepted += 1

    def _next_broker(self, client, *_):
        client.broker_index = (client.broker_index + 1) % len(self.brokers)
        client._host, client._port = self.brokers[client.broker_index]   # as edge.publisher does, and why

    def start(self) -> "FleetPublisher":
        for c in self.clients:
            c.connect_async(*self.brokers[c.broker_index])
            c.loop_start()
        if not wait_until(lambda: all(c.is_connected() for c in self.clients), CONNECT_TIMEOUT_S):
            raise ConnectionError("the fleet's MQTT clients did not connect")
        return self

    def publish(self, topic: str, payload: bytes) -> None:
        self.clients[self.sent % len(self.clients)].publish(topic, payload, qos=1)
        self.sent += 1

    def publish_paced(self, items: list[tuple[int, str, bytes]], start_ns: int, speed: float = 1.0,
                      on_second=None) -> None:
        """Publish each (t_ns, topic, payload) once its node would have (first arrival plus the
        stamping wait) on a clock running ``speed`` times real time; ``on_second(elapsed_s)`` is
        called about once a second."""
        origin_s = time.monotonic()
        next_tick = origin_s + 1.0
        for t_ns, topic, payload in items:
            due = origin_s + ((t_ns - start_ns) / NS_PER_S + STAMP_WAIT_S) / speed
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, 0.05))
            if on_second is not None and now >= next_tick:
                next_tick += 1.0
                on_second(now - origin_s)
            self.publish(topic, payload)

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
            c.loop_stop()
