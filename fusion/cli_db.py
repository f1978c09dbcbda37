"""The ``--db URL`` and ``--schema`` options the commands that read the fusion store share."""
from __future__ import annotations

import pathlib

from earwitness.cli import UserError

DEFAULT_DB = "fusion.db"


def add_db_arguments(parser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                        help=f"the fusion server's database: SQLite file or postgresql:// URL (default {DEFAULT_DB})")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema holding the tables (default: the search path)")


def open_store(args, create: bool = False):
    """The store at ``args.db`` (an existing SQLite file, or a new one with ``create``, or a PostgreSQL
    URL); UserError in one line otherwise."""
    import sqlalchemy as sa

    from fusion.server.store import Store

    if not create and "://" not in args.db and not pathlib.Path(args.db).is_file():
        raise UserError(f"no database file {args.db!r} (give --db FILE or a postgresql:// URL)")
    try:
        return Store(args.db, schema=args.schema)
    except (ValueError, sa.exc.SQLAlchemyError) as exc:
        raise UserError(f"cannot open database {args.db!r}: {str(exc).splitlines()[0]}") from None
