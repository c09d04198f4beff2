"""Output of `bot check`: text, the JSON contract, and b4's check protocol.

The JSON document is the contract other tools and the benchmarks read; it is
written incrementally (one series at a time) but is always exactly one
document:

    {"series": [{"message_id", "subject", "revision", "author",
                 "patches": [{"index", "total", "message_id", "subject", "files",
                              "trailers"}],
                 "missing": [...], "findings": [...], "pre_existing": [...],
                 "drafts": [...], "compared_to", "resolved": [...]}],
     "errors": [...]}

Re-review (bot.revisions): each finding has `revision_status` ("new" or
"still-present") and `first_seen` (the revision where it was first raised),
both null when no earlier revision was compared; `compared_to` names that
revision ({"message_id", "revision", "source"}, or null) and `resolved`
lists its findings this revision no longer has (each with `revision`,
`first_seen` and `resolved_in`). A trailer has `revision` when b4 carried
it over from an earlier revision (null when given to this one).
"""

from __future__ import annotations

import json
import re
from typing import Any, TextIO

from bot.data import (
    Finding,
    ResolvedFinding,
    RevisionStatus,
    SeriesResult,
    Severity,
    ThreadResult,
    Trailer,
)

TOOL = "kvm-sysreg"

# Control characters a terminal acts on (ESC and C1 start escape sequences;
# CR and BS overwrite what was shown). Subjects, paths and Message-IDs come
# from mail: text output drops them, JSON writes them as \u escapes.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C1 = re.compile(r"[\x7f-\x9f]")


