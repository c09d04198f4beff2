"""Function definitions in C text that may start and end anywhere: pure.

A hunk side is a run of lines cut out of a file: it can begin inside a
function's body, its parameter list, a comment or a macro's continuation
lines, and end anywhere, including on a definition's first line. A parser
for whole translation units (tree-sitter-c) loses the function cut off at
the end and mislabels the one cut off at the start, so this module reads
the text lexically, in one pass per phase, linear in its length:

1. Tokens: identifiers and the punctuation that shapes C at file level
   (`{ } ( ) ; :`); comments, literals and preprocessor directives are
   set aside, `#if`/`#else` branches are counted once, as ctags does.
2. The head: where the text starts inside something that begins above it.
   The kernel's layout (checkpatch-enforced) says how to tell: a function's
   closing brace stands alone in column 0 and its definition starts in
   column 0, so the first column-0 `}` that closes more than the text
   opened ends the head; a first statement that closes a parenthesis it
   did not open continues the header's declaration (a parameter list),
   and is a function if it goes on to open a brace.
3. The rest, at file level: each statement that starts in column 0 and
   opens a brace after a parenthesised parameter list, with no `=` before
   it, is a function; its span runs to the brace that closes it or to the
   end of the text.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# Only what shapes C at file level is a token: other operators, numbers and
# `*` are skipped over by the search. Groups: 1 newline, 2 comment,
# 3 directive with its continuation lines, 4 identifier, 5 punctuation,
# 6 what a function header cannot hold (literals, `=`, `,`, `[`).
_TOKEN = re.compile(r"""
    (\n)
  | (/\*.*?(?:\*/|\Z)|//[^\n]*)
  | (^[ \t]*\#(?:[^\n]*\\\n)*[^\n]*)
  | ([A-Za-z_]\w*)
  | ([{}();:])
  | ("(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?|[=,\[])
""", re.S | re.M | re.X)
_WORD = re.compile(r"[A-Za-z_]\w*")
_PP_WORD = re.compile(r"[ \t]*#[ \t]*(\w*)")
# A line that continues a block comment (` * text`, ` */`), not `*ptr = x;`.
_COMMENT_BODY = re.compile(r"[ \t]*\*(?:[ \t/]|$)")
_PP_FILE_LEVEL = re.compile(r"#[ \t]*(?:define|undef|include)\b")
# The last line of a multi-line macro: `} while (0)` or `})` with no `;`.
_MACRO_TAIL = re.compile(r"\s*\}\s*(?:while\s*\(\s*0\s*\)|\))\s*(?:/[/*].*)?$")
# The end of a parameter declaration before `)`: a type and a name.
_PARAMETER = re.compile(r"(?:^|[(,])\s*[A-Za-z_][\w \t*]*[ \t*]\w+\s*$")
_LABEL = re.compile(r"[A-Za-z_]\w*[ \t]*:(?!:)")

# Attributes that take arguments and may stand in column 0 under a header.
ATTRIBUTES = frozenset({
    "__attribute__", "__attribute", "__aligned", "__section", "__printf", "__scanf",
    "__acquires", "__releases", "__must_hold", "__cond_acquires", "__alloc_size",
    "__counted_by", "__diag_ignore", "__assume_aligned",
})
# Identifiers that cannot name a function although `(` follows them.
NOT_NAMES = ATTRIBUTES | frozenset({
    "if", "for", "while", "switch", "return", "sizeof", "do", "else", "case", "goto",
    "typeof", "__typeof__", "_Alignof", "alignof", "_Static_assert", "static_assert",
    "offsetof", "defined", "asm", "__asm__", "volatile",
    "void", "char", "short", "int", "long", "unsigned", "signed", "float", "double",
    "_Bool", "bool", "const", "static", "extern", "inline", "struct", "union", "enum",
})
_DEFINED_IN_HEADERS = frozenset({"static", "inline", "__inline", "__inline__",
                                 "__always_inline"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CSpan:
    """A function in the text, by 0-based line offsets."""

    name: str
    start: int
    end: int
    has_end: bool


class Head(enum.StrEnum):
    """What the text starts in, when that begins above it."""

    NONE = "none"                # nothing: the text starts at file level
    BODY = "body"                # a body (or braced block) it closes: a column-0 `}`
    FUNCTION = "function"        # the header's parameter list, going on into a body
    DECLARATION = "declaration"  # the header's parameter list, ending in `;`
    INSIDE = "inside"            # no end in the text; its lines look like a body
    OUTSIDE = "outside"          # no end in the text; its lines look like file level


@dataclass(frozen=True, slots=True, kw_only=True)
class CScan:
    """What the text says about its functions: the head (lines 0..`head`,
    none if -1) and whether the text closes it; each function that starts
    in the text."""

    head: int
    head_kind: Head
    head_closed: bool
    spans: tuple[CSpan, ...]


# Tokens: (kind, value, line, column). Kinds: "id", "p" (punctuation shown
# by its value), "o" (code a function header cannot hold), "pp" (a
# directive, shown by its keyword).
_Tok = tuple[str, str, int, int]


def _skip_prefix(lines: list[str], text: str) -> tuple[int, bool]:
    """Offset in `text` (the lines joined) where code starts when the text
    begins inside a block comment or a macro's continuation lines (both run
    on from above it), and whether it was a macro."""
    close, open_ = text.find("*/"), text.find("/*")
    if close >= 0 and (open_ < 0 or close < open_):
        return close + 2, False
    pos = k = 0
    while k < len(lines) and not lines[k].strip():
        pos += len(lines[k]) + 1
        k += 1
    if k < len(lines) and _COMMENT_BODY.match(lines[k]) and open_ < 0:
        while k < len(lines) and (_COMMENT_BODY.match(lines[k]) or not lines[k].strip()):
            pos += len(lines[k]) + 1
            k += 1
        return min(pos, len(text)), False
    if k < len(lines) and lines[k].rstrip().endswith("\\") and \
            not lines[k].lstrip().startswith("#"):
        while k < len(lines) and lines[k].rstrip().endswith("\\"):
            pos += len(lines[k]) + 1
            k += 1
        return min(pos + (len(lines[k]) + 1 if k < len(lines) else 0), len(text)), True
    return 0, False


def tokens(lines: list[str], pp_lines: set[int] | None = None) -> list[_Tok]:
    """The tokens of `lines`; lines of directives (and of a macro the text
    starts inside) are added to `pp_lines`."""
    text = "\n".join(lines)
    start, macro = _skip_prefix(lines, text)
    line = text.count("\n", 0, start)
    bol = text.rfind("\n", 0, start) + 1
    if macro and pp_lines is not None:
        pp_lines.update(range(line + (bol < start)))
    out: list[_Tok] = []
    append = out.append
    for m in _TOKEN.finditer(text, start):
        group = m.lastindex
        if group == 1:
            line += 1
            bol = m.end()
        elif group == 4:
            append(("id", m.group(), line, m.start() - bol))
        elif group == 5:
            append(("p", m.group(), line, m.start() - bol))
        elif group == 6:
            append(("o", "", line, m.start() - bol))
        else:
            value = m.group()
            pos = m.start()
            newlines = value.count("\n")
            if group == 3:
                word = _PP_WORD.match(value)
                append(("pp", word.group(1) if word else "", line, pos - bol))
                if pp_lines is not None:
                    pp_lines.update(range(line, line + newlines + 1))
            if newlines:
                line += newlines
                bol = pos + value.rfind("\n") + 1
    return out


class _Depth:
    """Brace depth with `#if` branches counted once: each branch starts from
    the depth at `#if`, and the depth after the first branch wins."""

    __slots__ = ("depth", "stack")

    def __init__(self) -> None:
        self.depth = 0
        self.stack: list[list[int]] = []   # [depth at #if, depth after first branch or -1]

    def directive(self, word: str) -> None:
        if word in ("if", "ifdef", "ifndef"):
            self.stack.append([self.depth, -1])
        elif word in ("else", "elif", "elifdef", "elifndef") and self.stack:
            top = self.stack[-1]
            if top[1] < 0:
                top[1] = self.depth
            self.depth = top[0]
        elif word == "endif" and self.stack:
            top = self.stack.pop()
            if top[1] >= 0:
                self.depth = top[1]


def _declaration_start(toks: list[_Tok], i: int) -> bool:
    """toks[i] starts a file-level declaration: an identifier in column 0
    that is not a goto label or an attribute continuing a header."""
    kind, value, _, col = toks[i]
    if col or kind != "id" or value in ATTRIBUTES:
        return False
    nxt = toks[i + 1] if i + 1 < len(toks) else None
    return nxt is None or nxt[1] != ":"


def _head(toks: list[_Tok], lines: list[str]) -> tuple[int, Head, int, bool]:
    """(last line of the head or -1, its kind, index of the first token
    after it, whether the text closes it)."""
    d = _Depth()
    paren = 0
    first_stmt = True     # still in the statement the text starts in
    closed_paren = False  # ... and it closed a parenthesis opened above
    sig_body = False      # ... and then opened a brace: the header's function
    params = False        # ... and what it closed was a parameter list
    decl: tuple[int, int] | None = None   # (line, next index) of the `;` ending it
    for i, (kind, value, line, col) in enumerate(toks):
        if kind == "pp":
            d.directive(value)
            continue
        if not col and kind == "id" and not sig_body and _declaration_start(toks, i):
            # Bodies hold no column-0 declarations: the text is at file level
            # here, and what it started in ended above.
            if decl is not None:
                return decl[0], Head.DECLARATION, decl[1], True
            return -1, Head.NONE, 0, False
        if kind != "p":
            continue
        if value == "(":
            paren += 1
        elif value == ")":
            paren -= 1
            if paren < 0 and first_stmt and d.depth == 0 and not closed_paren:
                closed_paren = True
                # `unsigned long x)` ends a parameter list, `hcr_el2)` a call.
                params = _PARAMETER.search(lines[line], max(0, col - 160), col) is not None
        elif value == "{":
            # A function's opening brace stands alone in column 0: after the
            # header's parameter list, or first in the text.
            if first_stmt and d.depth == 0 and not col and (closed_paren or i == 0):
                sig_body = True
            d.depth += 1
        elif value == "}":
            d.depth -= 1
            if sig_body and d.depth == 0:
                return line, Head.FUNCTION, i + 1, True
            if d.depth < 0 and not col:
                return line, Head.BODY, i + 1, True
            if d.depth <= 0:
                first_stmt = False
        elif value == ";" and d.depth == 0 and paren <= 0:
            if first_stmt and closed_paren and params and not sig_body:
                # The header's declaration ends here, unless a column-0
                # brace below shows a body after all.
                decl = (line, i + 1)
            first_stmt = False
            paren = 0
    if sig_body:
        return toks[-1][2], Head.FUNCTION, len(toks), False
    if decl is not None:
        return decl[0], Head.DECLARATION, decl[1], True
    return -1, Head.NONE, 0, False


def _name(cands: list[str]) -> str | None:
    """The function's name among the identifiers before each parenthesised
    group: the last that is not an attribute or an upper-case macro."""
    named = [c for c in cands if c not in NOT_NAMES]
    lower = [c for c in named if not c.isupper()]
    if lower:
        return lower[-1]
    return named[-1] if named else None


def _functions(toks: list[_Tok], begin: int, last_line: int, header: bool,
               lead: frozenset[str]) -> list[CSpan]:
    """Functions defined at file level in toks[begin:]; `lead` are the words
    of a declaration the first statement may continue (the hunk header's)."""
    spans: list[CSpan] = []
    d = _Depth()
    stmt_line = -1        # first line of the statement being read, -1 between statements
    stmt_col0 = False
    stmt_ok = True        # nothing in it yet that a function header cannot hold
    paren = 0
    cands: list[str] = []
    words: set[str] = set()
    prev = ""             # the previous token at paren depth 0 if an identifier
    last = ""             # the previous token's value
    in_func: str | None = None
    func_start = 0
    for i in range(begin, len(toks)):
        kind, value, line, col = toks[i]
        if kind == "pp":
            d.directive(value)
            continue
        if d.depth > 0:
            if kind == "p":
                if value == "{":
                    d.depth += 1
                elif value == "}":
                    d.depth -= 1
                    if d.depth == 0:
                        if in_func is not None:
                            spans.append(CSpan(name=in_func, start=func_start, end=line,
                                               has_end=True))
                            in_func = None
                        stmt_line = -1
            continue
        if not col and stmt_line >= 0 and paren <= 0 and (not stmt_col0 or last == ")") and \
                _declaration_start(toks, i):
            # A column-0 declaration after a statement that ends without a
            # `;`: a macro's tail (`} while (0)`) or a macro call.
            stmt_line = -1
        if stmt_line < 0:
            stmt_line, stmt_col0, stmt_ok, paren, prev = line, not col, True, 0, ""
            cands, words = [], set(lead) if i == begin == 0 else set()
        last = value
        if kind == "id":
            if paren == 0:
                prev = value
                words.add(value)
            continue
        if kind == "o":
            if paren == 0:
                stmt_ok, prev = False, ""
            continue
        # punctuation
        if value == "(":
            if paren == 0 and prev:
                cands.append(prev)
            paren += 1
        elif value == ")":
            paren -= 1
        elif value == ";":
            if paren <= 0:
                stmt_line = -1
        elif value == ":":
            if paren == 0:
                stmt_ok = False   # a label, a bit-field
        elif value == "{":
            # After a parameter list, outside parentheses (not a statement
            # expression), in a statement that starts in column 0.
            name = _name(cands) if stmt_ok and stmt_col0 and paren == 0 else None
            if name is not None:
                in_func, func_start = name, stmt_line
            d.depth += 1
        elif value == "}":
            stmt_line = -1   # a brace this text never opened: ignore it
        if value != "(" and paren == 0:
            prev = ""
    if in_func is not None:
        spans.append(CSpan(name=in_func, start=func_start, end=last_line, has_end=False))
    elif stmt_line >= 0 and stmt_ok and stmt_col0 and d.depth == 0:
        # A definition's first lines at the very end of the text: a function
        # unless it looks like a prototype (`extern`, or a header's
        # declaration that is neither static nor inline).
        name = _name(cands)
        if name is not None and "extern" not in words and "typedef" not in words and (
                not header or words & _DEFINED_IN_HEADERS):
            spans.append(CSpan(name=name, start=stmt_line, end=last_line, has_end=False))
    return spans


def _evidence(lines: list[str], pp_lines: set[int]) -> Head:
    """Whether text with no end of what it starts in is inside a function
    body or at file level. A body holds indented
    lines, labels and `#if`s only, so any line that belongs at file level
    says outside: a column-0 declaration or comment, a `#define` (or its
    continuation lines, or its last line if it is `} while (0)` or `})`),
    an `#include`. Nothing of the kind: inside, or NONE if the text is
    only blank lines and `#if`s."""
    found = Head.NONE
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        first = line[0]
        if k in pp_lines:
            if _PP_FILE_LEVEL.match(line) or (line.rstrip().endswith("\\")
                                              and first != "#"):
                return Head.OUTSIDE
            continue
        if first == " " and line.startswith(" *") and _COMMENT_BODY.match(line):
            return Head.OUTSIDE   # a file-level comment's continuation line
        if line.startswith(("/*", "//")) or _MACRO_TAIL.match(line):
            return Head.OUTSIDE
        if (first.isalpha() or first == "_") and not _LABEL.match(line):
            return Head.OUTSIDE
        found = Head.INSIDE
    return found


def scan(lines: list[str], *, header: bool = False, section: str = "") -> CScan:
    """Functions in `lines` (a whole file or a hunk side); `header` for .h
    files, where a cut-off declaration is more likely a prototype; `section`
    the line above the text that a declaration in it may begin with."""
    if not lines:
        return CScan(head=-1, head_kind=Head.NONE, head_closed=False, spans=())
    pp_lines: set[int] = set()
    toks = tokens(lines, pp_lines)
    # A header line with no parameter list (`static inline`) begins the
    # declaration the text starts with.
    lead: frozenset[str] = frozenset()
    if section and "(" not in section and not section.rstrip().endswith((";", "}", "{")):
        lead = frozenset(_WORD.findall(section))
    head, kind, begin, closed = _head(toks, lines)
    if kind is Head.FUNCTION and not closed:
        head = len(lines) - 1
    spans = _functions(toks, begin, len(lines) - 1, header, lead)
    if kind is Head.NONE and spans and spans[0].start > 0:
        # Something above ended before the first function here starts.
        head, kind = spans[0].start - 1, Head.OUTSIDE
    elif kind is Head.NONE and not spans:
        head, kind = len(lines) - 1, _evidence(lines, pp_lines)
        if kind is Head.NONE:
            # Nothing tells: inside the header's function, unless the header
            # is the first line of a prototype (in a header file, one that
            # is neither static nor inline: the kernel defines no others).
            prototype = header and section.count("(") > section.count(")") and not (
                set(_WORD.findall(section)) & _DEFINED_IN_HEADERS)
            kind = Head.OUTSIDE if prototype else Head.INSIDE
    return CScan(head=head, head_kind=kind, head_closed=closed, spans=tuple(spans))
