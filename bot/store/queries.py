"""Storing and reading pipeline results: plain functions taking a `Session`.

Storing is idempotent: messages by Message-ID, series by the Message-ID of
their cover letter (or first patch), patches by (series, index), trailers
by (patch, reply, name, value), findings by (series, key), drafts by
(series, message replied to), quarantined mail by the digest of its bytes.
Storing the same input twice adds nothing; nor does storing it again after
an earlier revision arrived late, as a rerun does (the trailers b4 carries
from it are carried when it arrives: bot.store.trailers).

One series is stored by `bot.store.series`; the helpers every store
function uses (text as columns accept it, INSERT ... ON CONFLICT DO
NOTHING) are in `bot.store.rows`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.data import Finding as FindingData
from bot.data import Mail, MessageError, SeriesResult, ThreadResult
from bot.store.models import Message, PollCursor, PollSeen, Quarantine, Series, utcnow
from bot.store.rows import (
    INT_MAX,
    StoreStats,
    column_text,
    insert_ignore,
    insert_ignore_returning,
    insert_missing,
    upsert,
)
from bot.store.series import finding_data, previous_revision, save_series
from bot.store.trailers import Carry

# Re-exported: what callers have always imported from here.
__all__ = ["INT_MAX", "StoreStats", "finding_data", "previous_revision", "save_series",
           "upsert"]

logger = logging.getLogger(__name__)

_PREFIXES = re.compile(r"^\s*(re:\s*)*(\[[^\]]*\]\s*)+", re.I)


def _headers(mail: Mail) -> dict[str, str | None]:
    out: dict[str, str] = {}
    for name, value in mail.headers:  # To: and Cc: may come more than once
        out[name] = "%s, %s" % (out[name], value) if name in out else value
    return {k: column_text(v) for k, v in out.items()}


def _message_row(mail: Mail) -> dict[str, Any]:
    return {"message_id": column_text(mail.message_id),
            "list_id": column_text(mail.list_id, 255), "date": mail.date,
            "subject": column_text(mail.subject), "from_addr": column_text(mail.author, 512),
            "in_reply_to": column_text(mail.in_reply_to, 998), "headers": _headers(mail),
            "raw": mail.raw, "created_at": utcnow()}


def save_messages(session: Session, mails: Iterable[Mail]) -> dict[str, int]:
    """Insert the messages not stored yet; the id of each one inserted, by
    its Message-ID as stored."""
    rows = [_message_row(m) for m in mails]
    return dict(insert_ignore_returning(session, Message.__table__, rows, ["message_id"],
                                        "message_id", "id"))


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
    return insert_ignore(session, Quarantine.__table__, [{
        "digest": digest, "message_id": column_text(err.message_id, 998),
        "origin": column_text(err.origin, 2048), "reason": column_text(err.reason), "raw": err.raw,
        "created_at": utcnow()}], ["digest"])



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
    new: dict[str, int] = {}
    if not isolate:
        new = save_messages(session, result.thread.messages)
        stats.messages += len(new)
    else:
        for mail in result.thread.messages:
            stats += _isolated(session, partial(_save_one, session, mail), mail.message_id,
                               "message", mail.raw)
    for err in result.errors:
        stats.quarantined += quarantine(session, err)
    if result.results:
        wanted = [m.message_id for r in result.results for m in r.series.messages]
        # The ids of the messages stored just now are known already.
        ids = {mid: new[mid] for mid in wanted if mid in new}
        ids.update(message_ids(session, [mid for mid in wanted if mid not in ids]))
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
    return StoreStats(messages=len(save_messages(session, [mail])))


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
    insert_missing(session, PollSeen.__table__, [
        {"message_id": mid, "thread_id": column_text(thread_id, 998), "seen_at": now}
        for mid in dict.fromkeys(msgids) if len(mid) <= 998], ["message_id"])


def read_cursor(session: Session, name: str) -> PollCursor | None:
    """The poll cursor called `name` (an archive and what is searched there)."""
    return session.scalars(select(PollCursor).where(PollCursor.name == name)).first()


def advance_cursor(session: Session, name: str, position: dt.datetime) -> None:
    """Move the cursor `name` to `position`, creating it on the first cycle."""
    table = PollCursor.__table__
    now = utcnow()
    upsert(session, table, {"name": name, "position": position, "cycles": 1,
                            "updated_at": now}, ["name"],
           {"position": position, "cycles": table.c.cycles + 1, "updated_at": now})


def list_series(session: Session, limit: int = 100) -> list[Series]:
    return list(session.scalars(select(Series).order_by(Series.id.desc()).limit(limit)))
