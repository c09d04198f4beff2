"""Maintainers' verdicts on findings, and the per-rule figures computed
from them: plain functions taking a `Session`.

A finding carried from revision to revision is one finding: figures count
distinct (lineage, fingerprint) pairs, so a false positive repeated over
five revisions counts once, like the dismissal that covers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.store.models import (
    Finding,
    FindingFeedback,
    FindingStatus,
    Series,
    Verdict,
    utcnow,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleFigures:
    """How often a rule fired, and what maintainers said about it."""

    rule: str
    fired: int       # distinct findings (a finding repeated by revisions counts once)
    dismissed: int   # of those, dismissed by a maintainer as false
    confirmed: int   # of those, confirmed by a maintainer

    @property
    def precision(self) -> float | None:
        """The share of what the rule raised that no maintainer dismissed as
        false; None while it raised nothing."""
        if not self.fired:
            return None
        return (self.fired - self.dismissed) / self.fired


def record(session: Session, finding: Finding, *, verdict: Verdict, reason: str,
           actor: str) -> FindingFeedback:
    row = FindingFeedback(finding_id=finding.id, lineage=finding.series.lineage,
                          fingerprint=finding.fingerprint, rule=finding.rule, verdict=verdict,
                          reason=reason, actor=actor, at=utcnow())
    session.add(row)
    return row


def same_finding_later(session: Session, finding: Finding) -> list[Finding]:
    """The stored findings of this and later revisions of the series with
    the same fingerprint (the finding itself included)."""
    series = finding.series
    later = select(Series.id).where(Series.lineage == series.lineage,
                                    Series.revision >= series.revision)
    return list(session.scalars(select(Finding).where(
        Finding.series_id.in_(later), Finding.fingerprint == finding.fingerprint)))


def for_findings(session: Session, finding_ids: list[int]) -> dict[int, list[FindingFeedback]]:
    """Each finding's verdicts, and those given on the findings it continues."""
    out: dict[int, list[FindingFeedback]] = {}
    if not finding_ids:
        return out
    rows = session.scalars(select(FindingFeedback).where(
        FindingFeedback.finding_id.in_(finding_ids)).order_by(FindingFeedback.id))
    for row in rows:
        out.setdefault(row.finding_id, []).append(row)
    return out


def latest_for(session: Session, lineage: str, fingerprint: str) -> FindingFeedback | None:
    """The last verdict on this finding in any revision of the series."""
    return session.scalars(select(FindingFeedback).where(
        FindingFeedback.lineage == lineage, FindingFeedback.fingerprint == fingerprint)
        .order_by(FindingFeedback.id.desc()).limit(1)).first()


def figures(session: Session) -> dict[str, RuleFigures]:
    """Per rule: distinct findings raised, dismissed and confirmed."""
    distinct = (select(Finding.rule, Series.lineage, Finding.fingerprint)
                .join(Series, Series.id == Finding.series_id)
                .where(Finding.status != FindingStatus.PRE_EXISTING).distinct().subquery())
    fired: dict[str, int] = dict(session.execute(select(distinct.c.rule, func.count())
                                 .group_by(distinct.c.rule)).all())
    verdicts: dict[tuple[str, Verdict], int] = {}
    last = select(func.max(FindingFeedback.id)).group_by(FindingFeedback.lineage,
                                                          FindingFeedback.fingerprint)
    for rule, verdict, count in session.execute(
            select(FindingFeedback.rule, FindingFeedback.verdict, func.count())
            .where(FindingFeedback.id.in_(last))
            .group_by(FindingFeedback.rule, FindingFeedback.verdict)):
        verdicts[(rule, verdict)] = int(count)
    rules = set(fired) | {r for r, _ in verdicts}
    return {r: RuleFigures(rule=r, fired=int(fired.get(r, 0)),
                           dismissed=verdicts.get((r, Verdict.DISMISSED), 0),
                           confirmed=verdicts.get((r, Verdict.CONFIRMED), 0))
            for r in rules}
