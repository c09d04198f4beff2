"""C expressions and statements, parsed just well enough to follow values.

The rules need to know what value reaches HCR_EL2/MDCR_EL2, so they read
the statements of the functions a patch touches: declarations, assignments
(`=`, `|=`, `&=`, ...), calls, `if`/`else`, loops, `return`, inline assembly.
This is a small recursive-descent parser over a token stream. It is made
for kernel C as it appears in patches, which means two things a compiler's
parser does not have to care about: the text may be a fragment (a hunk that
starts inside a block and stops in the middle of another), and it may be
wrong. So nothing here raises: what cannot be parsed becomes an `Unknown`
expression or statement holding its text, and unbalanced braces are closed
or ignored. Pure, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

# -- tokens -------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+|\\\n)
  | (?P<nl>\n)
  | (?P<comment>/\*.*?(?:\*/|\Z)|//[^\n]*)
  | (?P<pp>\#[^\n]*(?:\\\n[^\n]*)*)
  | (?P<str>"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)
  | (?P<num>(?:0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)[uUlL]*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|\.\.\.
          |[-+*/%&|^~!<>=?:;,.(){}\[\]])
  | (?P<other>.)
""", re.S | re.X)


class Tok(NamedTuple):
    """One token (a named tuple: the tokenizer makes hundreds of thousands)."""

    kind: str      # id, num, str, op, pp, other
    text: str
    line: int      # 1-based line of the token in the text given to `tokenize`


def tokenize(text: str, first_line: int = 1) -> list[Tok]:
    """Tokens of C text; comments dropped, a preprocessor line is one token
    (only where a line starts with #)."""
    out: list[Tok] = []
    line = first_line
    at_line_start = True
    append = out.append
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        value = m.group()
        if kind == "nl":
            line += 1
            at_line_start = True
            continue
        if kind == "ws" or kind == "comment":
            if "\n" in value:
                line += value.count("\n")
            continue
        if kind == "pp" and not at_line_start:
            # A '#' inside a line (stringification in a macro): an operator.
            out.append(Tok("op", "#", line))
            rest = value[1:]
            out.extend(tokenize(rest, line))
            line += value.count("\n")
            at_line_start = False
            continue
        append(Tok(kind, value, line))
        if kind == "pp" or kind == "str":
            line += value.count("\n")
        at_line_start = False
    return out


