"""``earwitness report INCIDENT [--db URL] --out FILE.html|FILE.pdf``: a forensic report of one incident."""
from __future__ import annotations

import pathlib

from earwitness.cli import UserError
from earwitness.redact import mask_logging

DEFAULT_DB = "fusion.db"


def add_arguments(parser):
    parser.add_argument("incident", metavar="INCIDENT", help="incident id, as in its alerts")
    parser.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                        help=f"the fusion server's database: SQLite file or postgresql:// URL (default {DEFAULT_DB})")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema holding the tables (default: the search path)")
    parser.add_argument("--out", required=True, metavar="FILE", help="report file, .html or .pdf")


def run(args) -> int:
    import sqlalchemy as sa

    from fusion.report import write_report
    from fusion.server.store import Store

    mask_logging("WARNING", "%(levelname)s %(name)s: %(message)s")
    out = pathlib.Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise UserError(f"--out must end in .html or .pdf, not {out.name!r}")
    if "://" not in args.db and not pathlib.Path(args.db).is_file():
        raise UserError(f"no database file {args.db!r} (give --db FILE or a postgresql:// URL)")
    try:
        store = Store(args.db, schema=args.schema)
    except (ValueError, sa.exc.SQLAlchemyError) as exc:
        raise UserError(f"cannot open database {args.db!r}: {str(exc).splitlines()[0]}") from None
    try:
        write_report(store, args.incident, out)
    except LookupError as exc:
        raise UserError(str(exc).strip("'\"")) from None
    finally:
        store.close()
    print(out)
    return 0
