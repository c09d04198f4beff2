"""Draft queries: history, supersession and the outbox's claims.

Plain functions taking a `Session`. A claim is one conditional UPDATE (the
row changes only if it is still in the state the claimer saw), so two
senders on SQLite or PostgreSQL never hold the same draft.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.store.models import Draft, DraftAction, DraftEvent, DraftState, Series, utcnow

logger = logging.getLogger(__name__)

BOT = "kvm-sysreg-review-bot"
# States a newer revision makes moot (a draft being sent is left to finish).
SUPERSEDABLE = (DraftState.DRAFT, DraftState.APPROVED, DraftState.FAILED)


def record(session: Session, draft: Draft, *, actor: str, action: DraftAction,
           before: DraftState | None = None, after: DraftState | None = None,
           body_before: str | None = None, body_after: str | None = None,
           detail: str = "", at: dt.datetime | None = None) -> None:
    session.add(DraftEvent(draft_id=draft.id, at=at or utcnow(), actor=actor, action=action,
                           state_before=before, state_after=after, body_before=body_before,
                           body_after=body_after, detail=detail))


def created(session: Session, draft_ids: Sequence[int]) -> None:
    """The history's first entry for drafts the pipeline just stored."""
    now = utcnow()
    session.add_all([DraftEvent(draft_id=i, at=now, actor=BOT, action=DraftAction.CREATED,
                                state_after=DraftState.DRAFT, detail="")
                     for i in draft_ids])


def supersede(session: Session, row: Series, lineage: Sequence[Series] | None = None) -> int:
    """Mark drafts about an older revision of `row`'s series superseded by
    it, and `row`'s own drafts when a newer revision is already stored.
    `lineage`: the stored revisions of its lineage, when the caller has
    them at hand. Returns how many drafts were marked."""
    marked = 0
    now = utcnow()
    if lineage is None:
        lineage = list(session.scalars(select(Series).where(Series.lineage == row.lineage)))
    same = [s for s in lineage if s.lineage == row.lineage]
    older = [s.id for s in same if s.revision < row.revision]
    newer = min((s for s in same if s.revision > row.revision),
                key=lambda s: (s.revision, s.id), default=None)
    targets: list[tuple[Draft, Series]] = []
    if older:
        targets += [(d, row) for d in session.scalars(select(Draft).where(
            Draft.series_id.in_(older), Draft.state.in_(SUPERSEDABLE),
            Draft.superseded_by_id.is_(None)))]
    if newer is not None:
        targets += [(d, newer) for d in session.scalars(select(Draft).where(
            Draft.series_id == row.id, Draft.state.in_(SUPERSEDABLE),
            Draft.superseded_by_id.is_(None)))]
    for draft, by in targets:
        draft.superseded_by_id, draft.superseded_at, draft.updated_at = by.id, now, now
        record(session, draft, actor=BOT, action=DraftAction.SUPERSEDED, before=draft.state,
               after=draft.state, detail="v%d arrived: %s" % (by.revision, by.message_id), at=now)
        marked += 1
    if marked:
        logger.info("%s v%d: %d draft(s) of another revision superseded", row.message_id,
                    row.revision, marked)
    return marked


def get(session: Session, draft_id: int) -> Draft | None:
    return session.get(Draft, draft_id)


def listing(session: Session, *, states: Sequence[DraftState] = (),
            series_message_id: str | None = None, include_superseded: bool = False,
            limit: int = 200) -> list[Draft]:
    query = select(Draft).join(Series, Series.id == Draft.series_id)
    if states:
        query = query.where(Draft.state.in_(states))
    if series_message_id:
        query = query.where(Series.message_id == series_message_id)
    if not include_superseded:
        query = query.where(Draft.superseded_by_id.is_(None))
    return list(session.scalars(query.order_by(Draft.id.desc()).limit(limit)))


def due(session: Session, ids: Sequence[int] | None = None) -> list[int]:
    """Approved drafts the outbox may send: not superseded, not exported."""
    query = select(Draft.id).where(Draft.state == DraftState.APPROVED,
                                   Draft.superseded_by_id.is_(None),
                                   Draft.exported_at.is_(None))
    if ids is not None:
        query = query.where(Draft.id.in_(list(ids)))
    return list(session.scalars(query.order_by(Draft.id)))


def claim(session: Session, draft_id: int, owner: str, now: dt.datetime,
          lease_until: dt.datetime) -> bool:
    """Take an approved draft for sending; False when someone else did (or
    it changed) since it was listed."""
    result = session.execute(
        update(Draft).where(Draft.id == draft_id, Draft.state == DraftState.APPROVED,
                            Draft.superseded_by_id.is_(None), Draft.exported_at.is_(None))
        .values(state=DraftState.SENDING, claimed_by=owner, lease_until=lease_until,
                handing_over_at=None, attempts=Draft.attempts + 1, updated_at=now,
                version=Draft.version + 1)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def handing_over(session: Session, draft_id: int, owner: str, now: dt.datetime) -> bool:
    """Note that the message is about to go to the server: from here on a
    crash leaves it unknown whether it was delivered."""
    result = session.execute(
        update(Draft).where(Draft.id == draft_id, Draft.state == DraftState.SENDING,
                            Draft.claimed_by == owner)
        .values(handing_over_at=now, version=Draft.version + 1)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, draft_id: int, owner: str, *, state: DraftState,
           now: dt.datetime, reply: str | None = None, error: str | None = None,
           sent_at: dt.datetime | None = None) -> bool:
    """Leave the sending state (sent, failed, or back to approved) if the
    claim is still ours."""
    result = session.execute(
        update(Draft).where(Draft.id == draft_id, Draft.state == DraftState.SENDING,
                            Draft.claimed_by == owner)
        .values(state=state, claimed_by=None, lease_until=None, smtp_reply=reply,
                last_error=error, sent_at=sent_at, updated_at=now, version=Draft.version + 1)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale_claims(session: Session, now: dt.datetime, dead_owners: Sequence[str]) -> list[Draft]:
    """Drafts left in `sending` by a sender whose lease ran out or that is
    known to be dead."""
    cond = [Draft.lease_until < now]
    if dead_owners:
        cond.append(Draft.claimed_by.in_(list(dead_owners)))
    return list(session.scalars(select(Draft).where(Draft.state == DraftState.SENDING,
                                                    or_(*cond)).order_by(Draft.id)))


def sending_owners(session: Session) -> list[str]:
    return [o for o in session.scalars(select(Draft.claimed_by).where(
        Draft.state == DraftState.SENDING).distinct()) if o]
