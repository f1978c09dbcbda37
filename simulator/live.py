"""The live run: a scenario's audio through one real node per sensor, a broker and the fusion server.

Each sensor's audio is rendered (:mod:`simulator.render`: the windows around what it can
hear, with the PPS in channel 1) and fed to a virtual node: the real :class:`edge.node.Node`
(C detector, PPS edge finder and clock model, durable outbox, signed MQTT publisher) reading
an :class:`edge.audio.ArraySource` instead of a sound card, one per sensor, as threads of this
process.  Each node gets a fresh Ed25519 key; the fusion server's registry lists the keys and
the positions the sensors' GPS report.  The fusion server (:class:`fusion.server.service.FusionService`)
runs in this process too, against the broker: an embedded mosquitto (:mod:`simulator.broker`)
unless a URL is given.  The alerts are collected from ``ew/v1/{site}/incident`` as a dispatch
system would, and the final revision of each incident is scored against the scenario's truth
(:mod:`simulator.score`).

Audio is fed as fast as the nodes take it unless ``speed`` is given (1.0: real time); the
sensors are rendered one after another and each node starts as soon as its audio is ready.

Example::

    result = run(scenario.load("city_exchange"))
    print(format_alerts(result.incidents)); print(format_score(result))
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

from earwitness import topics
from earwitness.units import NS_PER_S
from edge import keys
from edge.audio import ArraySource
from edge.config import AudioSection, Config, EvidenceSection, MqttSection, NodeSection, OutboxSection, TimingSection
from edge.node import Node
from fusion.locator.wind import FULL_CIRCLE_DEG
from fusion.server.registry import write_registry
from fusion.server.service import FusionConfig
from fusion.transport import mqtt_service
from simulator import render, score
from simulator.broker import Collector, Mosquitto, wait_until, wait_while_moving
from simulator.render import Progress
from simulator.scenario import STREAM_WEATHER, Scenario

log = logging.getLogger(__name__)

SITE = "sim"
INT16_FULL_SCALE = 32767.0
PPS_CHANNEL = 1
BLOCK_FRAMES = 4800          # 0.1 s at 48 kHz, the node's default block
DRAIN_TIMEOUT_S = 60.0       # a node waits this long for the broker to take its last pulses
INGEST_STALL_S = 120.0       # the fusion server may take no published pulse for this long before we stop waiting
ALERTS_TIMEOUT_S = 10.0      # and the collector this long to receive every alert published
CLIP_QUIET_S = 5.0           # evidence: stop waiting for clips once none has come for this long
SETTLE_S = 1.0               # ... and once all have come, and nothing else moved, for this long
CLIPS_TIMEOUT_S = 120.0      # ... and at most this long after every pulse is in and every incident final
POLL_S = 0.1
LATENCY_PERCENTILE = 95
# A weather reading's wind errs: an airport's or a rooftop station's anemometer is kilometres away or
# above the street, and its wind is a minutes' mean, not the gusts along the paths. The simulator tells
# fusion the scenario's wind plus this error per axis (the locator's TOLD_WIND_SD_M_S states the same),
# not the exact wind it blows, so a told err_m is scored against the error a real reading makes.
WEATHER_READING_SD_M_S = 0.5


@dataclasses.dataclass
class LiveResult:
    """What a live run produced.

    ``alerts``: every alert received, in order, each with ``received_s`` (seconds after the
    run began) added; ``incidents``: the last revision of each incident; ``score``: from
    :func:`simulator.score.score` plus ``pulses_detected``, ``pulses_published``,
    ``pulses_accepted``, ``pulses_rejected``, ``pulses_lost``, ``fusion_latency_s`` (a pulse
    reaching the server to its alert going out), ``alert_latency_s`` (discharge to first
    alert, in scenario seconds: only with a paced run), ``wall_s``, ``sensor_seconds``.
    """

    alerts: list[dict]
    incidents: list[dict]
    score: dict
    database: pathlib.Path
    workdir: pathlib.Path


def alerts_received(messages, t0_s: float) -> tuple[list[dict], list[float]]:
    """The alerts among ``messages`` (:class:`simulator.broker.Message` of the incident topic,
    JSON), each with ``received_s`` (seconds after ``t0_s``, a ``time.monotonic()``) added, and
    the ``time.monotonic()`` of each arrival."""
    alerts, arrivals_s = [], []
    for m in messages:
        try:
            alert = json.loads(m.payload)
        except ValueError:
            log.warning("an alert that is not JSON on %s", m.topic)
            continue
        alert["received_s"] = round(m.at_s - t0_s, 3)
        alerts.append(alert)
        arrivals_s.append(m.at_s)
    return alerts, arrivals_s


def latest_revisions(alerts: list[dict]) -> list[dict]:
    """The last revision of every incident among ``alerts``, in discharge order; those withdrawn
    (merged into another incident) are left out."""
    last: dict[str, dict] = {}
    for a in alerts:
        if a["incident"] not in last or a["revision"] >= last[a["incident"]]["revision"]:
            last[a["incident"]] = a
    return sorted((a for a in last.values() if a["status"] != score.WITHDRAWN), key=lambda a: a["t_ns"])


def sensor_segments(scn: Scenario, plan: render.Plan, i: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """Sensor ``i``'s rendered audio as the node would capture it: (UTC ns of the first sample,
    [(sample index on the sensor's clock, int16 frames (N, 2))]).

    Between windows, and at the overruns the sensor model drew, the samples are missing: the
    source reports them lost, as an audio interface reports an overflow.
    """
    segments, start_ns = [], None
    for t0_s, t1_s, gids in plan.windows.get(i, []):
        t0_ns, audio, info = render.render_window(scn, plan, i, t0_s, t1_s, gids)
        if start_ns is None:
            start_ns = t0_ns
        pcm = np.round(np.clip(audio, -1.0, 1.0) * INT16_FULL_SCALE).astype(np.int16)
        orig, pos = 0, 0       # next kept sample: index in the window before the cuts, in pcm
        for o_start, o_len in sorted(info["overruns"]):
            if o_start > orig:
                segments.append((info["n0"] + orig, pcm[pos:pos + o_start - orig]))
                pos += o_start - orig
            orig = max(orig, o_start + o_len)
        segments.append((info["n0"] + orig, pcm[pos:]))
    return start_ns, [(at, frames) for at, frames in segments if len(frames)]


def node_config(sid: str, workdir: pathlib.Path, url: str, key: pathlib.Path, evidence: bool = False) -> Config:
    """A virtual node's configuration: PPS in channel 1, evidence audio or not, the given broker."""
    return Config(path=workdir / "node.toml",
                  node=NodeSection(name=sid, site=SITE, key=key, data_dir=workdir),
                  audio=AudioSection(source="stdin", channels=2, mic_channel=0, pps_channel=PPS_CHANNEL,
                                     block=BLOCK_FRAMES),
                  timing=TimingSection(pps="audio"), mqtt=MqttSection(url=url),
                  outbox=OutboxSection(drain_timeout_s=DRAIN_TIMEOUT_S), evidence=EvidenceSection(enabled=evidence),
                  detector={})


def provision(scn: Scenario, workdir: pathlib.Path) -> tuple[dict, pathlib.Path]:
    """A key per sensor and the fusion registry (positions as the sensors' GPS report them)."""
    models = scn.sensor_models()
    key_paths, nodes = {}, {}
    for i, sid in enumerate(scn.array.ids):
        path = workdir / "nodes" / sid / "node.key"
        public = keys.generate(path, overwrite=True)
        key_paths[sid] = path
        nodes[sid] = (keys.public_hex(public), scn.array.position(scn.array.xyz[i] + models[i].gps_offset_m))
    return key_paths, write_registry(workdir / "nodes.toml", nodes)


class _VirtualNode:
    def __init__(self, node: Node):
        self.node = node
        self.left: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"node-{node.cfg.node.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.left = self.node.run()
        except BaseException as exc:  # reported with the results; the other nodes go on
            self.error = exc


@dataclasses.dataclass
class _Fleet:
    """The virtual nodes of a run and what they share: their folder, the broker, their keys."""

    workdir: pathlib.Path
    url: str
    key_paths: dict[str, pathlib.Path]
    hold: threading.Event | None          # evidence: the nodes stay up until it is set
    nodes: list[_VirtualNode] = dataclasses.field(default_factory=list)

    def start(self, sid, segments, start_ns, rate_hz, speed=None, origin=None) -> None:
        source = ArraySource(segments, rate_hz, start_ns, BLOCK_FRAMES, speed, origin, self.hold)
        cfg = node_config(sid, self.workdir / "nodes" / sid, self.url, self.key_paths[sid], evidence=self.hold is not None)
        self.nodes.append(_VirtualNode(Node(cfg, source=source)))


def _finals_and_clips(nodes, service, bar, collector) -> None:
    """Wait (nodes up) until every node's audio is in and published, every incident final,
    and the clips the fusion server asked for have come in (or stopped coming)."""
    def settled():
        return all(vn.node.source.fed.is_set() and vn.node.ring.fill() == 0 and vn.node.outbox.depth() == 0
                   for vn in nodes if vn.thread.is_alive())

    def final():
        # A node's empty outbox means the broker has its pulses, not the server: under load the
        # server takes them seconds later, and only then opens the windows whose final asks for clips.
        return _taken(service) >= sum(vn.node.publisher.published for vn in nodes) and service.locator_idle \
            and not service.tracker.open_windows

    def in_and_final():
        if bar:
            fed = sum(vn.node.source.fed.is_set() for vn in nodes)
            bar.update(fed, f"nodes fed, {service.ingest.accepted} pulses in, {collector.count()} alerts, "
                            f"{service.tracker.open_windows} incident window(s) open")
        return settled() and final()

    def moving():
        return (_taken(service), service.tracker.open_windows, sum(vn.node.source.fed.is_set() for vn in nodes),
                sum(vn.node.pulses_total for vn in nodes), sum(vn.node.publisher.published for vn in nodes))

    wait_while_moving(in_and_final, moving, INGEST_STALL_S, POLL_S)
    state, since = None, time.monotonic()

    def quiet():
        nonlocal state, since
        now_state = (service.tracker.open_windows, service.clips_requested, service.clips_stored, service.alerts_published)
        # The quiet spell counts only from when nothing can still ask for clips: not while a window is
        # open or a round unsent (a window closes on the wall clock, later under load than CLIP_QUIET_S).
        if now_state != state or not (settled() and final()):
            state, since = now_state, time.monotonic()
        # Only requests answered end the wait early (after SETTLE_S): else none has come for CLIP_QUIET_S.
        finished = 0 < state[1] <= state[2]
        return time.monotonic() - since > (SETTLE_S if finished else CLIP_QUIET_S)

    # Its own time: how long ingestion took under load must not leave the clips none.
    wait_until(quiet, CLIPS_TIMEOUT_S, POLL_S)


def _percentiles(values) -> tuple[float | None, float | None]:
    if not len(values):
        return None, None
    return float(np.median(values)), float(np.percentile(values, LATENCY_PERCENTILE))


def run(scn: Scenario, *, broker: str | None = None, speed: float | None = None, out=None,
        progress: bool = True, temperature: bool = True, evidence: bool = False,
        cameras: str | pathlib.Path | None = None) -> LiveResult:
    """Run ``scn`` live and score it (see the module docstring).

    Parameters
    ----------
    broker : str, optional
        ``mqtt://host:port`` of a running broker; default: an embedded mosquitto.
    speed : float, optional
        Feed the audio at this many times real time (1.0: real time); default: as fast as
        the nodes take it.
    out : path-like, optional
        Folder for the run's files (fusion.db, nodes.toml, node outboxes, alerts.jsonl);
        default: a temporary folder.
    progress : bool
        Progress lines on stderr.
    temperature : bool
        Give the fusion server the scenario's weather as a city's weather feed would: its air
        temperature and wind, the wind with a reading's error (:func:`weather_settings`; the
        locator models the wind along each path); else the locator
        estimates the speed of sound in still air. Either way the error budget's frame term is 0:
        the scenario's truth is in the sensors' own frame.
    evidence : bool
        The nodes keep evidence audio and stay up until the fusion server has finalised
        its incidents (one propagation window after their last pulse) and collected the
        audio clips it asks for: the forensic reports then show the waveforms.
    cameras : path-like, optional
        A Cameras CSV (fusion.forensics.cameras) for the fusion server: the alerts list the
        cameras that see each incident, with the video to pull.
    """
    t0 = time.monotonic()
    hold = threading.Event() if evidence else None
    workdir = _workdir(out)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    embedded = Mosquitto(workdir / "broker").start() if broker is None else None
    url = broker or embedded.url
    collector = service = None
    fleet = _Fleet(workdir, url, {}, hold)
    try:
        fleet.key_paths, registry = provision(scn, workdir)
        collector = Collector(url, topics.incident(SITE), client_id=f"earwitness-sim-alerts-{time.time_ns()}").start()
        database = workdir / "fusion.db"
        database.unlink(missing_ok=True)
        service = mqtt_service(FusionConfig(site=SITE, broker=url, registry=registry, database=str(database),
                                             client_id=f"earwitness-sim-fusion-{int(time.time_ns())}",
                                             **weather_settings(scn, temperature),
                                             cameras=pathlib.Path(cameras) if cameras else None))
        service.start()
        say(f"live: {scn.name}: {len(scn.array)} sensors, {len(scn.events)} events, broker {url}")
        bar = Progress("live: render + nodes", len(scn.array)) if progress else None
        seconds, origin = _render_and_start(scn, fleet, speed, service, collector, bar)
        if hold is not None:
            _finals_and_clips(fleet.nodes, service, bar, collector)
            hold.set()
        _join(fleet.nodes, service, collector, bar)
        published = sum(vn.node.publisher.published for vn in fleet.nodes)
        fusion_latency, expected_alerts = _drain(service, published)
        service = None
        wait_until(lambda: collector.count() >= expected_alerts, ALERTS_TIMEOUT_S, POLL_S)
    finally:
        if hold is not None:
            hold.set()
        if service is not None:
            service.stop(finalise=False)
        for vn in fleet.nodes:
            vn.node.stop()
        if collector is not None:
            collector.close()
        if embedded is not None:
            embedded.stop()
    alerts, arrivals_s = alerts_received(collector.received(), t0)
    with open(workdir / "alerts.jsonl", "w") as fh:
        fh.writelines(json.dumps(a, sort_keys=True) + "\n" for a in alerts)
    incidents = latest_revisions(alerts)
    s = score.score(incidents, scn.truth(), scn.array.area_m2(), scn.duration_s, scn.array.origin)
    nodes = fleet.nodes
    detected = sum(vn.node.pulses_total for vn in nodes)
    accepted = _accepted(database)
    s.update(pulses_detected=detected, pulses_published=published, pulses_accepted=accepted,
             pulses_lost=detected - accepted, pulses_unsent=sum(vn.left or 0 for vn in nodes),
             alerts=len(alerts), alerts_expected=expected_alerts, nodes=len(nodes),
             fusion_latency_s=fusion_latency, wall_s=time.monotonic() - t0, sensor_seconds=seconds,
             speed=speed)
    s["fusion_latency_median_s"], s["fusion_latency_p95_s"] = _percentiles(fusion_latency)
    s["alert_latency_s"] = _alert_latency_s(alerts, arrivals_s, origin, speed) if speed else []
    s["alert_latency_median_s"], s["alert_latency_p95_s"] = _percentiles(s["alert_latency_s"])
    return LiveResult(alerts, incidents, s, database, workdir)


def wind_reading(scn: Scenario, reading_sd_m_s: float = WEATHER_READING_SD_M_S, reading: int = 0) -> np.ndarray:
    """A weather station's reading of ``scn``'s wind (east, north), m/s: the wind plus an error drawn per
    axis with sd ``reading_sd_m_s`` from the scenario's seed (the same run, the same reading; 0 reads it
    exactly). A run reads reading 0; a bench averaging over readings asks for others."""
    error = scn.rng(STREAM_WEATHER, *([reading] if reading else [])).normal(0.0, reading_sd_m_s, 2)
    return scn.atmosphere.wind_vector() + error


def weather_settings(scn: Scenario, told: bool = True, reading_sd_m_s: float = WEATHER_READING_SD_M_S,
                     reading: int = 0) -> dict:
    """The fusion settings a weather reading gives for ``scn``: its air's temperature and the wind of
    :func:`wind_reading` as a speed and the bearing it blows from, or none (``told`` False); frame_m 0
    either way (the scenario's truth is in the sensors' frame)."""
    if not told:
        return {"frame_m": 0.0}
    east, north = wind_reading(scn, reading_sd_m_s, reading)
    return {"temperature_c": scn.atmosphere.temperature_c, "wind_mps": float(np.hypot(east, north)),
            "wind_from_deg": float(np.degrees(np.arctan2(-east, -north))) % FULL_CIRCLE_DEG, "frame_m": 0.0}


def _workdir(out) -> pathlib.Path:
    workdir = pathlib.Path(out) if out is not None else pathlib.Path(tempfile.mkdtemp(prefix="earwitness-live-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # A previous run's nodes would send their leftover pulses, signed with keys now replaced.
    shutil.rmtree(workdir / "nodes", ignore_errors=True)
    return workdir


def _render_and_start(scn: Scenario, fleet: _Fleet, speed, service, collector, bar) -> tuple[float, tuple | None]:
    """Render each sensor's audio and start its node: (sensor-seconds of audio, the paced run's
    (monotonic, scenario ns) origin or None)."""
    plan = render.plan(scn)
    models = scn.sensor_models()
    seconds, origin, waiting = 0.0, None, []
    for i, sid in enumerate(scn.array.ids):
        start_ns, segments = sensor_segments(scn, plan, i)
        if segments:
            seconds += sum(len(f) for _, f in segments) / models[i].rate_hz
            # Paced, every node starts at once, in step; with evidence too (a node started after the
            # server closed an incident would miss its clip request); else each as soon as its audio is ready.
            waiting.append((sid, segments, start_ns, models[i].rate_hz))
            if not speed and fleet.hold is None:
                fleet.start(*waiting.pop())
        if bar:
            bar.update(i + 1, f"sensors, {seconds:.0f} sensor-s of audio, {service.ingest.accepted} pulses in, "
                              f"{collector.count()} alerts")
    if speed:
        origin = (time.monotonic(), scn.start_ns)
    for w in waiting:
        fleet.start(*w, speed, origin)
    if bar:
        bar.update(len(scn.array), f"sensors rendered ({seconds:.0f} sensor-s of audio)", final=True)
    return seconds, origin


def _join(nodes: list[_VirtualNode], service, collector, bar) -> None:
    """Wait for every node to finish; raise if any failed."""
    for vn in nodes:
        while vn.thread.is_alive():
            vn.thread.join(POLL_S * 10)
            if bar:
                done = sum(not v.thread.is_alive() for v in nodes)
                bar.update(done, f"nodes done, {service.ingest.accepted} pulses in, {collector.count()} alerts")
    errors = [f"{vn.node.cfg.node.name}: {vn.error}" for vn in nodes if vn.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} virtual node(s) failed, first {errors[0]}")


def _drain(service, published: int) -> tuple[list[float], int]:
    """Let the server take every published pulse and stop it, finalising its incidents:
    (the server's latencies, the alerts it published)."""
    wait_while_moving(lambda: _taken(service) >= published, lambda: _taken(service), INGEST_STALL_S, POLL_S)
    service.stop(finalise=True)
    fusion_latency = list(service.latencies_s)
    return fusion_latency, service.alerts_published


def _taken(service) -> int:
    """Pulses the fusion server has taken from the broker: stored or dead-lettered."""
    return service.ingest.accepted + sum(service.ingest.rejected.values())


def _accepted(database: pathlib.Path) -> int:
    """Pulses the fusion server stored (unique by node and sequence)."""
    from fusion.server.store import Store

    with Store(str(database)) as store:
        return store.count_pulses()


def _alert_latency_s(alerts, arrivals_s, origin, speed) -> list[float]:
    """Discharge (the incident's located first shot) to its first alert, in scenario seconds."""
    first: dict[str, float] = {}
    for a, at in zip(alerts, arrivals_s):
        if a["incident"] in first:
            continue
        scenario_ns = origin[1] + (at - origin[0]) * speed * NS_PER_S
        first[a["incident"]] = (scenario_ns - a["t_ns"]) / NS_PER_S
    return list(first.values())


def format_alerts(incidents: list[dict]) -> str:
    """The incidents (last revisions) as a text table, one line each."""
    rows = [("incident", "status", "rev", "class", "conf", "discharge (UTC)", "position", "err m", "rounds", "shooters",
             "sensors", "cameras")]
    for inc in incidents:
        where = (f"{inc['x']:.1f}, {inc['y']:.1f}" if "x" in inc else f"{inc['lat']:.6f}, {inc['lon']:.6f}")
        rows.append((inc["incident"], inc.get("status", ""), str(inc.get("revision", "")), str(inc.get("class", "")),
                     str(inc.get("confidence", "")), render.utc_iso(inc["t_ns"]), where,
                     f"{float(inc.get('err_m', float('nan'))):.1f}", str(inc.get("rounds", "")),
                     str(inc.get("shooters", "")), str(len(inc.get("sensors", []))),
                     ", ".join(f"{c['camera']} {c['distance_m']:.0f} m" for c in inc.get("cameras", [])) or "-"))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def format_score(s: dict) -> str:
    """The score table (:func:`simulator.score.format_table`) and the live run's own figures."""
    def sec(v):
        return "-" if v is None else f"{v:.2f} s"

    rows = [
        ("alert latency median / p95", f"{sec(s['alert_latency_median_s'])} / {sec(s['alert_latency_p95_s'])}"
         if s["speed"] else "- (as fast as possible: run with --realtime for it)"),
        ("fusion latency median / p95", f"{sec(s['fusion_latency_median_s'])} / {sec(s['fusion_latency_p95_s'])} "
                                        "(pulse in -> alert out)"),
        ("pulses detected / stored / lost", f"{s['pulses_detected']} / {s['pulses_accepted']} / {s['pulses_lost']}"),
        ("alerts received / published", f"{s['alerts']} / {s['alerts_expected']}"),
        ("nodes, audio fed", f"{s['nodes']} nodes, {s['sensor_seconds']:.0f} sensor-s in {s['wall_s']:.1f} s wall"),
    ]
    width = max(len(r[0]) for r in rows)
    base = score.format_table(s)
    width = max(width, max(len(line.split("  ")[0]) for line in base.splitlines()))
    return base + "\n" + "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
