"""`bot user add|passwd|disable|list`: the dashboard's maintainer accounts.

A password is read from standard input when it is not a terminal (one
line, for scripts), else asked for twice without echo.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from bot.config import Config
from bot.errors import BadInput


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("user", help="dashboard accounts: add, passwd, disable, list")
    us = p.add_subparsers(dest="user_command", metavar="ACTION")
    us.required = True
    add = us.add_parser("add", help="create a maintainer's account (the address becomes the "
                        "From of what they approve)")
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--name", default="", help="the maintainer's name, as in their mail")
    pw = us.add_parser("passwd", help="set a new password (ends the account's sessions and "
                       "enables a disabled account)")
    pw.add_argument("email", metavar="EMAIL")
    dis = us.add_parser("disable", help="disable an account (ends its sessions)")
    dis.add_argument("email", metavar="EMAIL")
    us.add_parser("list", help="the accounts")
    p.set_defaults(func=run)


def read_password(stdin: TextIO) -> str:
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise BadInput("the two passwords differ")
    return first


def run(args: argparse.Namespace, cfg: Config) -> int:
    from bot import accounts
    from bot.store.db import Database
    database = Database(cfg)
    try:
        if args.user_command == "list":
            from sqlalchemy import select

            from bot.store.models import WebUser
            with database.transaction() as s:
                for u in s.scalars(select(WebUser).order_by(WebUser.email)):
                    print("%s  %s%s" % (u.email, u.name or "-",
                                        "  (disabled)" if u.disabled else ""))
            return 0
        if args.user_command == "disable":
            with database.transaction() as s:
                accounts.disable(s, email=args.email)
            print("account %s disabled" % args.email)
            return 0
        password = read_password(sys.stdin)
        with database.transaction() as s:
            if args.user_command == "add":
                accounts.add(s, email=args.email, name=args.name, password=password)
                print("account %s added" % args.email)
            else:
                accounts.set_password(s, email=args.email, password=password)
                print("password of %s changed" % args.email)
        return 0
    finally:
        database.close()
