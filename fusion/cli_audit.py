"""``earwitness audit verify [--db URL] [--public-key FILE|HEX]``: check the audit log's hash chain.

Checks every entry of the fusion store's audit log (:mod:`fusion.server.audit`): numbered without
gaps, each naming the previous one's hash, its content matching its hash, its signature good,
and every stored incident revision entered with the digest it was stored with.  Exit 0 with a
one-line summary when all holds; exit 1 naming the first bad entry.  With ``--public-key`` (the
server's ``fusion.key.pub``, or 64 hex characters) every entry must be signed by that key;
without it the summary names the key(s) the log is signed with, to compare with the server's.
"""
from __future__ import annotations

import pathlib
import sys

from earwitness.cli import UserError
from fusion.cli_db import add_db_arguments, open_store

FINGERPRINT_HEX = 16
DEFAULT_SIGNING_KEY = "fusion.key"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ver = sub.add_parser("verify", help="check the hash chain and signatures; name the first bad entry",
                         description=__doc__.splitlines()[0])
    add_db_arguments(ver)
    ver.add_argument("--public-key", metavar="FILE|HEX", help="require every entry to be signed by this key")


def trusted_key(text: str | None) -> set[str] | None:
    """The public key a user names (a .pub file or 64 hex characters) as a set of hex keys; None if not given."""
    from earwitness import keys

    if text is None:
        return None
    if pathlib.Path(text).is_file():
        try:
            return {keys.public_hex(keys.load_verify_key(text))}
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if len(text) == 2 * keys.SEED_LEN and all(c in "0123456789abcdefABCDEF" for c in text):
        return {text.lower()}
    raise UserError(f"--public-key {text!r}: neither a key file nor 64 hex characters")


def add_signing_key_argument(parser) -> None:
    parser.add_argument("--signing-key", default=DEFAULT_SIGNING_KEY, metavar="FILE",
                        help=f"the server's signing key, fusion.toml's signing_key (default {DEFAULT_SIGNING_KEY})")


def record_action(store, key_path: str, action: str, subject: str, body: dict) -> str:
    """Enter a person's command in the audit log, signed with the server's key at ``key_path``,
    the actor being the user running it; returns a line saying which entry, or why none."""
    import getpass

    from earwitness import keys
    from fusion.server.audit import AuditLog

    if not pathlib.Path(key_path).is_file():
        return f"not entered in the audit log: no signing key {key_path} (give --signing-key, the server's)"
    try:
        key = keys.load_signing_key(key_path)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        actor = getpass.getuser()
    except (OSError, KeyError):   # no login name (a container without a passwd entry)
        actor = "unknown"
    entry = AuditLog(store, key).append(actor, action, subject, body)
    return f"entered in the audit log as entry {entry['seq']} ({actor} {action})"


def run(args) -> int:
    from fusion.server.audit import AuditLog

    trusted = trusted_key(args.public_key)
    store = open_store(args)
    try:
        verdict = AuditLog(store).verify(trusted)
    finally:
        store.close()
    if verdict.problem is not None:
        print(f"audit log BAD: {verdict.problem}", file=sys.stderr)
        return 1
    by = ", ".join(k[:FINGERPRINT_HEX] + "..." for k in sorted(verdict.signers)) or "nobody"
    checked = "the given key" if trusted else f"key(s) {by}"
    late = f" ({verdict.late} stored before the log existed, entered at its first use)" if verdict.late else ""
    print(f"audit log OK: {verdict.entries} entries, chain unbroken, every revision entered{late}, signed by {checked}")
    return 0
