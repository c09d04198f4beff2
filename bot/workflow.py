"""The draft workflow: the one service layer behind `bot drafts` and the
dashboard.

Every operation takes a `Session` and the `Actor` doing it, checks that the
draft is in a state that allows it, changes it and records who did what and
when (an edit keeps the body before and after). States:

    draft -> approved -> sending -> sent | failed;  draft, approved, failed -> discarded

An edit sends an approved or failed draft back to draft, so what is sent is
always what was approved: approval fixes the From (the approver), the
recipients, the reply's Message-ID and a digest of all of it, and the
outbox (`bot.outbox`) refuses a draft whose content no longer matches its
digest. A draft about an older revision of a series is superseded: it can be
discarded or exported, never approved or sent. Sending itself is the
outbox's; exporting hands an approved draft to the maintainer's own mail
tool, after which the outbox leaves it alone.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bot.drafts import headers
from bot.drafts.message import Outgoing, build, new_message_id
from bot.errors import BadInput, NotFound
from bot.store import drafts as q
from bot.store.models import Draft, DraftAction, DraftState, Series, utcnow

logger = logging.getLogger(__name__)

EDITABLE = (DraftState.DRAFT, DraftState.APPROVED, DraftState.FAILED)
APPROVABLE = (DraftState.DRAFT, DraftState.FAILED)
DISCARDABLE = (DraftState.DRAFT, DraftState.APPROVED, DraftState.FAILED)
EXPORTABLE = (DraftState.APPROVED, DraftState.SENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """A maintainer acting on drafts; their address becomes the From of
    what they approve."""

    name: str
    email: str

    @property
    def address(self) -> str:
        good = headers.address(self.name, self.email)
        if good is None:
            raise BadInput("%r is not a usable mail address for the approver" % self.email)
        return good

    @classmethod
    def parse(cls, value: str) -> Actor:
        """`Name <user@example.org>` or a bare address."""
        name, spec = email.utils.parseaddr(headers.clean(value))
        if headers.address(name, spec) is None:
            raise BadInput("--as %r: expected \"Name <user@example.org>\"" % value)
        return cls(name=name, email=spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One step in a draft's history: who did what, and what changed."""

    at: dt.datetime
    actor: str
    action: DraftAction
    state_before: DraftState | None
    state_after: DraftState | None
    body_before: str | None
    body_after: str | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftView:
    """A draft as the command line and the dashboard show it."""

    id: int
    state: DraftState
    series_message_id: str
    series_subject: str
    revision: int
    patch_index: int
    subject: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    in_reply_to: str
    references: tuple[str, ...]
    body: str
    fingerprints: tuple[str, ...]
    approved_by: str | None
    approved_at: dt.datetime | None
    from_addr: str | None
    reply_message_id: str | None
    superseded_by: str | None
    exported_at: dt.datetime | None
    attempts: int
    smtp_reply: str | None
    last_error: str | None
    sent_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    events: tuple[Event, ...] = ()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every one the bot stores is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _view(session: Session, d: Draft, with_events: bool = False) -> DraftView:
    series = d.series
    newer = session.get(Series, d.superseded_by_id) if d.superseded_by_id else None
    events: tuple[Event, ...] = ()
    if with_events:
        events = tuple(Event(at=_utc(e.at) or e.at, actor=e.actor, action=e.action,
                             state_before=e.state_before, state_after=e.state_after,
                             body_before=e.body_before, body_after=e.body_after,
                             detail=e.detail) for e in d.events)
    return DraftView(
        id=d.id, state=d.state, series_message_id=series.message_id,
        series_subject=series.subject, revision=series.revision, patch_index=d.patch_index,
        subject=d.subject, to=tuple(d.to_addrs), cc=tuple(d.cc_addrs),
        in_reply_to=d.in_reply_to, references=tuple(d.references), body=d.body,
        fingerprints=tuple(d.fingerprints or ()), approved_by=d.approved_by,
        approved_at=_utc(d.approved_at), from_addr=d.from_addr,
        reply_message_id=d.reply_message_id,
        superseded_by=newer.message_id if newer is not None else None,
        exported_at=_utc(d.exported_at), attempts=d.attempts, smtp_reply=d.smtp_reply,
        last_error=d.last_error, sent_at=_utc(d.sent_at),
        created_at=_utc(d.created_at) or d.created_at,
        updated_at=_utc(d.updated_at) or d.updated_at, version=d.version, events=events)


