"""One checked series as every renderer sees it: the result, its JSON
contract object, and its findings sorted by what a reader does with them
(report, mention as resolved or pre-existing, or stay quiet about because a
baseline lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.data import Finding, SeriesResult, Severity, Status

TOOL = "kvm-sysreg"

# The README section that explains the rules, for links when no dashboard
# is configured (`web.public_url`).
README_RULES = "#the-rules"


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesView:
    """One checked series as every output format shows it."""

    result: SeriesResult
    # The series object of the JSON contract (`bot.report.series_dict`).
    doc: dict[str, Any]
    # Open findings to report (a baseline's known ones taken out).
    open: tuple[Finding, ...]
    resolved: tuple[Finding, ...]
    pre_existing: tuple[Finding, ...]
    # Open findings a baseline lists, each with the reason it gives.
    known: tuple[tuple[Finding, str], ...] = ()

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.open), key=lambda s: s.rank, default=None)

    def label(self, f: Finding) -> str:
        """"[2/5] " for a finding in a series of several patches, else ""."""
        total = self.result.series.total
        return "[%d/%d] " % (f.patch, total) if total > 1 and f.patch else ""


def split(result: SeriesResult, doc: dict[str, Any],
          baseline: dict[str, str] | None = None) -> SeriesView:
    baseline = baseline or {}
    open_f: list[Finding] = []
    known: list[tuple[Finding, str]] = []
    resolved: list[Finding] = []
    for f in result.rules.findings:
        if f.status is not Status.OPEN:
            resolved.append(f)
        elif f.fingerprint in baseline:
            known.append((f, baseline[f.fingerprint]))
        else:
            open_f.append(f)
    return SeriesView(result=result, doc=doc, open=tuple(open_f), resolved=tuple(resolved),
                      pre_existing=result.rules.pre_existing, known=tuple(known))


def where(f: Finding) -> str:
    """`path:line` (gcc style), or where in the patch a finding without a
    line is."""
    if f.file and f.line:
        return "%s:%d" % (f.file, f.line)
    return f.file or "(commit message)"


def source_line(f: Finding) -> str:
    """The patch line a finding is on, as the patch shows it ("+..."), or ""."""
    if f.hunk is None or f.line is None:
        return ""
    for ln in f.hunk.lines:
        if ln.new_no == f.line:
            return str(ln.kind) + ln.text.expandtabs(8)
    return ""


def rule_url(public_url: str, rule: str) -> str:
    """Where a rule is explained: the dashboard's page for it when there is a
    dashboard, else the README's section on the rules (in the source tree or
    installed checkout), else ""."""
    if public_url:
        return "%s/rules/%s" % (public_url.rstrip("/"), rule)
    readme = Path(__file__).resolve().parent.parent.parent / "README.md"
    return readme.as_uri() + README_RULES if readme.is_file() else ""


def counts(findings: list[Finding] | tuple[Finding, ...]) -> str:
    """"1 error, 2 questions" in severity order ("" for none)."""
    by: dict[Severity, int] = {}
    for f in findings:
        by[f.severity] = by.get(f.severity, 0) + 1
    return ", ".join(plural(by[s], str(s)) for s in sorted(by, key=lambda s: -s.rank))


def plural(n: int, word: str, many: str = "") -> str:
    """"1 error", "2 errors"; `many` for irregular words ("patches")."""
    return "%d %s" % (n, word if n == 1 else (many or word + "s"))


@dataclass(kw_only=True)
class Totals:
    """What one `bot check` run found, for the summary line."""

    messages: int = 0
    series: int = 0
    series_with_findings: int = 0
    # Series with patches missing from the thread (checked as far as present).
    incomplete: int = 0
    open: list[Finding] | None = None
    resolved: int = 0
    pre_existing: int = 0
    known: int = 0
    # Findings of earlier revisions that the checked revisions no longer have.
    fixed: int = 0
    unusable: int = 0
    rule_errors: int = 0
    # Series checked with no base commit (no kernel repository, or none found).
    without_base: int = 0

    def add(self, v: SeriesView) -> None:
        if self.open is None:
            self.open = []
        self.series += 1
        base = v.result.base
        self.without_base += base is not None and base.commit is None
        self.series_with_findings += bool(v.open)
        self.incomplete += bool(v.result.series.missing)
        self.open.extend(v.open)
        self.resolved += len(v.resolved)
        self.pre_existing += len(v.pre_existing)
        self.known += len(v.known)
        if v.result.comparison is not None:
            self.fixed += len(v.result.comparison.resolved)
