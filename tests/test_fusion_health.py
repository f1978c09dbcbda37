"""Visible health: the real `earwitness fusion` process logs each alert and reconnect at INFO and
publishes its own health on ew/v1/{site}/fusion/health (pulses/s, dead letters by reason, backlog,
nodes last seen, nodes degraded); a registry giving two nodes one key is refused."""
from __future__ import annotations

import json
import signal

import pytest

from earwitness.cli import main
from fusion.server.registry import write_registry
from fusion_site import build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, publish_all, wait_until

SITE = "pgh"
HEALTH = f"ew/v1/{SITE}/fusion/health"
INCIDENT = f"ew/v1/{SITE}/incident"
WAIT_S = 60.0
HEALTH_S = 0.5


def test_a_registry_giving_two_nodes_one_key_is_refused(tmp_path, capsys):
    key = "ab" * 32
    registry = write_registry(tmp_path / "nodes.toml", {"n1": (key, {"x": 0.0, "y": 0.0}), "n2": (key, {"x": 9.0, "y": 0.0})})
    config = tmp_path / "fusion.toml"
    config.write_text(f'site = "s"\nbroker = "mqtt://127.0.0.1:1"\nregistry = "{registry}"\n')
    assert main(["fusion", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has the public key of node 'n1'" in err[0], err


@pytest.mark.integration
def test_fusion_health_and_info_log(pittsburgh, mosquitto, tmp_path):
    site = build_site(pittsburgh[0], tmp_path / "site")
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, mosquitto.url, site.registry_path, "fusion-health",
                                 site.temperature_c, extra=f"health_s = {HEALTH_S}\n")
    log = tmp_path / "fusion.log"
    watch = Collector(mosquitto.url, HEALTH, INCIDENT, client_id="dashboard").start()
    proc = fusion_process(config, log)
    reports = lambda: watch.json(HEALTH)   # noqa: E731
    try:
        assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()
        sick = site.messages[0][0]
        items = [(site.topic(SITE, node), raw) for node, raw in site.messages]
        items += [(site.topic(SITE, sick), site.messages[0][1]),                        # a replay
                  (site.topic(SITE, sick), b"\x01garbage"),                             # malformed
                  (f"ew/v1/{SITE}/node/{sick}/health", json.dumps({"t_ns": 1, "timing": "system",
                                                                   "pps_locked": False, "outbox_dropped": 3}).encode())]
        publish_all(mosquitto.url, items)
        assert wait_until(lambda: any(r["pulses_accepted"] == len(site.messages) and sum(r["deadletters"].values()) == 2
                                      for r in reports()), WAIT_S), reports()[-1:]
        assert wait_until(lambda: watch.count(INCIDENT) > 0, WAIT_S)
        mosquitto.restart()
        assert wait_until(lambda: any(r["reconnects"] == 1 for r in reports()), WAIT_S), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        watch.close()
    got = reports()
    last = got[-1]
    print(f"{len(got)} health reports; the last: {json.dumps(last, sort_keys=True)[:600]}")
    assert max(r["pulses_per_s"] for r in got) > 0
    assert last["deadletters"] == {"length": 1, "replay": 1} and last["worker"] == f"{SITE}/0"
    assert set(last["backlog"]) == {"unstored_messages", "to_locate", "unstored_rounds", "open_windows"}
    heard = {p["sensor"] for p in site.pulses}
    assert {n for n, t in last["nodes_last_seen_ns"].items() if t is not None} == heard
    assert set(last["nodes_degraded"][sick]) == {"timing-system", "pps-unlocked", "outbox-dropped"}
    assert {n for n, why in last["nodes_degraded"].items() if "silent" in why} == set(site.keys) - heard
    text = log.read_text()
    alerts = watch.json(INCIDENT)
    assert all(f"INFO fusion.server.service: alert {a['incident']} r{a['revision']} {a['status']}" in text for a in alerts)
    assert "INFO fusion.server.service: connected to the broker again (reconnect 1)" in text