def _load(session: Session, draft_id: int, version: int | None = None) -> Draft:
    d = q.get(session, draft_id)
    if d is None:
        raise NotFound("draft %d: no such draft" % draft_id)
    if version is not None and d.version != version:
        raise BadInput("draft %d changed since it was read (version %d, now %d): "
                       "look at it again" % (draft_id, version, d.version))
    return d


def _flush(session: Session, d: Draft) -> None:
    """Write the change; a draft changed meanwhile by someone else (another
    maintainer, the outbox) is refused rather than overwritten."""
    try:
        session.flush()
    except StaleDataError:
        raise BadInput("draft %d was changed by someone else meanwhile: look at it again"
                       % d.id) from None


def _require(d: Draft, allowed: Sequence[DraftState], doing: str) -> None:
    if d.state not in allowed:
        raise BadInput("draft %d is %s: it cannot be %s" % (d.id, d.state, doing))


def outgoing(d: Draft) -> Outgoing:
    """What the draft sends once approved."""
    if not d.from_addr or not d.reply_message_id:
        raise BadInput("draft %d was never approved" % d.id)
    return Outgoing(sender=d.from_addr, to=tuple(d.to_addrs), cc=tuple(d.cc_addrs),
                    subject=d.subject, in_reply_to=d.in_reply_to,
                    references=tuple(d.references), message_id=d.reply_message_id,
                    body=d.body)


def matches_approval(d: Draft) -> bool:
    """Whether the draft is exactly what was approved."""
    return bool(d.approved_digest) and d.from_addr is not None and \
        d.reply_message_id is not None and outgoing(d).digest() == d.approved_digest


# -- reading -----------------------------------------------------------------


def list_drafts(session: Session, *, states: Sequence[DraftState] = (),
                series: str | None = None, include_superseded: bool = False,
                limit: int = 200) -> list[DraftView]:
    """Drafts, newest first; superseded ones only when asked for."""
    return [_view(session, d) for d in q.listing(session, states=states,
                                                 series_message_id=series,
                                                 include_superseded=include_superseded,
                                                 limit=limit)]


def show(session: Session, draft_id: int) -> DraftView:
    """One draft with its whole history."""
    return _view(session, _load(session, draft_id), with_events=True)


# -- changing ----------------------------------------------------------------


def _normalise_body(body: str) -> str:
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    return body.rstrip("\n") + "\n"


