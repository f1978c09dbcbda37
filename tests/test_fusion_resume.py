"""A restarted fusion server resumes: the real `earwitness fusion` process, killed with SIGKILL
after a preliminary alert and started again, finishes the incident as an undisturbed run does,
from the pulses it stored before the crash (a Pittsburgh test's pulses, stand-in nodes)."""
from __future__ import annotations

import math
import os
import signal
import threading

import pytest

from fusion.server import evidence
from fusion.server.registry import load_registry
from fusion.server.store import Store
from fusion_site import build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, publish_all, wait_until

SITE = "pgh"
INCIDENT = f"ew/v1/{SITE}/incident"
WAIT_S = 90.0
# The stand-in nodes' pace: the preliminary goes out while pulses still come in.
CHUNK = 10
PAUSE_S = 0.1
# Two runs of one incident from the same pulses locate it within this of each other.
SAME_PLACE_M = 0.5


@pytest.fixture
def site(pittsburgh, tmp_path):
    return build_site(pittsburgh[0], tmp_path / "site")


def _final(alerts: Collector) -> dict | None:
    return next((a for a in alerts.json(INCIDENT) if a["status"] == "final"), None)


def _run(site, broker, workdir, kill_after_preliminary: bool) -> tuple[dict, list[dict], int]:
    """Stream the site's pulses into a real `earwitness fusion` process until its incident is final;
    with ``kill_after_preliminary``, SIGKILL it at the first preliminary and start it again.
    Returns the final alert, every alert, and the pulses stored before the kill."""
    workdir.mkdir()
    config = write_fusion_config(workdir / "fusion.toml", SITE, broker.url, site.registry_path,
                                 f"fusion-{workdir.name}", site.temperature_c)
    log = workdir / "fusion.log"
    alerts = Collector(broker.url, INCIDENT, client_id=f"dispatch-{workdir.name}").start()
    proc = fusion_process(config, log)
    stored_before = 0
    try:
        assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()
        items = [(site.topic(SITE, node), raw) for node, raw in site.messages]
        stream = threading.Thread(target=publish_all, args=(broker.url, items),
                                  kwargs={"chunk": CHUNK, "pause_s": PAUSE_S, "client_id": f"nodes-{workdir.name}"})
        stream.start()
        if kill_after_preliminary:
            assert wait_until(lambda: alerts.count(INCIDENT) > 0, WAIT_S), log.read_text()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            with Store(workdir / "fusion.db") as store:
                stored_before = store.count_pulses()
                assert store.incidents()[0]["status"] == "preliminary"
            stream.join()
            proc = fusion_process(config, log)
        stream.join()
        assert wait_until(lambda: _final(alerts) is not None, WAIT_S), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        alerts.close()
    return _final(alerts), alerts.json(INCIDENT), stored_before


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_after_a_preliminary_resumes_to_the_same_final(site, mosquitto, tmp_path):
    calm, _, _ = _run(site, mosquitto, tmp_path / "calm", kill_after_preliminary=False)
    final, got, stored_before = _run(site, mosquitto, tmp_path / "crash", kill_after_preliminary=True)
    print(f"pulses stored before the kill: {stored_before}/{len(site.messages)}; alerts {[a['status'] for a in got]}")
    assert 0 < stored_before
    # The outbox sends at least once: a revision whose delivery the broker had not confirmed at the
    # kill goes out again after the restart, word for word the same.
    first: dict[int, dict] = {}
    for alert in got:
        assert first.setdefault(alert["revision"], alert) == alert, "a revision number sent twice with other content"
    got = list(first.values())
    # One incident, under one id, its revisions numbered on from before the crash.
    assert {a["incident"] for a in got} == {final["incident"]}
    assert [a["revision"] for a in got] == list(range(1, len(got) + 1))
    assert [a["status"] for a in got].count("preliminary") == 1
    # The same content as the undisturbed run: shots, places, rounds, the sensors it rests on.
    assert final["rounds"] == calm["rounds"] == site.rounds
    assert sorted(final["sensors"]) == sorted(calm["sensors"])
    assert len(final["shots"]) == len(calm["shots"])
    for a, b in zip(final["shots"], calm["shots"]):
        assert math.hypot(a["x"] - b["x"], a["y"] - b["y"]) <= SAME_PLACE_M
        assert sorted(a["sensors"]) == sorted(b["sensors"])
    with Store(tmp_path / "crash" / "fusion.db") as store:
        assert store.count_pulses() == len(site.messages)
        used = [p for p in store.incident_pulses(final["incident"]) if p["used"]]
        assert {p["sensor"] for p in used} == set(final["sensors"])


@pytest.mark.integration
@pytest.mark.slow
def test_revisions_stored_while_the_broker_was_away_go_out_after_a_crash(site, mosquitto, tmp_path):
    """The final revision is stored while the broker is down, then the server is killed before it
    could send it: the restarted server sends the alert and its clip requests from its outbox."""
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, mosquitto.url, site.registry_path, "fusion-outbox",
                                 site.temperature_c)
    log = tmp_path / "fusion.log"
    db = tmp_path / "fusion.db"
    watch = Collector(mosquitto.url, INCIDENT, f"ew/v1/{SITE}/node/+/cmd", client_id="dispatch", persistent=True).start()
    proc = fusion_process(config, log)
    try:
        assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()
        publish_all(mosquitto.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        assert wait_until(lambda: watch.count(INCIDENT) > 0, WAIT_S), log.read_text()
        mosquitto.stop()
        with Store(db) as store:
            assert wait_until(lambda: [i["status"] for i in store.incidents()] == ["final"], WAIT_S), log.read_text()
            waiting = len(store.outbox(f"{SITE}/0"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        mosquitto.start()
        proc = fusion_process(config, log)
        assert wait_until(lambda: any(a["status"] == "final" for a in watch.json(INCIDENT)), WAIT_S), log.read_text()
        with Store(db) as store:
            final = store.incident(store.incidents()[0]["incident"])
            assert wait_until(lambda: store.outbox(f"{SITE}/0") == [], WAIT_S)   # confirmed by the broker
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        watch.close()
    print(f"outbox after the crash: {waiting} message(s) (alert JSON, CAP, clip requests)")
    # Every stored revision went out (at least once), the final one last; every node of it was asked.
    sent = watch.json(INCIDENT)
    assert {a["revision"] for a in sent} == set(range(1, final["revision"] + 1)) and sent[-1] == final
    asked = {m.topic.split("/")[4] for m in watch.received(f"ew/v1/{SITE}/node/+/cmd")}
    quiet = evidence.quiet_clip_requests(final, load_registry(site.registry_path).sensors)   # nearby, did not trigger
    assert asked == set(final["sensors"]) | set(quiet) and waiting >= 2 + len(asked)
