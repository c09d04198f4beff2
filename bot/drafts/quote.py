"""What a reply quotes, and where each comment goes.

A reviewer trims the patch to the lines a remark is about: the file and hunk
headers (so the reader, and b4, know where they are), at most `CONTEXT`
lines before the line concerned, "[...]" where lines are left out, and the
remark directly under that line. Quoted lines are copied from the patch as
they are (never re-wrapped); only trailing white space goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.data import DiffLine, FileDiff, Finding, Hunk, LineKind, Patch, Severity

CONTEXT = 5
ELIDED = "> [...]"


@dataclass(frozen=True, slots=True, kw_only=True)
class Remark:
    """What the reply says about one finding."""

    text: str
    category: str
    # A `question` finding whose sentence asks nothing: the template adds the
    # category's question.
    ask: bool
    # An optional line under the remark (for example, since which revision
    # the problem has been present); empty for none.
    note: str = ""
    fingerprint: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """Quoted lines of the patch, then the remarks about the last of them."""

    quote: str
    remarks: tuple[Remark, ...]


def sentence(message: str) -> str:
    """A finding's message as a reviewer's sentence: one line (the template
    wraps it), starting with a capital unless it starts with an identifier."""
    text = " ".join(message.split())
    first = text.split(" ", 1)[0] if text else ""
    if first.isalpha() and first.islower():
        text = text[0].upper() + text[1:]
    return text


def remark(finding: Finding, notes: Mapping[str, str]) -> Remark:
    text = sentence(finding.message)
    return Remark(text=text, category=str(finding.category),
                  ask=finding.severity is Severity.QUESTION and "?" not in text,
                  note=notes.get(finding.fingerprint, ""), fingerprint=finding.fingerprint)


def quote_line(line: str) -> str:
    return ("> " + line).rstrip()


def _diff_line(ln: DiffLine) -> str:
    return quote_line(str(ln.kind) + ln.text)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _positions(hunk: Hunk) -> list[int]:
    """Each line's place in the new file; a removed line takes the place of
    the line that follows it."""
    out: list[int] = [0] * len(hunk.lines)
    nxt = hunk.new_start + hunk.new_len
    for i in range(len(hunk.lines) - 1, -1, -1):
        no = hunk.lines[i].new_no
        if no is not None:
            nxt = no
        out[i] = nxt
    return out


def anchor(hunk: Hunk, finding: Finding) -> int:
    """The index in `hunk` of the line a finding is about: a line its
    evidence quotes, at (or nearest to) its line number, else the line at its
    line number, else the last changed line."""
    wanted = {_norm(e) for e in finding.evidence if e.strip()}
    pos = _positions(hunk)
    cands = [i for i, ln in enumerate(hunk.lines) if ln.text.strip() and _norm(ln.text) in wanted]
    line = finding.line
    if line is not None:
        if cands:
            # Nearest to the finding's line; on a tie, the later line.
            return min(reversed(cands), key=lambda i: abs(pos[i] - line))
        at = [i for i, ln in enumerate(hunk.lines) if ln.new_no == line]
        if at:
            return at[0]
    if cands:
        return cands[-1]
    changed = [i for i, ln in enumerate(hunk.lines) if ln.kind is not LineKind.CONTEXT]
    return changed[-1] if changed else len(hunk.lines) - 1


def _locate(patch: Patch, finding: Finding) -> tuple[int, int] | None:
    """(file index, hunk index) of the hunk a finding was made on."""
    if finding.hunk is None:
        return None
    for fi, fd in enumerate(patch.files):
        for hi, h in enumerate(fd.hunks):
            if h is finding.hunk:
                return fi, hi
    for fi, fd in enumerate(patch.files):
        for hi, h in enumerate(fd.hunks):
            if h == finding.hunk and (finding.diff is None or fd.path == finding.diff.path):
                return fi, hi
    return None


def _diff_header(fd: FileDiff) -> str:
    return quote_line("diff --git a/%s b/%s" % (fd.old_path or fd.path, fd.new_path or fd.path))


def _message_block(patch: Patch, items: Sequence[Finding], notes: Mapping[str, str]) -> Block:
    """Findings on the commit message: quote the lines they cite, else the
    subject."""
    lines = patch.body.message.splitlines()
    wanted = {_norm(e) for f in items for e in f.evidence if e.strip()}
    hits = [i for i, ln in enumerate(lines) if ln.strip() and _norm(ln) in wanted]
    quoted: list[str] = []
    last = -2
    for i in hits:
        if quoted and i != last + 1:
            quoted.append(ELIDED)
        quoted.append(quote_line(lines[i]))
        last = i
    if not quoted:
        quoted = [quote_line(patch.subject)]
    return Block(quote="\n".join(quoted), remarks=tuple(remark(f, notes) for f in items))


def _unplaced_block(items: Sequence[Finding], notes: Mapping[str, str]) -> Block:
    """Findings whose hunk is not in the patch (made on the whole file):
    quote the lines they cite."""
    quoted = [quote_line(e) for f in items for e in f.evidence if e.strip()]
    head = items[0]
    if head.file:
        quoted.insert(0, quote_line("In %s%s:" % (head.file, ", %s()" % head.function
                                                  if head.function else "")))
    return Block(quote="\n".join(quoted), remarks=tuple(remark(f, notes) for f in items))


def blocks(patch: Patch, findings: Sequence[Finding],
           notes: Mapping[str, str]) -> list[Block]:
    """The reply to `patch`, as quoted blocks each followed by remarks, in the
    order of the patch: commit message, then files and hunks."""
    message = [f for f in findings if f.file is None]
    placed: dict[tuple[int, int], list[Finding]] = {}
    unplaced: dict[str, list[Finding]] = {}
    for f in findings:
        if f.file is None:
            continue
        where = _locate(patch, f)
        if where is None:
            unplaced.setdefault(f.file, []).append(f)
        else:
            placed.setdefault(where, []).append(f)
    out: list[Block] = []
    if message:
        out.append(_message_block(patch, message, notes))
    last_file = -1
    for (fi, hi) in sorted(placed):
        fd = patch.files[fi]
        hunk = fd.hunks[hi]
        head = []
        if fi != last_file:
            head.append(_diff_header(fd))
            last_file = fi
        head.append(quote_line(hunk.header))
        by_anchor: dict[int, list[Finding]] = {}
        for f in placed[(fi, hi)]:
            by_anchor.setdefault(anchor(hunk, f), []).append(f)
        cursor = 0
        for at in sorted(by_anchor):
            start = max(cursor, at - CONTEXT)
            lines = head + ([ELIDED] if start > cursor else [])
            lines += [_diff_line(ln) for ln in hunk.lines[start:at + 1]]
            out.append(Block(quote="\n".join(lines),
                             remarks=tuple(remark(f, notes) for f in by_anchor[at])))
            head, cursor = [], at + 1
    for path in unplaced:
        out.append(_unplaced_block(unplaced[path], notes))
    return out
