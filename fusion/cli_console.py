"""``earwitness console adduser NAME --role ROLE [--db URL]``: manage the operator console's users.

The password is read from standard input (one line) or, on a terminal, asked for twice.
"""
from __future__ import annotations

import getpass
import sys

from earwitness.cli import UserError
from fusion.cli_db import add_db_arguments, open_store


def add_arguments(parser):
    from fusion.console.accounts import ROLES

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("adduser", help="add a user, or set an existing one's role and password")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add_db_arguments(add)


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def run(args) -> int:
    from fusion.console.accounts import AccountError, Accounts

    password = _password()
    store = open_store(args, create=True)   # a new database gets its tables
    try:
        Accounts(store).add(args.name, args.role, password)
    except AccountError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    print(f"user {args.name} ({args.role})")
    return 0
