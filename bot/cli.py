"""The `bot` command. Exit codes are decided here, and only here:

    0  ok
    1  findings at or above --fail-on (`bot check`); disagreements found
       (`bot regmodel diff`)
    2  bad input or bad configuration (one line on stderr naming the input
       and the problem), including a database schema that is not at head
       and a database or directory that cannot be used as configured
    3  transient: lore or the database is unavailable; try again later
    4  internal error (a bug: please report it with the -v output)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence

from bot import __version__
from bot import config as botconfig
from bot.errors import (
    BadInput,
    BotError,
    ConfigError,
    NotFound,
    SchemaOutdated,
    Transient,
    Unusable,
)

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_TRANSIENT = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130

_EXIT_FOR: tuple[tuple[type[BotError], int], ...] = (
    (ConfigError, EXIT_BAD_INPUT),
    (BadInput, EXIT_BAD_INPUT),
    (NotFound, EXIT_BAD_INPUT),
    (SchemaOutdated, EXIT_BAD_INPUT),
    (Unusable, EXIT_BAD_INPUT),
    (Transient, EXIT_TRANSIENT),
)

_FORMATS = ("text", "json", "b4")
_FAIL_ON = ("error", "warning", "question", "info", "never")


# Control characters a terminal acts on (escape sequences start with ESC or
# a C1 code); log lines and errors quote mail, whose bytes the bot does not
# choose. A traceback's newlines stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain(text: str) -> str:
    return _CONTROL.sub("?", text)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _plain(super().format(record))


def _setup_logging(level: str, verbose: int) -> None:
    name = "debug" if verbose > 0 else level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, name.upper(), logging.INFO),
                        handlers=[handler])
    if verbose < 2:
        for noisy in ("b4", "liblore", "urllib3", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_check(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.check import run_check
    return run_check(cfg, args.sources, fmt=args.format, fail_on=args.fail_on,
                     store=args.store, kernel_tree=args.kernel_tree, out=sys.stdout,
                     compare_to=args.compare_to)


def _cmd_poll(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.poller import run_poll
    return run_poll(cfg, out=sys.stdout)


def _cmd_daemon(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.daemon import run_daemon
    return run_daemon(cfg)


def _cmd_db(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.store import db
    engine = db.make_engine(cfg)
    try:
        if args.db_command == "upgrade":
            db.upgrade(engine)
            current, _ = db.current_heads(engine)
            print("database at %s" % ", ".join(sorted(current)))
        else:
            current, heads = db.current_heads(engine)
            print("database: %s\ncurrent: %s\nhead: %s" % (
                engine.url.render_as_string(hide_password=True),
                ", ".join(sorted(current)) or "(empty)", ", ".join(sorted(heads))))
            if current != heads:
                print("run `bot db upgrade` to migrate")
    finally:
        engine.dispose()
    return EXIT_OK


def _cmd_regmodel(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.regmodel import load_model
    if args.regmodel_command == "show":
        from bot.regmodel.show import show
        sys.stdout.write(show(load_model(cfg.regmodel.kernel_tree or None), args.what))
        return EXIT_OK
    from bot.regmodel.diff import diff_tree, format_report
    report = diff_tree(load_model(), args.kernel_tree)
    sys.stdout.write(format_report(report))
    return EXIT_FINDINGS if report.disagreements else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot", description="Review KVM/arm64 patches that touch HCR_EL2/MDCR_EL2 "
        "save and restore.", epilog="Exit codes: 0 ok, 1 findings at or above --fail-on, "
        "2 bad input or config, 3 lore or database unavailable, 4 internal error, "
        "130 interrupted.")
    parser.add_argument("--version", action="version", version="bot " + __version__)
    parser.add_argument("--config", metavar="PATH",
                        help="configuration file (default: $BOT_CONFIG, else ./config.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv includes libraries)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    check = sub.add_parser("check", help="check patches from files, stdin, a Message-ID "
                           "or a lore URL")
    check.add_argument("sources", nargs="+", metavar="SOURCE",
                       help="mbox (plain or .gz), maildir, format-patch file or directory, "
                       "'-' for one message on stdin, a Message-ID or a lore URL")
    check.add_argument("--format", choices=_FORMATS, default="text")
    check.add_argument("--fail-on", choices=_FAIL_ON, default="error",
                       help="exit 1 when a finding is at least this severe (default: error)")
    check.add_argument("--store", action="store_true",
                       help="record messages, series, findings and drafts in the database")
    check.add_argument("--kernel-tree", metavar="PATH",
                       help="kernel git tree to apply the series to (overrides rules.kernel_tree)")
    check.add_argument("--compare-to", metavar="SOURCE", action="append",
                       help="an earlier revision (any SOURCE as above; may be repeated): mark "
                       "each finding new or still present, list what is resolved")
    check.set_defaults(func=_cmd_check)

    poll = sub.add_parser("poll", help="one poll cycle: new series and replies from lore "
                          "through the checks into the database")
    poll.set_defaults(func=_cmd_poll)

    daemon = sub.add_parser("daemon", help="poll every daemon.interval seconds until "
                            "SIGTERM or SIGINT")
    daemon.set_defaults(func=_cmd_daemon)

    dbp = sub.add_parser("db", help="database schema")
    dbsub = dbp.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.required = True
    dbsub.add_parser("upgrade", help="migrate the configured database to the latest schema")
    dbsub.add_parser("status", help="show the schema revision of the configured database")
    dbp.set_defaults(func=_cmd_db)

    rmp = sub.add_parser("regmodel", help="the HCR_EL2/MDCR_EL2 register model")
    rmsub = rmp.add_subparsers(dest="regmodel_command", metavar="ACTION")
    rmsub.required = True
    show = rmsub.add_parser("show", help="print the fields as a table (the model from "
                            "regmodel.kernel_tree when configured)")
    show.add_argument("what", nargs="?", metavar="REGISTER[.FIELD]",
                      help="a register, REGISTER.FIELD or a kernel macro such as HCR_TGE")
    diff = rmsub.add_parser("diff", help="compare a kernel tree's tools/sysreg and kvm_arm.h "
                            "with the shipped model; exit 1 when they disagree")
    diff.add_argument("--kernel-tree", metavar="PATH", required=True,
                      help="kernel source tree (only arch/arm64 and Makefile are read)")
    rmp.set_defaults(func=_cmd_regmodel)

    return parser


def _check_rule_names(cfg: botconfig.Config) -> None:
    rules = cfg.rules
    if rules.enable or rules.disable or rules.severity or rules.paths:
        from bot.data import Category
        from bot.rules import REGISTRY
        botconfig.check_rule_names(cfg, {spec.id for spec in REGISTRY}
                                   | {str(c) for c in Category})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = botconfig.load(args.config)
        _check_rule_names(cfg)
        _setup_logging(cfg.log_level, args.verbose)
        return int(args.func(args, cfg))
    except BotError as exc:
        for cls, code in _EXIT_FOR:
            if isinstance(exc, cls):
                print("bot: error: %s" % _plain(" ".join(str(exc).split())), file=sys.stderr)
                return code
        raise  # pragma: no cover - every BotError subclass is mapped above
    except KeyboardInterrupt:
        print("bot: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`bot check ... | head`): not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug: one line, the traceback only with -v
        logger.debug("internal error", exc_info=True)
        print("bot: internal error: %s: %s (run with -v for details)"
              % (type(exc).__name__, _plain(" ".join(str(exc).split()))), file=sys.stderr)
        return EXIT_INTERNAL
