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

from bot.data import EarlierFinding, EarlierRevision, EarlierSource
from bot.data import Series as SeriesData
from bot.store.models import Finding, FindingStatus
from bot.store.series import finding_data, previous_revision
from bot.store.trailers import trailer_mail


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
                           pre_existing=tuple(pre), messages=trailer_mail(session, prev))
