"""Patch bodies into commit message, diffstat and per-file hunks: pure, no I/O.

A hunk is read by its header's line counts, so a stray line after the diff
(a mail signature, a quoted reply) never becomes part of it. Lines inside a
hunk that a mailer emptied (a context line that lost its leading space) are
context. Binary diffs are recorded as such, with no hunks. A hunk whose
header numbers no file could have (past 2**31 - 1, the largest line number
a database column holds) is read past and left out, with the reason logged:
the rest of the diff is kept.
"""

from __future__ import annotations

import logging
import re

from bot.data import DiffLine, FileDiff, Hunk, LineKind, PatchBody

logger = logging.getLogger(__name__)

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_GIT_HEADER = re.compile(r"^diff --git (\S+) (\S+)")
_INDEX = re.compile(r"^index ([0-9a-fA-F]{4,64})\.\.([0-9a-fA-F]{4,64})(?: \d+)?\s*$")
_DIFF_BEGIN = re.compile(r"^(diff --git |--- (a/|/dev/null|\S)|Index: )", re.M)
LINE_MAX = 2**31 - 1


def _strip_prefix(path: str) -> str | None:
    path = path.split("\t", 1)[0].strip()
    if path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        return path[2:]
    return path


def split_body(body: str) -> PatchBody:
    """Split a patch mail body into commit message, diffstat and file diffs."""
    m = _DIFF_BEGIN.search(body)
    if m is None:
        return PatchBody(message=body, diffstat="", files=())
    head, diff = body[: m.start()], body[m.start():]
    message, diffstat = head, ""
    sep = re.search(r"^---[ \t]*$", head, re.M)
    if sep is not None:
        message, diffstat = head[: sep.start()], head[sep.end():]
    return PatchBody(message=message.rstrip("\n") + "\n" if message.strip() else "",
                     diffstat=diffstat.strip("\n"), files=parse_diff(diff))


def parse_diff(text: str) -> tuple[FileDiff, ...]:
    """Parse unified diffs (git or plain) into `FileDiff`s."""
    lines = text.split("\n")
    files: list[FileDiff] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        git = _GIT_HEADER.match(line)
        if git is None and not (line.startswith("--- ") and i + 1 < n
                                and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        old_path = new_path = None
        old_blob = new_blob = None
        binary = False
        if git is not None:
            old_path, new_path = _strip_prefix(git.group(1)), _strip_prefix(git.group(2))
            i += 1
            # Extended header lines up to the first ---/+++ pair or hunk.
            while i < n and not lines[i].startswith(("--- ", "@@ ", "diff --git ")):
                ext = lines[i]
                if ext.startswith(("Binary files ", "GIT binary patch")):
                    binary = True
                elif ext.startswith("new file mode"):
                    old_path = None
                elif ext.startswith("deleted file mode"):
                    new_path = None
                elif ext.startswith("rename from "):
                    old_path = ext[len("rename from "):].strip()
                elif ext.startswith("rename to "):
                    new_path = ext[len("rename to "):].strip()
                elif ext.startswith("index "):
                    im = _INDEX.match(ext)
                    if im is not None:
                        old_blob, new_blob = im.group(1).lower(), im.group(2).lower()
                elif not ext.strip() or ext.startswith("-- "):
                    break
                i += 1
        if i + 1 < n and lines[i].startswith("--- ") and lines[i + 1].startswith("+++ "):
            old_path = _strip_prefix(lines[i][4:])
            new_path = _strip_prefix(lines[i + 1][4:])
            i += 2
        hunks: list[Hunk] = []
        while i < n:
            hm = _HUNK.match(lines[i])
            if hm is None:
                break
            header = lines[i]
            hunk, i = _read_hunk(hm, lines, i + 1)
            if max(hunk.old_start + hunk.old_len, hunk.new_start + hunk.new_len) > LINE_MAX:
                logger.warning("%s: hunk %s: line numbers out of range; hunk left out",
                               new_path or old_path, _short(header))
                continue
            hunks.append(hunk)
        files.append(FileDiff(old_path=old_path, new_path=new_path,
                              hunks=tuple(hunks), binary=binary, old_blob=old_blob,
                              new_blob=new_blob))
    return tuple(files)


def _number(digits: str) -> int:
    # Past LINE_MAX either way; int() of thousands of digits is slow, and
    # refused past sys.get_int_max_str_digits().
    return int(digits) if len(digits) <= 12 else LINE_MAX + 1


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


# DiffLine's slots, set directly: a frozen dataclass's __init__ sets each
# field through object.__setattr__, which costs more than the rest of
# reading a diff line. (Every diff line of a series is built here.)
_NEW = object.__new__
_SET_KIND, _SET_TEXT, _SET_OLD, _SET_NEW = (
    DiffLine.__dict__[name].__set__ for name in ("kind", "text", "old_no", "new_no"))


def _line(kind: LineKind, text: str, old_no: int | None, new_no: int | None) -> DiffLine:
    d: DiffLine = _NEW(DiffLine)
    _SET_KIND(d, kind)
    _SET_TEXT(d, text)
    _SET_OLD(d, old_no)
    _SET_NEW(d, new_no)
    return d


def _read_hunk(hm: re.Match[str], lines: list[str], i: int) -> tuple[Hunk, int]:
    old_start, new_start = _number(hm.group(1)), _number(hm.group(3))
    old_len = _number(hm.group(2)) if hm.group(2) is not None else 1
    new_len = _number(hm.group(4)) if hm.group(4) is not None else 1
    old_left, new_left = old_len, new_len
    old_no, new_no = old_start, new_start
    out: list[DiffLine] = []
    append = out.append
    added, removed, context = LineKind.ADDED, LineKind.REMOVED, LineKind.CONTEXT
    n = len(lines)
    # (Every diff line of a series passes here: the loop is kept tight.)
    while i < n and (old_left or new_left):
        line = lines[i]
        tag = line[:1]
        if tag == "+":
            if not new_left:
                break
            append(_line(added, line[1:], None, new_no))
            new_no += 1
            new_left -= 1
        elif tag == " " or not line:
            if not (old_left and new_left):
                break
            append(_line(context, line[1:], old_no, new_no))
            old_no += 1
            new_no += 1
            old_left -= 1
            new_left -= 1
        elif tag == "-":
            if not old_left:
                break
            append(_line(removed, line[1:], old_no, None))
            old_no += 1
            old_left -= 1
        elif tag != "\\":  # "\ No newline at end of file" is skipped
            break  # the hunk is shorter than its header says: stop, do not guess
        i += 1
    while i < n and lines[i].startswith("\\"):
        i += 1
    hunk = Hunk(old_start=old_start, old_len=old_len, new_start=new_start,
                new_len=new_len, section=hm.group(5).strip(), lines=tuple(out))
    return hunk, i
