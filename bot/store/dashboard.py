"""What the dashboard reads: the inbox (series filtered, searched, counted,
paginated) and the rows behind a series page. Plain functions taking a
`Session`; nothing here changes the database.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from bot.data import Category, Severity
from bot.store.models import (
    Draft,
    DraftState,
    Finding,
    FindingStatus,
    Message,
    Patch,
    PollCursor,
    Quarantine,
    Series,
    Trailer,
)


class InboxState(enum.StrEnum):
    """What the inbox shows: series needing attention (open findings or
    drafts awaiting approval), those with drafts awaiting approval, with
    open findings, with approved drafts, without open findings, or all."""

    ATTENTION = "attention"
    DRAFTS = "drafts"
    FINDINGS = "findings"
    APPROVED = "approved"
    CLEAN = "clean"
    ALL = "all"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxFilter:
    """What the inbox shows: state, list, author, category, severity, search, page."""

    state: InboxState = InboxState.ATTENTION
    list_id: str = ""
    author: str = ""
    category: Category | None = None
    severity: Severity | None = None
    search: str = ""
    page: int = 1
    page_size: int = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxRow:
    """One series in the inbox, with its findings and drafts counted."""

    series: Series
    open_by_severity: dict[str, int] = field(default_factory=dict)
    new_findings: int = 0
    drafts_waiting: int = 0
    drafts_approved: int = 0

    @property
    def open_findings(self) -> int:
        return sum(self.open_by_severity.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxPage:
    """One page of the inbox, and the counts of the whole database."""

    rows: tuple[InboxRow, ...]
    total: int              # series matching the filter
    page: int
    pages: int
    counts: dict[str, int]  # the whole database: series, attention, drafts, findings


def _open_findings() -> Select[int]:
    return select(Finding.series_id).where(Finding.status == FindingStatus.OPEN)


def _live_drafts(*states: DraftState) -> Select[int]:
    return select(Draft.series_id).where(Draft.state.in_(states),
                                         Draft.superseded_by_id.is_(None))


def _messages_of(series: type[Series]) -> Select[int]:
    return select(Patch.message_id).where(Patch.series_id == series.id)


def _filtered(f: InboxFilter) -> Select[Series]:
    query = select(Series)
    waiting = _live_drafts(DraftState.DRAFT, DraftState.FAILED)
    if f.state is InboxState.ATTENTION:
        query = query.where(or_(Series.id.in_(_open_findings()), Series.id.in_(waiting)))
    elif f.state is InboxState.DRAFTS:
        query = query.where(Series.id.in_(waiting))
    elif f.state is InboxState.FINDINGS:
        query = query.where(Series.id.in_(_open_findings()))
    elif f.state is InboxState.APPROVED:
        query = query.where(Series.id.in_(_live_drafts(DraftState.APPROVED)))
    elif f.state is InboxState.CLEAN:
        query = query.where(Series.id.not_in(_open_findings()))
    if f.category is not None or f.severity is not None:
        found = _open_findings()
        if f.category is not None:
            found = found.where(Finding.category == f.category)
        if f.severity is not None:
            found = found.where(Finding.severity == f.severity)
        query = query.where(Series.id.in_(found))
    if f.author:
        query = query.where(Series.author.ilike("%" + _like(f.author) + "%", escape="\\"))
    if f.list_id:
        pattern = "%" + _like(f.list_id) + "%"
        query = query.where(or_(
            exists().where(Message.id == Series.cover_id,
                           Message.list_id.ilike(pattern, escape="\\")),
            exists().where(Message.id.in_(_messages_of(Series)),
                           Message.list_id.ilike(pattern, escape="\\"))))
    if f.search:
        text = f.search.strip()
        msgid = text.strip("<>")
        query = query.where(or_(
            Series.subject.ilike("%" + _like(text) + "%", escape="\\"),
            Series.message_id == msgid,
            exists().where(Message.id.in_(_messages_of(Series)), Message.message_id == msgid)))
    return query


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def inbox(session: Session, f: InboxFilter) -> InboxPage:
    query = _filtered(f)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    pages = max(1, -(-total // f.page_size))
    page = min(max(1, f.page), pages)
    series = list(session.scalars(
        query.order_by(Series.date.desc().nulls_last(), Series.id.desc())
        .offset((page - 1) * f.page_size).limit(f.page_size)))
    return InboxPage(rows=tuple(_rows(session, series)), total=total, page=page, pages=pages,
                     counts=counts(session))


def _rows(session: Session, series: Sequence[Series]) -> list[InboxRow]:
    ids = [s.id for s in series]
    if not ids:
        return []
    by_sev: dict[int, dict[str, int]] = {}
    for sid, sev, n in session.execute(
            select(Finding.series_id, Finding.severity, func.count())
            .where(Finding.series_id.in_(ids), Finding.status == FindingStatus.OPEN)
            .group_by(Finding.series_id, Finding.severity)):
        by_sev.setdefault(sid, {})[str(sev)] = int(n)
    new = dict(session.execute(
        select(Finding.series_id, func.count())
        .where(Finding.series_id.in_(ids), Finding.status == FindingStatus.OPEN,
               or_(Finding.revision_status.is_(None), Finding.revision_status == "new"))
        .group_by(Finding.series_id)).all())
    drafts: dict[tuple[int, DraftState], int] = {}
    for sid, state, n in session.execute(
            select(Draft.series_id, Draft.state, func.count())
            .where(Draft.series_id.in_(ids), Draft.superseded_by_id.is_(None))
            .group_by(Draft.series_id, Draft.state)):
        drafts[(sid, state)] = int(n)
    return [InboxRow(series=s, open_by_severity=by_sev.get(s.id, {}),
                     new_findings=int(new.get(s.id, 0)),
                     drafts_waiting=drafts.get((s.id, DraftState.DRAFT), 0)
                     + drafts.get((s.id, DraftState.FAILED), 0),
                     drafts_approved=drafts.get((s.id, DraftState.APPROVED), 0))
            for s in series]


def counts(session: Session) -> dict[str, int]:
    def n(query: Select[Series]) -> int:
        return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)

    return {state: n(_filtered(InboxFilter(state=InboxState(state))))
            for state in ("all", "attention", "drafts", "findings", "approved")}


def list_ids(session: Session) -> list[str]:
    """The mailing lists stored mail came from, for the inbox's filter."""
    return sorted(x for x in session.scalars(select(Message.list_id).distinct()) if x)