def _recipients(values: Sequence[str], what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        got = headers.addresses([value])
        if not got:
            raise BadInput("%s: %r is not a mail address" % (what, value))
        out += [a for a in got if a not in out]
    return out


def edit(session: Session, actor: Actor, draft_id: int, *, body: str | None = None,
         subject: str | None = None, to: Sequence[str] | None = None,
         cc: Sequence[str] | None = None, version: int | None = None) -> DraftView:
    """Change a draft's text or recipients. An approved or failed draft goes
    back to draft: it has to be approved again."""
    d = _load(session, draft_id, version)
    _require(d, EDITABLE, "edited")
    changes: list[str] = []
    before_body = d.body
    if body is not None and _normalise_body(body) != d.body:
        if not body.strip():
            raise BadInput("draft %d: an empty body is not a reply (discard it instead)"
                           % draft_id)
        d.body = _normalise_body(body)
        changes.append("body")
    if subject is not None and headers.clean(subject) != d.subject:
        if not headers.clean(subject):
            raise BadInput("draft %d: the subject cannot be empty" % draft_id)
        d.subject = headers.clean(subject)
        changes.append("subject")
    if to is not None and _recipients(to, "To") != list(d.to_addrs):
        d.to_addrs = _recipients(to, "To")
        changes.append("To")
    if cc is not None and _recipients(cc, "Cc") != list(d.cc_addrs):
        d.cc_addrs = _recipients(cc, "Cc")
        changes.append("Cc")
    if not changes:
        return _view(session, d, with_events=True)
    before = d.state
    d.state = DraftState.DRAFT
    d.approved_by = d.approved_at = d.approved_digest = d.from_addr = None
    # A changed message must not reuse a Message-ID an earlier attempt may
    # have delivered (archives keep the first message of an ID).
    d.reply_message_id = None
    d.updated_at = utcnow()
    q.record(session, d, actor=actor.address, action=DraftAction.EDITED, before=before,
             after=d.state, body_before=before_body if "body" in changes else None,
             body_after=d.body if "body" in changes else None,
             detail="changed: %s%s" % (", ".join(changes),
                                       "; approval withdrawn" if before is not
                                       DraftState.DRAFT else ""))
    _flush(session, d)
    return _view(session, d, with_events=True)


def approve(session: Session, actor: Actor, draft_id: int, *,
            version: int | None = None) -> DraftView:
    """Approve a draft for sending as `actor`: fixes From, recipients, the
    reply's Message-ID and a digest of the whole message."""
    d = _load(session, draft_id, version)
    _require(d, APPROVABLE, "approved")
    if d.superseded_by_id is not None:
        newer = session.get(Series, d.superseded_by_id)
        raise BadInput("draft %d is about an older revision (superseded by %s): "
                       "discard it" % (d.id, newer.message_id if newer else "a newer one"))
    sender = actor.address
    own = headers.bare(sender)
    d.cc_addrs = [a for a in d.cc_addrs if headers.bare(a) != own]
    if not d.to_addrs and not d.cc_addrs:
        raise BadInput("draft %d has no recipients: edit its To or Cc first" % d.id)
    now = utcnow()
    before = d.state
    retry = before is DraftState.FAILED
    d.from_addr = d.approved_by = sender
    d.approved_at = now
    if not d.reply_message_id:
        d.reply_message_id = new_message_id(sender, now, uuid.uuid4().hex[:16])
    d.approved_digest = outgoing(d).digest()
    d.state = DraftState.APPROVED
    d.updated_at = now
    q.record(session, d, actor=sender, action=DraftAction.APPROVED, before=before,
             after=d.state, detail="Message-ID <%s>%s" % (
                 d.reply_message_id, "; approved again after: %s" % d.last_error
                 if retry and d.last_error else ""), at=now)
    _flush(session, d)
    return _view(session, d, with_events=True)


def discard(session: Session, actor: Actor, draft_id: int, *, reason: str = "",
            version: int | None = None) -> DraftView:
    d = _load(session, draft_id, version)
    _require(d, DISCARDABLE, "discarded")
    before = d.state
    d.state = DraftState.DISCARDED
    d.updated_at = utcnow()
    q.record(session, d, actor=actor.address, action=DraftAction.DISCARDED, before=before,
             after=d.state, detail=headers.clean(reason))
    _flush(session, d)
    return _view(session, d, with_events=True)


def export(session: Session, actor: Actor, draft_ids: Sequence[int],
           now: dt.datetime | None = None) -> list[tuple[DraftView, EmailMessage]]:
    """The messages of approved (or sent) drafts, for `git send-email` or a
    mail client. An approved draft is marked exported: the bot's outbox
    will not also send it. Nothing is marked unless every draft qualifies."""
    now = now or utcnow()
    loaded = [_load(session, i) for i in dict.fromkeys(draft_ids)]
    for d in loaded:
        _require(d, EXPORTABLE, "exported (approve it first)")
        if not matches_approval(d):
            raise BadInput("draft %d changed after it was approved: approve it again" % d.id)
    out: list[tuple[DraftView, EmailMessage]] = []
    for d in loaded:
        msg = build(outgoing(d), _utc(d.sent_at) or now)
        if d.state is DraftState.APPROVED and d.exported_at is None:
            d.exported_at = d.updated_at = now
            q.record(session, d, actor=actor.address, action=DraftAction.EXPORTED,
                     before=d.state, after=d.state,
                     detail="Message-ID <%s>; the bot will not send it" % d.reply_message_id,
                     at=now)
        out.append((_view(session, d), msg))
    session.flush()
    return out
