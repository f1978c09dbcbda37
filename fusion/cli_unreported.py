"""``earwitness unreported [--db URL] [--areas AREAS.geojson] [--since ISO] [--until ISO] --out DIR``.

Per area (neighbourhood polygons; without ``--areas``, one area holding everything), the gunfire
incidents of the store, those a stored 911 call matched (``earwitness calls import``) and those
nobody called in, with the unreported share and its 95 % Wilson interval
(:mod:`fusion.forensics.unreported`): ``unreported.csv``, ``unreported.geojson`` (the areas with
these figures) and ``unreported.png`` (a choropleth) in DIR. Areas' coordinates are longitude,
latitude for a WGS84 site, x, y metres for a local one.
"""
from __future__ import annotations

import pathlib

from earwitness.cli import UserError
from fusion.cli_db import add_db_arguments, open_store

DEFAULT_CLASSES = "gunfire"


def add_arguments(parser):
    add_db_arguments(parser)
    parser.add_argument("--areas", metavar="AREAS.geojson", help="neighbourhood polygons (a GeoJSON FeatureCollection)")
    parser.add_argument("--since", metavar="ISO8601", help="incidents from this time on (UTC if no offset)")
    parser.add_argument("--until", metavar="ISO8601", help="incidents up to this time (UTC if no offset)")
    parser.add_argument("--classes", default=DEFAULT_CLASSES, metavar="CLASS,...",
                        help=f"incident classes counted (default {DEFAULT_CLASSES}; add unknown for possible gunfire)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for unreported.csv, .geojson, .png")


def run(args) -> int:
    from fusion.forensics.calls import CallsError, parse_time_ns, time_zone
    from fusion.forensics.frame import FrameError, Plane
    from fusion.forensics.geojson import GeoJSONError, read_polygons
    from fusion.forensics.unreported import tally
    from fusion.server.calls import counted_incidents
    from fusion.unreported import write_outputs

    try:
        t0, t1 = (parse_time_ns(t, time_zone(None)) if t else None for t in (args.since, args.until))
    except (ValueError, CallsError) as exc:
        raise UserError(f"--since/--until must be ISO 8601 times ({exc})") from None
    classes = {c.strip() for c in args.classes.split(",") if c.strip()}
    store = open_store(args)
    try:
        incidents, called = counted_incidents(store, classes, t0, t1)
    finally:
        store.close()
    plane = Plane.around(incidents)
    try:
        areas = read_polygons(args.areas, plane) if args.areas else []
        counts = tally(areas, incidents, called, plane)
    except (GeoJSONError, FrameError) as exc:
        raise UserError(str(exc)) from None
    paths = write_outputs(pathlib.Path(args.out), areas, counts, incidents, called, plane,
                          f"Nobody called in: {len(incidents)} incidents classed {', '.join(sorted(classes))}")
    for c in counts:
        row = c.row()
        share = "-" if row["unreported_share"] is None else (
            f"{row['unreported_share']:.0%} (95% {row['ci_low']:.0%}-{row['ci_high']:.0%})")
        print(f"{c.name}: {row['incidents']} incidents, {row['called']} called in, {row['unreported']} not: {share}")
    print(" ".join(str(p) for p in paths.values()))
    return 0
