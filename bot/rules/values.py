"""Values of C expressions on one path of a traced function.

A local, a load from memory, a register read, a macro the model or the
patch defines: each evaluates to `Bits` (bot.rules.bits), known bit by bit
or named by its source, through the register model's one evaluator
(bot.regmodel.evaluate). Assignments to kvm.toml [[storage]] places and to
other memory (memory mode) are stores the rules see as events.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping

from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import KvmFacts
from bot.rules.bits import MASK64, Bits
from bot.rules.cexpr import (
    Assign,
    Binary,
    Call,
    Cast,
    Expr,
    Index,
    Member,
    Name,
    Num,
    Str,
    Ternary,
    Unary,
    Unknown,
    call_name,
    expr_from_text,
    expr_text,
)
from bot.rules.cstmt import Function
from bot.rules.guards import guard_split
from bot.rules.trace import Ev, Event, PathState, Written, type_width

# The language's own constants (a pointer set to NULL tests false later).
_C_CONSTANTS = {"NULL": 0, "false": 0, "true": 1}
# What a comparison, a logical operator or `!` gives: 0 or 1.
_TESTS = frozenset({"==", "!=", "<", ">", "<=", ">=", "&&", "||"})
_TRUTH = Bits(zeros=MASK64 & ~1)


class Values(abc.ABC):
    """The interpreter's state and its expressions: values of locals and
    memory as `Bits`, loads, stores, register writes. Calls and statements
    are the subclasses' (bot.rules.calls, bot.rules.interp)."""

    def __init__(self, facts: KvmFacts, evaluator: Evaluator,
                 functions: Mapping[str, list[Function]], *, memory: bool = False) -> None:
        # memory: also remember what is stored in other memory (struct
        # fields by their text, as `cxt->tcr`), for following a value saved
        # in one function and put back in another.
        self.memory = memory
        self.facts = facts
        self.ev = evaluator
        self.functions = functions
        self.events: list[Event] = []
        self.unresolved: list[str] = []
        self._stack: list[str] = []
        self._unseen = 0
        self._end = 0
        self._locals: set[str] = set()
        # Locals of a type narrower than 64 bits: (width, how they were declared).
        self._narrow: dict[str, tuple[int, str]] = {}
        self._expanding: set[str] = set()
        self._params: dict[str, int] = {}    # the traced function's, by position
        self._forks: dict[int, int] = {}     # memory mode: path id -> the one it forked from

    @abc.abstractmethod
    def _call(self, expr: Call, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        """A call: a register access, an event of [ops], or a function followed."""

    # -- expressions ---------------------------------------------------------------

    def _emit(self, kind: Ev, st: PathState, fn: Function, depth: int, line: int,
              **kw: object) -> None:
        self.events.append(Event(kind=kind, line=line, function=fn.name, path=fn.path,
                                 contexts=st.contexts, always=st.always, depth=depth,
                                 cond=st.cond,
                                 irq_off=st.irq_off, preempt_off=st.preempt_off,
                                 seen=self._unseen == 0, guards=st.guards,
                                 end=max(line, self._end), pid=st.pid,
                                 **kw))  # type: ignore[arg-type]

    def _eval(self, expr: Expr, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        if isinstance(expr, Num):
            return Bits.const(expr.value)
        if isinstance(expr, Name):
            if expr.id in st.env:
                return st.env[expr.id]
            if expr.id in _C_CONSTANTS:
                return Bits.const(_C_CONSTANTS[expr.id])
            value = self.ev.value(expr.id)
            if value is not None:
                return Bits.const(value)
            expanded = self._expand(expr)
            if expanded is not None:
                return self._eval_expanded(expr.id, expanded, st, fn, depth, line)
            if expr.id.isupper() or expr.id in self._locals:
                return Bits.unknown()  # a macro the model does not know, or an unset local
            if fn.seen_from_start and expr.id not in (p.name for p in fn.params):
                # A global variable (the function's locals and parameters are
                # all in view): memory read where the code runs.
                self._emit(Ev.LOAD, st, fn, depth, line, name="load:" + expr.id)
            return Bits.source("load:" + expr.id)
        if isinstance(expr, Str | Unknown):
            return Bits.unknown()
        if isinstance(expr, Assign):
            return self._assign(expr, st, fn, depth, line)
        if isinstance(expr, Call):
            return self._call(expr, st, fn, depth, line)
        if isinstance(expr, Unary):
            if expr.op == "~":
                return ~self._eval(expr.operand, st, fn, depth, line)
            if expr.op == "*":
                return self._load(expr, st, fn, depth, line)
            if expr.op == "&":
                # Memory mode: a pointer names the object it points to, so
                # that loads through two locals holding it are one load.
                return Bits.source("addr:" + expr_text(expr.operand).replace(" ", "")) \
                    if self.memory else Bits.unknown()
            if expr.op.startswith("post") or expr.op in ("++", "--"):
                self._eval(expr.operand, st, fn, depth, line)
                return Bits.unknown()
            inner = self._eval(expr.operand, st, fn, depth, line)
            if expr.op == "-" and inner.value is not None:
                return Bits.const(-inner.value)
            if expr.op == "!":
                return _TRUTH
            return Bits.unknown()
        if isinstance(expr, Cast):
            inner = self._eval(expr.operand, st, fn, depth, line)
            width = type_width(expr.type)
            if width is not None and width < 64:
                self._emit(Ev.DECL, st, fn, depth, line, value=inner,
                           name="(%s) cast" % expr.type)
                return inner & Bits.const((1 << width) - 1)
            return inner
        if isinstance(expr, Member | Index):
            return self._load(expr, st, fn, depth, line)
        if isinstance(expr, Ternary):
            split = guard_split(self.facts, expr.cond, st.contexts)
            if split is None:
                self._eval(expr.cond, st, fn, depth, line)
            return self._eval(expr.then, st, fn, depth, line).join(
                self._eval(expr.other, st, fn, depth, line))
        return self._binary(expr, st, fn, depth, line)

    def _binary(self, expr: Binary, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        const = self.ev.value(expr_text(expr)) if _constant_shape(expr) else None
        if const is not None:
            return Bits.const(const)
        left = self._eval(expr.left, st, fn, depth, line)
        right = self._eval(expr.right, st, fn, depth, line)
        op = expr.op
        if op == "|":
            return left | right
        if op == "&":
            return left & right
        if op == "^":
            return left ^ right
        if op in ("<<", ">>") and right.value is not None:
            return left.shl(right.value) if op == "<<" else left.shr(right.value)
        if left.value is not None and right.value is not None:
            value = self.ev.value("%d %s %d" % (left.value, op, right.value))
            if value is not None:
                return Bits.const(value)
        if op == ",":
            return right
        if op in _TESTS:
            return _TRUTH
        return Bits.unknown()

    def _storage(self, expr: Expr) -> tuple[str, str] | None:
        """(source name, storage name) of an expression naming a register
        value's storage (kvm.toml [[storage]])."""
        compact = expr_text(expr).replace(" ", "")
        st = self.facts.storage_of(compact)
        if st is None:
            return None
        return "%s:%s" % (st.kind, st.name), st.name

    def _expand(self, expr: Name | Call) -> Expr | None:
        """The expansion of a macro that is no constant (the patch's own
        `#define host_hcr() (this_cpu_ptr(&kvm_init_params)->hcr_el2)`),
        arguments put in for its parameters; None when `expr` is no such
        macro."""
        name = expr.id if isinstance(expr, Name) else call_name(expr)
        if name is None or name in self._expanding or name in self._locals:
            return None
        macro = self.ev.macro(name)
        if macro is None or macro.value is not None or not macro.expr:
            return None
        if isinstance(expr, Name) != (macro.params is None):
            return None
        body = macro.expr
        if isinstance(expr, Call) and macro.params:
            # An argument in parentheses, unless it is a plain name (a
            # field name cannot be: host_data_ptr(f) is &...->f).
            texts = {p: expr_text(a) if isinstance(a, Name) else "(%s)" % expr_text(a)
                     for p, a in zip(macro.params, expr.args, strict=False)}
            body = re.sub(r"\b(%s)\b" % "|".join(map(re.escape, texts)),
                          lambda m: texts[m.group(1)], body)
        parsed = expr_from_text(body)
        return None if isinstance(parsed, Unknown) else parsed

    def _eval_expanded(self, name: str, expanded: Expr, st: PathState, fn: Function, depth: int,
                       line: int) -> Bits:
        self._expanding.add(name)
        try:
            return self._eval(expanded, st, fn, depth, line)
        finally:
            self._expanding.discard(name)

    def _load(self, expr: Expr, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        known = self._storage(expr)
        if known is not None:
            source, name = known
            if "@" + name in st.env:
                return st.env["@" + name]
            self._emit(Ev.LOAD, st, fn, depth, line, storage=name, name=source)
            return Bits.source(source)
        text = expr_text(expr).replace(" ", "")
        if self.memory:
            if _mem_key(text, st) in st.env:
                return st.env[_mem_key(text, st)]
            text = _through_address(text, st)
        self._emit(Ev.LOAD, st, fn, depth, line, name="load:" + text)
        return Bits.source("load:" + text)

    def _assign(self, expr: Assign, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        value = self._eval(expr.value, st, fn, depth, line)
        target = expr.target
        if isinstance(target, Name) and target.id not in st.env:
            target = self._expand(target) or target  # a macro naming storage
        op = expr.op
        known = self._storage(target) if not isinstance(target, Name) else None
        key: str | None = None
        if isinstance(target, Name):
            key = target.id
        elif known is not None:
            key = "@" + known[1]
        elif self.memory:
            key = _mem_key(expr_text(target).replace(" ", ""), st)
        if op != "=":
            old = st.env.get(key) if key is not None else None
            if old is None:
                old = self._eval(target, st, fn, depth, line)
            if op == "|=":
                value = old | value
            elif op == "&=":
                value = old & value
            elif op == "^=":
                value = old ^ value
            elif op in ("<<=", ">>=") and value.value is not None:
                value = old.shl(value.value) if op == "<<=" else old.shr(value.value)
            else:
                value = Bits.unknown()
        if isinstance(target, Name) and target.id in self._narrow:
            width, what = self._narrow[target.id]
            self._emit(Ev.DECL, st, fn, depth, line, value=value, name=what)
            value = value & Bits.const((1 << width) - 1)
        if key is not None:
            st.env[key] = value
        if known is not None:
            self._emit(Ev.STORE, st, fn, depth, line, storage=known[1], value=value, name=op)
        elif not isinstance(target, Name):
            self._emit(Ev.STORE, st, fn, depth, line,
                       storage=expr_text(target).replace(" ", ""), value=value, name=op)
        return value

    def _write(self, reg: str, value: Bits, st: PathState, fn: Function, depth: int,
               line: int, accessor: str = "") -> None:
        self._emit(Ev.WRITE, st, fn, depth, line, register=reg, value=value, name=accessor)
        st.regs[reg] = Written(value=value, always=st.always, line=line, function=fn.name)


def _constant_shape(expr: Expr) -> bool:
    """Only numbers and upper-case names (macros): worth one evaluator call."""
    if isinstance(expr, Num):
        return True
    if isinstance(expr, Name):
        return expr.id.isupper() or expr.id.startswith("_")
    if isinstance(expr, Binary):
        return _constant_shape(expr.left) and _constant_shape(expr.right)
    if isinstance(expr, Unary):
        return expr.op in ("~", "-") and _constant_shape(expr.operand)
    if isinstance(expr, Cast):
        return _constant_shape(expr.operand)
    if isinstance(expr, Call) and isinstance(expr.func, Name):
        return expr.func.id.isupper() and all(_constant_shape(a) for a in expr.args)
    return False


def _mem_key(text: str, st: PathState) -> str:
    """The env key of memory named by `text` (`cxt->tcr`): through a pointer
    a caller handed in, named by what was handed in, so that two functions
    calling their parameter differently reach the same object; through a
    pointer holding an object's address (`&config` handed to a helper that
    fills `config->hcr`), as that object's field (`config.hcr`)."""
    text = _through_address(text, st)
    m = re.match(r"(\w+)(->|\.)(.+)$", text)
    if m is not None:
        v = st.env.get(m.group(1))
        if v is not None and not v.known and len(v.srcs) == 1 \
                and v.srcs[0][0].startswith("param:"):
            return "@mem:%s%s%s" % (v.srcs[0][0], m.group(2), m.group(3))
    return "@mem:" + text


def _through_address(text: str, st: PathState) -> str:
    """`p->f` as the object's field when the local `p` holds an address
    (`host_ctxt = &...->host_ctxt`): the same load whatever the local is
    called."""
    m = re.match(r"(\w+)->(.+)$", text)
    if m is not None:
        v = st.env.get(m.group(1))
        if v is not None and len(v.srcs) == 1 and not v.known \
                and v.srcs[0][0].startswith("addr:"):
            return "%s.%s" % (v.srcs[0][0][5:], m.group(2))
    return text
