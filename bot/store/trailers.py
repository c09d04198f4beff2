"""Trailers carried to a later revision stored before its earlier one's.

b4 carries the trailers given to an earlier revision over to the later
revision's unchanged patches when the later one is checked with the
earlier one at hand. Which is at hand depends on the order mail is stored
in: the earlier revision's thread may end (its last reply, or a late
Reviewed-by) after the later revision was checked and stored. So that the
database ends up the same whatever that order, and however often the
same mail is stored (`bot check --store` run twice, a rerun after a
crash), the store carries them over then too: when an earlier revision is
stored, or receives new trailers, after the later revision that follows it.

The carrying itself is b4's (a `Carry` the caller hands in); this module
reads the mail it needs and says which stored trailers it gave.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.data import RawMessage
from bot.data import Trailer as TrailerData
from bot.store.models import Message, Patch, Series, Trailer

# How far up a reply chain a trailer is followed to its patch.
_MAX_DEPTH = 50

# (the later series' Message-ID, its stored cover and patches, the earlier
# revision's trailer mail) -> the trailers b4 carries, by patch index.
Carry = Callable[[str, tuple[RawMessage, ...], tuple[RawMessage, ...]],
                 Mapping[int, tuple[TrailerData, ...]]]


def trailer_mail(session: Session, series: Series) -> tuple[RawMessage, ...]:
    """Each patch of `series` that received trailers on that revision, and
    the messages from each trailer's reply up to the patch."""
    given = session.execute(
        select(Patch.message_id, Trailer.message_id)
        .join(Trailer, Trailer.patch_id == Patch.id)
        .where(Patch.series_id == series.id, Trailer.revision.is_(None))
        .order_by(Patch.index, Trailer.id)).all()
    if not given:
        return ()
    patch_pks = {pk for pk, _ in given}
    patches = {m.message_id: m for m in session.scalars(
        select(Message).where(Message.id.in_(patch_pks)))}
    wanted: dict[str, Message] = dict(patches)
    for _pk, reply_mid in dict.fromkeys(given):
        mid: str | None = reply_mid
        for _ in range(_MAX_DEPTH):
            if mid is None or mid in wanted:
                break
            msg = session.scalars(select(Message).where(Message.message_id == mid)).first()
            if msg is None:
                break
            wanted[mid] = msg
            mid = msg.in_reply_to
    return tuple(RawMessage(origin="database", data=m.raw, message_id=m.message_id)
                 for m in wanted.values())


def series_mail(session: Session, series: Series) -> tuple[RawMessage, ...]:
    """The stored cover letter and patches of `series`."""
    pks = list(session.scalars(select(Patch.message_id).where(Patch.series_id == series.id)
                               .order_by(Patch.index)))
    if series.cover_id is not None:
        pks.insert(0, series.cover_id)
    rows = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(pks)))}
    return tuple(RawMessage(origin="database", data=rows[pk].raw,
                            message_id=rows[pk].message_id) for pk in pks if pk in rows)


def carried_rows(session: Session, earlier: Series, carry: Carry) -> list[dict[str, object]]:
    """Trailer rows b4 carries from `earlier` to each stored revision that
    follows it (`previous_id`), to be inserted if absent."""
    later = list(session.scalars(select(Series).where(Series.previous_id == earlier.id)
                                 .order_by(Series.id)))
    if not later:
        return []
    mail = trailer_mail(session, earlier)
    if not mail:
        return []
    rows: list[dict[str, object]] = []
    for series in later:
        by_index = carry(series.message_id, series_mail(session, series), mail)
        if not by_index:
            continue
        patch_ids = dict(session.execute(select(Patch.index, Patch.id)
                                         .where(Patch.series_id == series.id)).all())
        rows.extend({"patch_id": patch_ids[index], "message_id": t.message_id,
                     "name": t.name, "value": t.value, "author": t.author,
                     "revision": t.revision}
                    for index, trailers in by_index.items() if index in patch_ids
                    for t in trailers if t.revision is not None)
    return rows