# -- expressions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Num:
    """An integer constant."""

    value: int
    text: str


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier."""

    id: str


@dataclass(frozen=True, slots=True)
class Str:
    """A string or character literal."""

    text: str


@dataclass(frozen=True, slots=True)
class Call:
    """A function or macro call."""

    func: Expr
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Member:
    """A member access, with . or ->."""

    base: Expr
    field: str
    arrow: bool


@dataclass(frozen=True, slots=True)
class Index:
    """An array subscript."""

    base: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Unary:
    """A unary operator and its operand."""

    op: str        # - ~ ! * & ++ -- sizeof, and "post++"/"post--"
    operand: Expr


@dataclass(frozen=True, slots=True)
class Cast:
    """A cast to a type."""

    type: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary operator and its operands."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Ternary:
    """A conditional expression (cond ? then : other)."""

    cond: Expr
    then: Expr
    other: Expr


@dataclass(frozen=True, slots=True)
class Assign:
    """An assignment, plain or compound."""

    op: str        # = |= &= ^= += -= <<= >>= ...
    target: Expr
    value: Expr


@dataclass(frozen=True, slots=True)
class Unknown:
    """Text the expression parser could not read."""

    text: str


Expr = Num | Name | Str | Call | Member | Index | Unary | Cast | Binary | Ternary | Assign | Unknown

_BINARY_PREC = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6,
    "<": 7, ">": 7, "<=": 7, ">=": 7, "<<": 8, ">>": 8, "+": 9, "-": 9,
    "*": 10, "/": 10, "%": 10,
}
_ASSIGN_OPS = {"=", "|=", "&=", "^=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>="}
# Words that make a parenthesised group a cast (or a declaration's type).
TYPE_WORDS = frozenset({
    "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "__u8", "__u16", "__u32", "__u64",
    "__s32", "__s64", "uint8_t", "uint16_t", "uint32_t", "uint64_t", "int", "long", "short",
    "char", "unsigned", "signed", "bool", "void", "size_t", "phys_addr_t", "const",
    "volatile", "struct", "union", "enum", "unsigned long", "kvm_pfn_t", "pteval_t",
    "uintptr_t", "intptr_t", "ssize_t", "ulong", "__le64", "__be64",
})


def _num_value(text: str) -> int:
    digits = text.rstrip("uUlL")
    try:
        if digits[:2] in ("0x", "0X"):
            return int(digits, 16)
        if digits[:2] in ("0b", "0B"):
            return int(digits[2:], 2)
        if len(digits) > 1 and digits.startswith("0"):
            return int(digits, 8)
        return int(digits)
    except ValueError:
        return 0


class _ExprParser:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def peek(self, k: int = 0) -> Tok | None:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.text == text and tok.kind in ("op", "id")

    def expect(self, text: str) -> bool:
        if self.at(text):
            self.pos += 1
            return True
        return False

    def comma(self) -> Expr:
        expr = self.assign()
        while self.at(","):
            self.pos += 1
            right = self.assign()
            expr = Binary(",", expr, right)
        return expr

    def assign(self) -> Expr:
        left = self.ternary()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text in _ASSIGN_OPS:
            self.pos += 1
            return Assign(tok.text, left, self.assign())
        return left

    def ternary(self) -> Expr:
        cond = self.binary(1)
        if self.at("?"):
            self.pos += 1
            then = self.comma() if not self.at(":") else Unknown("")
            self.expect(":")
            return Ternary(cond, then, self.assign())
        return cond

    def binary(self, min_prec: int) -> Expr:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok is None or tok.kind != "op" or tok.text not in _BINARY_PREC:
                return left
            prec = _BINARY_PREC[tok.text]
            if prec < min_prec:
                return left
            self.pos += 1
            right = self.binary(prec + 1)
            left = Binary(tok.text, left, right)

    def _is_cast(self) -> int:
        """Length of a cast's parenthesised type at the cursor, or 0."""
        if not self.at("("):
            return 0
        j = self.pos + 1
        words = 0
        while j < len(self.toks):
            tok = self.toks[j]
            if tok.text == ")":
                break
            if tok.kind == "id" and (tok.text in TYPE_WORDS or tok.text.endswith("_t")
                                     or (j > self.pos + 1 and self.toks[j - 1].text in
                                         ("struct", "union", "enum"))):
                words += 1
            elif tok.text == "*" and words:
                pass
            else:
                return 0
            j += 1
        if j >= len(self.toks) or not words:
            return 0
        nxt = self.toks[j + 1] if j + 1 < len(self.toks) else None
        if nxt is None or (nxt.kind == "op" and nxt.text not in ("(", "~", "-", "!", "*", "&")):
            return 0
        return j - self.pos + 1

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            return Unknown("")
        if tok.kind == "op" and tok.text in ("-", "+", "~", "!", "*", "&", "++", "--"):
            self.pos += 1
            operand = self.unary()
            return operand if tok.text == "+" else Unary(tok.text, operand)
        if tok.kind == "id" and tok.text == "sizeof":
            self.pos += 1
            return Unary("sizeof", self.unary())
        cast = self._is_cast()
        if cast:
            type_text = " ".join(t.text for t in self.toks[self.pos + 1:self.pos + cast - 1])
            self.pos += cast
            return Cast(type_text, self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            return Unknown("")
        if tok.kind == "num":
            self.pos += 1
            return Num(_num_value(tok.text), tok.text)
        if tok.kind == "id":
            self.pos += 1
            return Name(tok.text)
        if tok.kind == "str":
            self.pos += 1
            text = tok.text
            while self.peek() is not None and self.peek().kind == "str":  # type: ignore[union-attr]
                text += self.take().text
            return Str(text)
        if tok.text == "(":
            self.pos += 1
            if self.at("{"):  # a GNU statement expression: not followed
                depth = 0
                while self.peek() is not None:
                    t = self.take()
                    depth += (t.text == "(") - (t.text == ")")
                    if depth < 0:
                        break
                return Unknown("({...})")
            inner = self.comma()
            self.expect(")")
            return inner
        self.pos += 1
        return Unknown(tok.text)

    def postfix(self, expr: Expr) -> Expr:
        while True:
            tok = self.peek()
            if tok is None:
                return expr
            if tok.text == "(":
                self.pos += 1
                args: list[Expr] = []
                while not self.at(")") and self.peek() is not None:
                    args.append(self.assign())
                    if not self.expect(","):
                        break
                if not self.expect(")"):
                    self._skip_to_close()
                expr = Call(expr, tuple(args))
            elif tok.text == "[":
                self.pos += 1
                index = self.comma()
                self.expect("]")
                expr = Index(expr, index)
            elif tok.text in (".", "->"):
                self.pos += 1
                name = self.peek()
                if name is None or name.kind != "id":
                    return expr
                self.pos += 1
                expr = Member(expr, name.text, tok.text == "->")
            elif tok.text in ("++", "--"):
                self.pos += 1
                expr = Unary("post" + tok.text, expr)
            else:
                return expr

    def _skip_to_close(self) -> None:
        depth = 0
        while self.peek() is not None:
            t = self.take()
            if t.text in ("(", "[", "{"):
                depth += 1
            elif t.text in (")", "]", "}"):
                if depth == 0:
                    return
                depth -= 1


def parse_expr(toks: list[Tok]) -> Expr:
    """One expression from tokens; trailing garbage makes it `Unknown`."""
    if not toks:
        return Unknown("")
    parser = _ExprParser(toks)
    try:
        expr = parser.comma()
    except RecursionError:
        return Unknown(" ".join(t.text for t in toks))
    if parser.pos < len(toks):
        return Unknown(" ".join(t.text for t in toks))
    return expr


def expr_from_text(text: str) -> Expr:
    return parse_expr(tokenize(text))


def expr_text(expr: Expr) -> str:
    """C text of an expression (normalised spacing), for messages and for
    handing constant parts to the register model's evaluator (worked out
    once per expression: parsed functions are shared by content, and the
    interpreter asks for the same calls' text on every path)."""
    hit = _TEXT.get(id(expr))
    if hit is not None and hit[0] is expr:
        return hit[1]
    text = _expr_text(expr)
    if len(_TEXT) > 4096:
        _TEXT.clear()
    _TEXT[id(expr)] = (expr, text)
    return text


_TEXT: dict[int, tuple[Expr, str]] = {}


def _expr_text(expr: Expr) -> str:
    match expr:
        case Num(text=text):
            return text
        case Name(id=name):
            return name
        case Str(text=text):
            return text
        case Call(func=func, args=args):
            return "%s(%s)" % (_expr_text(func), ", ".join(_expr_text(a) for a in args))
        case Member(base=base, field=fld, arrow=arrow):
            return "%s%s%s" % (_expr_text(base), "->" if arrow else ".", fld)
        case Index(base=base, index=index):
            return "%s[%s]" % (_expr_text(base), _expr_text(index))
        case Unary(op=op, operand=operand):
            if op.startswith("post"):
                return "%s%s" % (_expr_text(operand), op[4:])
            if op == "sizeof":
                return "sizeof(%s)" % _expr_text(operand)
            return "%s%s" % (op, _paren(operand))
        case Cast(type=typ, operand=operand):
            return "(%s)%s" % (typ, _paren(operand))
        case Binary(op=op, left=left, right=right):
            return "%s %s %s" % (_paren(left), op, _paren(right))
        case Ternary(cond=cond, then=then, other=other):
            return "%s ? %s : %s" % (_paren(cond), _paren(then), _paren(other))
        case Assign(op=op, target=target, value=value):
            return "%s %s %s" % (_expr_text(target), op, _expr_text(value))
    assert isinstance(expr, Unknown)
    return expr.text


def _paren(expr: Expr) -> str:
    text = _expr_text(expr)
    if isinstance(expr, (Binary, Ternary, Assign)):
        return "(%s)" % text
    return text


def call_name(expr: Expr) -> str | None:
    """The called function's name, for a call of a plain name."""
    if isinstance(expr, Call) and isinstance(expr.func, Name):
        return expr.func.id
    return None
