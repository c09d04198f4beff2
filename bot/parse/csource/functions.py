"""Which function each line of a hunk or file belongs to: pure.

A hunk header names the function git saw last before the hunk (the
`section`); that is right for the first lines of a hunk but wrong for a line
below a function that starts inside the hunk. So the hunk's own text is
parsed with tree-sitter-c, which recovers from the cut-off first and last
function: a function whose definition starts inside the text is found with
its name and its line span, and lines before the first top-level closing
brace belong to the section's function. Assembly files use the kernel's
`SYM_*_START(name)` / `ENTRY(name)` markers and `.macro` blocks instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import tree_sitter
import tree_sitter_c

_SECTION_FUNC = re.compile(r"([A-Za-z_]\w*)\s*\(")
_SECTION_SKIP = {"if", "for", "while", "switch", "return", "sizeof", "defined", "__attribute__",
                 "SYM_FUNC_START", "SYM_CODE_START", "SYM_FUNC_START_LOCAL",
                 "SYM_CODE_START_LOCAL", "ENTRY", "ENDPROC", "DEFINE_PER_CPU"}
_ASM_START = re.compile(r"^\s*(?:SYM_(?:FUNC|CODE|INNER_LABEL)_START(?:_LOCAL|_ALIAS|_NOALIGN)?"
                        r"|ENTRY|GLOBAL)\s*\(\s*(\w+)")
_ASM_END = re.compile(r"^\s*(?:SYM_(?:FUNC|CODE)_END(?:_ALIAS)?|ENDPROC|END)\s*\(\s*(\w+)")
_ASM_MACRO = re.compile(r"^\s*\.macro\s+(\w+)")
_ASM_ENDM = re.compile(r"^\s*\.endm\b")
_ASM_LABEL = re.compile(r"^([A-Za-z_]\w*):")


@dataclass(frozen=True, slots=True, kw_only=True)
class FuncSpan:
    """A function found in a piece of text, by 0-based line offsets."""

    name: str
    start: int
    end: int
    has_start: bool      # the definition's first line is in the text
    has_end: bool        # its closing brace (or END marker) is in the text


@lru_cache(maxsize=1)
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))


def is_asm(path: str) -> bool:
    return path.endswith((".S", ".s"))


def section_function(section: str) -> str | None:
    """The function a hunk header's section names, if it names one."""
    for m in _SECTION_FUNC.finditer(section):
        name = m.group(1)
        if name not in _SECTION_SKIP and not name.isupper():
            return name
    # Assembly sections: `SYM_FUNC_START(__kvm_hyp_init)` or a label.
    sym = re.search(r"(?:SYM_\w+_START\w*|ENTRY)\s*\(\s*(\w+)", section)
    if sym:
        return sym.group(1)
    label = _ASM_LABEL.match(section.strip())
    return label.group(1) if label else None


def _declarator_name(node: tree_sitter.Node) -> str | None:
    stack = [node.child_by_field_name("declarator")]
    while stack:
        cur = stack.pop()
        if cur is None:
            continue
        if cur.type == "function_declarator":
            inner = cur.child_by_field_name("declarator")
            while inner is not None and inner.type not in ("identifier", "field_identifier"):
                inner = inner.child_by_field_name("declarator") or (
                    inner.named_children[0] if inner.named_children else None)
            if inner is None or inner.text is None:
                return None
            return inner.text.decode("utf-8", "replace")
        stack.extend(reversed(cur.named_children))
    return None


def c_functions(text: str) -> list[FuncSpan]:
    """Function definitions in C text (possibly a fragment)."""
    tree = _parser().parse(text.encode("utf-8", "replace"))
    spans: list[FuncSpan] = []
    stack = list(tree.root_node.children)
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            name = _declarator_name(node)
            body = node.child_by_field_name("body")
            closed = bool(body is not None and body.children
                          and body.children[-1].type == "}" and not body.children[-1].is_missing)
            if name:
                spans.append(FuncSpan(name=name, start=node.start_point[0],
                                      end=node.end_point[0], has_start=True, has_end=closed))
            continue
        if node.type in ("ERROR", "preproc_if", "preproc_ifdef", "preproc_else",
                         "preproc_elif", "linkage_specification", "declaration_list"):
            stack.extend(node.children)
    spans.sort(key=lambda s: s.start)
    return spans


def asm_functions(lines: list[str]) -> list[FuncSpan]:
    spans: list[FuncSpan] = []
    open_name, open_start = None, 0
    for i, line in enumerate(lines):
        m = _ASM_START.match(line) or _ASM_MACRO.match(line)
        if m:
            if open_name is not None:
                spans.append(FuncSpan(name=open_name, start=open_start, end=i - 1,
                                      has_start=True, has_end=False))
            open_name, open_start = m.group(1), i
            continue
        if open_name is not None and (_ASM_END.match(line) or _ASM_ENDM.match(line)):
            spans.append(FuncSpan(name=open_name, start=open_start, end=i, has_start=True,
                                  has_end=True))
            open_name = None
    if open_name is not None:
        spans.append(FuncSpan(name=open_name, start=open_start, end=len(lines) - 1,
                              has_start=True, has_end=False))
    return spans


def _first_toplevel_close(lines: list[str], asm: bool) -> int:
    """Offset of the first line that closes the function the text starts in."""
    for i, line in enumerate(lines):
        if asm:
            if _ASM_END.match(line) or _ASM_ENDM.match(line):
                return i
        elif line.startswith("}"):
            return i
    return len(lines)


def attribute(lines: list[str], section: str, path: str) -> list[str | None]:
    """The enclosing function of each line of a fragment (one hunk side)."""
    asm = is_asm(path)
    if not asm and not path.endswith((".c", ".h")):
        return [None] * len(lines)
    spans = asm_functions(lines) if asm else c_functions("\n".join(lines))
    out: list[str | None] = [None] * len(lines)
    first = min((s.start for s in spans), default=len(lines))
    head = section_function(section)
    if head is not None:
        close = _first_toplevel_close(lines[:first], asm)
        for i in range(min(close + 1, first, len(lines))):
            out[i] = head
    for span in spans:
        for i in range(span.start, min(span.end, len(lines) - 1) + 1):
            out[i] = span.name
    return out


def find_function(text: str, name: str, path: str) -> tuple[int, int] | None:
    """0-based (first, last) line of a named function in a whole file."""
    lines = text.split("\n")
    spans = asm_functions(lines) if is_asm(path) else c_functions(text)
    for span in spans:
        if span.name == name:
            return span.start, span.end
    return None
