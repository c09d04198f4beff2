"""Storing and reading pipeline results: plain functions taking a `Session`.

Storing is idempotent: messages by Message-ID, series by the Message-ID of
their cover letter (or first patch), patches by (series, index), trailers
by (patch, reply, name, value), findings by (series, key), drafts by
(series, message replied to), quarantined mail by the digest of its bytes.
Storing the same input twice adds nothing; nor does storing it again after
an earlier revision arrived late, as a rerun does (the trailers b4 carries
from it are carried when it arrives: bot.store.trailers).

A series compared with its earlier revision (`SeriesResult.comparison`)
stores each finding's status against it and a link to the finding it
continues (a dismissal carries over), and marks the earlier revision's
findings it no longer has as resolved in it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.data import (
    EarlierFinding,
    EarlierSource,
    Mail,
    MessageError,
    RevisionComparison,
    RuleResult,
    SeriesResult,
    Status,
    ThreadResult,
)
from bot.data import Finding as FindingData
from bot.data import Series as SeriesData
from bot.revisions import as_earlier, compare
from bot.store import drafts as draft_store
from bot.store.models import (
    Draft,
    Finding,
    FindingStatus,
    Message,
    Patch,
    PollCursor,
    PollSeen,
    Quarantine,
    Series,
    Trailer,
    utcnow,
)
from bot.store.trailers import Carry, carried_rows

logger = logging.getLogger(__name__)

# The largest value of an INTEGER column on every database we support.
# Numbers read from mail (revisions, patch counters, line numbers) can be
# anything; one past this is refused by PostgreSQL and fails the whole
# transaction, so they are checked before they are written.
INT_MAX = 2**31 - 1


_PREFIXES = re.compile(r"^\s*(re:\s*)*(\[[^\]]*\]\s*)+", re.I)


def _int_ok(*values: int | None) -> bool:
    return all(v is None or 0 <= v <= INT_MAX for v in values)


@dataclass(slots=True)
class StoreStats:
    """How many rows of each kind a store operation wrote."""

    messages: int = 0
    series: int = 0
    patches: int = 0
    trailers: int = 0
    findings: int = 0
    drafts: int = 0
    quarantined: int = 0

    def __iadd__(self, other: StoreStats) -> StoreStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _text(value: str | None, limit: int | None = None) -> str | None:
    """Text as every database accepts it: PostgreSQL refuses NUL characters."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit else value


def _insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]],
                   key: list[str]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns the number of new rows."""
    return len(_insert_ignore_ids(session, table, rows, key))


def _insert_ignore_ids(session: Session, table: Any, rows: list[dict[str, Any]],
                       key: list[str]) -> list[int]:
    """INSERT ... ON CONFLICT DO NOTHING; returns the ids of the new rows."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # rowcount of a many-row insert is not reliable across drivers (psycopg
    # reports 0); the ids RETURNING hands back are the rows really inserted.
    stmt = insert(table).on_conflict_do_nothing(index_elements=key).returning(table.c.id)
    return [r[0] for r in session.execute(stmt, rows).all()]


def _headers(mail: Mail) -> dict[str, str | None]:
    out: dict[str, str] = {}
    for name, value in mail.headers:  # To: and Cc: may come more than once
        out[name] = "%s, %s" % (out[name], value) if name in out else value
    return {k: _text(v) for k, v in out.items()}


def _message_row(mail: Mail) -> dict[str, Any]:
    return {"message_id": _text(mail.message_id), "list_id": _text(mail.list_id, 255),
            "date": mail.date, "subject": _text(mail.subject),
            "from_addr": _text(mail.author, 512), "in_reply_to": _text(mail.in_reply_to, 998),
            "headers": _headers(mail),
            "raw": mail.raw, "created_at": utcnow()}


def save_messages(session: Session, mails: Iterable[Mail]) -> int:
    rows = [_message_row(m) for m in mails]
    return _insert_ignore(session, Message.__table__, rows, ["message_id"])


def message_ids(session: Session, msgids: Iterable[str]) -> dict[str, int]:
    wanted = list(dict.fromkeys(msgids))
    out: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for mid, pk in session.execute(select(Message.message_id, Message.id)
                                       .where(Message.message_id.in_(chunk))):
            out[mid] = pk
    return out


