"""Live fleet: pulse-level simulation of 1,000 sensors through a real broker and the fusion server.

The fleet scenario of ``bench_sim`` (1,000 sensors at 15 per square mile, 100 incidents a
minute) is turned into pulses (``simulator.fleet``), each signed as its node would sign it
(``earwitness.wire``, one Ed25519 key per node) and published QoS 1 on the node's topic at the pace
of the simulated clock (a pulse goes out when its first arrival plus the node's stamping wait
has passed), to an embedded mosquitto and the fusion server in its own process (``earwitness
fusion``). Printed: pulses lost (published but not acknowledged by the broker, whose QoS 1
session for the fusion server holds them from then on; target 0), how many the fusion
server stored, its ingest throughput and backlog, the alert latency (discharge to first
alert) and the score, each beside its target.

The issue's full run: 10 simulated minutes at 100 incidents a minute, paced at ``SPEED``
simulated seconds per wall second: real time, as a city's server sees it (10 minutes of wall
time); a fusion server that cannot keep up shows as a backlog and as alert latency, not as
lost pulses.  Each pulse carries the
level the node's detector would measure (``peak_dbfs`` from the fleet model's SPL through
the reference microphone's sensitivity), so the server classifies as it does live.
"""
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt

from bench.bench_sim import FLEET_MINUTES, FLEET_PER_MINUTE, fleet_scenario
from earwitness import topics, wire
from earwitness.units import NS_PER_S
from edge import keys
from simulator import fleet, live, score
from simulator.broker import Collector, Mosquitto, wait_until
from simulator.sensors import MEMS_SENSITIVITY_DBFS_PER_PA

SIM_MINUTES = FLEET_MINUTES  # the run, at the full incident rate
SPEED = 1.0                  # simulated seconds per wall second: real time, as a city runs it
SPL_AT_1_PA_DB = 94.0        # dB SPL of 1 Pa: the fleet's SPL to the node's dBFS
TARGET_LATENCY_S = 10.0      # DESIGN: an alert "within seconds"; discharge to first alert
STAMP_WAIT_S = 1.0           # a node publishes a pulse once the next PPS edge has timed it
PUBLISHERS = 4               # MQTT connections the virtual nodes' messages share
DRAIN_TIMEOUT_S = 60.0       # after the last publish, how long the fusion server gets to catch up
STOP_TIMEOUT_S = 20.0        # and to finish the locate it is in and publish final revisions
PROGRESS_S = 10.0
POLL_S = 0.05
TARGET_LOST = 0
# The fleet model's sensors hear a handgun up to about 2.5 km (its farthest first arrival in
# the 10 minutes): the fusion server is told so, as a city would configure it.
FLEET_RANGE_M = 2500.0


def _publishers(url: str, n: int) -> list[mqtt.Client]:
    from fusion.transport.mqttlink import parse_mqtt_url

    host, port, _ = parse_mqtt_url(url)
    out = []
    for k in range(n):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-live-nodes-{k}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.acked = 0
        c.on_publish = lambda cl, *_: setattr(cl, "acked", cl.acked + 1)
        c.connect(host, port)
        c.loop_start()
        out.append(c)
    return out


