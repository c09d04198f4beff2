"""`bot check --format text`: findings as kernel tools print them.

    == [v2] KVM: arm64: Keep the host MDCR_EL2 <msgid>: 2 patches
    arch/arm64/include/asm/kvm_host.h:690: warning: [1/2] ... [register-width]
    kvm-sysreg: 12 series checked: 1 warning in 1 series; 1 resolved in series

One line per finding, starting `path:line:` (gcc and checkpatch style, so
an editor's quickfix list jumps to it), under a one-line header per series;
a series without findings is listed only with -v, and a final summary line
says what was checked. With -q only the finding and error lines are
printed. -v also shows what is not reported: findings a later patch
resolves, pre-existing ones, those a baseline lists, the earlier revision's
findings this one resolved, trailers carried over from it, and the drafts.
A finding an earlier revision already had says since when ("still present
since v1"), and the header what the series was compared with.
Every mail-derived string goes through `terminal.clean`.
"""

from __future__ import annotations

from typing import Any, TextIO

from bot.data import Finding, RevisionStatus
from bot.output.terminal import clean
from bot.output.view import SeriesView, Totals, counts, plural, where

# Fields of the JSON contract shown in a series header when present: a field
# other stages add to a series is shown by naming it here.
SERIES_NOTES = ("base",)


def _note(value: Any) -> str:
    if isinstance(value, dict) and "summary" in value:
        return str(value["summary"])
    if isinstance(value, dict):
        return " ".join("%s=%s" % (k, v) for k, v in value.items() if v not in (None, "", []))
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _ranges(numbers: tuple[int, ...]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = "%s-%d" % (out[-1].split("-")[0], n)
        else:
            out.append(str(n))
    return ", ".join(out)


class TextRenderer:
    def __init__(self, out: TextIO, *, verbose: int = 0, quiet: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self.quiet = quiet

    def writes(self, v: SeriesView) -> bool:
        """Whether `series(v)` prints anything."""
        return bool(v.open) or self.verbose > 0

    def series(self, v: SeriesView) -> None:
        if not self.writes(v):
            return
        w = self.out.write
        if not self.quiet:
            w(self.header(v) + "\n")
        for f in v.open:
            w(self.finding(v, f, str(f.severity)) + "\n")
        if self.verbose <= 0 or self.quiet:
            return
        for f in v.resolved:
            w(self.finding(v, f, "note", "(%s)" % f.status) + "\n")
        for f in v.pre_existing:
            w(self.finding(v, f, "note", "(pre-existing: code the series does not change)")
              + "\n")
        for f, reason in v.known:
            w(self.finding(v, f, "note", "(known: %s)" % clean(reason)) + "\n")
        comparison = v.result.comparison
        for r in comparison.resolved if comparison is not None else ():
            w(self.finding(v, r.finding, "note", "(raised on v%d, resolved in v%d)"
                           % (r.revision, r.resolved_in), label=False) + "\n")
        for p in v.result.series.patches:
            for t in p.trailers:
                w("[%d/%d] %s: %s%s\n" % (p.index, p.total, clean(t.name), clean(t.value),
                                         " (given to v%d)" % t.revision if t.revision else ""))
        for d in v.result.drafts:
            w("draft: %s (in reply to <%s>)\n" % (clean(d.subject), clean(d.in_reply_to)))

    def header(self, v: SeriesView) -> str:
        s = v.result.series
        if s.missing:
            parts = ["%d of %d patches (missing %s)" % (len(s.patches), s.total,
                                                         _ranges(s.missing))]
        else:
            parts = [plural(len(s.patches), "patch", "patches")]
        for key in SERIES_NOTES:
            if v.doc.get(key):
                parts.append("%s %s" % (key.replace("_", " "), clean(_note(v.doc[key]))))
        comparison = v.result.comparison
        if comparison is not None:
            findings = v.result.rules.findings
            still = sum(f.revision_status is RevisionStatus.STILL_PRESENT for f in findings)
            parts.append("compared with v%d (%s, <%s>): %d new, %d still present, %d resolved"
                         % (comparison.earlier.revision, comparison.earlier.source,
                            clean(comparison.earlier.message_id), len(findings) - still, still,
                            len(comparison.resolved)))
        if not v.open:
            parts.append("no findings")
        return "== [v%d] %s <%s>: %s" % (s.revision, clean(s.subject), clean(s.message_id),
                                         ", ".join(parts))

    def finding(self, v: SeriesView, f: Finding, severity: str, note: str = "",
                label: bool = True) -> str:
        line = "%s: %s: %s%s [%s]" % (clean(where(f)), severity, v.label(f) if label else "",
                                      clean(f.message), f.rule)
        if f.revision_status is RevisionStatus.STILL_PRESENT:
            line += " (still present since v%s)" % f.first_seen
        return "%s %s" % (line, note) if note else line

    def errors(self, errors: list[tuple[str, str]]) -> None:
        """What could not be used or checked: `origin: error: why`."""
        for origin, why in errors:
            self.out.write("%serror: %s\n" % (clean(origin) + ": " if origin else "",
                                              clean(why)))

    def summary(self, t: Totals) -> None:
        if self.quiet:
            return
        found = t.open or []
        text = "kvm-sysreg: %s checked" % plural(t.series, "series", "series")
        if found:
            text += ": %s in %s" % (counts(found),
                                    plural(t.series_with_findings, "series", "series"))
        else:
            text += ": no findings"
        quiet = []
        if t.resolved:
            quiet.append("%d resolved in series" % t.resolved)
        if t.pre_existing:
            quiet.append("%d pre-existing" % t.pre_existing)
        if t.known:
            quiet.append("%d known (baseline)" % t.known)
        if t.fixed:
            quiet.append("%d fixed since an earlier revision" % t.fixed)
        if t.incomplete:
            quiet.append("%d incomplete" % t.incomplete)
        if t.unusable:
            quiet.append(plural(t.unusable, "message") + " not usable")
        if t.rule_errors:
            quiet.append(plural(t.rule_errors, "rule failure"))
        if t.without_base:
            quiet.append("%d without the base (findings on the hunks)" % t.without_base)
        if quiet:
            text += "; " + ", ".join(quiet)
        if (t.resolved or t.pre_existing or t.known or t.fixed) and self.verbose <= 0:
            text += " (-v shows them)"
        self.out.write(text + "\n")
