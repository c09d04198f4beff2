"""Real kernel files cut the way `git diff -U3` cuts them, and the truth to check against.

A hunk side is a run of consecutive lines of a file, headed by the section
git writes: the last line above the run that starts with a letter, `_` or
`$` (git's default funcname rule, the first 80 bytes, trailing blanks
dropped), or, with the `cpp` diff driver the kernel's .gitattributes selects
for *.c and *.h, the last such line that is not a goto label.

`windows()` yields runs that start and end at every line of the file (short
runs, like hunks around one change) and runs that begin in one function and
end at every line of the next one, or begin at every line of a function and
run into the next: the shapes that cut a function off at either end.

The truth comes from the whole file: tree-sitter-c's function_definition
nodes for C (the test checks the whole-file parse against the kernel's
layout before trusting it), SYM_*_START/END, ENTRY/ENDPROC and .macro/.endm
blocks for assembly. Used by tests/test_attribution.py and
bench/attribution.py; imports no pytest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter
import tree_sitter_c

# One file per kind of code the rules read: the world switch (both modes and
# the shared header), the TLB switch, host-side debug setup, and assembly.
FILES = (
    "arch/arm64/kvm/hyp/vhe/switch.c",
    "arch/arm64/kvm/hyp/nvhe/switch.c",
    "arch/arm64/kvm/hyp/include/hyp/switch.h",
    "arch/arm64/kvm/hyp/vhe/tlb.c",
    "arch/arm64/kvm/hyp/nvhe/tlb.c",
    "arch/arm64/kvm/debug.c",
    "arch/arm64/include/asm/kvm_emulate.h",
    "arch/arm64/kvm/hyp/nvhe/host.S",
    "arch/arm64/kvm/hyp/hyp-entry.S",
    "arch/arm64/kvm/hyp/nvhe/hyp-init.S",
    "arch/arm64/include/asm/el2_setup.h",
)
# Headers of assembler macros (`#error Assembly-only header` without __ASSEMBLY__).
ASM_HEADERS = ("arch/arm64/include/asm/el2_setup.h",)

Attribute = Callable[[list[str], str, str], list[str | None]]

_LABEL = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z_0-9]*:[ \t]*($|/[/*])")
_FUNCNAME_LEN = 80   # git keeps this many bytes of the funcname line


def git_section(lines: list[str], start: int, *, cpp: bool = False) -> tuple[int, str]:
    """The section git writes in the header of a hunk starting at `start`,
    and the index of the line it comes from (-1 if none)."""
    for i in range(start - 1, -1, -1):
        line = lines[i]
        first = line[:1]
        if not (first.isascii() and (first.isalpha() or first == "_" or
                                     (first == "$" and not cpp))):
            continue
        if cpp and _LABEL.match(line):
            continue
        return i, line.encode()[:_FUNCNAME_LEN].decode("utf-8", "ignore").rstrip()
    return -1, ""


def is_label(section: str) -> bool:
    return bool(_LABEL.match(section))


# -- truth ------------------------------------------------------------------

def _declarator_name(node: tree_sitter.Node) -> str | None:
    cur = node.child_by_field_name("declarator")
    while cur is not None and cur.type != "function_declarator":
        cur = cur.child_by_field_name("declarator")
    if cur is None:
        return None
    ident = cur.child_by_field_name("declarator")
    while ident is not None and ident.type != "identifier":
        ident = ident.child_by_field_name("declarator")
    return ident.text.decode() if ident is not None and ident.text is not None else None


def c_truth(text: str) -> list[str | None]:
    """The function each line of a whole C file belongs to, by tree-sitter-c."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))
    tree = parser.parse(text.encode())
    out: list[str | None] = [None] * len(text.split("\n"))
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            name = _declarator_name(node)
            for i in range(node.start_point[0], node.end_point[0] + 1):
                out[i] = name
            continue
        stack.extend(node.children)
    return out


