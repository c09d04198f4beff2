"""Running the generated mails through the bot and scoring the findings.

The mails go through the bot's own input code (an mbox read by
`bot.sources.InputSet`) and `bot.pipeline.Checker`, in process: exactly
what `bot check --format json` does, without a process per mail. "With the
tree" sets one configuration key to the scratch repository of the 6.12
files (`TREE_KEY`); switching the bot's kernel-repository setting is a
change to that one line.

A buggy case is caught when an open finding of one of its categories, at
question severity or above, is on the patch, in a file and within 3 lines
of one of the case's anchors (the mutated line, or the unchanged line the
mutation acts on). On neutral cases every open error or warning finding
counts against the bot.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mutate.cases import Case
from mutate.mail import message_id

from bot import config as botconfig
from bot.data import Finding, Severity, Status
from bot.pipeline import Checker
from bot.sources import InputSet

# The configuration key that gives the bot a kernel repository (section, key).
TREE_KEY = ("kernel", "repo")

NEAR = 3


def tree_config(repo: Path | None, workdir: Path) -> botconfig.Config:
    """The default configuration, plus the kernel tree when `repo` is given;
    the rules in the checking process (the bench spreads cases over its own
    processes, --jobs)."""
    path = workdir / ("tree.toml" if repo else "plain.toml")
    text = '[%s]\n%s = "%s"\n' % (TREE_KEY[0], TREE_KEY[1], repo) if repo else ""
    text += "[rules]\nworkers = 0\n"
    path.write_text(text)
    return botconfig.load(path, environ={"BOT_STATE_DIR": str(workdir / "state")})


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    findings: tuple[Finding, ...]
    caught: bool
    loud: tuple[Finding, ...]     # open error/warning findings
    # Not caught, but an open finding of the kind's category is elsewhere
    # in the patch (wrong line or below question).
    elsewhere: bool = False


def caught(case: Case, findings: Iterable[Finding]) -> bool:
    for f in findings:
        if f.status is not Status.OPEN or f.patch != 1 or f.line is None:
            continue
        if str(f.category) not in case.categories:
            continue
        if f.severity.rank < Severity.QUESTION.rank:
            continue
        if any(f.file == path and abs(f.line - line) <= NEAR for path, line in case.anchors):
            return True
    return False


def loud(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(f for f in findings if f.status is Status.OPEN
                 and f.severity.rank >= Severity.WARNING.rank)


def run(cases: list[Case], mails: dict[str, str], checker: Checker,
        seed: int) -> list[Outcome]:
    """Check every case's mail; `mails` maps case id to mail text."""
    cfg = checker.cfg
    by_mid = {message_id(c, seed).strip("<>"): c for c in cases}
    found: dict[str, tuple[Finding, ...]] = {}
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        mbox = Path(tmp) / "all.mbox"
        with mbox.open("w") as fh:
            for case in cases:
                fh.write(mails[case.id])
        for raws in InputSet([str(mbox)], cfg.input).threads():
            result = checker.check_thread(raws)
            for sr in result.results:
                mid = (sr.series.patches[0].message_id if sr.series.patches
                       else sr.series.message_id).strip("<>")
                case = by_mid.get(mid)
                if case is not None:
                    found[case.id] = sr.rules.findings
            for err in result.errors:
                raise RuntimeError("mail not usable: %s: %s" % (err.message_id, err.reason))
    out = []
    for case in cases:
        if case.id not in found:
            raise RuntimeError("%s: the bot found no patch in its mail" % case.id)
        fs = found[case.id]
        hit = case.buggy and caught(case, fs)
        near = case.buggy and not hit and any(
            f.status is Status.OPEN and str(f.category) in case.categories for f in fs)
        out.append(Outcome(case=case, findings=fs, caught=hit, loud=loud(fs), elsewhere=near))
    return out
