"""Output of `bot check`: the JSON contract, and the `Reporter` that sends
each checked thread to the chosen format (text, JSON, b4's protocols,
checkpatch lines; the renderers are in `bot.output`).

The JSON document is the contract other tools and the benchmarks read; it is
written incrementally (one series at a time) but is always exactly one
document, and fields are only ever added:

    {"series": [{"message_id", "subject", "revision", "author",
                 "patches": [{"index", "total", "message_id", "subject", "files",
                              "trailers"}],
                 "missing": [...], "findings": [...], "pre_existing": [...],
                 "drafts": [...], "compared_to", "resolved": [...], "base": {...}}],
     "errors": [...]}

`base` is what the series was checked against (bot.data.Base, see the README):
{"source", "commit", "version", "detail", "summary", "whole_files", "reason"}.

Re-review (bot.revisions): each finding has `revision_status` ("new" or
"still-present") and `first_seen` (the revision where it was first raised),
both null when no earlier revision was compared; `compared_to` names that
revision ({"message_id", "revision", "source"}, or null) and `resolved`
lists its findings this revision no longer has (each with `revision`,
`first_seen` and `resolved_in`). A trailer has `revision` when b4 carried
it over from an earlier revision (null when given to this one).

With `--baseline FILE`, `findings` leaves out what the file lists, and each
series has `baselined`: those findings, each with the file's `reason`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, TextIO

from bot.data import (
    Finding,
    Mail,
    ResolvedFinding,
    SeriesResult,
    Severity,
    ThreadResult,
    Trailer,
)
from bot.output import b4review
from bot.output.terminal import Progress
from bot.output.text import TextRenderer
from bot.output.view import TOOL, SeriesView, Totals, rule_url, split

FORMATS = ("text", "json", "b4", "b4-series", "checkpatch")
B4_FORMATS = ("b4", "b4-series")

__all__ = ["B4_FORMATS", "FORMATS", "TOOL", "Reporter", "series_dict"]

_COVER = re.compile(r"\[[^\]]*\b0+/\d+\s*\]")

# C1 control characters (CSI starts an escape sequence): subjects, paths and
# Message-IDs come from mail, and JSON output writes them as \u escapes
# (text output drops every control character, bot.output.terminal.clean).
_C1 = re.compile(r"[\x7f-\x9f]")


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
        "base": res.base_dict(),
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
    """Collects thread results and writes them in one format.

    `target` is the Message-ID of the one message a b4 check is about (the
    message on stdin); `context` says how it was checked. `baseline` maps
    the fingerprints of known findings to their reasons.
    """

    def __init__(self, fmt: str, out: TextIO, *, verbose: int = 0, quiet: bool = False,
                 baseline: dict[str, str] | None = None, public_url: str = "",
                 target: str | None = None, context: b4review.Context | None = None,
                 progress: Progress | None = None) -> None:
        self.fmt = fmt
        self.out = out
        self.baseline = baseline
        self.target = target
        self.progress = progress
        self.errors: list[str] = []
        self.totals = Totals()
        self.worst: Severity | None = None
        # Every open finding, baselined or not (for --write-baseline).
        self.open_findings: list[Finding] = []
        self._first = True
        self._views: list[SeriesView] = []
        self._mails: dict[str, Mail] = {}
        self._unusable: dict[str, str] = {}
        self._failures: list[str] = []
        self._error_lines: list[tuple[str, str]] = []
        self._text = TextRenderer(out, verbose=verbose, quiet=quiet)
        urls: dict[str, str] = {}

        def url(rule: str) -> str:
            if rule not in urls:
                urls[rule] = rule_url(public_url, rule)
            return urls[rule]

        self._b4 = b4review.B4Renderer(url, context or b4review.Context())
        if fmt == "json":
            out.write('{"series": [')

    def add(self, result: ThreadResult) -> None:
        for err in result.errors:
            self.errors.append("%s: %s" % (err.message_id or err.origin, err.reason))
            self._error_lines.append((err.message_id or err.origin, err.reason))
            # For b4 (one message on stdin) the reason alone says it all.
            self._failures.append(err.reason if err.origin == "-" and not err.message_id
                                  else self.errors[-1])
            if err.message_id:
                self._unusable[err.message_id] = err.reason
        self.totals.unusable += len(result.errors)
        if self.target is not None:
            self._mails.update((m.message_id, m) for m in result.thread.messages)
        for res in result.results:
            self.errors.extend(res.rules.errors)
            self._error_lines.extend(("", e) for e in res.rules.errors)  # they name the series
            self.totals.rule_errors += len(res.rules.errors)
            view = self._view(res)
            self.totals.add(view)
            self.open_findings.extend(f for f in res.rules.findings if f.status == "open")
            for f in view.open:
                if self.worst is None or f.severity.rank > self.worst.rank:
                    self.worst = f.severity
            if self.progress is not None and (self.fmt == "json" or self._text.writes(view)):
                self.progress.clear()  # stdout may be the same terminal
            if self.fmt == "json":
                self.out.write(("\n" if self._first else ",\n") + dumps(view.doc))
                self._first = False
            elif self.fmt == "text":
                self._text.series(view)
            else:
                self._views.append(view)
        if self.progress is not None:
            self.progress.advance(len(result.thread.messages) + len(result.errors),
                                  len(result.results))

    def _view(self, res: SeriesResult) -> SeriesView:
        known = self.baseline or {}
        kept = tuple(f for f in res.rules.findings
                     if f.status != "open" or f.fingerprint not in known)
        doc = series_dict(dataclasses.replace(res, rules=dataclasses.replace(
            res.rules, findings=kept)))
        view = split(res, doc, known)
        if self.baseline is not None:
            doc["baselined"] = [dict(_finding(f), reason=reason) for f, reason in view.known]
        return view

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.done()
        if self.fmt == "json":
            self.out.write("\n], \"errors\": %s}\n" % dumps(self.errors))
        elif self.fmt == "text":
            self._text.errors(self._error_lines)
            self._text.summary(self.totals)
        elif self.fmt == "checkpatch":
            for line in self._checkpatch():
                self.out.write(line + "\n")
        else:
            self.out.write(dumps(self._b4_results(), indent=1) + "\n")
        self.out.flush()

    def _find_target(self) -> tuple[SeriesView, int] | None:
        """The series holding the target message and its index there (0: cover)."""
        for view in self._views:
            s = view.result.series
            if s.cover is not None and s.cover.message_id == self.target:
                return view, 0
            for p in s.patches:
                if p.message_id == self.target:
                    return view, p.index
        return None

    def _why_not(self) -> tuple[str, bool]:
        """Why the target message is in no series, and whether that is
        expected (a cover letter given to a per-patch check)."""
        assert self.target is not None
        if self.target in self._unusable:
            return self._unusable[self.target], False
        mail = self._mails.get(self.target)
        if mail is None:
            return "the message could not be read", False
        if not mail.has_diff:
            if _COVER.search(mail.subject):
                return "cover letter", True
            return "no diff in the message", False
        return "b4 did not read the message as a patch of a series", False

    def _b4_results(self) -> list[dict[str, Any]]:
        """b4 review's external check protocol: a list of {tool, status, ...}."""
        if self.target is None:
            out = [self._b4.series(v) for v in self._views]
            out += [b4review.not_checked(e) for e in self._failures]
            return out or [b4review.not_checked("no patch found in the input")]
        found = self._find_target()
        if found is not None:
            view, index = found
            if self.fmt == "b4-series" or index == 0:
                entry = self._b4.series(view)
                if self.fmt == "b4" and index == 0:
                    entry["summary"] = "cover letter: " + entry["summary"]
                return [entry]
            return [self._b4.patch(view, index)]
        reason, expected = self._why_not()
        if expected and self.fmt == "b4":
            return [{"tool": TOOL, "status": "pass",
                     "summary": "cover letter: no diff to check (the series check covers "
                                "the series)"}]
        if expected:
            reason = ("the cover letter alone has no diff, and b4 gave no series "
                      "(B4_TRACKING_FILE)")
        return [b4review.not_checked(reason)]

    def _checkpatch(self) -> list[str]:
        if self.target is None:
            lines = [ln for v in self._views for ln in b4review.checkpatch_lines(v)]
            return lines + [b4review.checkpatch_not_checked(e) for e in self._failures]
        found = self._find_target()
        if found is not None:
            view, index = found
            return b4review.checkpatch_lines(view, index or None)
        reason, expected = self._why_not()
        return [] if expected else [b4review.checkpatch_not_checked(reason)]

    def exit_code(self, fail_on: str) -> int:
        if fail_on == "never" or self.fmt in B4_FORMATS or self.worst is None:
            return 0
        return 1 if self.worst.rank >= Severity(fail_on).rank else 0