def c_truth_problems(lines: list[str], truth: list[str | None]) -> list[str]:
    """Where the whole-file parse disagrees with the kernel's layout: every
    function starts at column 0 and ends with a `}` alone at column 0, and
    every such `}` ends a function."""
    problems = []
    for i, line in enumerate(lines):
        name = truth[i]
        first = name is not None and (i == 0 or truth[i - 1] != name)
        last = name is not None and (i + 1 == len(lines) or truth[i + 1] != name)
        if first and line[:1].isspace():
            problems.append("line %d: %s starts indented" % (i + 1, name))
        if last and not line.startswith("}"):
            problems.append("line %d: %s ends without a closing brace" % (i + 1, name))
        if line.rstrip() == "}" and not last:
            problems.append("line %d: a closing brace ends no function" % (i + 1))
    return problems


_ASM_START = re.compile(r"^\s*(?:SYM_\w*(?:FUNC|CODE)_START\w*|ENTRY)\(\s*(\w+)")
_ASM_END = re.compile(r"^\s*(?:SYM_\w*(?:FUNC|CODE)_END\w*|ENDPROC|END)\(\s*(\w+)")


def asm_truth(lines: list[str]) -> list[str | None]:
    """The block each line of an assembly file belongs to: SYM_*_START(x) to
    SYM_*_END(x) (ENTRY/ENDPROC alike), .macro x to .endm."""
    out: list[str | None] = [None] * len(lines)
    name, begin, macro = None, 0, False
    for i, line in enumerate(lines):
        m = re.match(r"\s*\.macro\s+(\w+)", line)
        if m and name is None:
            name, begin, macro = m.group(1), i, True
            continue
        s = _ASM_START.match(line)
        if s and name is None:
            name, begin, macro = s.group(1), i, False
            continue
        e = _ASM_END.match(line)
        if name is not None and ((macro and re.match(r"\s*\.endm\b", line))
                                 or (not macro and e and e.group(1) == name)):
            for k in range(begin, i + 1):
                out[k] = name
            name = None
    return out


def is_asm_file(path: str) -> bool:
    return path.endswith(".S") or path in ASM_HEADERS


def truth_of(path: str, text: str) -> list[str | None]:
    return asm_truth(text.split("\n")) if is_asm_file(path) else c_truth(text)


# -- windows ----------------------------------------------------------------

_LENGTHS = (0, 2, 6, 13)


def spans(truth: list[str | None]) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(truth):
        if truth[i] is None:
            i += 1
            continue
        j = i
        while j + 1 < len(truth) and truth[j + 1] == truth[i]:
            j += 1
        out.append((i, j))
        i = j + 1
    return out


