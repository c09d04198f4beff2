"""Storing one checked series: its row, patches, trailers, findings, drafts.

Idempotent: a series by the Message-ID of its cover letter (or first
patch), patches by (series, index), trailers by (patch, reply, name,
value), findings by (series, key), drafts by (series, message replied to).

A series is linked to the revision stored before it in its lineage
(`previous_id`); one stored after a later revision (its thread ended
later, or came later) is linked in before it: the later one's stored
findings are compared with it then, as if it had been checked after it,
and receives the trailers b4 carries from it (bot.store.trailers).

A series compared with its earlier revision (`SeriesResult.comparison`)
stores each finding's status against it and a link to the finding it
continues (a dismissal carries over), and marks the earlier revision's
findings it no longer has as resolved in it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.data import (
    EarlierFinding,
    EarlierSource,
    RevisionComparison,
    RuleResult,
    SeriesResult,
    Status,
)
from bot.data import Finding as FindingData
from bot.data import Series as SeriesData
from bot.revisions import as_earlier, compare
from bot.store import drafts as draft_store
from bot.store.models import Draft, Finding, FindingStatus, Patch, Series, Trailer, utcnow
from bot.store.rows import (
    StoreStats,
    column_text,
    insert_ignore,
    insert_ignore_ids,
    insert_ignore_returning,
    int_ok,
)
from bot.store.trailers import Carry, carried_rows

logger = logging.getLogger(__name__)


def previous_revision(session: Session, data: SeriesData) -> Series | None:
    return session.scalars(
        select(Series).where(Series.lineage == data.lineage, Series.revision < data.revision,
                             Series.message_id != data.message_id)
        .order_by(Series.revision.desc(), Series.id.desc()).limit(1)).first()


def _previous(lineage: list[Series], data: SeriesData) -> Series | None:
    """`previous_revision` among the stored revisions of a lineage."""
    before = [s for s in lineage if s.lineage == data.lineage and s.revision < data.revision
              and s.message_id != data.message_id]
    return max(before, key=lambda s: (s.revision, s.id), default=None)


def _lineage(session: Session, lineage: str) -> list[Series]:
    return list(session.scalars(select(Series).where(Series.lineage == lineage)
                                .order_by(Series.id)))


def _status(f: FindingData) -> FindingStatus:
    return FindingStatus(str(f.status))


def save_series(session: Session, res: SeriesResult, ids: dict[str, int],
                carry: Carry | None = None) -> StoreStats:
    stats = StoreStats()
    data = res.series
    if not int_ok(data.revision, data.total, *(n for p in data.patches
                                               for n in (p.index, p.total))):
        logger.warning("series %s: revision or patch numbers out of range (v%d, %d patches); "
                       "not stored", data.message_id, data.revision, data.total)
        return stats
    # The series and every stored revision of its lineage, in one query:
    # what its previous revision, the later ones and the drafts it
    # supersedes are read from.
    known = list(session.scalars(select(Series).where(or_(
        Series.message_id == data.message_id, Series.lineage == data.lineage))
        .order_by(Series.id)))
    row = next((s for s in known if s.message_id == data.message_id), None)
    created = row is None
    relinked: list[Series] = []
    if row is None:
        prev = _previous(known, data)
        row = Series(message_id=data.message_id, lineage=data.lineage,
                     change_id=column_text(data.change_id, 255), subject=column_text(data.subject),
                     author=column_text(data.author, 512),
                     revision=data.revision, total=data.total, missing=list(data.missing),
                     thread_id=column_text(data.thread_id, 998),
                     previous_id=prev.id if prev else None,
                     cover_id=ids.get(data.cover.message_id) if data.cover else None,
                     date=(data.cover or data.patches[0].mail).date, **_base_columns(res))
        session.add(row)
        session.flush()
        stats.series += 1
        # Revisions stored before this one but numbered after it: link the
        # nearest to it.
        for later in (s for s in known if s.revision > row.revision):
            prev = session.get(Series, later.previous_id) if later.previous_id else None
            if prev is None or prev.revision < row.revision:
                later.previous_id = row.id
                relinked.append(later)
        lineage = known
    else:
        if list(row.missing) != list(data.missing) or row.total != data.total:
            row.missing, row.total, row.updated_at = list(data.missing), data.total, utcnow()
        base = _base_columns(res)
        if base and any(getattr(row, k) != v for k, v in base.items()):
            # The latest check's base: a repository configured since may know it.
            for key, value in base.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        lineage = known if row.lineage == data.lineage else _lineage(session, row.lineage)
    # A series stored just now has nothing stored under it yet.
    have = {} if created else dict(session.execute(
        select(Patch.index, Patch.id).where(Patch.series_id == row.id)).all())
    new_patches = [{"series_id": row.id, "message_id": ids[p.message_id], "index": p.index,
                    "total": p.total, "subject": column_text(p.subject),
                    "files": [column_text(f) for f in p.paths]}
                   for p in data.patches if p.index not in have]
    if new_patches:
        added = insert_ignore_returning(session, Patch.__table__, new_patches,
                                        ["series_id", "index"], "index", "id")
        stats.patches += len(added)
        if len(added) == len(new_patches):
            have.update({r[0]: r[1] for r in added})
        else:  # some were there already (another poller, or one index twice)
            have = dict(session.execute(select(Patch.index, Patch.id)
                                        .where(Patch.series_id == row.id)).all())
    trailers = [{"patch_id": have[p.index], "message_id": t.message_id, "name": t.name,
                 "value": t.value, "author": t.author, "revision": t.revision}
                for p in data.patches for t in p.trailers]
    given = _save_trailers(session, [t for t in trailers if t["revision"] is None])
    stats.trailers += given + _save_trailers(
        session, [t for t in trailers if t["revision"] is not None])
    stats.findings += _save_findings(session, row, res.rules.findings + res.rules.pre_existing,
                                     res.comparison, created=created)
    kept = [d for d in res.drafts if _kept(d.patch, None, "draft", data.message_id)]
    new_drafts = insert_ignore_ids(session, Draft.__table__, [
        {"series_id": row.id, "patch_index": d.patch,
         "in_reply_to": column_text(d.in_reply_to, 998),
         "references": list(d.references), "to_addrs": [column_text(a) for a in d.to],
         "cc_addrs": [column_text(a) for a in d.cc], "subject": column_text(d.subject),
         "body": column_text(d.body), "state": "draft", "fingerprints": list(d.fingerprints),
         "created_at": utcnow(), "updated_at": utcnow(), "attempts": 0, "version": 1}
        for d in kept], ["series_id", "in_reply_to"])
    stats.drafts += len(new_drafts)
    draft_store.created(session, new_drafts)
    draft_store.supersede(session, row, lineage)
    for later in relinked:
        _compare_later(session, later, row, res)
    # Only a revision relinked above can follow one stored just now.
    if carry is not None and (relinked or (given and not created)):
        # Trailers the revisions stored after this one would have carried
        # over had this one been stored first (bot.store.trailers).
        stats.trailers += _save_trailers(session, carried_rows(session, row, carry))
    return stats


def _save_trailers(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the trailer rows not stored yet; the number inserted."""
    return insert_ignore(session, Trailer.__table__, [
        dict(r, message_id=column_text(r["message_id"], 998), name=column_text(r["name"], 64),
             value=column_text(r["value"], 998), author=column_text(r["author"], 512))
        for r in rows],
        ["patch_id", "message_id", "name", "value"])


