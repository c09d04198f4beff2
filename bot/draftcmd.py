"""`bot drafts ...`: the draft workflow on the command line.

Every subcommand is a thin shell over `bot.workflow` (the service layer the
dashboard uses too) and `bot.outbox`; errors are `BotError`s that
`bot.cli` turns into exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.config import Config
from bot.errors import BadInput, Transient

if TYPE_CHECKING:  # SQLAlchemy is imported only when a drafts command runs
    from bot.store.db import Database
    from bot.workflow import Actor, DraftView

# bot.store.models.DraftState, spelt out so that `bot --help` loads no database code.
STATES = ("draft", "approved", "sending", "sent", "failed", "discarded")
_EDITABLE_HEADERS = ("to", "cc", "subject")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `drafts` command and its subcommands."""
    p = sub.add_parser("drafts", help="list, edit, approve, discard, send or export reply "
                       "drafts")
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--as", dest="actor", metavar="'NAME <EMAIL>'",
                     help="who is acting (default: drafts.reviewer_name/reviewer_email, "
                     "else git config user.name/user.email)")
    ds = p.add_subparsers(dest="drafts_command", metavar="ACTION")
    ds.required = True
    ls = ds.add_parser("list", help="drafts, newest first")
    ls.add_argument("--state", action="append", choices=STATES, default=[],
                    help="only drafts in this state (repeatable)")
    ls.add_argument("--series", metavar="MESSAGE-ID", help="only this series' drafts")
    ls.add_argument("--superseded", action="store_true",
                    help="include drafts superseded by a newer revision")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    sh = ds.add_parser("show", help="one draft: headers, body and history")
    sh.add_argument("id", type=int)
    ed = ds.add_parser("edit", parents=[who], help="edit a draft's To, Cc, Subject and "
                       "body in $EDITOR (an approved draft needs approving again)")
    ed.add_argument("id", type=int)
    ap = ds.add_parser("approve", parents=[who],
                       help="approve drafts for sending, as the acting maintainer")
    ap.add_argument("ids", type=int, nargs="+", metavar="ID")
    dc = ds.add_parser("discard", parents=[who], help="discard drafts")
    dc.add_argument("ids", type=int, nargs="+", metavar="ID")
    dc.add_argument("--reason", default="", help="why, for the history")
    se = ds.add_parser("send", help="mail approved drafts over SMTP (all, or the IDs given); "
                       "needs smtp.send_enabled")
    se.add_argument("ids", type=int, nargs="*", metavar="ID")
    ex = ds.add_parser("export", parents=[who], help="write approved drafts as .eml files or "
                       "one mbox, for git send-email or a mail client (the bot then never "
                       "sends them)")
    ex.add_argument("ids", type=int, nargs="+", metavar="ID")
    ex.add_argument("--format", choices=("eml", "mbox"), default="mbox")
    ex.add_argument("-o", "--output", metavar="PATH", default="-",
                    help="mbox: a file, or - for standard output; eml: a directory")
    b4 = ds.add_parser("b4", parents=[who], help="write a series' drafts as the review files "
                       "`b4 review` reads (.git/b4-review/<sha>/NNNN.txt) for its review branch")
    b4.add_argument("--repo", default=".", metavar="PATH", help="the git tree b4 reviews in")
    b4.add_argument("--branch", default="HEAD", metavar="REF",
                    help="the b4 review branch (default: the checked-out one)")
    p.set_defaults(func=run)


def _git_identity() -> tuple[str, str]:
    def get(key: str) -> str:
        try:
            proc = subprocess.run(["git", "config", "--get", key], capture_output=True,
                                  text=True, check=False)
        except FileNotFoundError:
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""
    return get("user.name"), get("user.email")


def actor(args: argparse.Namespace, cfg: Config) -> Actor:
    from bot.workflow import Actor
    if getattr(args, "actor", None):
        return Actor.parse(args.actor)
    name, mail = cfg.drafts.reviewer_name, cfg.drafts.reviewer_email
    if not mail:
        name, mail = _git_identity()
    if not mail:
        raise BadInput("who is acting? pass --as 'Name <email>' or set "
                       "drafts.reviewer_email (or git config user.email)")
    found = Actor(name=name, email=mail)
    found.address  # noqa: B018 - refuses an unusable address now, not halfway
    return found


