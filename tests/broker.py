"""A real mosquitto broker for tests, on a free loopback port, that can be stopped and restarted.

Tests get it through the ``mosquitto`` fixture in conftest.py.  The broker keeps its
persistence file in the test's temporary folder, so a restart keeps queued QoS 1 messages
and persistent sessions, as a production broker does.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
POLL_S = 0.05


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if pathlib.Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto; .ci/run does this)")
    return found


class Mosquitto:
    """One mosquitto process bound to 127.0.0.1:``port``, configured in ``workdir``."""

    def __init__(self, workdir: pathlib.Path, port: int | None = None, extra_conf: str = "", conf: str | None = None):
        """``conf``: a whole configuration to run instead of the default plain listener
        (it must listen on ``self.port``, known before: pass ``port``)."""
        self.host = LOOPBACK
        self.port = port or free_port()
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot write its
        # persistence file or log into the test's private (0700) temporary folder: a restart
        # would then silently lose sessions and queued messages.  Stay root there.
        run_as = "user root\n" if os.geteuid() == 0 else ""
        if conf is None:
            conf = (
                f"listener {self.port} {LOOPBACK}\n"
                "allow_anonymous true\n"
                "persistence true\n"
                f"persistence_location {self.workdir}/\n"
                "autosave_interval 1\n"
                f"log_dest file {self.log}\n"
                "max_queued_messages 100000\n"
                f"{extra_conf}\n"
            )
        self.conf.write_text(run_as + conf)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {self.log.read_text() if self.log.exists() else ''}")
            try:
                socket.create_connection((self.host, self.port), timeout=POLL_S).close()
                return self
            except OSError:
                time.sleep(POLL_S)
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM), so the broker writes its persistence file."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=START_TIMEOUT_S)
        self.proc = None
