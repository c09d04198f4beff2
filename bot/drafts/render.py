"""Reply drafts rendered from a series' findings with jinja2.

One reply per patch with open findings at or above `drafts.min_severity`,
at most `drafts.max_per_series` of them (the patches with the most severe
findings first), and optionally a reply to the cover letter summarising
them. Resolved-in-series and pre-existing findings never reach a draft, and
neither do series from lists or authors the configuration leaves out.
Templates are plain text with StrictUndefined; nothing from a mail chooses
a template or a path.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from bot.config import DraftsConfig
from bot.data import Draft, Finding, Mail, Patch, RevisionStatus, Series, Severity, Status
from bot.drafts.headers import (
    attribution_date,
    author_name,
    bare,
    clean,
    clean_msgid,
    list_address,
    recipients,
    reply_subject,
    sender_date,
)
from bot.drafts.quote import CONTEXT, ELIDED, blocks, quote_line, sentence

logger = logging.getLogger(__name__)

_PREFIXES = re.compile(r"^\s*(\[[^\]]*\]\s*)+")


def _template_dir() -> str:
    try:
        return str(importlib.resources.files("bot.templates"))
    except ModuleNotFoundError:  # running from a source tree without installing
        return str(Path(__file__).resolve().parents[2] / "templates")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_template_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def _lists_of(mail: Mail) -> set[str]:
    """The List-Id and every address a mail was sent to, lower-cased."""
    out = {bare(a) for a in mail.to + mail.cc}
    if mail.list_id:
        out.add(clean(mail.list_id).strip("<>").lower())
        own = list_address(mail.list_id)
        if own:
            out.add(bare(own))
    out.discard("")
    return out


def _matches(values: set[str], patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(v, p.strip().strip("<>").lower())
               for p in patterns for v in values)


def wanted(series: Series, cfg: DraftsConfig) -> bool:
    """Whether the configuration lets the bot draft replies to `series`."""
    author = series.author_email.lower()
    if any(fnmatch.fnmatchcase(author, p.lower()) for p in cfg.never_authors):
        return False
    lists: set[str] = set()
    for mail in series.messages:
        lists |= _lists_of(mail)
    if _matches(lists, cfg.never_lists):
        return False
    return not cfg.only_lists or _matches(lists, cfg.only_lists)


def _limit(by_patch: dict[int, list[Finding]], most: int) -> list[int]:
    """The patches that get a reply: the most severe findings first, then the
    most findings, then the series order; returned in series order."""
    ranked = sorted(by_patch, key=lambda i: (-max(f.severity.rank for f in by_patch[i]),
                                             -len(by_patch[i]), i))
    return sorted(ranked[:most] if most else ranked)


def _attribution(mail: Mail) -> dict[str, str]:
    when = sender_date(mail)
    return {"date": attribution_date(when) if when is not None else "",
            "author": author_name(mail)}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Head:
    """A reply's threading and address headers, and its subject."""

    in_reply_to: str
    references: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str


def _headers(mail: Mail, cfg: DraftsConfig) -> _Head | None:
    # A Message-ID that cannot stand in a header as it is (spaces, angle
    # brackets, an encoded word) still names the draft; the mail built from
    # it leaves it out of In-Reply-To and References (bot.drafts.message).
    irt = clean_msgid(mail.message_id) or clean(mail.message_id).strip("<>").strip()
    if not irt:
        logger.warning("no draft: Message-ID %r cannot be replied to", mail.message_id)
        return None
    refs = [m for m in (clean_msgid(r) for r in mail.references) if m and m != irt]
    to, cc = recipients(mail, cfg)
    subject = environment().get_template("reply-subject.txt.j2").render(
        subject=reply_subject(mail.subject)).strip()
    return _Head(in_reply_to=irt, references=tuple(dict.fromkeys(refs)) + (irt,), to=to,
                 cc=cc, subject=clean(subject))