def _kept(patch: int, line: int | None, what: str, series: str) -> bool:
    if int_ok(patch, line):
        return True
    logger.warning("series %s: %s on patch %d, line %s: number out of range; dropped",
                   series, what, patch, line)
    return False


def finding_data(row: Finding) -> EarlierFinding:
    """A stored finding as a revision after its own is compared with it."""
    dismissed = row.status is FindingStatus.DISMISSED
    data = FindingData(
        rule=row.rule, category=row.category, severity=row.severity, patch=row.patch_index,
        file=row.file, line=row.line, register=row.register, fields=tuple(row.fields),
        message=row.message, evidence=tuple(row.evidence.split("\n")) if row.evidence else (),
        status=Status.OPEN if dismissed else Status(str(row.status)), function=row.function,
        revision_status=row.revision_status, first_seen=row.first_seen)
    return EarlierFinding(finding=data, first_seen=row.first_seen or row.series.revision,
                          dismissed=dismissed, ref=row.id)


def _compare_later(session: Session, later: Series, row: Series, res: SeriesResult) -> None:
    """A later revision stored before this one (its thread came first, as
    when v1 gets its last reply after v2 is posted): its stored findings
    against this one, as if it had been checked after it. Its drafts stay
    as they were rendered."""
    stored = list(session.scalars(select(Finding).where(Finding.series_id == later.id)
                                  .order_by(Finding.id)))
    current = [finding_data(f) for f in stored]
    pre = tuple(e.finding for e in current if e.finding.status is Status.PRE_EXISTING)
    found = tuple(e.finding for e in current if e.finding.status is not Status.PRE_EXISTING)
    earlier = as_earlier(res, EarlierSource.DATABASE)
    marked, comparison = compare(RuleResult(findings=found, pre_existing=pre, errors=()),
                                 earlier, later.revision)
    by_key = {f.key: f for f in session.scalars(select(Finding)
                                                 .where(Finding.series_id == row.id))}
    rows_by_key = {e.finding.key: r for e, r in zip(current, stored, strict=True)}
    for f in marked.findings + marked.pre_existing:
        target = rows_by_key[f.key]
        prior = comparison.continued.get(f.key)
        target.revision_status, target.first_seen = f.revision_status, f.first_seen
        target.continues = by_key.get(prior.finding.key) if prior is not None else None
        if prior is not None and prior.dismissed:
            target.status = FindingStatus.DISMISSED
    _record_resolved(session, later, comparison, by_key)


