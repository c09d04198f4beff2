"""Shaping stored rows for the templates: a patch's diff with its findings
placed at their lines, links to lore, dates. Mail-derived text is passed
on as plain strings; the templates' autoescaping makes it text."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from flask import Flask

from bot.data import LineKind
from bot.parse.diff import split_body
from bot.parse.mail import MailError, parse_mail
from bot.store.models import Finding, FindingStatus, Message

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Line:
    """One line of a diff on the patch page, with the findings at it."""

    kind: str            # "+", "-", " "
    text: str
    old_no: int | None
    new_no: int | None
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class HunkView:
    """One hunk on the patch page."""

    header: str
    lines: list[Line]


@dataclass(slots=True)
class FileView:
    """One file of a patch on the patch page, with findings at no line of it."""

    path: str
    hunks: list[HunkView]
    binary: bool
    unplaced: list[Finding] = field(default_factory=list)  # not at a line of the diff


@dataclass(slots=True)
class PatchView:
    """One patch as its page shows it: diff, findings and their kinds."""

    index: int
    subject: str
    message_id: str
    author: str
    commit_message: str
    files: list[FileView]
    general: list[Finding]        # on the commit message, or on no file of the diff
    pre_existing: list[Finding]   # about code the patch does not change: set apart
    dismissed: list[Finding]
    error: str = ""


def lore_link(base: str, message_id: str) -> str:
    return "%s/%s/" % (base.rstrip("/"), quote(message_id, safe="@!$&'()*+,;=:~._-"))


def patch_view(index: int, subject: str, msg: Message, findings: Sequence[Finding]) -> PatchView:
    """The patch's diff with its open (and resolved-in-series) findings at
    their lines; pre-existing and dismissed ones apart."""
    inline = [f for f in findings if f.status in (FindingStatus.OPEN,
                                                  FindingStatus.RESOLVED_IN_SERIES)]
    view = PatchView(index=index, subject=subject, message_id=msg.message_id,
                     author=msg.from_addr, commit_message="", files=[], general=[],
                     pre_existing=[f for f in findings
                                   if f.status is FindingStatus.PRE_EXISTING],
                     dismissed=[f for f in findings if f.status is FindingStatus.DISMISSED])
    try:
        body = split_body(parse_mail(msg.raw, message_id=msg.message_id).body)
    except (MailError, ValueError, LookupError) as exc:
        view.error = "the stored message cannot be read: %s" % exc
        view.general = inline
        return view
    view.commit_message = body.message
    placed: set[int] = set()
    for fd in body.files:
        fv = FileView(path=fd.path, hunks=[], binary=fd.binary)
        mine = [f for f in inline if f.file in (fd.new_path, fd.old_path)]
        by_new: dict[int | None, list[Finding]] = {}
        for f in mine:
            by_new.setdefault(f.line, []).append(f)
        for hunk in fd.hunks:
            hv = HunkView(header=hunk.header, lines=[])
            for dl in hunk.lines:
                line = Line(kind=str(dl.kind), text=dl.text, old_no=dl.old_no, new_no=dl.new_no)
                hv.lines.append(line)
                if dl.kind is not LineKind.REMOVED and dl.new_no in by_new:
                    line.findings = [f for f in by_new[dl.new_no] if f.id not in placed]
                    placed.update(f.id for f in line.findings)
            fv.hunks.append(hv)
        for hv in fv.hunks:  # findings on removed lines, by their old number
            for line in hv.lines:
                if line.kind == "-" and line.old_no in by_new:
                    line.findings = [f for f in by_new[line.old_no] if f.id not in placed]
                    placed.update(f.id for f in line.findings)
        fv.unplaced = [f for f in mine if f.id not in placed]
        placed.update(f.id for f in fv.unplaced)
        view.files.append(fv)
    view.general = [f for f in inline if f.id not in placed]
    return view


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def register_filters(app: Flask) -> None:
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["lore"] = lore_link