def _start_fusion(tmp: pathlib.Path, url: str, registry: pathlib.Path, weather: dict) -> subprocess.Popen:
    """`earwitness fusion` as its own process (so that a server that falls behind can be
    stopped without taking the benchmark with it), told ``weather`` (live.weather_settings);
    returns once it has subscribed."""
    conf = tmp / "fusion.toml"
    told = "".join(f"{key} = {value!r}\n" for key, value in weather.items())
    conf.write_text(f'site = "{live.SITE}"\nbroker = "{url}"\nregistry = "{registry.name}"\n'
                    f'database = "fusion.db"\nclient_id = "bench-live-fusion"\n{told}'
                    f'max_range_m = {FLEET_RANGE_M}\n')
    proc = subprocess.Popen([sys.executable, "-m", "earwitness", "fusion", "--config", str(conf)],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "running" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep the pipe drained
            return proc
    raise RuntimeError(f"earwitness fusion exited ({proc.wait()}) before it ran")


def _stored(database: pathlib.Path) -> int:
    from fusion.server.store import Store

    with Store(str(database)) as store:
        return store.count_pulses()


def _progress(origin_s, published, database, collector) -> None:
    print(f"  {time.monotonic() - origin_s:5.0f} s: {published:,} published, {_stored(database):,} stored by fusion, "
          f"{collector.count()} alerts", flush=True)


def _disconnect(clients) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _stop(fusion: subprocess.Popen) -> None:
    """SIGTERM publishes the final revisions; a server deep in one locate gets a while, then SIGKILL."""
    fusion.terminate()
    try:
        fusion.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        fusion.kill()
        fusion.wait()


def _alert_latency_s(alerts, arrivals_s, origin_s, start_ns) -> np.ndarray:
    """Discharge (located) to the first alert of each incident, on the simulated clock."""
    first = {}
    for a, at in zip(alerts, arrivals_s):
        first.setdefault(a["incident"], ((at - origin_s) * SPEED * NS_PER_S + start_ns - a["t_ns"]) / NS_PER_S)
    return np.array(list(first.values()))


def _pct(a) -> str:
    return f"median {np.median(a):.2f} s, p95 {np.percentile(a, 95):.2f} s, max {np.max(a):.2f} s" if len(a) else "-"


def main() -> None:
    scn = fleet_scenario()
    t_end_s = SIM_MINUTES * 60.0
    scn.events = [e for e in scn.events if e.t_s < t_end_s]
    scn.duration_s = t_end_s
    pulses, labels = fleet.pulses(scn)
    print(f"scale: {len(scn.array)} sensors, {FLEET_PER_MINUTE} incidents/min for {SIM_MINUTES:g} simulated "
          f"minute(s) (issue: {FLEET_MINUTES}), {len(scn.events)} incidents, {len(pulses):,} pulses, "
          f"paced at {SPEED:g}x real time")
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp, Mosquitto(f"{tmp}/broker") as broker:
        tmp = pathlib.Path(tmp)
        key_paths, registry = live.provision(scn, tmp)
        signers = {sid: keys.load_signing_key(p) for sid, p in key_paths.items()}
        database = tmp / "fusion.db"
        t0 = time.monotonic()
        collector = Collector(broker.url, topics.incident(live.SITE), client_id="bench-live-alerts").start()
        fusion = _start_fusion(tmp, broker.url, registry, live.weather_settings(scn))
        clients = _publishers(broker.url, PUBLISHERS)
        origin_s = time.monotonic()
        last_report = _publish_paced(pulses, scn.start_ns, signers, clients, (origin_s, database, collector))
        publish_s = time.monotonic() - origin_s
        backlog = len(pulses) - _stored(database)

        def caught_up():
            nonlocal last_report
            if time.monotonic() - last_report > PROGRESS_S:
                last_report = time.monotonic()
                _progress(origin_s, len(pulses), database, collector)
            return _stored(database) >= len(pulses)

        wait_until(caught_up, DRAIN_TIMEOUT_S, POLL_S * 10)
        stored = _stored(database)
        ingest_s = time.monotonic() - origin_s
        caught_up = stored == len(pulses)
        acked = sum(c.acked for c in clients)
        _disconnect(clients)
        _stop(fusion)
        time.sleep(POLL_S * 10)
        collector.close()
        alerts, arrivals_s = live.alerts_received(collector.received(), t0)
        lat = _alert_latency_s(alerts, arrivals_s, origin_s, scn.start_ns)
    s = score.score(live.latest_revisions(alerts), scn.truth(), scn.array.area_m2(), scn.duration_s)
    print(f"pulses: {len(pulses):,} published, lost {len(pulses) - acked:,} (target {TARGET_LOST}); "
          f"{stored:,} stored by fusion, {len(pulses) - stored:,} still queued for it at the broker")
    print(f"fusion throughput: {stored / ingest_s:,.0f} pulses/s over {ingest_s:.1f} s "
          f"(offered {len(pulses) / publish_s:,.0f} pulses/s); backlog when publishing ended: {backlog:,} pulses")
    print(f"alert latency, discharge -> first alert: {_pct(lat)} (target: under {TARGET_LATENCY_S:g} s)")
    print(f"score: {s['detected']}/{s['incidents']} incidents detected, {s['shots_located']}/{s['shots']} shots "
          f"located, error median {s['error_median_m'] or float('nan'):.1f} m, rounds exact {_fmt(s['rounds_exact'])}, "
          f"{s['false_alerts']} false (gunfire) alerts, classified right {_fmt(s['class_accuracy'])}; "
          f"{len(alerts)} alerts received"
          + ("" if caught_up else "; fusion had not caught up: scored on the alerts it had published"))


def _publish_paced(pulses, start_ns: int, signers, clients, progress) -> float:
    """Publish each pulse signed by its node at its time on the paced clock, round robin over
    ``clients``; ``progress`` is (origin_s, database, collector) for the progress lines.
    Returns the time of the last progress line."""
    origin_s, database, collector = progress
    seqs = dict.fromkeys(signers, 0)
    last_report = origin_s
    for i, p in enumerate(pulses):
        due = origin_s + ((p["t_ns"] - start_ns) / NS_PER_S + STAMP_WAIT_S) / SPEED
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - last_report > PROGRESS_S:
            last_report = time.monotonic()
            _progress(origin_s, i, database, collector)
        sid = p["sensor"]
        seqs[sid] += 1
        msg = wire.PulseMessage(wire.node_id(sid), seqs[sid], p["t_ns"], p["t_unc_ns"], p["timing"],
                                {"snr_db": p["snr_db"],
                                 "peak_dbfs": p["spl_db"] - SPL_AT_1_PA_DB + MEMS_SENSITIVITY_DBFS_PER_PA})
        clients[i % PUBLISHERS].publish(topics.pulse(live.SITE, sid), wire.encode(msg, signers[sid]), qos=1)
    return last_report


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"
