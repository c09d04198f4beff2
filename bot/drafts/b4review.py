"""Review comments in the files `b4 review` reads back from an agent.

b4 (0.16, `b4.review._integrate_agent_reviews`) reads
``.git/b4-review/<tip-sha>/``: ``identity.txt`` ("Name <email>"), an
optional ``series.txt`` (a note on the cover letter) and ``NNNN.txt`` for
patch NNNN (1-based, in the order of the review branch): free text before
the first ``> diff --git`` line is a note on the whole patch; after it, the
patch's diff quoted with "> " and comments as unquoted lines under the line
they concern. This module writes that text (pure); the caller finds the
directory and writes the files.

Comments come from the draft as stored, so a maintainer's edits survive:
`remarks` reads them back from the reply (each with the quoted line above
it), `patch_file` puts them under the same line of the whole quoted diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.data import FileDiff, PatchBody

_DIFF_GIT = re.compile(r"^diff --git a/(.*) b/(.*)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyRemark:
    """A remark of a reply and the quoted line above it (diff prefix
    included, trailing white space removed); `path` is None for a remark
    about the commit message or before any quoted diff."""

    path: str | None
    line: str
    text: str


def remarks(body: str) -> list[ReplyRemark]:
    """The remarks of an inline-style reply, up to its signature."""
    out: list[ReplyRemark] = []
    path: str | None = None
    last: str | None = None
    seen_quote = False
    pending: list[str] = []

    def flush() -> None:
        text = "\n".join(pending).strip("\n")
        if text.strip() and last is not None:
            out.append(ReplyRemark(path=path, line=last, text=text))
        pending.clear()

    for raw in body.splitlines():
        if raw == "-- ":
            break
        if raw.startswith(">"):
            flush()
            seen_quote = True
            quoted = raw[2:] if raw.startswith("> ") else raw[1:]
            m = _DIFF_GIT.match(quoted)
            if m:
                path, last = m.group(2), None
            elif quoted.startswith("@@ ") or quoted.strip() == "[...]":
                continue
            else:
                last = quoted.rstrip()
            continue
        if seen_quote:
            pending.append(raw)
    flush()
    return out


def _quoted(line: str) -> str:
    return "> " + line


def _file_lines(fd: FileDiff) -> list[str]:
    old = "a/" + fd.old_path if fd.old_path else "/dev/null"
    new = "b/" + fd.new_path if fd.new_path else "/dev/null"
    return ["diff --git a/%s b/%s" % (fd.old_path or fd.path, fd.new_path or fd.path),
            "--- " + old, "+++ " + new]


def patch_file(body: PatchBody, found: list[ReplyRemark]) -> str:
    """The text of one NNNN.txt: notes first, then the whole diff quoted with
    each remark under the first quoted line it names."""
    waiting: dict[tuple[str, str], list[ReplyRemark]] = {}
    notes: list[str] = []
    for r in found:
        if r.path is None:
            notes.append("%s\n%s" % (_quoted(r.line), r.text) if r.line else r.text)
        else:
            waiting.setdefault((r.path, r.line), []).append(r)
    lines: list[str] = []
    for fd in body.files:
        lines += [_quoted(x) for x in _file_lines(fd)]
        for hunk in fd.hunks:
            lines.append(_quoted(hunk.header))
            for ln in hunk.lines:
                text = str(ln.kind) + ln.text
                lines.append(_quoted(text))
                for r in waiting.pop((fd.path, text.rstrip()), []):
                    lines += ["", r.text, ""]
    for rest in waiting.values():  # lines the patch does not have (edited quotes)
        notes += ["%s\n%s" % (_quoted(r.line), r.text) for r in rest]
    # b4 splits the note from the diff at the first "\n> diff --git ": with no
    # note, the text still starts with a newline, or a patch touching two
    # files would be read as one long note.
    head = "\n\n".join(notes)
    return (head + "\n\n" if head else "\n") + "\n".join(lines) + "\n"
