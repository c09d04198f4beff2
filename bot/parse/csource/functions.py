"""Which function each line of a hunk side or a file belongs to: pure.

A hunk side is a run of lines cut out of a file, headed by the `section`
git wrote: the last line above the hunk that starts with a letter, `_` or
`$` (with the kernel's `diff=cpp` driver: that is not a goto label), cut
to 80 bytes. In kernel C that line is the definition line of the function
the hunk starts in, or of the last function or declaration above it when
the hunk starts between functions. `function_spans()` combines it with
what the text itself shows (bot/parse/csource/cscan.py for C): where the
function the hunk starts in ends, whether the hunk starts at file level
instead, and every function that starts inside the hunk, cut off at the
end or not. Lines outside every span (comments, `#define`s, prototypes,
structures between functions) belong to no function.

Assembly uses the kernel's `SYM_*_START(name)`/`SYM_*_END(name)` markers
(`ENTRY`/`ENDPROC` before 5.5) and `.macro`/`.endm` blocks; an end marker
names the block the hunk starts in even when the header does not. A label
is not a function.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bot.parse.csource.cscan import NOT_NAMES, Head, scan

_SECTION_FUNC = re.compile(r"([A-Za-z_]\w*)\s*\(")
_SECTION_SKIP = NOT_NAMES | {"SYM_FUNC_START", "SYM_CODE_START", "SYM_FUNC_START_LOCAL",
                             "SYM_CODE_START_LOCAL", "ENTRY", "ENDPROC", "DEFINE_PER_CPU"}
_C_LABEL = re.compile(r"[A-Za-z_]\w*[ \t]*:(?!:)[ \t]*(?:$|/[/*])")
_ASM_START = re.compile(r"^\s*(?:SYM_(?:TYPED_)?(?:FUNC|CODE)_START\w*|ENTRY)\s*\(\s*(\w+)\s*[,)]")
_ASM_END = re.compile(r"^\s*(?:SYM_(?:FUNC|CODE)_END\w*|ENDPROC|END)\s*\(\s*(\w+)\s*[,)]")
_ASM_MACRO = re.compile(r"^\s*\.macro\s+(\w+)")
_ASM_ENDM = re.compile(r"^\s*\.endm\b")
# Assembler directives that never appear in C: an assembly-only header.
_ASM_TEXT = re.compile(r"^\s*\.(?:macro|endm|irp|rept|endr|pushsection|popsection)\b|\\@", re.M)


@dataclass(frozen=True, slots=True, kw_only=True)
class FuncSpan:
    """A function with lines in a piece of text, by 0-based line offsets.

    `name` is "" for a function the text and its header do not name (a
    hunk header naming a goto label, an assembly macro cut above its
    `.macro` line). `from_section` says the hunk header named it: the text
    starts inside it, so `has_start` is False.
    """

    name: str
    start: int
    end: int
    has_start: bool      # the definition's first line is in the text
    has_end: bool        # its closing brace (or end marker) is in the text
    from_section: bool = False


def is_asm(path: str) -> bool:
    return path.endswith((".S", ".s"))


def _is_asm_text(lines: list[str], path: str) -> bool:
    if is_asm(path):
        return True
    return path.endswith(".h") and _ASM_TEXT.search("\n".join(lines)) is not None


def section_function(section: str) -> str | None:
    """The function a hunk header's section names, if it names one: a C
    definition line (not a declaration ending in `;`, not a label, not a
    one-line function the line itself closes) or an assembly start marker."""
    line = section.strip()
    sym = re.search(r"(?:SYM_(?:TYPED_)?(?:FUNC|CODE)_START\w*|ENTRY)\s*\(\s*(\w+)", line)
    if sym:
        return sym.group(1)
    if not line or line.endswith(";") or _C_LABEL.match(line) or line.startswith("typedef"):
        return None
    if "{" in line and line.count("{") == line.count("}"):
        return None
    for m in _SECTION_FUNC.finditer(line):
        name = m.group(1)
        if name not in _SECTION_SKIP and not name.isupper():
            return name
    return None


def _c_spans(lines: list[str], section: str, path: str) -> list[FuncSpan]:
    found = scan(lines, header=path.endswith(".h"), section=section)
    spans: list[FuncSpan] = []
    if found.head >= 0 and found.head_kind in (Head.BODY, Head.FUNCTION, Head.INSIDE):
        name = section_function(section)
        if name is not None or _C_LABEL.match(section.strip()):
            spans.append(FuncSpan(name=name or "", start=0, end=found.head, has_start=False,
                                  has_end=found.head_closed, from_section=name is not None))
    spans.extend(FuncSpan(name=s.name, start=s.start, end=s.end, has_start=True,
                          has_end=s.has_end) for s in found.spans)
    return spans


def _asm_start(line: str) -> tuple[str, bool] | None:
    """(name, is a macro) if the line opens a block."""
    m = _ASM_MACRO.match(line)
    if m:
        return m.group(1), True
    s = _ASM_START.match(line)
    return (s.group(1), False) if s else None


def asm_functions(lines: list[str], offset: int = 0) -> list[FuncSpan]:
    """SYM_*_START..END (ENTRY..ENDPROC) and .macro..endm blocks that start in
    lines[offset:]; a block cut off at the end runs to the last line."""
    spans: list[FuncSpan] = []
    block: tuple[str, bool] | None = None   # (name, is a macro) of the open block
    begin = 0
    for i in range(offset, len(lines)):
        line = lines[i]
        if block is not None:
            name, macro = block
            e = None if macro else _ASM_END.match(line)
            if (_ASM_ENDM.match(line) if macro else (e is not None and e.group(1) == name)):
                spans.append(FuncSpan(name=name, start=begin, end=i, has_start=True,
                                      has_end=True))
                block = None
                continue
            if macro or _asm_start(line) is None:
                continue
            # A start marker with the previous block never ended: it ends here.
            spans.append(FuncSpan(name=name, start=begin, end=i - 1, has_start=True,
                                  has_end=False))
        block, begin = _asm_start(line), i
    if block is not None:
        spans.append(FuncSpan(name=block[0], start=begin, end=len(lines) - 1,
                              has_start=True, has_end=False))
    return spans


def _asm_spans(lines: list[str], section: str) -> list[FuncSpan]:
    # The block the text starts in ends at the first end marker above any
    # start marker, which names it; with neither, the header's start
    # marker names it (a header past its end marker would be that marker).
    for i, line in enumerate(lines):
        if _asm_start(line) is not None:
            return asm_functions(lines, i)
        e = _ASM_END.match(line)
        if e or _ASM_ENDM.match(line):
            head = FuncSpan(name=e.group(1) if e else "", start=0, end=i, has_start=False,
                            has_end=True)
            return [head, *asm_functions(lines, i + 1)]
    name = section_function(section) if _ASM_START.match(section) else None
    if name is None:
        return []
    return [FuncSpan(name=name, start=0, end=len(lines) - 1, has_start=False, has_end=False,
                     from_section=True)]


def function_spans(lines: list[str], section: str, path: str) -> list[FuncSpan]:
    """Every function with lines in a hunk side (or a whole file, with
    section ""), in order; lines outside them belong to no function."""
    if not lines:
        return []
    if _is_asm_text(lines, path):
        return _asm_spans(lines, section)
    if not path.endswith((".c", ".h")):
        return []
    return _c_spans(lines, section, path)


def attribute(lines: list[str], section: str, path: str) -> list[str | None]:
    """The enclosing function of each line of a fragment (one hunk side)."""
    return list(_attribute(tuple(lines), section, path))


# Revisions of a series, and pull requests, repeat the same hunks: a hunk
# side is scanned once per process (by content; bounded).
@functools.lru_cache(maxsize=1024)
def _attribute(lines: tuple[str, ...], section: str, path: str) -> tuple[str | None, ...]:
    out: list[str | None] = [None] * len(lines)
    for span in function_spans(list(lines), section, path):
        for i in range(span.start, span.end + 1):
            out[i] = span.name or None
    return tuple(out)


def c_functions(text: str) -> list[FuncSpan]:
    """Function definitions that start in C text (possibly a fragment)."""
    return [s for s in _c_spans(text.split("\n"), "", "text.c") if s.has_start]


def find_function(text: str, name: str, path: str) -> tuple[int, int] | None:
    """0-based (first, last) line of a named function in a whole file."""
    for span in function_spans(text.split("\n"), "", path):
        if span.name == name and span.has_start:
            return span.start, span.end
    return None
