"""Maintainers telling the bot it was wrong (or right) about a finding.

Dismissing a finding as false needs a reason; it marks the finding, and the
same finding (same fingerprint) of later revisions already stored,
dismissed, and records the verdict with who and when. A revision stored
afterwards carries the dismissal over (bot.store.queries) and is not
drafted about it again (bot.revisions.drafted). The verdicts are what each
rule's precision on the dashboard is computed from (bot.store.feedback).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from bot.drafts import headers
from bot.errors import BadInput, NotFound
from bot.store import feedback as q
from bot.store.models import Finding, FindingStatus, Verdict
from bot.workflow import Actor

logger = logging.getLogger(__name__)

MAX_REASON = 2000


def _finding(session: Session, finding_id: int) -> Finding:
    found = session.get(Finding, finding_id)
    if found is None:
        raise NotFound("finding %d: no such finding" % finding_id)
    return found


def dismiss(session: Session, actor: Actor, finding_id: int, reason: str) -> list[Finding]:
    """Dismiss a finding as false; returns every finding it marked."""
    reason = " ".join(reason.split())
    if not reason:
        raise BadInput("finding %d: say why it is false (the reason is kept with the "
                       "dismissal)" % finding_id)
    if len(reason) > MAX_REASON:
        raise BadInput("finding %d: a reason of at most %d characters" % (finding_id,
                                                                           MAX_REASON))
    found = _finding(session, finding_id)
    if found.status is FindingStatus.DISMISSED:
        raise BadInput("finding %d is dismissed already" % finding_id)
    if found.status is FindingStatus.PRE_EXISTING:
        raise BadInput("finding %d is about code the series does not change: nothing to "
                       "dismiss" % finding_id)
    marked = [f for f in q.same_finding_later(session, found)
              if f.status is not FindingStatus.PRE_EXISTING]
    for f in marked:
        f.status = FindingStatus.DISMISSED
    q.record(session, found, verdict=Verdict.DISMISSED, reason=headers.clean(reason),
             actor=actor.address)
    session.flush()
    logger.info("finding %d (%s) dismissed by %s: %s", finding_id, found.rule, actor.address,
                reason)
    return marked


def confirm(session: Session, actor: Actor, finding_id: int) -> None:
    """Say the rule was right about this finding."""
    found = _finding(session, finding_id)
    if found.status is not FindingStatus.OPEN:
        raise BadInput("finding %d is %s: only an open finding can be confirmed"
                       % (finding_id, found.status))
    q.record(session, found, verdict=Verdict.CONFIRMED, reason="", actor=actor.address)
    session.flush()
