"""b4's check protocols: `--format b4` (review-perpatch-check-cmd),
`--format b4-series` (review-series-check-cmd) and `--format checkpatch`
(am-perpatch-check-cmd and prep-perpatch-check-cmd).

For b4 review, one JSON list of `{tool, status, summary, details}` per
message; `details` is b4's structured form, itself a JSON list with one
`{status, state, context, description, srcline, url}` per finding, which
b4's TUI shows as "● warning  register-width — path:line: message", the
patch line under it and the link to the rule's explanation. An open finding
is `fail` (error) or `warn` (warning, question); what is not a problem of
this patch (resolved by a later patch, pre-existing, known to a baseline) is
listed as `pass` so the maintainer still sees it. Whatever could not be
checked is a `fail` entry saying why: `[]` would tell b4 "nothing to report"
about a patch nobody looked at.

For `checkpatch`, b4 reads each stdout line as a warning, or a failure when
it contains "ERROR:": one line per open finding in checkpatch's
`--showfile --terse` style, nothing at all for a clean patch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.data import Finding, RevisionStatus, Severity
from bot.output.terminal import clean
from bot.output.view import TOOL, SeriesView, counts, plural, source_line, where

_ORDER = {"pass": 0, "warn": 1, "fail": 2}
_CHECKPATCH_LEVEL = {Severity.ERROR: "ERROR", Severity.WARNING: "WARNING",
                     Severity.QUESTION: "CHECK", Severity.INFO: "CHECK"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """How the message was checked: with its series (from b4's tracking
    data) or alone, and the base b4 recorded for it."""

    with_series: bool = False
    base_commit: str = ""
    # Why the series could not be used, when it could not ("" otherwise).
    unavailable: str = ""

    def describe(self) -> str:
        if self.with_series:
            text = "checked with its series"
            if self.base_commit:
                text += ", base-commit %s" % self.base_commit[:12]
            return text
        if self.unavailable:
            return "checked alone (series context unavailable: %s)" % self.unavailable
        return "checked alone"


def _status(severity: Severity) -> str:
    if severity is Severity.ERROR:
        return "fail"
    return "warn" if severity.rank >= Severity.QUESTION.rank else "pass"


def _worst(statuses: list[str]) -> str:
    return max(statuses, key=_ORDER.__getitem__, default="pass")


def not_checked(reason: str) -> dict[str, Any]:
    """The entry for a message that could not be checked: a failure saying why."""
    why = clean(reason)
    return {"tool": TOOL, "status": "fail", "summary": "could not be checked: %s" % why,
            "details": json.dumps([{"status": "fail", "state": "not checked",
                                    "context": "input", "description": why, "srcline": "",
                                    "url": ""}], ensure_ascii=False)}


class B4Renderer:
    """Builds the entries; `url(rule)` says where a rule is explained."""

    def __init__(self, url: Callable[[str], str], context: Context) -> None:
        self.url = url
        self.context = context

    def _detail(self, v: SeriesView, f: Finding, status: str, note: str = "",
                label: bool = False) -> dict[str, Any]:
        text = "%s: %s%s" % (clean(where(f)), v.label(f) if label else "", clean(f.message))
        if f.revision_status is RevisionStatus.STILL_PRESENT:
            text += " (still present since v%s)" % f.first_seen
        if note:
            text += " (%s)" % note
        return {"status": status, "state": str(f.severity) if status != "pass" else "note",
                "context": f.rule, "description": text,
                "srcline": clean(source_line(f)), "url": self.url(f.rule)}

    def _details(self, v: SeriesView, keep: Callable[[Finding], bool],
                 label: bool) -> list[dict[str, Any]]:
        out = [self._detail(v, f, _status(f.severity), label=label) for f in v.open if keep(f)]
        out += [self._detail(v, f, "pass", "resolved by a later patch of the series", label)
                for f in v.resolved if keep(f)]
        out += [self._detail(v, f, "pass", "pre-existing: code the series does not change",
                             label) for f in v.pre_existing if keep(f)]
        out += [self._detail(v, f, "pass", "known: %s" % clean(reason), label)
                for f, reason in v.known if keep(f)]
        return out

    def _entry(self, v: SeriesView, keep: Callable[[Finding], bool],
               details: list[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
        open_f = [f for f in v.open if keep(f)]
        rule_errors = v.result.rules.errors
        status = _worst([d["status"] for d in details])
        details += [{"status": "fail", "state": "fail", "context": "rules",
                     "description": clean(e), "srcline": "", "url": ""} for e in rule_errors]
        notes = []
        for n, what in ((sum(map(keep, v.resolved)), "resolved in series"),
                        (sum(map(keep, v.pre_existing)), "pre-existing"),
                        (sum(keep(f) for f, _ in v.known), "known (baseline)")):
            if n:
                notes.append("%d %s" % (n, what))
        if rule_errors:
            status = "fail"
            notes.append(plural(len(rule_errors), "rule") + " failed: incomplete check")
        comparison = v.result.comparison
        if comparison is not None:
            still = sum(f.revision_status is RevisionStatus.STILL_PRESENT for f in open_f)
            notes.append("compared with v%d: %d new, %d still present"
                         % (comparison.earlier.revision, len(open_f) - still, still))
        notes.append(self.context.describe())
        if v.result.base_line:
            notes.append("base " + v.result.base_line)
        summary = prefix + (counts(open_f) or "no HCR_EL2/MDCR_EL2 findings")
        entry: dict[str, Any] = {"tool": TOOL, "status": status,
                                 "summary": "%s; %s" % (summary, "; ".join(notes))}
        if details:
            entry["details"] = json.dumps(details, ensure_ascii=False)
        return entry

    def patch(self, v: SeriesView, index: int) -> dict[str, Any]:
        """The entry for patch `index` of the series (b4's per-patch check)."""
        def keep(f: Finding) -> bool:
            return f.patch == index
        return self._entry(v, keep, self._details(v, keep, label=False))

    def series(self, v: SeriesView) -> dict[str, Any]:
        """One entry for the whole series (b4's per-series check)."""
        s = v.result.series
        details = self._details(v, lambda f: True, label=True)
        comparison = v.result.comparison
        details += [self._detail(v, r.finding, "pass", "raised on v%d, resolved in v%d"
                                 % (r.revision, r.resolved_in))
                    for r in (comparison.resolved if comparison is not None else ())]
        details += [{"status": "warn", "state": "missing", "context": "series",
                     "description": "patch %d/%d is not in the thread: not checked"
                     % (i, s.total), "srcline": "", "url": ""} for i in s.missing]
        with_findings = len({f.patch for f in v.open})
        prefix = "%s of %s: " % (plural(with_findings, "patch", "patches"),
                                 plural(s.total, "patch", "patches")) if v.open else \
            "%s: " % plural(len(s.patches), "patch", "patches")
        return self._entry(v, lambda f: True, details, prefix)


def checkpatch_lines(v: SeriesView, index: int | None = None) -> list[str]:
    """checkpatch-style lines for the open findings (of patch `index`)."""
    return ["%s: %s: %s%s [%s]" % (clean(where(f)), _CHECKPATCH_LEVEL[f.severity], v.label(f),
                                   clean(f.message), f.rule)
            for f in v.open if index is None or f.patch == index]


def checkpatch_not_checked(reason: str) -> str:
    return "-: ERROR: %s: could not be checked: %s" % (TOOL, clean(reason))
