"""Evaluating kvm_arm.h-style `#define` lines into values and bit ranges.

Handles what the arm64 headers use for register bits: integer literals with
U/L suffixes, `UL()`/`ULL()`/`_AC()`, `BIT()`, `BIT_ULL()`, `_BITUL()`,
`GENMASK()`, `GENMASK_ULL()`, casts to the kernel's integer types, the C
operators, macros built from other macros (object-like and function-like,
with `##` pasting), defined in any order. Values are 64-bit unsigned, as
`unsigned long` is on arm64.

Anything that is not an integer constant expression (a statement macro, a
macro built from names nobody defined) gets `value=None`; this never raises,
because rules feed it `#define` lines straight out of patches.
Preprocessor conditionals are ignored: a later definition replaces an
earlier one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from bot.regmodel.model import MASK64, Macro, contiguous_range

_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)(\([^)]*\))?(.*)$")
_TOKEN = re.compile(r"""
    (?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)(?P<suffix>[uUlL]*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<op>\#\#|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>?:(),\#])
  | (?P<space>\s+)
""", re.VERBOSE)

# Integer types a cast may name, by width; signedness does not change the
# bits of the constants these headers build.
_TYPES = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "s8": 8, "s16": 16, "s32": 32,
          "s64": 64, "__u8": 8, "__u16": 16, "__u32": 32, "__u64": 64, "__s32": 32,
          "__s64": 64, "uint8_t": 8, "uint16_t": 16, "uint32_t": 32, "uint64_t": 64,
          "int": 32, "long": 64, "char": 8, "short": 16, "unsigned": 32,
          "signed": 32, "phys_addr_t": 64, "size_t": 64}
_QUALIFIERS = ("unsigned", "signed", "const")


class _Unevaluable(Exception):
    """The expression is not an integer constant expression we understand."""


Token = tuple[str, str]   # (kind, text): kind is "num", "ident" or "op"


def _tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _Unevaluable("unexpected %r" % text[pos])
        pos = m.end()
        if m.group("space"):
            continue
        if m.group("num"):
            out.append(("num", m.group("num")))
        elif m.group("ident"):
            out.append(("ident", m.group("ident")))
        else:
            out.append(("op", m.group("op")))
    return out


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; each line keeps its first line number."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for no, line in enumerate(_strip_comments(text).splitlines(), 1):
        if not buf:
            start = no
        if line.rstrip().endswith("\\"):
            buf.append(line.rstrip()[:-1])
            continue
        buf.append(line)
        out.append((start, " ".join(buf)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


class _Evaluator:
    def __init__(self, table: Mapping[str, Macro],
                 raw: dict[str, tuple[str, tuple[str, ...] | None]]):
        self.table = table      # known and already-evaluated macros (only read)
        self.raw = raw          # this fragment's definitions: name -> (body, params)
        self.active: set[str] = set()
        self.memo: dict[str, int] = {}

    def value_of(self, name: str) -> int:
        if name in self.raw and name not in self.table:
            if name in self.memo:
                return self.memo[name]
            body, params = self.raw[name]
            if params is not None:
                raise _Unevaluable("%s needs arguments" % name)
            if name in self.active:
                raise _Unevaluable("%s refers to itself" % name)
            self.active.add(name)
            try:
                self.memo[name] = self.evaluate(_tokenize(body))
                return self.memo[name]
            finally:
                self.active.discard(name)
        macro = self.table.get(name)
        if macro is None:
            raise _Unevaluable("%s is not defined" % name)
        if macro.value is None:
            if macro.params is None and name not in self.active:
                self.active.add(name)
                try:
                    return self.evaluate(_tokenize(macro.expr))
                finally:
                    self.active.discard(name)
            raise _Unevaluable("%s has no value" % name)
        return macro.value

    def function(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        if name in self.raw and self.raw[name][1] is not None:
            body, params = self.raw[name]
            return body, params or ()
        macro = self.table.get(name)
        if macro is not None and macro.params is not None:
            return macro.expr, macro.params
        return None

    def evaluate(self, tokens: list[Token]) -> int:
        parser = _Expr(tokens, self)
        value = parser.ternary()
        if parser.pos != len(tokens):
            raise _Unevaluable("trailing %r" % tokens[parser.pos][1])
        return value & MASK64


def _builtin_args(count: int) -> Callable[[Callable[..., int]], Callable[[list[int]], int]]:
    def wrap(fn: Callable[..., int]) -> Callable[[list[int]], int]:
        def call(args: list[int]) -> int:
            if len(args) != count:
                raise _Unevaluable("wrong number of arguments")
            return fn(*args)
        return call
    return wrap


def _genmask(h: int, low: int) -> int:
    if not 0 <= low <= h <= 63:
        raise _Unevaluable("GENMASK(%d, %d)" % (h, low))
    return ((1 << (h - low + 1)) - 1) << low


def _lowest(mask: int) -> int:
    if mask <= 0:
        raise _Unevaluable("an empty field mask")
    return (mask & -mask).bit_length() - 1


def _field_prep(mask: int, value: int) -> int:
    return (value << _lowest(mask)) & mask


def _bit(n: int) -> int:
    if not 0 <= n <= 63:
        raise _Unevaluable("BIT(%d)" % n)
    return 1 << n


_BUILTINS: dict[str, Callable[[list[int]], int]] = {
    "BIT": _builtin_args(1)(_bit),
    "BIT_ULL": _builtin_args(1)(_bit),
    "_BITUL": _builtin_args(1)(_bit),
    "_BITULL": _builtin_args(1)(_bit),
    "GENMASK": _builtin_args(2)(_genmask),
    "GENMASK_ULL": _builtin_args(2)(_genmask),
    "GENMASK_U64": _builtin_args(2)(_genmask),
    "UL": _builtin_args(1)(lambda x: x),
    "ULL": _builtin_args(1)(lambda x: x),
    "_UL": _builtin_args(1)(lambda x: x),
    "_ULL": _builtin_args(1)(lambda x: x),
    "_AC": _builtin_args(1)(lambda x: x),
    "_AT": _builtin_args(1)(lambda x: x),
    "FIELD_PREP": _builtin_args(2)(_field_prep),
    "FIELD_GET": _builtin_args(2)(lambda mask, val: (val & mask) >> _lowest(mask)),
}
# _AC(X, UL) pastes a suffix and _AT(T, X) names a type: only one argument of
# each is a value.
_VALUE_ARG = {"_AC": 0, "_AT": -1}


class _Expr:
    """Precedence-climbing parser over C integer constant expressions."""

    _BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="),
               ("<", ">", "<=", ">="), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

    def __init__(self, tokens: list[Token], ev: _Evaluator) -> None:
        self.tokens = tokens
        self.pos = 0
        self.ev = ev

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (text is not None and tok[1] != text):
            raise _Unevaluable("expected %r" % text)
        self.pos += 1
        return tok

    def ternary(self) -> int:
        cond = self.binary(0)
        if self.peek() == ("op", "?"):
            self.take("?")
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return yes if cond else no
        return cond

    def binary(self, level: int) -> int:
        if level == len(self._BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in self._BINARY[level]:
                return left
            self.pos += 1
            right = self.binary(level + 1)
            left = self.apply(tok[1], left, right) & MASK64

    @staticmethod
    def apply(op: str, a: int, b: int) -> int:
        if op in ("/", "%") and b == 0:
            raise _Unevaluable("division by zero")
        if op in ("<<", ">>") and not 0 <= b < 64:
            raise _Unevaluable("shift by %d" % b)
        return {
            "||": lambda: int(bool(a) or bool(b)), "&&": lambda: int(bool(a) and bool(b)),
            "|": lambda: a | b, "^": lambda: a ^ b, "&": lambda: a & b,
            "==": lambda: int(a == b), "!=": lambda: int(a != b),
            "<": lambda: int(a < b), ">": lambda: int(a > b),
            "<=": lambda: int(a <= b), ">=": lambda: int(a >= b),
            "<<": lambda: a << b, ">>": lambda: a >> b,
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
            "/": lambda: a // b, "%": lambda: a % b,
        }[op]()

    def unary(self) -> int:
        tok = self.peek()
        if tok is None:
            raise _Unevaluable("unexpected end")
        if tok == ("op", "~"):
            self.pos += 1
            return ~self.unary() & MASK64
        if tok == ("op", "-"):
            self.pos += 1
            return -self.unary() & MASK64
        if tok == ("op", "+"):
            self.pos += 1
            return self.unary()
        if tok == ("op", "!"):
            self.pos += 1
            return int(not self.unary())
        if tok == ("op", "("):
            width = self.cast_width()
            if width is not None:
                return self.unary() & ((1 << width) - 1)
            self.pos += 1
            value = self.ternary()
            self.take(")")
            return value
        return self.primary()

    def cast_width(self) -> int | None:
        """If a cast such as `(u64)` or `(unsigned long)` starts here, consume it."""
        end = self.pos + 1
        words: list[str] = []
        while end < len(self.tokens) and self.tokens[end][0] == "ident":
            words.append(self.tokens[end][1])
            end += 1
        if not words or end >= len(self.tokens) or self.tokens[end] != ("op", ")"):
            return None
        if not all(w in _TYPES or w in _QUALIFIERS for w in words):
            return None
        core = [w for w in words if w not in _QUALIFIERS] or ["int"]
        width = 64 if core.count("long") else _TYPES.get(core[-1], 64)
        self.pos = end + 1
        return width

    def primary(self) -> int:
        kind, text = self.take()
        if kind == "num":
            if text[:2] in ("0x", "0X"):
                return int(text, 16)
            if text[:2] in ("0b", "0B"):
                return int(text[2:], 2)
            return int(text, 8) if len(text) > 1 and text[0] == "0" else int(text)
        if kind != "ident":
            raise _Unevaluable("unexpected %r" % text)
        if self.peek() == ("op", "("):
            args = self.arguments()
            if text in _BUILTINS and self.ev.function(text) is None:
                if text in _VALUE_ARG:
                    args = [args[_VALUE_ARG[text]]] if len(args) == 2 else []
                values = [self.sub(a) for a in args]
                return _BUILTINS[text](values)
            fn = self.ev.function(text)
            if fn is None:
                raise _Unevaluable("unknown function %s" % text)
            return self.sub(_expand(fn[0], fn[1], args))
        return self.ev.value_of(text)

    def arguments(self) -> list[list[Token]]:
        self.take("(")
        args: list[list[Token]] = [[]]
        depth = 0
        while True:
            tok = self.take()
            if tok == ("op", ")") and depth == 0:
                break
            if tok == ("op", ",") and depth == 0:
                args.append([])
                continue
            if tok == ("op", "("):
                depth += 1
            elif tok == ("op", ")"):
                depth -= 1
            args[-1].append(tok)
        return [] if args == [[]] else args

    def sub(self, tokens: list[Token]) -> int:
        return self.ev.evaluate(tokens)


def _expand(body: str, params: tuple[str, ...], args: list[list[Token]]) -> list[Token]:
    """Substitute arguments into a function-like macro body, then paste `##`."""
    if len(args) != len(params) and not (not params and not args):
        raise _Unevaluable("wrong number of arguments")
    by_name = dict(zip(params, args, strict=False))
    out: list[Token] = []
    for tok in _tokenize(body):
        if tok == ("op", "#"):
            raise _Unevaluable("stringizing")
        out.extend(by_name.get(tok[1], [tok]) if tok[0] == "ident" else [tok])
    pasted: list[Token] = []
    i = 0
    while i < len(out):
        if out[i] == ("op", "##"):
            if not pasted or i + 1 >= len(out):
                raise _Unevaluable("## at an edge")
            joined = pasted.pop()[1] + out[i + 1][1]
            pasted.extend(_tokenize(joined))
            i += 2
            continue
        pasted.append(out[i])
        i += 1
    return pasted


def _ranges(table: Mapping[str, Macro], name: str, value: int | None
            ) -> tuple[int | None, int | None]:
    """The register bits a macro denotes, when it denotes one contiguous range.

    A `_MASK` whose `_SHIFT` companion is known and which starts at bit 0 is
    the kvm_arm.h unshifted style (MDCR_EL2_E2PB_MASK == 0x3 with
    MDCR_EL2_E2PB_SHIFT == 12): its range is moved up by the shift.
    """
    if value is None or name.endswith(("_SHIFT", "_WIDTH", "_SIGNED")):
        return None, None
    rng = contiguous_range(value)
    if rng is None:
        return None, None
    if name.endswith("_MASK"):
        shift = table.get(name[:-len("_MASK")] + "_SHIFT")
        if shift is not None and shift.value and rng[1] == 0 and rng[0] + shift.value < 64:
            return rng[0] + shift.value, shift.value
    return rng


def evaluate_defines(text: str, known: Mapping[str, Macro] | None = None) -> dict[str, Macro]:
    """Every `#define` in `text`, evaluated against `known` and each other.

    Returns only the macros `text` defines, by name; `known` (for instance
    `bot.regmodel.kvmarm.kernel_macros()` or an earlier `evaluate_defines` result) supplies
    the names they use.
    """
    if "define" not in text:
        return {}
    raw: dict[str, tuple[str, tuple[str, ...] | None]] = {}
    lines: dict[str, int] = {}
    for no, line in _logical_lines(text):
        m = _DEFINE.match(line)
        if not m:
            continue
        name, params_text, body = m.group(1), m.group(2), " ".join(m.group(3).split())
        params = None
        if params_text is not None:
            params = tuple(p.strip() for p in params_text[1:-1].split(",") if p.strip())
        raw[name] = (body, params)
        lines[name] = no
    table: dict[str, Macro] = dict(known or {})
    for name in raw:
        table.pop(name, None)   # this fragment's definition wins
    ev = _Evaluator(table, raw)
    values: dict[str, int | None] = {}
    for name, (_body, params) in raw.items():
        if params is not None:
            values[name] = None
            continue
        try:
            values[name] = ev.value_of(name)
        except (_Unevaluable, RecursionError, ValueError):
            values[name] = None
    out: dict[str, Macro] = {}
    lookup = dict(table)
    for name, (body, params) in raw.items():
        lookup[name] = Macro(name=name, expr=body, value=values[name], msb=None, lsb=None,
                             line=lines[name], params=params)
    for name, (body, params) in raw.items():
        msb, lsb = _ranges(lookup, name, values[name])
        out[name] = Macro(name=name, expr=body, value=values[name], msb=msb, lsb=lsb,
                          line=lines[name], params=params)
    return out


def evaluate_expression(expr: str, table: Mapping[str, Macro]) -> int | None:
    """The value of one C constant expression over the macros of `table`
    (64-bit unsigned), or None when it is not one."""
    try:
        return _Evaluator(table, {}).evaluate(_tokenize(expr))
    except (_Unevaluable, RecursionError, ValueError, OverflowError):
        return None
