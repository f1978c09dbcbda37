"""``earwitness stats [STORE|fusion.toml] [--db URL] [--areas AREAS.geojson] [--by area,month,class,confidence]
[--format table|csv|json]``: the transparency figures.

Alerts, review outcomes (confirmed, dismissed, reclassified, unreviewed) and officers'
dispositions, grouped by area, UTC month, class and/or confidence bin, with the shares
confirmed and with evidence of a shooting and their 95 % Wilson score intervals
(:mod:`fusion.forensics.transparency`); the console's dashboard shows the same figures.
Given a fusion.toml, its database and its ``[console] areas`` are used.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys

from earwitness.cli import UserError
from fusion.cli_db import DEFAULT_DB, add_db_arguments, open_store

FORMATS = ("table", "csv", "json")
CONFIG_SUFFIX = ".toml"


def add_arguments(parser):
    parser.add_argument("source", nargs="?", metavar="STORE|fusion.toml",
                        help="the fusion database (SQLite file or postgresql:// URL) or the server's fusion.toml")
    add_db_arguments(parser)
    parser.add_argument("--areas", metavar="AREAS.geojson", help="neighbourhood polygons (default: [console] areas)")
    parser.add_argument("--by", default="", metavar="DIM,...",
                        help="group by any of area, month, class, confidence (comma-separated; default: one total row)")
    parser.add_argument("--format", default="table", choices=FORMATS)


def _source(args) -> tuple[argparse.Namespace, str | None]:
    """The store's arguments and the areas file, from a fusion.toml or the options."""
    if args.source and args.source.endswith(CONFIG_SUFFIX):
        from fusion.cli_fusion import load_config

        config = load_config(args.source)
        areas = config.console.areas if config.console else None
        return argparse.Namespace(db=config.database, schema=config.schema), args.areas or (str(areas) if areas else None)
    db = args.source or args.db
    if args.source and args.db != DEFAULT_DB:
        raise UserError("give the store either as STORE or as --db, not both")
    return argparse.Namespace(db=db, schema=args.schema), args.areas


def run(args) -> int:
    from fusion.console.stats import transparency
    from fusion.forensics.transparency import DIMENSIONS

    by = [d.strip() for d in args.by.split(",") if d.strip()]
    bad = [d for d in by if d not in DIMENSIONS]
    if bad or len(set(by)) != len(by):
        raise UserError(f"--by takes distinct names of {', '.join(DIMENSIONS)}, not {args.by!r}")
    store_args, areas = _source(args)
    store = open_store(store_args)
    try:
        table = transparency(store, by, areas)
    except ValueError as exc:   # GeoJSONError, FrameError
        raise UserError(str(exc)) from None
    finally:
        store.close()
    write(table, args.format, sys.stdout)
    return 0


def write(table, fmt: str, out) -> None:
    """The table as CSV (empty cells for no value), JSON ({"by", "alerts", "rows"}) or aligned text."""
    if fmt == "json":
        json.dump({"by": table.by, "alerts": table.alerts, "rows": table.rows}, out, indent=1)
        out.write("\n")
        return
    cells = [[("" if r[c] is None else str(r[c])) for c in table.columns] for r in table.rows]
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table.columns)
        writer.writerows(cells)
        return
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(table.columns)]
    for row in [list(table.columns)] + cells:
        out.write("  ".join(v.rjust(w) for v, w in zip(row, widths)).rstrip() + "\n")
