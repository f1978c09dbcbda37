"""``earwitness console ACTION``: manage the operator console's users.

    earwitness console adduser NAME --role ROLE [--db URL]   # add, or set role and password
    earwitness console role NAME --role ROLE [--db URL]
    earwitness console disable NAME [--db URL]               # no login; open sessions end at once
    earwitness console enable NAME [--db URL]
    earwitness console users [--db URL]                      # name, role, state

The password is read from standard input (one line) or, on a terminal, asked for twice.  Each
change is an entry of the audit log naming the user running the command, signed with the
server's key (``--signing-key``, default fusion.key).
"""
from __future__ import annotations

import getpass
import sys

from earwitness.cli import UserError
from fusion.cli_audit import add_signing_key_argument, record_action
from fusion.cli_db import add_db_arguments, open_store

# The audit log's action for each command: the console's user page enters the same.
AUDIT_ACTIONS = {"adduser": "user-add", "role": "user-role", "disable": "user-disable", "enable": "user-enable"}


def add_arguments(parser):
    from fusion.console.roles import ROLES

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("adduser", help="add a user, or set an existing one's role and password")
    role = sub.add_parser("role", help="give a user another role")
    for p in (add, role):
        p.add_argument("name", metavar="NAME")
        p.add_argument("--role", required=True, choices=ROLES)
    disable = sub.add_parser("disable", help="disable a user: no login, their open sessions end")
    enable = sub.add_parser("enable", help="enable a disabled user")
    for p in (disable, enable):
        p.add_argument("name", metavar="NAME")
    listing = sub.add_parser("users", help="list the users: name, role, state")
    for p in (add, role, disable, enable):
        add_db_arguments(p)
        add_signing_key_argument(p)
    add_db_arguments(listing)


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def run(args) -> int:
    from fusion.console.accounts import AccountError, Accounts
    from fusion.console.sessions import Sessions

    password = _password() if args.action == "adduser" else ""
    store = open_store(args, create=args.action == "adduser")   # a new database gets its tables
    try:
        users = Accounts(store)
        if args.action == "users":
            for u in users.all():
                print(f"{u['name']}\t{u['role']}\t{'disabled' if u['disabled_ns'] else 'active'}")
            return 0
        body = {"role": args.role} if args.action in ("adduser", "role") else {}
        if args.action == "adduser":
            users.add(args.name, args.role, password)
        elif args.action == "role":
            users.set_role(args.name, args.role)
        else:
            users.set_disabled(args.name, args.action == "disable")
            if args.action == "disable":
                body["sessions_ended"] = Sessions(store).end_user(args.name, "user disabled")
        print(f"user {args.name} ({args.role})" if "role" in body else f"user {args.name}: {args.action}d")
        print(record_action(store, args.signing_key, AUDIT_ACTIONS[args.action], f"user/{args.name}", body), file=sys.stderr)
    except AccountError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    return 0