def windows(n: int, funcs: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """(first, last) line runs of a file of `n` lines, each once."""
    seen: set[tuple[int, int]] = set()

    def emit(a: int, b: int) -> Iterator[tuple[int, int]]:
        a, b = max(a, 0), min(b, n - 1)
        if a <= b and (a, b) not in seen:
            seen.add((a, b))
            yield a, b

    for i in range(n):
        for length in _LENGTHS:
            yield from emit(i, i + length)
            yield from emit(i - length, i)
    for k, (a, b) in enumerate(funcs):
        prev_start = funcs[k - 1][0] if k else a - 20
        prev_end = funcs[k - 1][1] if k else a - 1
        nxt_end = funcs[k + 1][1] if k + 1 < len(funcs) else b + 20
        for e in range(a - 3, b + 4):
            # From inside the previous function (or just above), across this
            # one's start, cut at every line: the exit-helper case.
            yield from emit(max(prev_end - 4, prev_start), e)
            yield from emit(a - 7, e)
        for s in range(a - 3, b + 4):
            # From every line of this function into the next one.
            yield from emit(s, b + 7)
            yield from emit(s, nxt_end)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    path: str
    first: int          # 1-based lines of the window
    last: int
    section: str
    line: int           # 1-based line attributed wrongly
    expected: str | None
    got: str | None

    def __str__(self) -> str:
        return "%s:%d window %d-%d [%s]: expected %s, got %s" % (
            self.path, self.line, self.first, self.last, self.section[:50],
            self.expected, self.got)


_NO_EVIDENCE = re.compile(r"\s*(?:#\s*(?:if|ifdef|ifndef|elif|else|endif)\b.*)?$")


def name_lines(lines: list[str], truth: list[str | None], asm: bool) -> list[tuple[int, ...]]:
    """For each line in a function, the lines that name that function (one
    definition of it: `#if` branches may define a name twice): a C
    definition's `name(` line; an assembly block's start and end markers."""
    out: list[tuple[int, ...]] = [()] * len(truth)
    for a, b in spans(truth):
        name = truth[a]
        assert name is not None
        if asm:
            word = re.compile(r"\b%s\b" % re.escape(name))
            found = tuple(k for k in (a, b) if word.search(lines[k]))
        else:
            call = re.compile(r"\b%s\s*\(" % re.escape(name))
            found = (next((k for k in range(a, b + 1) if call.search(lines[k])), a),)
        for k in range(a, b + 1):
            out[k] = found
    return out


def expected(truth: list[str | None], named: list[tuple[int, ...]], first: int, last: int,
             section: str) -> list[str | None]:
    """The truth over a window, except what the window cannot tell: a
    function whose name is neither in the section (for the one the window
    starts in) nor on a line of the window that names it (its definition
    line, an assembly marker); its lines must be None."""
    want = truth[first:last + 1]
    for k, name in enumerate(want):
        if name is None or any(first <= n <= last for n in named[first + k]):
            continue
        head = named[first + k] == named[first] and first > 0 and truth[first - 1] == name
        if head and name in section and re.search(r"\b%s\b" % re.escape(name), section):
            continue
        want[k] = None
    return want


class Cuts:
    """A whole file, its truth, and the checks of windows cut out of it.

    A window of nothing but lines that tell nothing of where they are (blank
    lines, `#if`/`#else`/`#endif`, a macro's last line) may give its lines
    to the function the section line is in or to none: a blank line under a
    function's closing brace looks the same as one inside it."""

    def __init__(self, path: str, lines: list[str], truth: list[str | None],
                 named: list[tuple[int, ...]] | None = None) -> None:
        self.path, self.lines, self.truth = path, lines, truth
        self.named = named if named is not None else name_lines(lines, truth,
                                                                is_asm_file(path))
        # Lines that tell nothing of where they are: blank, `#if`/`#else`/
        # `#endif`, and the last line of a multi-line macro (no `\` of its
        # own, indented like a statement's continuation line).
        self.empty = [bool(_NO_EVIDENCE.match(ln)) or (
            k > 0 and lines[k - 1].endswith("\\") and not ln.endswith("\\"))
            for k, ln in enumerate(lines)]
        self.sections = {cpp: [git_section(lines, i, cpp=cpp) for i in range(len(lines))]
                         for cpp in (False, True)}

    def check(self, first: int, last: int, attribute: Attribute,
              *, cpp: bool = False) -> list[Mismatch]:
        where, section = self.sections[cpp][first]
        got = attribute(self.lines[first:last + 1], section, self.path)
        want = expected(self.truth, self.named, first, last, section)
        if all(self.empty[first:last + 1]):
            vague = {None, self.truth[where] if where >= 0 else None}
            return [Mismatch(path=self.path, first=first + 1, last=last + 1, section=section,
                             line=first + k + 1, expected=w, got=g)
                    for k, (g, w) in enumerate(zip(got, want, strict=True))
                    if g != w and g not in vague]
        return [Mismatch(path=self.path, first=first + 1, last=last + 1, section=section,
                         line=first + k + 1, expected=w, got=g)
                for k, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]


def load(path: str, text: str) -> Cuts:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return Cuts(path, lines, truth_of(path, text)[:len(lines)])


def check_file(path: str, text: str, attribute: Attribute,
               *, cpp: bool = False) -> tuple[int, list[Mismatch]]:
    """Windows checked, and every line attributed wrongly. With `cpp`, only
    the windows whose section the cpp driver writes differently."""
    cuts = load(path, text)
    count = 0
    bad: list[Mismatch] = []
    for first, last in windows(len(cuts.lines), spans(cuts.truth)):
        if cpp and cuts.sections[True][first] == cuts.sections[False][first]:
            continue
        count += 1
        bad.extend(cuts.check(first, last, attribute, cpp=cpp))
    return count, bad


def read(tree: Path, path: str) -> str:
    return (tree / path).read_text()
