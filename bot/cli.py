"""The `bot` command. Exit codes are decided here, and only here:

    0  ok
    1  findings at or above --fail-on (`bot check`); disagreements found
       (`bot regmodel diff`)
    2  bad input or bad configuration (one line on stderr naming the input
       and the problem), including a database schema that is not at head,
       a database or directory that cannot be used as configured, a draft
       not in a state that allows the action, and `bot drafts send` with
       sending disabled
    3  transient: lore, the database or the SMTP server is unavailable,
       `bot drafts send` left a draft unsent, or another poller holds the
       poll lock; try again later. `bot status`: the poller is not healthy
       (no successful poll within daemon.stale_after)
    4  internal error (a bug: please report it with the -v output)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

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

_FAIL_ON = ("error", "warning", "question", "info", "never")
# b4 and checkpatch formats: the same as bot.report.FORMATS (kept here so
# `bot --help` imports no pipeline code).
_FORMATS = ("text", "json", "b4", "b4-series", "checkpatch")


# Control characters a terminal acts on (escape sequences start with ESC or
# a C1 code); log lines and errors quote mail, whose bytes the bot does not
# choose. A traceback's newlines stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain(text: str) -> str:
    return _CONTROL.sub("?", text)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _plain(super().format(record))


def _setup_logging(level: str, verbose: int, quiet: int, fmt: str | None = None) -> None:
    name = level
    if verbose > 0:
        name = "debug"
    elif fmt == "checkpatch":
        name = "error"  # b4 reads every stderr line of an am/prep check as a failure
    elif quiet:
        name = "warning"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, name.upper(), logging.INFO),
                        handlers=[handler])
    if verbose < 2:
        for noisy in ("b4", "liblore", "urllib3", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_check(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.check import run_check
    return run_check(cfg, args.sources, out=sys.stdout, err=sys.stderr, fmt=args.format,
                     fail_on=args.fail_on, store=args.store, kernel_repo=args.kernel_repo,
                     verbose=args.verbose, quiet=args.quiet > 0, baseline=args.baseline,
                     write_baseline=args.write_baseline, compare_to=args.compare_to)


def _cmd_poll(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.runner import run_poll
    return run_poll(cfg, out=sys.stdout)


def _cmd_daemon(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.daemon import run_daemon
    return run_daemon(cfg, reload=lambda: botconfig.load(args.config))


def _cmd_status(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.status import run_status
    healthy = run_status(cfg, fmt=args.format, out=sys.stdout)
    return EXIT_OK if healthy else EXIT_TRANSIENT


def _cmd_serve(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.web.serve import run_serve
    return run_serve(cfg, host=args.host, port=args.port)


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


def _cmd_rules(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.output import rules
    if args.rules_command == "show":
        sys.stdout.write(rules.show(cfg.rules, args.rule))
    elif args.json:
        sys.stdout.write(rules.as_json(cfg.rules))
    else:
        sys.stdout.write(rules.table(cfg.rules))
    return EXIT_OK


def _cmd_config(args: argparse.Namespace, cfg: botconfig.Config) -> int:
    from bot.output.settings import show
    sys.stdout.write(show(cfg))
    return EXIT_OK


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written (line breaks kept)."""


def _verbosity(parser: argparse.ArgumentParser, suffix: str = "") -> None:
    """-v/-q, accepted before and after the subcommand (counted together)."""
    parser.add_argument("-v", "--verbose", action="count", default=0, dest="verbose" + suffix,
                        help="say more: every series, what is not reported, debug logging "
                        "(-vv: libraries' too)")
    parser.add_argument("-q", "--quiet", action="count", default=0, dest="quiet" + suffix,
                        help="say less: only findings and errors, warnings-only logging")


