"""The stored earlier revision of a series, read back for re-review.

When a revision is checked with a database at hand (`bot check --store`,
the poller), the revision stored before it in the same lineage is what it
is compared with: its findings as they are stored (with the maintainers'
dismissals and the revision each was first raised on), and the mail b4
needs to carry its trailers over (the patches that received trailers and
the replies that gave them, up to the patch).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.data import EarlierFinding, EarlierRevision, EarlierSource, RawMessage
from bot.data import Series as SeriesData
from bot.store.models import Finding, FindingStatus, Message, Patch, Series, Trailer
from bot.store.queries import finding_data, previous_revision

# How far up a reply chain a trailer is followed to its patch.
_MAX_DEPTH = 50


def _trailer_mail(session: Session, series: Series) -> tuple[RawMessage, ...]:
    """Each patch of `series` that received trailers on that revision, and
    the messages from each trailer's reply up to the patch."""
    given = session.execute(
        select(Patch.message_id, Trailer.message_id)
        .join(Trailer, Trailer.patch_id == Patch.id)
        .where(Patch.series_id == series.id, Trailer.revision.is_(None))).all()
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


def stored_earlier(session: Session, data: SeriesData) -> EarlierRevision | None:
    """The revision of `data`'s series stored before it, as re-review reads
    it; None when none is stored."""
    prev = previous_revision(session, data)
    if prev is None:
        return None
    findings: list[EarlierFinding] = []
    pre: list[EarlierFinding] = []
    for row in session.scalars(select(Finding).where(Finding.series_id == prev.id)
                               .order_by(Finding.id)):
        (pre if row.status is FindingStatus.PRE_EXISTING else findings).append(
            finding_data(row))
    return EarlierRevision(message_id=prev.message_id, revision=prev.revision,
                           source=EarlierSource.DATABASE, findings=tuple(findings),
                           pre_existing=tuple(pre), messages=_trailer_mail(session, prev))