def quarantine(session: Session, err: MessageError) -> int:
    digest = hashlib.sha256(err.raw).hexdigest()
    return _insert_ignore(session, Quarantine.__table__, [{
        "digest": digest, "message_id": _text(err.message_id, 998),
        "origin": _text(err.origin, 2048), "reason": _text(err.reason), "raw": err.raw,
        "created_at": utcnow()}], ["digest"])


def previous_revision(session: Session, data: SeriesData) -> Series | None:
    return session.scalars(
        select(Series).where(Series.lineage == data.lineage, Series.revision < data.revision,
                             Series.message_id != data.message_id)
        .order_by(Series.revision.desc(), Series.id.desc()).limit(1)).first()


def _later_revisions(session: Session, row: Series) -> list[Series]:
    return list(session.scalars(
        select(Series).where(Series.lineage == row.lineage, Series.revision > row.revision)))


def _status(f: FindingData) -> FindingStatus:
    return FindingStatus(str(f.status))


def save_series(session: Session, res: SeriesResult, ids: dict[str, int],
                carry: Carry | None = None) -> StoreStats:
    stats = StoreStats()
    data = res.series
    if not _int_ok(data.revision, data.total, *(n for p in data.patches
                                                for n in (p.index, p.total))):
        logger.warning("series %s: revision or patch numbers out of range (v%d, %d patches); "
                       "not stored", data.message_id, data.revision, data.total)
        return stats
    row = session.scalars(select(Series).where(Series.message_id == data.message_id)).first()
    relinked: list[Series] = []
    if row is None:
        prev = previous_revision(session, data)
        row = Series(message_id=data.message_id, lineage=data.lineage,
                     change_id=_text(data.change_id, 255), subject=_text(data.subject),
                     author=_text(data.author, 512),
                     revision=data.revision, total=data.total, missing=list(data.missing),
                     thread_id=_text(data.thread_id, 998),
                     previous_id=prev.id if prev else None,
                     cover_id=ids.get(data.cover.message_id) if data.cover else None,
                     date=(data.cover or data.patches[0].mail).date, **_base_columns(res))
        session.add(row)
        session.flush()
        stats.series += 1
        # Revisions stored before this one but numbered after it: link the
        # nearest to it.
        for later in _later_revisions(session, row):
            prev = session.get(Series, later.previous_id) if later.previous_id else None
            if prev is None or prev.revision < row.revision:
                later.previous_id = row.id
                relinked.append(later)
    else:
        if list(row.missing) != list(data.missing) or row.total != data.total:
            row.missing, row.total, row.updated_at = list(data.missing), data.total, utcnow()
        base = _base_columns(res)
        if base and any(getattr(row, k) != v for k, v in base.items()):
            # The latest check's base: a repository configured since may know it.
            for key, value in base.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
    have = dict(session.execute(select(Patch.index, Patch.id)
                                .where(Patch.series_id == row.id)).all())
    new_patches = [{"series_id": row.id, "message_id": ids[p.message_id], "index": p.index,
                    "total": p.total, "subject": _text(p.subject),
                    "files": [_text(f) for f in p.paths]}
                   for p in data.patches if p.index not in have]
    if new_patches:
        stats.patches += _insert_ignore(session, Patch.__table__, new_patches,
                                        ["series_id", "index"])
        have = dict(session.execute(select(Patch.index, Patch.id)
                                    .where(Patch.series_id == row.id)).all())
    trailers = [{"patch_id": have[p.index], "message_id": t.message_id, "name": t.name,
                 "value": t.value, "author": t.author, "revision": t.revision}
                for p in data.patches for t in p.trailers]
    given = _save_trailers(session, [t for t in trailers if t["revision"] is None])
    stats.trailers += given + _save_trailers(
        session, [t for t in trailers if t["revision"] is not None])
    stats.findings += _save_findings(session, row, res.rules.findings + res.rules.pre_existing,
                                     res.comparison)
    kept = [d for d in res.drafts if _kept(d.patch, None, "draft", data.message_id)]
    new_drafts = _insert_ignore_ids(session, Draft.__table__, [
        {"series_id": row.id, "patch_index": d.patch, "in_reply_to": _text(d.in_reply_to, 998),
         "references": list(d.references), "to_addrs": [_text(a) for a in d.to],
         "cc_addrs": [_text(a) for a in d.cc], "subject": _text(d.subject),
         "body": _text(d.body), "state": "draft", "fingerprints": list(d.fingerprints),
         "created_at": utcnow(), "updated_at": utcnow(), "attempts": 0, "version": 1}
        for d in kept], ["series_id", "in_reply_to"])
    stats.drafts += len(new_drafts)
    draft_store.created(session, new_drafts)
    draft_store.supersede(session, row)
    for later in relinked:
        _compare_later(session, later, row, res)
    if carry is not None and (relinked or given):
        # Trailers the revisions stored after this one would have carried
        # over had this one been stored first (bot.store.trailers).
        stats.trailers += _save_trailers(session, carried_rows(session, row, carry))
    return stats


