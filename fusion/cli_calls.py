"""``earwitness calls import CALLS.csv [--db URL] [--columns OURS=THEIRS,...] [--tz ZONE]``: load 911/CAD calls.

The calls are stored (a call id already stored keeps its first row) and matched to the stored
incidents (every class: a call beside an incident classed fireworks is worth a second look;
``earwitness unreported`` counts the classes it is asked for) by the rule ``--before-s``, ``--after-s``, ``--max-dist-m``
(:mod:`fusion.forensics.calls`), which is stored with each match. The fusion server matches new
incidents to the stored calls as it alerts them (the alert's ``calls`` and ``called``).
"""
from __future__ import annotations

import hashlib
import pathlib

from earwitness.cli import UserError
from fusion.cli_audit import add_signing_key_argument, record_action
from fusion.cli_db import add_db_arguments, open_store


def add_arguments(parser):
    from fusion.forensics.calls import DEFAULT_AFTER_S, DEFAULT_BEFORE_S, DEFAULT_MAX_DIST_M

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="store the calls of a CSV and match them to stored incidents",
                         description=__doc__.splitlines()[0])
    imp.add_argument("calls", metavar="CALLS.csv", help="call_id,t_utc,lat,lon[,type] or call_id,t_utc,x,y[,type]")
    add_db_arguments(imp)
    imp.add_argument("--columns", metavar="OURS=THEIRS,...",
                     help="a CAD export's own column names, e.g. call_id=IncidentNo,t_utc=Received,lat=Lat,lon=Long")
    imp.add_argument("--tz", metavar="ZONE", help="IANA time zone of times written without an offset (default UTC)")
    imp.add_argument("--time-format", metavar="FMT", help="strptime format of the times (default ISO 8601)")
    imp.add_argument("--before-s", type=float, default=DEFAULT_BEFORE_S,
                     help=f"a call may come this long before the first discharge (default {DEFAULT_BEFORE_S:g})")
    imp.add_argument("--after-s", type=float, default=DEFAULT_AFTER_S,
                     help=f"and this long after the last (default {DEFAULT_AFTER_S:g})")
    imp.add_argument("--max-dist-m", type=float, default=DEFAULT_MAX_DIST_M,
                     help=f"from this far from the located position (default {DEFAULT_MAX_DIST_M:g})")
    add_signing_key_argument(imp)


def run(args) -> int:
    from fusion.forensics.calls import CallsError, MatchRule, parse_columns, read_calls, time_zone
    from fusion.forensics.frame import FrameError, Plane
    from fusion.server.calls import CallLog

    try:
        rule = MatchRule(args.before_s, args.after_s, args.max_dist_m)
        calls = read_calls(pathlib.Path(args.calls), parse_columns(args.columns), time_zone(args.tz), args.time_format)
    except CallsError as exc:
        raise UserError(str(exc)) from None
    store = open_store(args)
    try:
        stored = store.incidents()
        try:
            if stored:   # one frame for calls and incidents, checked before anything is stored
                Plane.around(stored[:1]).check(calls[0], f"{args.calls} line 2")
        except FrameError as exc:
            raise UserError(str(exc)) from None
        log = CallLog(store)
        new = log.add_calls(calls)
        matched = log.match_stored_incidents(rule)
        entered = record_action(store, args.signing_key, "calls-import", pathlib.Path(args.calls).name,
                                {"sha256": hashlib.sha256(pathlib.Path(args.calls).read_bytes()).hexdigest(),
                                 "calls": len(calls), "new": new, "matches": matched,
                                 "rule": {"before_s": rule.before_s, "after_s": rule.after_s, "max_dist_m": rule.max_dist_m}})
    finally:
        store.close()
    print(f"{len(calls)} calls read, {new} new stored; {matched} new matches to incidents "
          f"(rule: {rule.before_s:g} s before to {rule.after_s:g} s after, within {rule.max_dist_m:g} m)")
    print(entered)
    return 0
