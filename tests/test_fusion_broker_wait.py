"""`earwitness fusion` (the real process) started before its broker: it keeps trying, one warning
line a try, waiting longer each time, and once a real mosquitto comes up on that port it stores
the nodes' pulses and sends alerts; stopped while it waits, it exits 0 (its broker URL's password
masked in every line).  A broker URL that cannot work fails at once: tests/test_fusion_config.py."""
from __future__ import annotations

import re
import signal

import pytest

from fusion.server.store import Store
from fusion_site import build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, Mosquitto, free_port, publish_all, wait_until

pytestmark = pytest.mark.integration

SITE = "pgh"
INCIDENT = f"ew/v1/{SITE}/incident"
RETRY_LINE = "cannot reach the broker"
RUNNING_LINE = "fusion server for site"
RETRIES_BEFORE_BROKER = 3
PASSWORD = "s3cret-pw"
WAIT_S = 60.0
STOP_WAIT_S = 30.0


def _retries(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if RETRY_LINE in line]


def _waits_s(lines: list[str]) -> list[float]:
    """The waits the retry lines announce ("trying again in 1.0 s")."""
    return [float(re.search(r"trying again in ([0-9.]+) s", line).group(1)) for line in lines]


def _waiting(proc, log, retries: int) -> bool:
    """It has said ``retries`` times that it cannot reach the broker (or it has exited)."""
    return proc.poll() is not None or len(_retries(log)) >= retries


def test_fusion_started_before_its_broker_stores_and_alerts_once_it_is_up(pittsburgh, tmp_path):
    site = build_site(pittsburgh[0], tmp_path / "site")
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, url, site.registry_path, "fusion-early",
                                 site.temperature_c)
    log = tmp_path / "fusion.log"
    proc = fusion_process(config, log)
    broker = alerts = None
    try:
        assert wait_until(lambda: _waiting(proc, log, RETRIES_BEFORE_BROKER), WAIT_S), log.read_text()
        assert proc.poll() is None, log.read_text()   # it did not give up
        retries = _retries(log)
        assert all(" WARNING " in line for line in retries), retries
        waits = _waits_s(retries)
        assert waits == sorted(waits) and waits[-1] > waits[0], retries   # backing off
        broker = Mosquitto(tmp_path / "mosquitto", port=port, persistence=True).start()
        assert wait_until(lambda: RUNNING_LINE in log.read_text() or proc.poll() is not None, WAIT_S), log.read_text()
        assert proc.poll() is None, log.read_text()
        alerts = Collector(url, INCIDENT).start()
        publish_all(url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        assert wait_until(lambda: alerts.count(INCIDENT) >= 1, WAIT_S), log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_WAIT_S)
        if alerts is not None:
            alerts.close()
        if broker is not None:
            broker.stop()
    assert proc.returncode == 0, log.read_text()[-3000:]
    with Store(tmp_path / "fusion.db") as store:
        stored = store.pulses()
    assert len(stored) == len(site.messages)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_fusion_stopped_while_it_waits_for_its_broker_exits_0(tmp_path, stop):
    """No broker ever: the wait ends at the signal, cleanly, and no line shows the URL's password."""
    import nacl.signing

    from fusion.server.registry import write_registry

    key = nacl.signing.SigningKey(b"\x07" * 32)
    registry = write_registry(tmp_path / "nodes.toml", {"n1": (bytes(key.verify_key).hex(), {"x": 0.0, "y": 0.0})})
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, f"mqtt://fusion:{PASSWORD}@127.0.0.1:{free_port()}",
                                 registry, "fusion-never", 10.0)
    log = tmp_path / "fusion.log"
    proc = fusion_process(config, log)
    try:
        assert wait_until(lambda: _waiting(proc, log, 2), WAIT_S), log.read_text()
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=STOP_WAIT_S)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert PASSWORD not in text and "mqtt://fusion:***@127.0.0.1" in text, text
    assert RUNNING_LINE not in text


# A stop asked for while a connect attempt is under way ends it at once (about 1 s here).  The
# attempt's own limit is set far beyond the bound (connect_timeout_s), so a process still running
# STOP_BOUND_S after the signal waited for the attempt to time out (it would run for minutes): a hang
# guard with a wide margin on a loaded machine, not a speed figure.
STOP_BOUND_S = 10.0
ATTEMPT_TIMEOUT_S = 300.0
OUTBOX_TOPIC, OUTBOX_PAYLOAD = f"ew/v1/{SITE}/incident", b'{"kept": true}'


def _black_hole():
    """A loopback port that accepts TCP (the kernel's backlog) and never says a word."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("scheme, where", [("nats", "nothing listening"), ("nats", "a black hole"),
                                           ("mqtt", "a black hole")])
def test_fusion_stopped_during_a_connect_attempt_exits_0_promptly(tmp_path, scheme, where):
    """`earwitness fusion` on a broker URL no server answers: SIGTERM while the client is trying to
    connect (NATS: going round its servers; MQTT: waiting for CONNACK; either for up to
    ATTEMPT_TIMEOUT_S) ends the attempt, exit 0, and the alert its outbox held is still there for
    the next start."""
    import subprocess

    import nacl.signing

    from fusion.server.registry import write_registry
    from fusion.server.store import Revision

    hole = _black_hole() if where == "a black hole" else None
    port = hole.getsockname()[1] if hole else free_port()
    key = nacl.signing.SigningKey(b"\x07" * 32)
    registry = write_registry(tmp_path / "nodes.toml", {"n1": (bytes(key.verify_key).hex(), {"x": 0.0, "y": 0.0})})
    config = write_fusion_config(tmp_path / "fusion.toml", SITE, f"{scheme}://127.0.0.1:{port}", registry, "fusion-nats", 10.0,
                                 extra=f"connect_timeout_s = {ATTEMPT_TIMEOUT_S}\n")
    incident = {"incident": "i1", "t_ns": 1, "x": 0.0, "y": 0.0, "err_m": 9.0, "rounds": 1, "shooters": 1, "shots": [],
                "sensors": ["n1"]}
    with Store(tmp_path / "fusion.db") as store:   # an alert a stop before kept from going out
        store.save_round([Revision(incident, "final", [], {}, {})], f"{SITE}/0", None,
                         lambda number, revision: [(OUTBOX_TOPIC, OUTBOX_PAYLOAD)])
    log = tmp_path / "fusion.log"
    proc = fusion_process(config, log)
    try:
        with Store(tmp_path / "fusion.db") as store:   # its slot's state saved: it is connecting now
            assert wait_until(lambda: proc.poll() is not None or store.tracker_state(f"{SITE}/0") is not None,
                              WAIT_S), log.read_text()
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_BOUND_S:.0f} s after SIGTERM:\n{log.read_text()}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if hole is not None:
            hole.close()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "stopped while waiting for the broker" in text and RUNNING_LINE not in text, text
    with Store(tmp_path / "fusion.db") as store:
        assert [(t, p) for _, t, p in store.outbox(f"{SITE}/0")] == [(OUTBOX_TOPIC, OUTBOX_PAYLOAD)]