def _draft(series: Series, patch: int, head: _Head, body: str,
           found: Sequence[Finding]) -> Draft:
    body = body.rstrip("\n") + "\n"
    return Draft(series_message_id=series.message_id, patch=patch, in_reply_to=head.in_reply_to,
                 references=head.references, to=head.to, cc=head.cc, subject=head.subject,
                 body=body, fingerprints=tuple(f.fingerprint for f in found))


def _patch_draft(series: Series, patch: Patch, items: list[Finding], cfg: DraftsConfig,
                 notes: Mapping[str, str]) -> Draft | None:
    head = _headers(patch.mail, cfg)
    if head is None:
        return None
    body = environment().get_template("reply-body.txt.j2").render(
        blocks=blocks(patch, items, notes), signature=cfg.signature.strip(),
        **_attribution(patch.mail))
    return _draft(series, patch.index, head, body, items)


def _cover_quote(cover: Mail) -> str:
    """The cover letter's first paragraph, at most CONTEXT lines."""
    lines: list[str] = []
    for ln in cover.body.splitlines():
        if not ln.strip():
            if lines:
                break
            continue
        lines.append(quote_line(ln))
    more = len(lines) > CONTEXT or len(cover.body.strip().splitlines()) > len(lines)
    return "\n".join(lines[:CONTEXT] + ([ELIDED] if more else []))


def _cover_draft(series: Series, by_patch: dict[int, list[Finding]],
                 cfg: DraftsConfig) -> Draft | None:
    cover = series.cover
    assert cover is not None
    head = _headers(cover, cfg)
    if head is None:
        return None
    patches = {p.index: p for p in series.patches}
    items = []
    registers: list[str] = []
    for index in sorted(by_patch):
        found = sorted(by_patch[index], key=lambda f: -f.severity.rank)
        for f in found:
            if f.register and f.register not in registers:
                registers.append(f.register)
        items.append({"patch": "%d/%d" % (index, series.total),
                      "subject": _PREFIXES.sub("", clean(patches[index].subject)),
                      "text": sentence(found[0].message),
                      "more": len(found) - 1})
    body = environment().get_template("cover-body.txt.j2").render(
        quote=_cover_quote(cover), items=items, signature=cfg.signature.strip(),
        registers=" and ".join(registers) or "HCR_EL2 and MDCR_EL2", **_attribution(cover))
    return _draft(series, 0, head, body, [f for i in sorted(by_patch) for f in by_patch[i]])


def _still_present(findings: Sequence[Finding]) -> dict[str, str]:
    """The note under a finding raised on an earlier revision and still there
    (which findings reach the renderer at all is bot.revisions.drafted's)."""
    return {f.fingerprint: "Still present since v%d." % f.first_seen for f in findings
            if f.revision_status is RevisionStatus.STILL_PRESENT and f.first_seen}


def render(series: Series, findings: Sequence[Finding], cfg: DraftsConfig, *,
           notes: Mapping[str, str] | None = None) -> tuple[Draft, ...]:
    """The reply drafts for `series`.

    `notes` maps a finding's fingerprint to a line printed under its remark;
    a finding still present since an earlier revision gets "Still present
    since vN." unless `notes` says otherwise.
    """
    if not wanted(series, cfg):
        return ()
    notes = {**_still_present(findings), **(notes or {})}
    least = Severity(cfg.min_severity).rank
    patches = {p.index: p for p in series.patches}
    by_patch: dict[int, list[Finding]] = {}
    for f in findings:
        if f.status is Status.OPEN and f.severity.rank >= least and f.patch in patches:
            by_patch.setdefault(f.patch, []).append(f)
    drafts: list[Draft] = []
    if cfg.cover_summary and series.cover is not None and len(by_patch) >= 2:
        cover = _cover_draft(series, by_patch, cfg)
        if cover is not None:
            drafts.append(cover)
    for index in _limit(by_patch, cfg.max_per_series):
        items = sorted(by_patch[index], key=lambda f: (f.file or "", f.line or 0))
        draft = _patch_draft(series, patches[index], items, cfg, notes)
        if draft is not None:
            drafts.append(draft)
    return tuple(drafts)
