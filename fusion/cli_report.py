"""``earwitness report INCIDENT (--db URL | --config FUSION.toml) [--tz ZONE] --out FILE.html|FILE.pdf``: a forensic report.

With ``--config`` the database, its schema and the site's time zone (``timezone``) come from the
fusion server's configuration; ``--tz`` names the zone (IANA, e.g. ``America/New_York``) otherwise
or overrides it.  Without a zone the report gives UTC only, and says so.
"""
from __future__ import annotations

import argparse
import pathlib

from earwitness.cli import UserError
from earwitness.redact import mask_logging
from fusion.cli_db import add_db_arguments, open_store


def add_arguments(parser):
    parser.add_argument("incident", metavar="INCIDENT", help="incident id, as in its alerts")
    add_db_arguments(parser)
    parser.add_argument("--config", metavar="FUSION.toml",
                        help="the fusion server's configuration: its database, schema and timezone (instead of --db)")
    parser.add_argument("--tz", metavar="ZONE", help="the site's time zone, e.g. America/New_York (local times beside UTC)")
    parser.add_argument("--out", required=True, metavar="FILE", help="report file, .html or .pdf")


def run(args) -> int:
    from fusion.report import write_report
    from fusion.report_content import check_zone

    mask_logging("WARNING", "%(levelname)s %(name)s: %(message)s")
    out = pathlib.Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise UserError(f"--out must end in .html or .pdf, not {out.name!r}")
    zone = args.tz
    if args.config:
        from fusion.cli_fusion import load_config

        config = load_config(args.config)
        args = argparse.Namespace(**dict(vars(args), db=config.database, schema=config.schema))
        zone = zone or config.timezone
    try:
        zone = check_zone(zone) if zone else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    store = open_store(args)
    try:
        write_report(store, args.incident, out, zone)
    except LookupError as exc:
        raise UserError(str(exc).strip("'\"")) from None
    finally:
        store.close()
    print(out)
    return 0