def _sub(sub: Any, name: str, help: str, description: str,
         examples: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description, formatter_class=_Help,
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  "))
    _verbosity(p, "_sub")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot", formatter_class=_Help,
        description="Review KVM/arm64 patches that touch how HCR_EL2 and MDCR_EL2 are "
        "saved and restored.\nNothing is ever mailed without a maintainer's approval.",
        epilog="examples:\n"
        "  bot check series.mbox                   check a saved thread\n"
        "  b4 mbox -o - MSGID | bot check -        check what b4 fetched\n"
        "  bot rules                               the rules and what they look for\n"
        "  bot config show                         the configuration in effect\n\n"
        "exit codes: 0 ok, 1 findings at or above --fail-on, 2 bad input or "
        "configuration,\n3 lore or the database unavailable, the poll lock held, or (bot "
        "status) the poller\nunhealthy, 4 internal error, 130 interrupted.")
    parser.add_argument("--version", action="version", version="bot " + __version__)
    parser.add_argument("--config", metavar="PATH",
                        help="configuration file (default: $BOT_CONFIG, else "
                        "$XDG_CONFIG_HOME/kvm-sysreg-bot/config.toml, else ./config.toml)")
    _verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    check = _sub(sub, "check", "check patches from files, stdin, a Message-ID or a lore URL",
                 "Check patch series against the HCR_EL2/MDCR_EL2 register model and print "
                 "the findings.\nNothing is written anywhere unless --store is given; a "
                 "single message on stdin\nis checked with no database and no network.",
                 """
                 bot check thread.mbox                  findings as path:line: severity: message
                 bot check -v ~/mail/kvmarm/            every series, clean ones too
                 bot check --format json 2020.mbox.gz   the JSON contract (README)
                 bot check 20200529150656.7339-1-james.morse@arm.com
                 git format-patch -3 --stdout | bot check -
                 bot check --baseline known.txt x.mbox  only findings known.txt does not list
                 bot check --compare-to v1.mbox v2.mbox   what v2 fixed, what it still has
                 bot check --format b4 - < patch.eml    b4 review's per-patch check
                 """)
    check.add_argument("sources", nargs="+", metavar="SOURCE",
                       help="mbox (plain or .gz), maildir, format-patch file or directory, "
                       "'-' for stdin, a Message-ID or a lore URL")
    check.add_argument("--format", choices=_FORMATS, default="text",
                       help="text (default); json (the stable contract); b4 and b4-series "
                       "(b4 review's per-patch and per-series checks); checkpatch (b4 "
                       "am/prep checks: checkpatch-style lines)")
    check.add_argument("--fail-on", choices=_FAIL_ON, default="error",
                       help="exit 1 when an open finding is at least this severe "
                       "(default: error; b4 formats always exit 0)")
    check.add_argument("--store", action="store_true",
                       help="record messages, series, findings and drafts in the database")
    check.add_argument("--kernel-repo", "--kernel-tree", dest="kernel_repo", metavar="PATH",
                       help="kernel git repository to find each series' base in and read "
                       "whole files from (overrides kernel.repo; --kernel-tree is a "
                       "deprecated alias)")
    check.add_argument("--baseline", metavar="FILE",
                       help="do not report the findings FILE lists (fingerprint and reason "
                       "per line)")
    check.add_argument("--write-baseline", metavar="FILE",
                       help="write every open finding to FILE, keeping the reasons it "
                       "already gives, and exit 0")
    check.add_argument("--compare-to", metavar="SOURCE", action="append",
                       help="an earlier revision (any SOURCE as above; may be repeated): mark "
                       "each finding new or still present, list what is resolved")
    check.set_defaults(func=_cmd_check)

    poll = _sub(sub, "poll", "one poll cycle: new series and replies from lore into the "
                "database",
                "Search the configured archive (lore.url, lore.query) for mail since the "
                "stored cursor,\nfetch each new thread whole, check it and store it. "
                "Nothing is mailed.",
                """
                bot poll
                BOT_LORE_URL=http://127.0.0.1:8080/all bot poll
                """)
    poll.set_defaults(func=_cmd_poll)

    daemon = _sub(sub, "daemon", "poll every daemon.interval seconds until SIGTERM or SIGINT",
                  "Run `bot poll` every daemon.interval seconds; a failing thread is "
                  "quarantined,\nnot fatal. Meant for a systemd unit (README).",
                  """
                  bot daemon
                  BOT_DAEMON_INTERVAL=300 bot daemon
                  """)
    daemon.set_defaults(func=_cmd_daemon)

    status = _sub(sub, "status", "the poller's health; exit 3 when its last success is old",
                  "The poller's status row (holder, last poll and its result, rows stored,\n"
                  "failures in a row, next poll) and who holds the poll lock. Exit 0 while\n"
                  "the last successful poll is at most daemon.stale_after seconds old, else 3.",
                  """
                  bot status
                  bot status --format json
                  """)
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=_cmd_status)

    dbp = _sub(sub, "db", "database schema",
               "Migrate the configured database (database.url; SQLite in state_dir by "
               "default)\nor show its schema revision.",
               """
               bot db upgrade
               BOT_DATABASE_URL=postgresql+psycopg://bot@db/bot bot db status
               """)
    dbsub = dbp.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.required = True
    dbsub.add_parser("upgrade", help="migrate the configured database to the latest schema")
    dbsub.add_parser("status", help="show the schema revision of the configured database")
    dbp.set_defaults(func=_cmd_db)

    rmp = _sub(sub, "regmodel", "the HCR_EL2/MDCR_EL2 register model",
               "Show the register model the rules check against, or compare it with a "
               "kernel tree.",
               """
               bot regmodel show MDCR_EL2
               bot regmodel show HCR_EL2.TGE
               bot regmodel diff --kernel-tree ~/linux
               """)
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

    rules = _sub(sub, "rules", "list the rules; `rules show ID` explains one",
                 "List every rule with its id, category, severity, whether the configuration "
                 "enables it\n(rules.enable, rules.disable, rules.severity) and what it "
                 "looks for; `show ID`\nprints the architectural reason behind a rule.",
                 """
                 bot rules
                 bot rules --json
                 bot rules show reserved-bit
                 """)
    rules.add_argument("--json", action="store_true", help="the list as JSON")
    rsub = rules.add_subparsers(dest="rules_command", metavar="ACTION")
    rshow = rsub.add_parser("show", help="one rule: settings and architectural reason")
    rshow.add_argument("rule", metavar="ID", help="a rule id (or a category of one rule)")
    rules.set_defaults(func=_cmd_rules, rules_command=None)

    cfgp = _sub(sub, "config", "the configuration in effect and where it came from",
                "Print the effective configuration as TOML, each value annotated with its "
                "origin:\nthe file (found through --config, $BOT_CONFIG, "
                "$XDG_CONFIG_HOME/kvm-sysreg-bot/config.toml\nor ./config.toml), a BOT_* "
                "environment variable, or the default.",
                """
                bot config show
                BOT_LORE_URL=http://127.0.0.1:8080/all bot config show
                """)
    csub = cfgp.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    csub.add_parser("show", help="print the effective configuration and its origins")
    cfgp.set_defaults(func=_cmd_config)

    from bot.draftcmd import add_parser as add_drafts_parser
    add_drafts_parser(sub)
    from bot.usercmd import add_parser as add_user_parser
    add_user_parser(sub)

    serve = _sub(sub, "serve", "the maintainer dashboard (web.listen:web.port, default "
                 "127.0.0.1:8080)",
                 "Serve the dashboard with waitress: the inbox, series with their findings,\n"
                 "drafts to edit and approve, rules, status, and the JSON API under /api/.\n"
                 "Needs $BOT_WEB_SECRET_KEY (web.secret_key) unless web.development is true,\n"
                 "and an account made with `bot user add` to act.",
                 """
                 bot serve
                 bot serve --host 0.0.0.0 --port 8000
                 """)
    serve.add_argument("--host", help="address to listen on (default: web.listen)")
    serve.add_argument("--port", type=int, help="port (default: web.port)")
    serve.set_defaults(func=_cmd_serve)

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
    args.verbose += getattr(args, "verbose_sub", 0)
    args.quiet += getattr(args, "quiet_sub", 0)
    try:
        cfg = botconfig.load(args.config)
        _check_rule_names(cfg)
        _setup_logging(cfg.log_level, args.verbose, args.quiet, getattr(args, "format", None))
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
        logger.log(logging.ERROR if args.verbose > 0 else logging.DEBUG, "internal error",
                   exc_info=True)
        print("bot: internal error: %s: %s (run with -v for details)"
              % (type(exc).__name__, _plain(" ".join(str(exc).split()))), file=sys.stderr)
        return EXIT_INTERNAL
