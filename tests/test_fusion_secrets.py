"""Secrets never printed: a database, broker or webhook URL's password is masked in every error
and log line of `earwitness fusion` and `earwitness report` (the real commands, as processes)."""
from __future__ import annotations

import signal
import subprocess
import sys

import nacl.signing
import pytest

from fusion.server.registry import write_registry
from fusion_site import build_site, fusion_process, write_fusion_config
from simulator.broker import free_port, publish_all, wait_until

PASSWORD = "s3cret-pw"
BAD_POSTGRES = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/no_such_database_ew"
WAIT_S = 60.0


def _earwitness(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "earwitness", *argv], capture_output=True, text=True, timeout=60)


def _registry(tmp_path):
    key = nacl.signing.SigningKey(b"\x07" * 32)
    return write_registry(tmp_path / "nodes.toml", {"n1": (bytes(key.verify_key).hex(), {"x": 0.0, "y": 0.0})})


def _assert_masked(done: subprocess.CompletedProcess, *secrets: str) -> None:
    text = done.stdout + done.stderr
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, text
    assert "***@" in done.stderr and not any(s in text for s in secrets), text


@pytest.mark.parametrize("broker, database, reason", [
    ("mqtt://127.0.0.1:1", BAD_POSTGRES, "no_such_database_ew"),
    (f"mqtt://fusion:brk-{PASSWORD}@no-such-broker.invalid:{{port}}", "fusion.db", "not found"),
])
def test_fusion_with_a_bad_url_never_prints_its_password(tmp_path, broker, database, reason):
    config = tmp_path / "fusion.toml"
    config.write_text(f'site = "x"\nbroker = "{broker.format(port=free_port())}"\nregistry = "{_registry(tmp_path)}"\n'
                      f'database = "{database}"\n')
    done = _earwitness("fusion", "--config", str(config))
    _assert_masked(done, PASSWORD)
    assert reason in done.stderr   # the reason is still said


def test_report_with_a_bad_postgresql_url_never_prints_its_password(tmp_path):
    done = _earwitness("report", "pgh-1", "--db", BAD_POSTGRES, "--out", str(tmp_path / "r.html"))
    _assert_masked(done, PASSWORD)
    done = _earwitness("report", "pgh-1", "--db", BAD_POSTGRES.replace("postgresql", "mysql"), "--out",
                       str(tmp_path / "r.html"))
    _assert_masked(done, PASSWORD)   # a URL the store refuses, quoted in the error


@pytest.mark.integration
def test_fusion_log_lines_mask_the_webhook_password(pittsburgh, mosquitto, tmp_path):
    """The webhook refuses (nothing listens): its failures are logged, its URL's password masked."""
    site = build_site(pittsburgh[0], tmp_path / "site")
    hook = f"http://dispatch:{PASSWORD}@127.0.0.1:{free_port()}/alerts"
    config = write_fusion_config(tmp_path / "fusion.toml", "pgh", mosquitto.url, site.registry_path, "fusion-secret",
                                 site.temperature_c, extra=f'webhook = "{hook}"\n')
    log = tmp_path / "fusion.log"
    proc = fusion_process(config, log)
    try:
        assert wait_until(lambda: "running" in log.read_text(), WAIT_S), log.read_text()
        publish_all(mosquitto.url, [(site.topic("pgh", node), raw) for node, raw in site.messages])
        assert wait_until(lambda: "webhook" in log.read_text(), WAIT_S), log.read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    text = log.read_text()
    assert "http://dispatch:***@127.0.0.1" in text and PASSWORD not in text