def series_by_message_id(session: Session, message_id: str) -> Series | None:
    return session.scalars(select(Series).where(Series.message_id == message_id)).first()


def revisions(session: Session, series: Series) -> list[Series]:
    """Every stored revision of the series, v1 first."""
    return list(session.scalars(select(Series).where(Series.lineage == series.lineage)
                                .order_by(Series.revision, Series.id)))


def findings_of(session: Session, series_ids: Sequence[int]) -> list[Finding]:
    if not series_ids:
        return []
    return list(session.scalars(select(Finding).where(Finding.series_id.in_(series_ids))
                                .order_by(Finding.patch_index, Finding.file, Finding.line,
                                          Finding.id)))


def resolved_in(session: Session, series_ids: Sequence[int]) -> list[Finding]:
    """Findings of earlier revisions that these revisions no longer have."""
    if not series_ids:
        return []
    return list(session.scalars(select(Finding).where(Finding.resolved_in_id.in_(series_ids))
                                .order_by(Finding.id)))


def patches_of(session: Session, series: Series) -> list[tuple[Patch, Message]]:
    rows = session.execute(select(Patch, Message).join(Message, Message.id == Patch.message_id)
                           .where(Patch.series_id == series.id).order_by(Patch.index))
    return [(patch, msg) for patch, msg in rows]


def trailers_of(session: Session, patch_ids: Sequence[int]) -> dict[int, list[Trailer]]:
    out: dict[int, list[Trailer]] = {}
    if patch_ids:
        for t in session.scalars(select(Trailer).where(Trailer.patch_id.in_(patch_ids))
                                 .order_by(Trailer.id)):
            out.setdefault(t.patch_id, []).append(t)
    return out


def message(session: Session, pk: int | None) -> Message | None:
    return session.get(Message, pk) if pk is not None else None


def cursors(session: Session) -> list[PollCursor]:
    return list(session.scalars(select(PollCursor).order_by(PollCursor.name)))


def quarantined(session: Session, limit: int = 50) -> list[Quarantine]:
    return list(session.scalars(select(Quarantine).order_by(Quarantine.id.desc())
                                .limit(limit)))


def quarantine_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Quarantine)) or 0)


def quarantine_item(session: Session, item_id: int) -> Quarantine | None:
    return session.get(Quarantine, item_id)


def finding(session: Session, finding_id: int) -> Finding | None:
    return session.get(Finding, finding_id)
