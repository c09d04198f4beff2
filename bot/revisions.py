"""Re-review: a revision's findings against the earlier revision's.

Pure: data in, data out. A finding of vN continues a finding of vN-1 when
their fingerprints are equal (rule, register and fields, function, the
evidence as C tokens: see `Finding.fingerprint`), which survives line
moves, hunk and patch reordering, renumbering and moves between files.
When the surrounding code was reworded a little, the fingerprint changes;
then a finding with the same rule, register, fields and function whose
evidence is similar enough (difflib's ratio over the C tokens, at least
`SIMILARITY`) is taken as the same one. Each earlier finding is continued
at most once.

A finding that continues one is still present since the revision where
that one was first raised; the others are new. An open finding of the
earlier revision that nothing continues is resolved in vN. Pre-existing
findings (code the series only moves or shows) are matched the same way
but never reported resolved: the series no longer showing old code does
not fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence

from bot.data import (
    EarlierFinding,
    EarlierRevision,
    EarlierSource,
    Finding,
    ResolvedFinding,
    RevisionComparison,
    RevisionStatus,
    RuleResult,
    SeriesResult,
    Status,
    code_tokens,
)

# How similar (difflib ratio over C tokens) the evidence of two findings with
# the same rule, register, fields and function must be to be the same
# finding. 0.8 keeps a renamed local variable or a reworded condition on the
# line (one or two tokens of ten) and refuses a different value written.
SIMILARITY = 0.8


def _same_place(a: Finding, b: Finding) -> tuple[bool, int]:
    """Tie-break between equally good candidates: same file first, then the
    nearest patch index."""
    return (a.file != b.file, abs(a.patch - b.patch))


def match(current: Sequence[Finding], earlier: Sequence[Finding],
          similarity: float = SIMILARITY) -> dict[int, int]:
    """Pairs (index in `current` -> index in `earlier`) of the same finding,
    each earlier finding used once: equal fingerprints first, then the
    fuzzy fallback over what is left."""
    pairs: dict[int, int] = {}
    used: set[int] = set()
    by_print: dict[str, list[int]] = {}
    for j, f in enumerate(earlier):
        by_print.setdefault(f.fingerprint, []).append(j)
    exact = sorted((_same_place(f, earlier[j]), i, j) for i, f in enumerate(current)
                   for j in by_print.get(f.fingerprint, ()))
    for _place, i, j in exact:
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    scored: list[tuple[float, bool, int, int, int]] = []
    for i, f in enumerate(current):
        if i in pairs:
            continue
        tokens = code_tokens(f.evidence)
        for j, e in enumerate(earlier):
            if j in used or (e.rule, e.register, tuple(sorted(e.fields)), e.function) != (
                    f.rule, f.register, tuple(sorted(f.fields)), f.function):
                continue
            ratio = difflib.SequenceMatcher(None, tokens, code_tokens(e.evidence),
                                            autojunk=False).ratio()
            if ratio >= similarity:
                other, distance = _same_place(f, e)
                scored.append((-ratio, other, distance, i, j))
    for _neg, _other, _distance, i, j in sorted(scored):
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs


def _annotate(findings: tuple[Finding, ...], earlier: tuple[EarlierFinding, ...],
              revision: int) -> tuple[tuple[Finding, ...], dict[str, EarlierFinding], set[int]]:
    pairs = match(findings, [e.finding for e in earlier])
    out: list[Finding] = []
    continued: dict[str, EarlierFinding] = {}
    for i, f in enumerate(findings):
        j = pairs.get(i)
        if j is None:
            out.append(dataclasses.replace(f, revision_status=RevisionStatus.NEW,
                                           first_seen=revision))
        else:
            prior = earlier[j]
            continued[f.key] = prior
            out.append(dataclasses.replace(f, revision_status=RevisionStatus.STILL_PRESENT,
                                           first_seen=prior.first_seen))
    return tuple(out), continued, set(pairs.values())


def compare(rules: RuleResult, earlier: EarlierRevision,
            revision: int) -> tuple[RuleResult, RevisionComparison]:
    """The findings of revision `revision`, each marked new or still present
    against `earlier`, and what is resolved."""
    findings, continued, used = _annotate(rules.findings, earlier.findings, revision)
    pre, continued_pre, _ = _annotate(rules.pre_existing, earlier.pre_existing, revision)
    continued.update(continued_pre)
    resolved = tuple(
        ResolvedFinding(finding=e.finding, revision=earlier.revision, first_seen=e.first_seen,
                        resolved_in=revision, ref=e.ref)
        for j, e in enumerate(earlier.findings)
        if j not in used and not e.dismissed and e.finding.status is Status.OPEN)
    return (dataclasses.replace(rules, findings=findings, pre_existing=pre),
            RevisionComparison(earlier=earlier, continued=continued, resolved=resolved))


def as_earlier(result: SeriesResult, source: EarlierSource) -> EarlierRevision:
    """A checked series, as the earlier revision of a later one: each
    finding keeps the revision where it was first raised, and a dismissal
    it carries over. (The mail for trailers is the caller's to add.)"""
    revision = result.series.revision
    continued = result.comparison.continued if result.comparison is not None else {}

    def wrap(found: tuple[Finding, ...]) -> tuple[EarlierFinding, ...]:
        out = []
        for f in found:
            prior = continued.get(f.key)
            out.append(EarlierFinding(finding=f, first_seen=f.first_seen or revision,
                                      dismissed=prior.dismissed if prior else False))
        return tuple(out)

    return EarlierRevision(message_id=result.series.message_id, revision=revision,
                           source=source, findings=wrap(result.rules.findings),
                           pre_existing=wrap(result.rules.pre_existing))


def choose(revision: int, candidates: Iterable[EarlierRevision | None]) -> EarlierRevision | None:
    """The earlier revision to compare revision `revision` with: one given
    with --compare-to wins; otherwise the latest revision before it, the
    stored one on a tie (it carries the maintainers' dismissals)."""
    found = [c for c in candidates if c is not None]
    given = [c for c in found if c.source is EarlierSource.COMPARE_TO]
    if given:
        return given[0]
    before = [c for c in found if c.revision < revision]
    if not before:
        return None
    return max(before, key=lambda c: (c.revision, c.source is EarlierSource.DATABASE))


def drafted(findings: tuple[Finding, ...], comparison: RevisionComparison | None,
            repeat_still_present: bool) -> tuple[Finding, ...]:
    """The findings a draft may comment on: not one a maintainer dismissed
    on an earlier revision, and a still-present one only when configured."""
    if comparison is None:
        return findings
    out = []
    for f in findings:
        prior = comparison.continued.get(f.key)
        if prior is not None and prior.dismissed:
            continue
        if f.revision_status is RevisionStatus.STILL_PRESENT and not repeat_still_present:
            continue
        out.append(f)
    return tuple(out)