def _save_trailers(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the trailer rows not stored yet; the number inserted."""
    return _insert_ignore(session, Trailer.__table__, [
        dict(r, message_id=_text(r["message_id"], 998), name=_text(r["name"], 64),
             value=_text(r["value"], 998), author=_text(r["author"], 512)) for r in rows],
        ["patch_id", "message_id", "name", "value"])


def _kept(patch: int, line: int | None, what: str, series: str) -> bool:
    if _int_ok(patch, line):
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
    return {"base_source": str(base.source), "base_commit": _text(base.commit, 64),
            "base_version": _text(base.version, 32), "base_detail": _text(base.detail)}


def _save_findings(session: Session, row: Series, found: tuple[FindingData, ...],
                   comparison: RevisionComparison | None) -> int:
    existing = {f.key: f for f in session.scalars(
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
                          category=f.category, severity=f.severity, file=_text(f.file, 1024),
                          line=f.line, register=f.register, fields=list(f.fields),
                          message=_text(f.message), evidence=_text("\n".join(f.evidence)),
                          key=f.key, status=status)
            session.add(old)
            existing[f.key] = old  # the same finding twice (one line in two places): once
            added += 1
        elif old.status is not FindingStatus.DISMISSED and old.status != status:
            # A later patch of the series may have arrived and resolved it;
            # a maintainer's dismissal stands.
            old.status = status
        old.fingerprint, old.function = f.fingerprint, _text(f.function, 255)
        if comparison is not None or old.revision_status is None:
            old.revision_status, old.first_seen = f.revision_status, f.first_seen
            old.continues = continues
    if comparison is not None:
        _record_resolved(session, row, comparison, earlier)
    return added


def _record_resolved(session: Session, row: Series, comparison: RevisionComparison,
                     earlier: dict[str, Finding]) -> None:
    """Mark the earlier revision's findings this one no longer has as
    resolved in it (and no longer those it has again)."""
    for f in session.scalars(select(Finding).where(Finding.resolved_in_id == row.id)):
        f.resolved_in_id = None
    for gone in comparison.resolved:
        old = (session.get(Finding, gone.ref) if gone.ref is not None
               else earlier.get(gone.finding.key))
        if old is not None:
            old.resolved_in_id = row.id


def save_thread(session: Session, result: ThreadResult, *, isolate: bool = False,
                carry: Carry | None = None) -> StoreStats:
    """Store one thread's messages, series, findings, drafts and failures.

    With `isolate`, each message and each series is stored in a savepoint
    of its own, and one the database refuses is quarantined (a message) or
    left out with the reason logged (a series) while the rest is stored:
    the way to store a thread whose plain storing failed, so that one
    hostile message never keeps the rest of its thread out. A lost
    connection still fails the whole transaction.

    `carry` (b4's trailer carrying) lets a revision stored after the one
    that follows it hand that one its trailers (bot.store.trailers)."""
    stats = StoreStats()
    if not isolate:
        stats.messages += save_messages(session, result.thread.messages)
    else:
        for mail in result.thread.messages:
            stats += _isolated(session, partial(_save_one, session, mail), mail.message_id,
                               "message", mail.raw)
    for err in result.errors:
        stats.quarantined += quarantine(session, err)
    if result.results:
        wanted = [m.message_id for r in result.results for m in r.series.messages]
        ids = message_ids(session, wanted)
        for res in result.results:
            left_out = {m.message_id for m in res.series.messages if m.message_id not in ids}
            if left_out:
                logger.warning("series %s: %s not stored; the series is stored without it",
                               res.series.message_id, ", ".join(sorted(left_out)))
                without = _without(res, left_out)
                if without is None:
                    continue
                res = without
            if not isolate:
                stats += save_series(session, res, ids, carry)
            else:
                stats += _isolated(session, partial(save_series, session, res, ids, carry),
                                   res.series.message_id, "series", None)
    return stats


def _without(res: SeriesResult, msgids: set[str]) -> SeriesResult | None:
    """The series as if the messages `msgids` had never arrived: their
    patches missing, with their findings and drafts; None if nothing is left."""
    series = res.series
    gone = {p.index for p in series.patches if p.message_id in msgids}
    patches = tuple(p for p in series.patches if p.index not in gone)
    if not patches:
        return None
    cover = series.cover if series.cover is None or series.cover.message_id not in msgids \
        else None
    if cover is None and series.cover is not None:
        gone.add(0)
    head = cover or patches[0].mail
    if head.message_id != series.message_id:  # the series was known by a message left out
        series = replace(series, message_id=head.message_id, author=head.author,
                         author_email=head.from_email,
                         subject=_PREFIXES.sub("", head.subject) or head.subject)

    def kept(found: tuple[FindingData, ...]) -> tuple[FindingData, ...]:
        return tuple(f for f in found if f.patch not in gone)

    return replace(res, series=replace(series, patches=patches, cover=cover,
                                       missing=tuple(sorted(set(series.missing) | gone - {0}))),
                   rules=replace(res.rules, findings=kept(res.rules.findings),
                                 pre_existing=kept(res.rules.pre_existing)),
                   drafts=tuple(d for d in res.drafts if d.patch not in gone))


def _save_one(session: Session, mail: Mail) -> StoreStats:
    return StoreStats(messages=save_messages(session, [mail]))


def _isolated(session: Session, store: Callable[[], StoreStats], msgid: str, what: str,
              raw: bytes | None) -> StoreStats:
    try:
        with session.begin_nested():
            return store()
    except OperationalError:
        raise  # the database itself: the caller's transaction fails
    except Exception as exc:  # noqa: BLE001 - this item only: the rest of the thread is stored
        reason = "storing the %s failed: %s: %s" % (what, type(exc).__name__, exc)
        logger.warning("%s %s: %s", what, msgid, reason)
        if raw is None:
            return StoreStats()
        return StoreStats(quarantined=quarantine(session, MessageError(
            origin="storing", message_id=msgid, reason=reason, raw=raw)))


def seen_ids(session: Session, msgids: Iterable[str]) -> set[str]:
    """Which of `msgids` the poller has stored with their whole thread."""
    wanted = list(dict.fromkeys(msgids))
    out: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        out.update(session.scalars(select(PollSeen.message_id)
                                   .where(PollSeen.message_id.in_(chunk))))
    return out


def mark_seen(session: Session, thread_id: str, msgids: Iterable[str]) -> None:
    """Record that the thread fetched for `thread_id`, holding `msgids`, is
    stored whole: in the transaction that stores it."""
    now = utcnow()
    _insert_ignore(session, PollSeen.__table__, [
        {"message_id": mid, "thread_id": _text(thread_id, 998), "seen_at": now}
        for mid in dict.fromkeys(msgids) if len(mid) <= 998], ["message_id"])


def read_cursor(session: Session, name: str) -> PollCursor | None:
    """The poll cursor called `name` (an archive and what is searched there)."""
    return session.scalars(select(PollCursor).where(PollCursor.name == name)).first()


def upsert(session: Session, table: Any, row: dict[str, Any], key: list[str],
           update: dict[str, Any]) -> None:
    """INSERT `row`, or on a conflict over `key` UPDATE with `update`, in one
    statement: two sessions doing this at once never fail nor lose an update."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table).values(**row)
    session.execute(stmt.on_conflict_do_update(index_elements=key, set_=update))


def advance_cursor(session: Session, name: str, position: dt.datetime) -> None:
    """Move the cursor `name` to `position`, creating it on the first cycle."""
    table = PollCursor.__table__
    now = utcnow()
    upsert(session, table, {"name": name, "position": position, "cycles": 1,
                            "updated_at": now}, ["name"],
           {"position": position, "cycles": table.c.cycles + 1, "updated_at": now})


def list_series(session: Session, limit: int = 100) -> list[Series]:
    return list(session.scalars(select(Series).order_by(Series.id.desc()).limit(limit)))
