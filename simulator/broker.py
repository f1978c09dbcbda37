"""An embedded MQTT broker for a simulation run: a mosquitto process on a free loopback port.

It lives in a folder of its own for the run and keeps nothing after it (no persistence):
a simulation that wants a broker that outlives it passes ``--broker mqtt://host:port``.

Example::

    with EmbeddedBroker(tmpdir) as broker:
        service = mqtt_service(FusionConfig(site="sim", broker=broker.url, ...))
"""
from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import time

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
# Every pulse of a busy simulated night may be queued for the fusion server at once.
MAX_QUEUED_MESSAGES = 1_000_000
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The embedded broker cannot run (one line, says why)."""


def mosquitto_path() -> str:
    """The mosquitto executable; BrokerError with the remedy if it is not installed."""
    found = shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if pathlib.Path(p).exists()), None)
    if not found:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto), "
                          "or give a running broker with --broker mqtt://HOST:PORT")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """mosquitto on ``127.0.0.1:port``, configured and logging in ``workdir``."""

    def __init__(self, workdir: str | pathlib.Path):
        self.workdir = pathlib.Path(workdir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        exe = mosquitto_path()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf, log = self.workdir / "mosquitto.conf", self.workdir / "mosquitto.log"
        conf.write_text(f"listener {self.port} {LOOPBACK}\nallow_anonymous true\npersistence false\n"
                        f"log_dest file {log}\nmax_queued_messages {MAX_QUEUED_MESSAGES}\n"
                        "max_inflight_messages 0\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise BrokerError(f"mosquitto exited at start{': ' + tail[0] if tail else ''}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=POLL_S).close()
                return self
            except OSError:
                time.sleep(POLL_S)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {LOOPBACK}:{self.port} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
