"""The fusion service end to end against a real mosquitto: stand-in nodes -> fusion -> alerts.

The stand-in nodes publish every pulse of a real Pittsburgh test (allpulses.json) as signed
earwitness.wire messages, one key per sensor, in arrival order.
"""
from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import signal
import threading
import xml.etree.ElementTree as ET

import nacl.signing
import pytest

from earwitness import wire
from earwitness.cli import main
from fusion.server.alerts import CAP_NS
from fusion.server.service import FusionConfig
from fusion.server.store import Store
from fusion.transport import mqtt_service
from fusion_site import EvidenceNodes, build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, publish_all, wait_until

SITE = "pgh"
SURVEY_TOLERANCE_M = 25.0
INCIDENT = f"ew/v1/{SITE}/incident"
DEADLETTER = f"ew/v1/{SITE}/deadletter"
# The kill test's stream: 1,200 pulses over about 3 s.
STREAM_CHUNK = 20
STREAM_PAUSE_S = 0.05
KILL_POLL_S = 0.005
WAIT_S = 60.0
HOLD_OPEN_S = 10 * WAIT_S   # an incident window's margin that outlasts any wait of a test


def _config(tmp_path, broker, site, **extra) -> FusionConfig:
    settings = dict(site=SITE, broker=broker.url, registry=site.registry_path, database=str(tmp_path / "fusion.db"),
                    client_id="fusion-test", temperature_c=site.temperature_c)
    return FusionConfig(**{**settings, **extra})


@pytest.fixture
def site(pittsburgh, tmp_path):
    return build_site(pittsburgh[0], tmp_path / "site")


@pytest.mark.integration
def test_nodes_to_alert_within_25_m_and_dead_letters(site, mosquitto, tmp_path):
    alerts = Collector(mosquitto.url, INCIDENT, f"{INCIDENT}/cap", DEADLETTER).start()
    service = mqtt_service(_config(tmp_path, mosquitto, site)).start()
    try:
        publish_all(mosquitto.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        name = site.messages[0][0]
        forged_key = nacl.signing.SigningKey(b"\x01" * 32)
        unsigned = wire.encode_body(wire.PulseMessage(wire.node_id(name), 10_000, site.pulses[0]["t_ns"], 0, "file"))
        bad = [
            (site.topic(SITE, name), b"\x01garbage"),                                       # malformed
            (site.topic(SITE, name), unsigned + bytes(wire.SIGNATURE_LEN)),                  # unsigned
            (site.topic(SITE, name), wire.encode(wire.PulseMessage(wire.node_id(name), 10_001, 1, 0, "file"), forged_key)),
            (site.topic(SITE, name), site.messages[0][1]),                                   # replayed
            (site.topic(SITE, site.messages[1][0] if site.messages[1][0] != name else site.messages[2][0]),
             site.messages[0][1]),                                                           # another node's message
            (f"ew/v1/{SITE}/node/{name}/pulse/extra", site.messages[0][1]),                  # not a pulse topic
        ]
        publish_all(mosquitto.url, bad, client_id="attacker")
        assert wait_until(lambda: len(alerts.json(DEADLETTER)) >= 5, WAIT_S)
        assert wait_until(lambda: any(a["rounds"] == site.rounds for a in alerts.json(INCIDENT)), WAIT_S)
    finally:
        service.stop(finalise=True)
    assert wait_until(lambda: any(a["status"] == "final" for a in alerts.json(INCIDENT)), WAIT_S)
    alerts.close()
    reasons = sorted(d["reason"] for d in alerts.json(DEADLETTER))
    assert reasons == ["length", "replay", "signature", "signature", "topic"]
    assert service.ingest.rejected["signature"] == 2 and service.ingest.accepted == len(site.messages)

    got = alerts.json(INCIDENT)
    assert got[0]["status"] == "preliminary" and got[0]["revision"] == 1
    assert [a["revision"] for a in got] == list(range(1, len(got) + 1))
    final = got[-1]
    assert final["status"] == "final" and final["rounds"] == site.rounds
    for shot in final["shots"]:
        assert math.hypot(shot["x"] - site.survey_xyz[0], shot["y"] - site.survey_xyz[1]) <= SURVEY_TOLERANCE_M
    caps = [ET.fromstring(p) for p in alerts.payloads(f"{INCIDENT}/cap")]
    assert len(caps) == len(got) and caps[-1].find(f"{{{CAP_NS}}}msgType").text == "Update"
    with Store(tmp_path / "fusion.db") as store:
        assert store.count_pulses() == len(site.messages)
        assert [r["status"] for r in store.revisions(final["incident"])] == [a["status"] for a in got]
        assert store.incident(final["incident"])["status"] == "final"


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_accepted_pulse(site, mosquitto, tmp_path):
    """SIGKILL the real `earwitness fusion` process while pulses stream in; after a restart every pulse is stored once."""
    n_per_node = 150
    nodes = sorted(site.keys)[:8]
    t0 = site.pulses[0]["t_ns"]
    # Pulses far apart in time: each is its own group, so the stream tests ingest, not the locator.
    items = []
    for seq in range(1, n_per_node + 1):
        for k, node in enumerate(nodes):
            msg = wire.PulseMessage(wire.node_id(node), seq, t0 + (seq * len(nodes) + k) * 30 * 10**9, 10**6, "file")
            items.append((site.topic(SITE, node), wire.encode(msg, site.keys[node])))
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, mosquitto.url, site.registry_path, "fusion-kill",
                                 site.temperature_c)
    log = tmp_path / "fusion.log"
    proc = fusion_process(config, log)
    deadletters = Collector(mosquitto.url, DEADLETTER).start()
    db = tmp_path / "fusion.db"
    try:
        assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()
        # A paced stream in the background, so the kill lands while pulses are still coming:
        # one burst would be committed whole before the first poll could see it.
        stream = threading.Thread(target=publish_all, args=(mosquitto.url, items),
                                  kwargs={"chunk": STREAM_CHUNK, "pause_s": STREAM_PAUSE_S})
        stream.start()
        with Store(db) as store:
            assert wait_until(lambda: store.count_pulses() > 0, WAIT_S, KILL_POLL_S)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            before = store.count_pulses()
        stream.join()   # the rest is accepted by the broker while the server is down
        proc = fusion_process(config, log)
        with Store(db) as store:
            assert wait_until(lambda: store.count_pulses() >= len(items), WAIT_S), (store.count_pulses(), len(items))
            stored = {(p["node"], p["seq"]) for p in store.pulses()}
        assert 0 < before < len(items), before   # killed mid-stream
        assert stored == {(node, seq) for seq in range(1, n_per_node + 1) for node in nodes}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert deadletters.json(DEADLETTER) == []   # redeliveries after the crash are not replays
    deadletters.close()


