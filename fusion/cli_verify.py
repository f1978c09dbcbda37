"""``earwitness verify FILE.zip [--public-key FILE|HEX]``: check an evidence bundle.

Checks every signature (the manifest's by the server, each pulse's and clip's by its node per
the bundle's registry, each audit entry's) and every file's SHA-256, and locates the used pulses
again with this version's locator; prints what it checked and the differences, one line each.
Exit 0 only if everything checks, else 1.  With ``--public-key`` (the server's ``fusion.key.pub``)
the bundle must be signed by that key.
"""
from __future__ import annotations

import pathlib
import sys

from earwitness.cli import UserError
from fusion.cli_audit import trusted_key


def add_arguments(parser):
    parser.add_argument("bundle", metavar="FILE.zip", help="a bundle written by earwitness evidence")
    parser.add_argument("--public-key", metavar="FILE|HEX", help="require the bundle to be signed by this server key")


def run(args) -> int:
    from fusion.server.bundle import check_bundle

    if not pathlib.Path(args.bundle).is_file():
        raise UserError(f"no bundle file {args.bundle!r}")
    report = check_bundle(args.bundle, trusted_key(args.public_key))
    for note in report.notes:
        print(note)
    for problem in report.problems:
        print(f"BAD: {problem}", file=sys.stderr)
    print(f"{args.bundle}: " + ("everything checks" if not report.problems else f"{len(report.problems)} problem(s)"))
    return 1 if report.problems else 0
