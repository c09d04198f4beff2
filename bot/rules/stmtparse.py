"""Parsing C function bodies into the statements of bot.rules.cstmt.

A recursive-descent reader over bot.rules.cexpr's tokens: blocks, if/else,
loops, switch, return and jumps, declarations (their type's width kept),
expression statements, inline assembly, preprocessor lines and labels.
Whole functions get their signature read too; a fragment (a hunk that
starts or ends inside the function) parses as far as it goes. Never
raises: what it cannot read becomes an Unknown expression.
"""

from __future__ import annotations

import functools
import re

from bot.rules.cexpr import TYPE_WORDS, Expr, Tok, Unknown, parse_expr, tokenize
from bot.rules.cstmt import (
    UNSEEN,
    Asm,
    Block,
    Decl,
    Declarator,
    ExprStmt,
    Function,
    If,
    Jump,
    Label,
    Loop,
    Param,
    Preproc,
    Return,
    Stmt,
    Switch,
)

_STORAGE = frozenset({"static", "const", "volatile", "register", "extern", "unsigned", "signed",
                      "struct", "union", "enum", "__maybe_unused", "__always_unused", "__user",
                      "__iomem", "__percpu", "__rcu"})
_NOT_TYPE = frozenset({"return", "if", "else", "for", "while", "do", "switch", "case", "default",
                       "goto", "break", "continue", "sizeof", "asm", "__asm__", "typeof"})