@pytest.mark.integration
def test_two_workers_share_a_site_and_locate_a_border_incident_once(site, mosquitto, tmp_path):
    """Shared subscription for ingest, spatial cells with a halo for location: one incident, once."""
    xs = site.survey_xyz[0]
    cells_to_shot = max(1, round(abs(xs) / 1500.0))
    cell_m = (abs(xs) + 20.0) / cells_to_shot      # a cell border 20 m from the surveyed position
    alerts = Collector(mosquitto.url, INCIDENT).start()
    workers = [mqtt_service(_config(tmp_path, mosquitto, site, workers=2, worker_index=k, cell_m=cell_m,
                                     halo_m=2500.0, client_id=f"fusion-w{k}")).start() for k in range(2)]
    part = workers[0].partition
    border_x = -cells_to_shot * cell_m if xs < 0 else cells_to_shot * cell_m
    j = part.cell_of((xs, site.survey_xyz[1]))[1]
    west, east = part.cell_of((border_x - 1.0, 0.0))[0], part.cell_of((border_x + 1.0, 0.0))[0]
    assert part.owner((west, j)) != part.owner((east, j))
    try:
        publish_all(mosquitto.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        assert wait_until(lambda: any(a["rounds"] == site.rounds for a in alerts.json(INCIDENT)), WAIT_S)
    finally:
        for w in workers:
            w.stop(finalise=True)
    assert wait_until(lambda: any(a["status"] == "final" for a in alerts.json(INCIDENT)), WAIT_S)
    alerts.close()
    assert all(w.ingest.accepted > 0 for w in workers)
    assert sum(w.ingest.accepted for w in workers) == len(site.messages)
    got = alerts.json(INCIDENT)
    final = [a for a in got if a["status"] == "final"]
    assert len(final) == 1 and final[0]["rounds"] == site.rounds
    # One id: a preliminary located from few sensors on the far side of the border may come from
    # the other worker first; that worker then keeps the incident (it claimed the shot) and the
    # owner of where it ends up yields (fusion.server.claims).
    assert {a["incident"] for a in got} == {final[0]["incident"]}
    assert [a["revision"] for a in got] == list(range(1, len(got) + 1))
    for shot in final[0]["shots"]:
        assert math.hypot(shot["x"] - xs, shot["y"] - site.survey_xyz[1]) <= SURVEY_TOLERANCE_M
    with Store(tmp_path / "fusion.db") as store:
        assert store.count_pulses() == len(site.messages)


@pytest.mark.integration
def test_a_worker_whose_slot_was_taken_over_writes_nothing_more_for_it(site, mosquitto, tmp_path):
    """A worker locates an incident; another process starts its slot (a takeover: the first lost
    its lease and has not noticed).  The first one's final revision is refused by the store (the
    slot's epoch moved on) and it stops the slot; the new one finalises the incident, once."""
    alerts = Collector(mosquitto.url, INCIDENT).start()
    # Windows held open for HOLD_OPEN_S: under load the first worker's window closed on the wall clock
    # (its final stored) before the second started, and there was then nothing for it to be fenced on.
    hold = {"margin_s": HOLD_OPEN_S, "request_clips": False}
    stale = mqtt_service(_config(tmp_path, mosquitto, site, client_id="fusion-stale", **hold)).start()
    current = None
    try:
        publish_all(mosquitto.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        assert wait_until(lambda: any(a["rounds"] == site.rounds for a in alerts.json(INCIDENT)), WAIT_S)
        assert wait_until(lambda: stale.locator_idle, WAIT_S)
        current = mqtt_service(_config(tmp_path, mosquitto, site, client_id="fusion-current", **hold)).start()
        stale.finalise_open_incidents()
        assert wait_until(lambda: stale.fenced, WAIT_S)
        current.finalise_open_incidents()
        assert wait_until(lambda: any(a["status"] == "final" for a in alerts.json(INCIDENT)), WAIT_S)
    finally:
        stale.stop(finalise=True)
        if current is not None:
            current.stop(finalise=True)
    alerts.close()
    got = alerts.json(INCIDENT)
    assert [a["status"] for a in got].count("final") == 1 and got[-1]["status"] == "final"
    assert [a["revision"] for a in got] == list(range(1, len(got) + 1))
    assert current.alerts_published == 1 and stale.alerts_published == len(got) - 1
    with Store(tmp_path / "fusion.db") as store:
        assert [r["status"] for r in store.revisions(got[-1]["incident"])] == [a["status"] for a in got]


@pytest.mark.integration
def test_final_incident_collects_signed_clips_and_reports_them(site, mosquitto, tmp_path):
    """A final incident asks its nodes for audio; verified clips are stored and drawn in the report."""
    nodes = EvidenceNodes(mosquitto.url, site, SITE)
    deadletters = Collector(mosquitto.url, DEADLETTER).start()
    service = mqtt_service(_config(tmp_path, mosquitto, site)).start()
    try:
        publish_all(mosquitto.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        assert wait_until(lambda: service.ingest.accepted == len(site.messages), WAIT_S)
        assert wait_until(lambda: any(len(i["shots"]) == site.rounds for i in service.tracker.open_incidents()), WAIT_S)
        # Every pulse in the tracker first: a far sensor's last echo located after the finalisation revises
        # the final incident (late pulses of its shots), and its last revision is then no longer final.
        assert wait_until(lambda: service.locator_idle, WAIT_S)
        service.finalise_open_incidents()
        assert wait_until(lambda: service.clips_requested > 0, WAIT_S)
        assert wait_until(lambda: service.clips_stored == len(site.wavs), WAIT_S)
        assert wait_until(lambda: len(deadletters.json(DEADLETTER)) == service.clips_requested - len(site.wavs) + 1, WAIT_S)
    finally:
        service.stop(finalise=False)
        nodes.close()
        deadletters.close()
    reasons = collections.Counter(d["reason"] for d in deadletters.json(DEADLETTER))
    assert reasons == {"clip-error": service.clips_requested - len(site.wavs), "signature": 1}   # altered audio
    with Store(tmp_path / "fusion.db") as store:
        # The one finalised: the shooting's, every pulse in it.
        incident, = [i for i in store.incidents() if i["status"] == "final"]
        assert len(incident["shots"]) == site.rounds
        clips = store.clips(incident["incident"])
        assert sorted(c["node"] for c in clips) == sorted(n for n, _, _ in site.wavs)
        assert all(hashlib.sha256(c["data"]).hexdigest() == c["sha256"] == c["meta"]["sha256"] for c in clips)
    out = tmp_path / "report.html"
    assert main(["report", incident["incident"], "--db", str(tmp_path / "fusion.db"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "class='waveforms'" in text and all(c["sha256"] in text for c in clips)


def test_forwarded_cell_messages_keep_only_well_formed_pulses():
    from fusion.server.service import _cell_pulses
    from fusion.transport.mqttwire import Publish

    def msg(payload: bytes) -> Publish:
        return Publish(f"ew/v1/{SITE}/worker/0/pulse", payload, 1, False, False, 1)

    good = {"id": 3, "sensor": "n1", "t_ns": 5}
    assert _cell_pulses(msg(json.dumps([good, {"id": "x", "sensor": "n2"}, 7]).encode())) == [good]
    assert _cell_pulses(msg(b"not json")) == [] and _cell_pulses(msg(json.dumps(good).encode())) == []