def plain(text: str) -> str:
    """Text as it may reach a terminal: no control characters but newline
    and tab."""
    return _CONTROL.sub("", text)


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON with every control character escaped (json escapes C0 only)."""
    return _C1.sub(lambda m: "\\u%04x" % ord(m.group()),
                   json.dumps(value, ensure_ascii=False, **kwargs))


def series_dict(res: SeriesResult) -> dict[str, Any]:
    s = res.series
    return {
        "message_id": s.message_id,
        "subject": s.subject,
        "revision": s.revision,
        "author": s.author,
        "patches": [{"index": p.index, "total": p.total, "message_id": p.message_id,
                     "subject": p.subject, "files": list(p.paths),
                     "trailers": [_trailer(t) for t in p.trailers]} for p in s.patches],
        "missing": list(s.missing),
        "findings": [_finding(f) for f in res.rules.findings],
        "pre_existing": [_finding(f) for f in res.rules.pre_existing],
        "drafts": [d.as_dict() for d in res.drafts],
        "compared_to": None if res.comparison is None else {
            "message_id": res.comparison.earlier.message_id,
            "revision": res.comparison.earlier.revision,
            "source": str(res.comparison.earlier.source)},
        "resolved": [_resolved(r) for r in res.comparison.resolved] if res.comparison else [],
    }


def _finding(f: Finding) -> dict[str, Any]:
    out = f.as_dict()
    out["status"] = str(f.status)
    out["revision_status"] = str(f.revision_status) if f.revision_status else None
    out["first_seen"] = f.first_seen
    return out


def _resolved(r: ResolvedFinding) -> dict[str, Any]:
    out = r.finding.as_dict()
    out["status"] = str(r.finding.status)
    out.update(revision=r.revision, first_seen=r.first_seen, resolved_in=r.resolved_in)
    return out


def _trailer(t: Trailer) -> dict[str, Any]:
    return {"name": t.name, "value": t.value, "author": t.author,
            "message_id": t.message_id, "revision": t.revision}


class Reporter:
    """Collects thread results and writes them in one format."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self.errors: list[str] = []
        self.worst: Severity | None = None
        self._first = True
        self._b4_series: list[SeriesResult] = []
        if fmt == "json":
            out.write('{"series": [')

    def _note(self, findings: tuple[Finding, ...]) -> None:
        for f in findings:
            if f.status == "open" and (self.worst is None or f.severity.rank > self.worst.rank):
                self.worst = f.severity

    def add(self, result: ThreadResult) -> None:
        for err in result.errors:
            self.errors.append("%s: %s" % (err.message_id or err.origin, err.reason))
        for res in result.results:
            self.errors.extend(res.rules.errors)
            self._note(res.rules.findings)
            if self.fmt == "json":
                self.out.write(("\n" if self._first else ",\n") + dumps(series_dict(res)))
                self._first = False
            elif self.fmt == "text":
                self._text(res)
            else:
                self._b4_series.append(res)

    def _text(self, res: SeriesResult) -> None:
        s = res.series

        def w(text: str) -> None:
            self.out.write(plain(text))

        w("%s v%d: %s\n  by %s\n" % (s.message_id, s.revision, s.subject, s.author))
        if res.comparison is not None:
            earlier = res.comparison.earlier
            still = sum(f.revision_status is RevisionStatus.STILL_PRESENT
                        for f in res.rules.findings)
            w("  compared with v%d (%s, %s): %d new, %d still present, %d resolved\n" % (
                earlier.revision, earlier.source, earlier.message_id,
                len(res.rules.findings) - still, still, len(res.comparison.resolved)))
        for p in s.patches:
            w("  [%d/%d] %s\n" % (p.index, p.total, p.subject))
            for t in p.trailers:
                w("      %s: %s%s\n" % (t.name, t.value,
                                       " (given to v%d)" % t.revision if t.revision else ""))
        if s.missing:
            w("  missing: %s\n" % ", ".join(str(i) for i in s.missing))
        for f in res.rules.findings:
            where = "%s:%s" % (f.file, f.line) if f.file else "commit message"
            since = ("  (still present since v%s)" % f.first_seen
                     if f.revision_status is RevisionStatus.STILL_PRESENT else "")
            w("  %s %s [%s] patch %d %s: %s%s\n" % (f.severity, f.rule, f.category, f.patch,
                                                   where, f.message, since))
            if f.status != "open":
                w("    (%s)\n" % f.status)
        for r in res.comparison.resolved if res.comparison else ():
            gone = r.finding
            where = "%s:%s" % (gone.file, gone.line) if gone.file else "commit message"
            w("  resolved: %s [%s] raised on v%d, patch %d %s: %s\n" % (
                gone.rule, gone.category, r.revision, gone.patch, where, gone.message))
        if res.rules.pre_existing:
            w("  %d pre-existing finding(s) in code the series does not change\n"
              % len(res.rules.pre_existing))
        for d in res.drafts:
            w("  draft reply to %s: %s\n" % (d.in_reply_to, d.subject))
        w("\n")

    def finish(self) -> None:
        if self.fmt == "json":
            self.out.write("\n], \"errors\": %s}\n" % dumps(self.errors))
        elif self.fmt == "text":
            for err in self.errors:
                self.out.write("error: %s\n" % plain(err))
        else:
            self.out.write(dumps(self._b4_results(), indent=1) + "\n")
        self.out.flush()

    def _b4_results(self) -> list[dict[str, Any]]:
        """b4 review's external check protocol: a list of {tool, status, ...}."""
        results = []
        for res in self._b4_series:
            open_f = [f for f in res.rules.findings if f.status == "open"]
            ranks = [f.severity.rank for f in open_f]
            worst = max(ranks, default=-1)
            status = ("fail" if worst >= Severity.ERROR.rank
                      else "warn" if worst >= Severity.QUESTION.rank else "pass")
            counts: dict[str, int] = {}
            for f in open_f:
                counts[str(f.severity)] = counts.get(str(f.severity), 0) + 1
            summary = (", ".join("%d %s" % (n, sev) for sev, n in counts.items())
                       if counts else "no HCR_EL2/MDCR_EL2 findings")
            details = []
            for f in open_f:
                where = "%s:%s" % (f.file, f.line) if f.file else "commit message"
                reg = "%s%s" % (f.register or "", ("." + "/".join(f.fields)) if f.fields else "")
                details.append("%s: %s [%s %s] %s" % (where, f.severity, f.category, reg.strip(),
                                                      f.message))
            entry: dict[str, Any] = {"tool": TOOL, "status": status, "summary": summary}
            if details:
                entry["details"] = "\n".join(details)
            results.append(entry)
        if self.errors:  # a message that could not be checked is a failed check
            results.append({"tool": TOOL, "status": "fail",
                            "summary": "%d message(s) could not be checked" % len(self.errors),
                            "details": "\n".join(self.errors)})
        return results

    def exit_code(self, fail_on: str) -> int:
        if fail_on == "never" or self.fmt == "b4" or self.worst is None:
            return 0
        return 1 if self.worst.rank >= Severity(fail_on).rank else 0
