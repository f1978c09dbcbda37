"""``earwitness node``: run a sensor node from its TOML configuration, or make its key.

``earwitness node --config node.toml`` runs until stopped (SIGTERM, SIGINT) or, for a
replayed file or a pipe, until the audio ends and the outbox has drained (at most
``outbox.drain_timeout_s``); pulses not yet sent stay in the outbox for the next start.
``earwitness node --keygen node.key`` makes the node's Ed25519 key pair at provisioning and
prints the public key for the server's registry.

A broker that cannot be reached (not up yet, restarting) is tried again, a one-line warning each
time, waiting longer each time up to ``mqtt.reconnect_max_s``, the pulses kept in the outbox
meanwhile; a broker host name the name server says does not exist fails at once, one line.
"""
from __future__ import annotations

import logging
import signal
import sys

from earwitness.cli import UserError


def add_arguments(parser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="NODE.toml", help="the node's configuration file")
    what.add_argument("--keygen", metavar="KEYFILE", help="make a new key pair (KEYFILE, KEYFILE.pub) and print the public key")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and progress to stderr")


def run(args) -> int:
    from edge import keys

    if args.keygen:
        try:
            public = keys.generate(args.keygen)
        except FileExistsError:
            raise UserError(f"{args.keygen} exists; a node keeps its key (delete it first to replace it)") from None
        print(keys.public_hex(public))
        return 0

    from edge.audio import AudioError
    from edge.config import ConfigError, load
    from edge.node import Node, NodeError

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        cfg = load(args.config)
        _check_broker_hosts(cfg)
        node = Node(cfg)
    except (ConfigError, NodeError, AudioError) as exc:
        raise UserError(str(exc)) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: node.stop())
    left = node.run()
    if left:
        print(f"earwitness node: {left} pulse(s) not yet acknowledged stay in the outbox for the next start",
              file=sys.stderr)
    return 0


def _check_broker_hosts(cfg) -> None:
    """ConfigError if the name server says a broker's host name does not exist (a typo: waiting cannot help)."""
    from earwitness.hosts import unknown_host
    from edge.config import ConfigError

    for host, port in cfg.mqtt.brokers:
        reason = unknown_host(host, port)
        if reason:
            raise ConfigError(f"{cfg.path}: mqtt.url: broker host {host!r} not found ({reason})")
