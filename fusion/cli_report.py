"""``earwitness report INCIDENT [--db URL] --out FILE.html|FILE.pdf``: a forensic report of one incident."""
from __future__ import annotations

import pathlib

from earwitness.cli import UserError
from earwitness.redact import mask_logging
from fusion.cli_db import add_db_arguments, open_store


def add_arguments(parser):
    parser.add_argument("incident", metavar="INCIDENT", help="incident id, as in its alerts")
    add_db_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="report file, .html or .pdf")


def run(args) -> int:
    from fusion.report import write_report

    mask_logging("WARNING", "%(levelname)s %(name)s: %(message)s")
    out = pathlib.Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise UserError(f"--out must end in .html or .pdf, not {out.name!r}")
    store = open_store(args)
    try:
        write_report(store, args.incident, out)
    except LookupError as exc:
        raise UserError(str(exc).strip("'\"")) from None
    finally:
        store.close()
    print(out)
    return 0
