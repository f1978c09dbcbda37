"""``earwitness evidence INCIDENT [--db URL] --out FILE.zip [--signing-key fusion.key]``: export an evidence bundle.

The bundle (:mod:`fusion.server.bundle`) holds the incident's signed pulse messages as
received, the registry the server ran with, every revision with the temperature and locator
settings used, the nodes' clips, the incident's audit entries, the software version, and a
manifest of every file's SHA-256 signed with the server's key (fusion.toml's ``signing_key``).
``earwitness verify FILE.zip`` checks it.
"""
from __future__ import annotations

import pathlib

from earwitness.cli import UserError
from fusion.cli_audit import add_signing_key_argument
from fusion.cli_db import add_db_arguments, open_store


def add_arguments(parser):
    parser.add_argument("incident", metavar="INCIDENT", help="the incident id, as in the alerts")
    add_db_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE.zip", help="where to write the bundle")
    add_signing_key_argument(parser)


def run(args) -> int:
    from earwitness import keys
    from fusion.server.bundle import BundleError, write_bundle

    if not pathlib.Path(args.signing_key).is_file():
        raise UserError(f"no signing key {args.signing_key!r} (the server's: fusion.toml's signing_key)")
    try:
        key = keys.load_signing_key(args.signing_key)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    store = open_store(args)
    try:
        count = write_bundle(store, args.incident, key, args.out)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    print(f"{args.out}: evidence bundle of {args.incident}, {count} files, signed by {keys.public_hex(key.verify_key)}")
    return 0