def _earlier_rows(session: Session, comparison: RevisionComparison) -> dict[str, Finding]:
    """The stored findings of the revision compared with, by key (none when
    it is not stored, e.g. given with --compare-to from a file)."""
    earlier = session.scalars(select(Series).where(
        Series.message_id == comparison.earlier.message_id)).first()
    if earlier is None:
        return {}
    return {f.key: f for f in session.scalars(select(Finding)
                                               .where(Finding.series_id == earlier.id))}


def _base_columns(res: SeriesResult) -> dict[str, Any]:
    base = res.base
    if base is None:
        return {}
    return {"base_source": str(base.source), "base_commit": column_text(base.commit, 64),
            "base_version": column_text(base.version, 32), "base_detail": column_text(base.detail)}


def _save_findings(session: Session, row: Series, found: tuple[FindingData, ...],
                   comparison: RevisionComparison | None, *, created: bool = False) -> int:
    existing = {} if created else {f.key: f for f in session.scalars(
        select(Finding).where(Finding.series_id == row.id))}
    earlier = _earlier_rows(session, comparison) if comparison is not None else {}
    added = 0
    for f in found:
        if not _kept(f.patch, f.line, "finding %s" % f.rule, row.message_id):
            continue
        prior = comparison.continued.get(f.key) if comparison is not None else None
        continues = None
        if prior is not None:
            continues = (session.get(Finding, prior.ref) if prior.ref is not None
                         else earlier.get(prior.finding.key))
        status = _status(f)
        if prior is not None and prior.dismissed:
            status = FindingStatus.DISMISSED  # the maintainer said so on an earlier revision
        old = existing.get(f.key)
        if old is None:
            old = Finding(series_id=row.id, patch_index=f.patch, rule=f.rule,
                          category=f.category, severity=f.severity,
                          file=column_text(f.file, 1024), line=f.line, register=f.register,
                          fields=list(f.fields), message=column_text(f.message),
                          evidence=column_text("\n".join(f.evidence)),
                          key=f.key, status=status)
            session.add(old)
            existing[f.key] = old  # the same finding twice (one line in two places): once
            added += 1
        elif old.status is not FindingStatus.DISMISSED and old.status != status:
            # A later patch of the series may have arrived and resolved it;
            # a maintainer's dismissal stands.
            old.status = status
        old.fingerprint, old.function = f.fingerprint, column_text(f.function, 255)
        if comparison is not None or old.revision_status is None:
            old.revision_status, old.first_seen = f.revision_status, f.first_seen
            old.continues = continues
    if comparison is not None:
        _record_resolved(session, row, comparison, earlier, created=created)
    return added


def _record_resolved(session: Session, row: Series, comparison: RevisionComparison,
                     earlier: dict[str, Finding], *, created: bool = False) -> None:
    """Mark the earlier revision's findings this one no longer has as
    resolved in it (and no longer those it has again)."""
    if not created:  # a series stored just now resolves nothing yet
        for f in session.scalars(select(Finding).where(Finding.resolved_in_id == row.id)):
            f.resolved_in_id = None
    for gone in comparison.resolved:
        old = (session.get(Finding, gone.ref) if gone.ref is not None
               else earlier.get(gone.finding.key))
        if old is not None:
            old.resolved_in_id = row.id