class _StmtParser:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def peek(self, k: int = 0) -> Tok | None:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else None

    def at(self, text: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok is not None and tok.text == text and tok.kind in ("op", "id")

    def line(self) -> int:
        tok = self.peek()
        return tok.line if tok is not None else (self.toks[-1].line if self.toks else 0)

    def items(self, until_brace: bool) -> list[Stmt]:
        out: list[Stmt] = []
        while self.peek() is not None:
            if self.at("}"):
                self.pos += 1
                if until_brace:
                    return out
                continue  # a fragment that began inside a block: its end
            before = self.pos
            stmt = self.stmt()
            if stmt is not None:
                out.append(stmt)
            if self.pos == before:
                self.pos += 1
        return out

    def paren(self, for_head: bool = False) -> list[Tok]:
        """Tokens between a '(' at the cursor and its ')'."""
        if not self.at("("):
            return []
        depth = 0
        start = self.pos + 1
        while self.peek() is not None:
            tok = self.toks[self.pos]
            self.pos += 1
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
                if depth == 0:
                    return self.toks[start:self.pos - 1]
            elif tok.text in ("{", "}", ";") and depth <= 1 and tok.kind == "op" and not (
                    for_head and tok.text == ";"):
                # An unbalanced condition (a fragment): stop before the brace.
                self.pos -= 1
                return self.toks[start:self.pos]
        return self.toks[start:self.pos]

    def until_semicolon(self) -> list[Tok]:
        depth = 0
        start = self.pos
        while self.peek() is not None:
            tok = self.toks[self.pos]
            if tok.kind == "op":
                if tok.text in ("(", "["):
                    depth += 1
                elif tok.text in (")", "]"):
                    depth -= 1
                elif tok.text == ";" and depth <= 0:
                    self.pos += 1
                    return self.toks[start:self.pos - 1]
                elif tok.text == "{" and depth <= 0:
                    # `= { ... }` initialisers: skip the braces.
                    if self.pos > start and self.toks[self.pos - 1].text == "=":
                        self._skip_braces()
                        continue
                    return self.toks[start:self.pos]
                elif tok.text == "}" and depth <= 0:
                    return self.toks[start:self.pos]
            elif tok.kind == "pp":
                return self.toks[start:self.pos]
            self.pos += 1
        return self.toks[start:self.pos]

    def _skip_braces(self) -> None:
        depth = 0
        while self.peek() is not None:
            tok = self.toks[self.pos]
            self.pos += 1
            if tok.text == "{":
                depth += 1
            elif tok.text == "}":
                depth -= 1
                if depth == 0:
                    return

    def stmt(self) -> Stmt | None:
        tok = self.peek()
        if tok is None:
            return None
        line = tok.line
        if tok.kind == "pp":
            self.pos += 1
            return Preproc(tok.text, line)
        if tok.kind == "op":
            if tok.text == "{":
                self.pos += 1
                return Block(tuple(self.items(until_brace=True)), line)
            if tok.text == ";":
                self.pos += 1
                return None
        if tok.kind == "id":
            word = tok.text
            if word == "if":
                self.pos += 1
                cond_toks = self.paren()
                cond = parse_expr(cond_toks)
                cond_end = cond_toks[-1].line if cond_toks else line
                then = self.stmt() or Block((), line)
                other = None
                if self.at("else"):
                    self.pos += 1
                    other = self.stmt() or Block((), line)
                return If(cond, then, other, line, cond_end)
            if word in ("while", "for"):
                self.pos += 1
                head = self.paren(for_head=word == "for")
                if word == "for":
                    parts = _split_top(head, ";")
                    cond = parse_expr(parts[1]) if len(parts) > 1 else Unknown("")
                else:
                    cond = parse_expr(head)
                return Loop(word, cond, self.stmt() or Block((), line), line)
            if word == "do":
                self.pos += 1
                body = self.stmt() or Block((), line)
                until: Expr = Unknown("")
                if self.at("while"):
                    self.pos += 1
                    until = parse_expr(self.paren())
                    if self.at(";"):
                        self.pos += 1
                return Loop("do", until, body, line)
            if word == "switch":
                self.pos += 1
                expr = parse_expr(self.paren())
                return Switch(expr, self.stmt() or Block((), line), line)
            if word in ("case", "default"):
                self.pos += 1
                while self.peek() is not None and not self.at(":"):
                    self.pos += 1
                self.pos += 1
                return Label(word, line)
            if word == "return":
                self.pos += 1
                toks = self.until_semicolon()
                return Return(parse_expr(toks) if toks else None, line,
                              toks[-1].line if toks else line)
            if word in ("break", "continue", "goto"):
                self.until_semicolon()
                return Jump(word, line)
            if word in ("asm", "__asm__", "__asm"):
                self.pos += 1
                while self.at("volatile") or self.at("__volatile__") or self.at("goto") \
                        or self.at("inline"):
                    self.pos += 1
                inner = self.paren()
                if self.at(";"):
                    self.pos += 1
                return Asm(" ".join(t.text for t in inner), line)
            if self.at(":", 1) and not self.at(":", 2) and word not in _NOT_TYPE:
                self.pos += 2
                return Label(word, line)
            loop = self.macro_loop()
            if loop is not None:
                return loop
            decl = self.declaration()
            if decl is not None:
                return decl
        toks = self.until_semicolon()
        if not toks:
            return None
        return ExprStmt(parse_expr(toks), line, toks[-1].line)

    def macro_loop(self) -> Loop | None:
        """`for_each_cpu(cpu, mask) stmt` and the like: a call followed by a
        statement instead of a semicolon."""
        tok = self.peek()
        if tok is None or tok.kind != "id" or not self.at("(", 1):
            return None
        if not ("for_each" in tok.text or tok.text.startswith(("list_for", "hash_for"))
                or tok.text == "scoped_guard"):
            return None
        start = self.pos
        self.pos += 1
        head = self.paren()
        nxt = self.peek()
        if nxt is None or nxt.text == ";" or (nxt.kind == "op" and nxt.text != "{"):
            self.pos = start
            return None
        kind = "scoped_guard" if tok.text == "scoped_guard" else "macro"
        return Loop(kind, parse_expr([tok, Tok("op", "(", tok.line), *head,
                                         Tok("op", ")", tok.line)]),
                    self.stmt() or Block((), tok.line), tok.line)

    def declaration(self) -> Decl | None:
        start = self.pos
        type_toks: list[str] = []
        j = self.pos
        toks = self.toks
        # The type: storage/qualifier words, then a type name (one or two
        # words, or struct/union/enum NAME), then pointer stars.
        while j < len(toks) and toks[j].kind == "id" and toks[j].text in _STORAGE \
                and toks[j].text not in ("struct", "union", "enum"):
            type_toks.append(toks[j].text)
            j += 1
        if j < len(toks) and toks[j].text in ("struct", "union", "enum"):
            if j + 1 >= len(toks) or toks[j + 1].kind != "id":
                return None
            type_toks += [toks[j].text, toks[j + 1].text]
            j += 2
        elif type_toks and type_toks[-1] in ("unsigned", "signed") and j + 1 < len(toks) \
                and toks[j].kind == "id" and toks[j + 1].text in (";", "=", ",", "["):
            pass  # `unsigned n;`: the declarator follows the sign word
        elif j < len(toks) and toks[j].kind == "id" and toks[j].text not in _NOT_TYPE:
            # A type name: a known type word, or an identifier followed by
            # an identifier or '*' identifier (a typedef'd type).
            name = toks[j].text
            nxt = toks[j + 1] if j + 1 < len(toks) else None
            known = name in TYPE_WORDS or name.endswith("_t")
            typedef_name = nxt is not None and (
                (nxt.kind == "id" and nxt.text not in _NOT_TYPE)
                or (nxt.text == "*" and j + 3 < len(toks) and toks[j + 2].kind == "id"
                    and toks[j + 3].text in ("=", ";", ",", "[")))
            if not known and not typedef_name:
                return None
            type_toks.append(name)
            j += 1
            while j < len(toks) and toks[j].kind == "id" and toks[j].text in (
                    "long", "int", "short", "char", "const", "__iomem", "__percpu", "__user"):
                type_toks.append(toks[j].text)
                j += 1
        else:
            return None
        if (not type_toks or all(t in _STORAGE for t in type_toks)) and (
                not type_toks or type_toks[-1] not in ("unsigned", "signed")):
            return None
        names: list[Declarator] = []
        self.pos = j
        while True:
            pointer = False
            while self.at("*") or self.at("const"):
                pointer = pointer or self.at("*")
                self.pos += 1
            tok = self.peek()
            if tok is None or tok.kind != "id":
                self.pos = start
                return None
            name = tok.text
            self.pos += 1
            array = False
            while self.at("["):
                array = True
                depth = 0
                while self.peek() is not None:
                    t = self.toks[self.pos]
                    self.pos += 1
                    depth += (t.text == "[") - (t.text == "]")
                    if depth == 0:
                        break
            if self.at("("):  # a function prototype inside a body: not followed
                self.pos = start
                return None
            init: Expr | None = None
            if self.at("="):
                self.pos += 1
                init_toks = self._initializer()
                init = parse_expr(init_toks) if init_toks and init_toks[0].text != "{" \
                    else Unknown("{...}")
            names.append(Declarator(name, init, pointer, array))
            if self.at(","):
                self.pos += 1
                continue
            if self.at(";"):
                self.pos += 1
                return Decl(" ".join(type_toks), tuple(names), toks[start].line,
                            toks[self.pos - 1].line)
            self.pos = start
            return None

    def _initializer(self) -> list[Tok]:
        depth = 0
        start = self.pos
        while self.peek() is not None:
            tok = self.toks[self.pos]
            if tok.text in ("(", "[", "{"):
                depth += 1
            elif tok.text in (")", "]", "}"):
                if depth == 0:
                    break
                depth -= 1
            elif tok.text in (",", ";") and depth == 0:
                break
            self.pos += 1
        return self.toks[start:self.pos]


def _split_top(toks: list[Tok], sep: str) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for tok in toks:
        if tok.text in ("(", "["):
            depth += 1
        elif tok.text in (")", "]"):
            depth -= 1
        if tok.text == sep and depth == 0:
            parts.append([])
            continue
        parts[-1].append(tok)
    return parts


def parse_statements(text: str, first_line: int = 1) -> tuple[Stmt, ...]:
    """The statements of a body or fragment (its outer braces optional)."""
    toks = tokenize(text, first_line)
    parser = _StmtParser(toks)
    try:
        return tuple(parser.items(until_brace=False))
    except RecursionError:
        return ()


# -- functions --------------------------------------------------------------------

_SIGNATURE_WORDS = frozenset({"static", "inline", "__always_inline", "noinline", "__init",
                              "__used", "noinstr", "__noreturn", "notrace", "__attribute__",
                              "extern", "__hyp_text", "__kprobes", "asmlinkage", "__cold"})
_PARAM_NAME = re.compile(r"([A-Za-z_]\w*)\s*(\[[^\]]*\])?\s*$")


def _signature(toks: list[Tok], name: str) -> tuple[tuple[Param, ...], str, tuple[str, ...], int]:
    """(params, return type, qualifiers, index of the body's '{') of a
    definition whose tokens start at its first line."""
    for i, tok in enumerate(toks):
        if tok.kind == "id" and tok.text == name and i + 1 < len(toks) and toks[i + 1].text == "(":
            head = [t.text for t in toks[:i]]
            depth = 0
            j = i + 1
            start = j + 1
            while j < len(toks):
                if toks[j].text == "(":
                    depth += 1
                elif toks[j].text == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            params: list[Param] = []
            for part in _split_top(toks[start:j], ","):
                text = " ".join(t.text for t in part).replace(" * ", " *")
                if not text or text == "void":
                    continue
                m = _PARAM_NAME.search(text)
                if m is not None:
                    params.append(Param(type=text[:m.start()].strip(), name=m.group(1)))
            k = j
            while k < len(toks) and toks[k].text != "{":
                k += 1
            quals = tuple(w for w in head if w in _SIGNATURE_WORDS)
            returns = " ".join(w for w in head if w not in _SIGNATURE_WORDS)
            return tuple(params), returns, quals, k
    return (), "", (), -1




def function_from_lines(name: str, path: str, lines: list[tuple[int, str]], *,
                        has_start: bool, has_end: bool, gaps: bool = False) -> Function:
    """A `Function` from its numbered lines (the whole function, or the part
    of it a hunk side shows)."""
    return _function(name, path, tuple(lines), has_start, has_end, gaps)


# The same function text comes back in every revision of a series and in
# the pull request that carries it: parsed once per process (by content,
# bounded; a Function is immutable, so sharing one is safe).
@functools.lru_cache(maxsize=512)
def _function(name: str, path: str, lines: tuple[tuple[int, str], ...], has_start: bool,
              has_end: bool, gaps: bool) -> Function:
    if not lines:
        return Function(name=name, path=path, params=(), returns="", qualifiers=(), body=(),
                        start=0, end=0, has_start=False, has_end=False)
    first = lines[0][0]
    # Line numbers may jump (two hunks of one function): keep them exact by
    # joining with as many newlines as the gap, and where the gap falls
    # between statements, say so with a call the interpreter knows (UNSEEN):
    # what is before and after it are not next to each other.
    parts: list[str] = []
    prev = first
    last = ""
    for no, text in lines:
        gap = no - prev
        if gap > 1 and parts and last.rstrip().endswith((";", "{", "}")):
            parts.append("\n" + UNSEEN + "();" + "\n" * (gap - 1) + text)
        else:
            parts.append("\n" * max(gap, 1 if parts else 0) + text)
        prev = no
        if text.strip():
            last = text
    text = "".join(parts)
    if not has_start:
        # A fragment that begins inside a comment: blank it up to its end,
        # keeping the line count.
        close, opening = text.find("*/"), text.find("/*")
        if close >= 0 and (opening < 0 or close < opening):
            text = "\n" * text.count("\n", 0, close) + " " + text[close + 2:]
    toks = tokenize(text, first)
    params: tuple[Param, ...] = ()
    returns = ""
    quals: tuple[str, ...] = ()
    body_toks = toks
    if has_start:
        params, returns, quals, brace = _signature(toks, name)
        if brace >= 0:
            body_toks = toks[brace + 1:]
        else:
            has_start = False
    parser = _StmtParser(body_toks)
    try:
        body = tuple(parser.items(until_brace=False))
    except RecursionError:
        body = ()
    return Function(name=name, path=path, params=params, returns=returns, qualifiers=quals,
                    body=body, start=first, end=lines[-1][0], has_start=has_start,
                    has_end=has_end, gaps=gaps)
