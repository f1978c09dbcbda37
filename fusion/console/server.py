"""The console's HTTP server: uvicorn in a thread of the fusion process.

Example::

    server = ConsoleServer(app, "127.0.0.1:8080").start()   # OSError if it cannot listen
    server = ConsoleServer(app, "0.0.0.0:8443", tls_cert="console.pem", tls_key="console.key").start()   # HTTPS
    ...
    server.stop()
"""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

START_TIMEOUT_S = 10.0
POLL_S = 0.02
# Open event streams are cut this long after a stop.
GRACEFUL_S = 1


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets) -> (host, port); ValueError in one line otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen must be HOST:PORT with a port 1-65535, not {text!r}")
    return host, int(port)


class ConsoleServer:
    """The ASGI ``app`` served on ``listen`` until :meth:`stop`."""

    def __init__(self, app, listen: str, tls_cert=None, tls_key=None):
        """With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS only."""
        self.address = parse_listen(listen)
        self.listen = listen
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert else {}
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=GRACEFUL_S,
                                access_log=False, **tls)
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def start(self) -> "ConsoleServer":
        # Bound here, so that a port in use is this thread's one-line OSError, not uvicorn's exit in its own.
        try:
            family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
            sock = socket.create_server(self.address, family=family)
        except OSError as exc:
            raise OSError(f"the console cannot listen on {self.listen}: {exc.strerror or exc}") from None
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="console", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the console cannot listen on {self.listen}")
            time.sleep(POLL_S)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join()