def run(args: argparse.Namespace, cfg: Config) -> int:
    from bot.store.db import Database
    database = Database(cfg)
    try:
        return _COMMANDS[args.drafts_command](args, cfg, database, sys.stdout)
    finally:
        database.close()


def _flags(v: DraftView) -> str:
    out = []
    if v.superseded_by:
        out.append("superseded")
    if v.exported_at:
        out.append("exported")
    return " (%s)" % ", ".join(out) if out else ""


def _list(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.store.models import DraftState
    from bot.workflow import list_drafts
    with db.transaction() as s:
        views = list_drafts(s, states=[DraftState(x) for x in args.state], series=args.series,
                            include_superseded=args.superseded)
    if args.format == "json":
        json.dump([{"id": v.id, "state": str(v.state), "series": v.series_message_id,
                    "revision": v.revision, "patch": v.patch_index, "subject": v.subject,
                    "in_reply_to": v.in_reply_to, "superseded_by": v.superseded_by,
                    "exported": v.exported_at is not None,
                    "reply_message_id": v.reply_message_id} for v in views], out, indent=1)
        out.write("\n")
        return 0
    for v in views:
        out.write("%5d  %-9s v%-2d %2d  %s%s\n" % (v.id, v.state, v.revision, v.patch_index,
                                                   v.subject, _flags(v)))
    if not views:
        out.write("no drafts\n")
    return 0


def _headers_text(v: DraftView) -> str:
    return "To: %s\nCc: %s\nSubject: %s\n" % (", ".join(v.to), ", ".join(v.cc), v.subject)


def _show(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.workflow import show
    with db.transaction() as s:
        v = show(s, args.id)
    out.write("draft %d: %s%s, version %d\n" % (v.id, v.state, _flags(v), v.version))
    out.write("series %s v%d, patch %d: %s\n" % (v.series_message_id, v.revision,
                                                 v.patch_index, v.series_subject))
    if v.from_addr:
        out.write("From: %s\n" % v.from_addr)
    out.write(_headers_text(v))
    out.write("In-Reply-To: <%s>\n" % v.in_reply_to)
    if v.reply_message_id:
        out.write("Message-ID: <%s>\n" % v.reply_message_id)
    out.write("\n" + v.body)
    if v.last_error:
        out.write("\nlast error: %s\n" % v.last_error)
    if v.smtp_reply:
        out.write("server reply: %s\n" % v.smtp_reply)
    out.write("\nhistory:\n")
    for e in v.events:
        change = "%s -> %s" % (e.state_before or "", e.state_after or "") \
            if e.state_before != e.state_after else ""
        out.write("  %s  %-10s %s  %s%s\n" % (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.action,
                                             e.actor, change, "  " + e.detail if e.detail
                                             else ""))
    return 0


def parse_edited(text: str) -> tuple[dict[str, str], str]:
    """Headers (To, Cc, Subject) and body of a draft as edited in $EDITOR."""
    head, sep, body = text.partition("\n\n")
    if not sep:
        raise BadInput("edited draft: expected To:, Cc: and Subject: lines, a blank line, "
                       "then the body")
    fields: dict[str, str] = {}
    last = ""
    for line in head.splitlines():
        if line[:1] in (" ", "\t") and last:
            fields[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        if not colon or key not in _EDITABLE_HEADERS:
            raise BadInput("edited draft: %r: only To:, Cc: and Subject: can be edited"
                           % line)
        fields[key] = value.strip()
        last = key
    return fields, body


def _split_addresses(value: str) -> list[str]:
    import email.utils
    return [email.utils.formataddr(pair) for pair in email.utils.getaddresses([value])
            if pair[1]]


def _edit(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.store.models import DraftState
    from bot.workflow import edit, show
    who = actor(args, cfg)
    with db.transaction() as s:
        v = show(s, args.id)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="bot-draft-") as tmp:
        path = Path(tmp) / ("draft-%d.eml" % v.id)
        path.write_text(_headers_text(v) + "\n" + v.body, encoding="utf-8")
        try:
            proc = subprocess.run(shlex.split(editor) + [str(path)], check=False)
        except FileNotFoundError:
            raise BadInput("$EDITOR %r: no such command" % editor) from None
        if proc.returncode != 0:
            raise BadInput("$EDITOR %r exited with %d: draft %d left as it was"
                           % (editor, proc.returncode, v.id))
        text = path.read_text(encoding="utf-8", errors="replace")
    fields, body = parse_edited(text)
    with db.transaction() as s:
        after = edit(s, who, v.id, body=body, subject=fields.get("subject"),
                     to=_split_addresses(fields["to"]) if "to" in fields else None,
                     cc=_split_addresses(fields["cc"]) if "cc" in fields else None,
                     version=v.version)
    if after.version == v.version:
        out.write("draft %d unchanged\n" % v.id)
    else:
        out.write("draft %d edited, now %s%s\n" % (
            v.id, after.state, "; approve it again to send it"
            if v.state is not DraftState.DRAFT else ""))
    return 0


def _approve(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.workflow import approve
    who = actor(args, cfg)
    with db.transaction() as s:  # all or nothing
        views = [approve(s, who, i) for i in args.ids]
    for v in views:
        out.write("draft %d approved by %s, Message-ID <%s>%s\n" % (
            v.id, v.approved_by, v.reply_message_id,
            "" if cfg.smtp.send_enabled else
            " (sending is disabled: `bot drafts export` it)"))
    return 0


def _discard(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.workflow import discard
    who = actor(args, cfg)
    with db.transaction() as s:
        for i in args.ids:
            discard(s, who, i, reason=args.reason)
    out.write("discarded: %s\n" % ", ".join(str(i) for i in args.ids))
    return 0


def _send(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.outbox import send_due
    report = send_due(cfg, db, ids=args.ids or None)
    lost = [i for i, state, _ in report.recovered if state == "failed"]
    for i, state, why in report.recovered:
        out.write("draft %d recovered (%s): %s\n" % (i, state, why))
    for i, reply in report.sent:
        out.write("draft %d sent: %s\n" % (i, reply))
    for i, why in report.deferred:
        out.write("draft %d not sent, will be retried: %s\n" % (i, why))
    for i, why in report.failed:
        out.write("draft %d failed: %s\n" % (i, why))
    if not (report.sent or report.failed or report.deferred):
        out.write("nothing to send\n")
    unsent = len(report.failed) + len(report.deferred) + len(lost)
    if unsent:
        raise Transient("%d draft(s) not sent: see `bot drafts show ID`" % unsent)
    return 0


def _export(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.drafts.message import as_export, as_mbox
    from bot.workflow import export
    who = actor(args, cfg)
    target = Path(args.output)
    if args.format == "eml" and (args.output == "-" or not target.is_dir()):
        raise BadInput("%s: --format eml writes into an existing directory" % args.output)
    with db.transaction() as s:
        done = export(s, who, args.ids)
        if args.format == "mbox":
            data = as_mbox(m for _, m in done)
            if args.output == "-":
                sys.stdout.flush()
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                _write(target, data)
        else:
            for v, m in done:
                _write(target / ("draft-%d.eml" % v.id), as_export(m))
    if args.output != "-":
        out.write("exported %d draft(s) to %s\n" % (len(done), args.output))
    return 0


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise BadInput("%s: cannot write: %s" % (path, exc.strerror)) from None


def _b4(args: argparse.Namespace, cfg: Config, db: Database, out: TextIO) -> int:
    from bot.b4export import write
    who = actor(args, cfg)
    with db.transaction() as s:
        written = write(s, who, Path(args.repo), args.branch)
    out.write("wrote %s in %s (drafts %s); open the series in `b4 review` and run its "
              "review agent, or restart it, to load them\n"
              % (", ".join(written.files), written.directory,
                 ", ".join(str(i) for i in written.drafts)))
    return 0


_COMMANDS = {"list": _list, "show": _show, "edit": _edit, "approve": _approve,
             "discard": _discard, "send": _send, "export": _export, "b4": _b4}

