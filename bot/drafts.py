"""Reply drafts in the kernel's inline style, rendered with jinja2.

One draft per patch that has open findings at or above `question`: the
reply quotes the lines each finding is about (file header, hunk header and a
few lines of context) and puts the finding's sentence under them, as a
maintainer would. Resolved-in-series and pre-existing findings never reach a
draft. A finding raised on an earlier revision of the series and still
present says so in one line ("Still present since v3."); which findings
reach the renderer at all (not one dismissed before) is decided upstream
(bot.revisions.drafted). Templates are plain text with StrictUndefined; nothing from a mail
chooses a template or a path.
"""

from __future__ import annotations

import email.utils
import importlib.resources
from functools import lru_cache
from pathlib import Path

import jinja2

from bot.config import DraftsConfig
from bot.data import Draft, Finding, LineKind, Patch, RevisionStatus, Series, Severity, Status

_CONTEXT_LINES = 5
_DRAFT_MIN = Severity.QUESTION


def _template_dir() -> str:
    try:
        return str(importlib.resources.files("bot.templates"))
    except ModuleNotFoundError:  # running from a source tree without installing
        return str(Path(__file__).resolve().parent.parent / "templates")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_template_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def _quote(lines: list[str]) -> str:
    return "\n".join(("> " + ln) if ln else ">" for ln in lines)


def _quote_for(patch: Patch, finding: Finding) -> str:
    fd, hunk = finding.diff, finding.hunk
    if fd is not None and hunk is not None and finding.line is not None:
        upto = [i for i, ln in enumerate(hunk.lines) if ln.new_no == finding.line]
        end = upto[0] if upto else len(hunk.lines) - 1
        start = max(0, end - _CONTEXT_LINES)
        lines = ["diff --git a/%s b/%s" % (fd.old_path or fd.path, fd.new_path or fd.path),
                 "@@ -%d,%d +%d,%d @@ %s" % (hunk.old_start, hunk.old_len, hunk.new_start,
                                            hunk.new_len, hunk.section)]
        if start > 0:
            lines.append("[...]")
        lines += [str(ln.kind) + ln.text if ln.kind is not LineKind.CONTEXT
                  else " " + ln.text for ln in hunk.lines[start:end + 1]]
        return _quote([ln.rstrip() for ln in lines])
    if finding.evidence:
        return _quote([e.rstrip() for e in finding.evidence])
    return _quote([patch.subject])


def _comment(finding: Finding) -> str:
    """The finding's sentence, and whether it was raised before."""
    if finding.revision_status is RevisionStatus.STILL_PRESENT and finding.first_seen:
        return "%s\n\nStill present since v%d." % (finding.message, finding.first_seen)
    return finding.message


def _date(patch: Patch) -> str:
    if patch.mail.date is None:
        return "an unknown date"
    return email.utils.format_datetime(patch.mail.date)


def _reply_headers(patch: Patch, cfg: DraftsConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    to = (patch.mail.author,) if patch.mail.from_email else ()
    own = {cfg.reviewer_email.lower()} if cfg.reviewer_email else set()
    author = patch.mail.from_email.lower()
    cc: list[str] = []
    for addr in patch.mail.to + patch.mail.cc:
        bare = email.utils.parseaddr(addr)[1].lower()
        if bare and bare != author and bare not in own and addr not in cc:
            cc.append(addr)
    return to, tuple(cc)


def render(series: Series, findings: tuple[Finding, ...], cfg: DraftsConfig) -> tuple[Draft, ...]:
    """One draft per patch with open findings worth a reply."""
    env = environment()
    by_patch: dict[int, list[Finding]] = {}
    for f in findings:
        if f.status is Status.OPEN and f.severity.rank >= _DRAFT_MIN.rank:
            by_patch.setdefault(f.patch, []).append(f)
    drafts: list[Draft] = []
    patches = {p.index: p for p in series.patches}
    for index in sorted(by_patch):
        patch = patches.get(index)
        if patch is None:
            continue
        items = sorted(by_patch[index], key=lambda f: (f.file or "", f.line or 0))
        blocks = [{"quote": _quote_for(patch, f), "comment": _comment(f)} for f in items]
        body = env.get_template("reply-body.txt.j2").render(
            date=_date(patch), author=patch.mail.author or patch.mail.from_email,
            blocks=blocks, rules=sorted({f.rule for f in items}),
            signature=cfg.signature)
        subject = env.get_template("reply-subject.txt.j2").render(
            subject=patch.mail.subject or patch.subject).strip()
        to, cc = _reply_headers(patch, cfg)
        drafts.append(Draft(series_message_id=series.message_id, patch=index,
                            in_reply_to=patch.message_id,
                            references=patch.mail.references + (patch.message_id,),
                            to=to, cc=cc, subject=subject, body=body))
    return tuple(drafts)
