"""Values of the registers the model does not lay out field by field.

The guest's PSTATE and SPSRs as KVM's exception emulation builds them,
SCTLR as it reads it: kvm.toml [regvalues] says which C expressions hold
such a value and which calls write one. Here they reach the interpreter
(bot.rules.interp) as sources named `reg:REGISTER`, and a `Recorder`
interpreter keeps, besides the usual events, the points the checks of
bot.rules.keepmask and bot.rules.entrystate look at: an in-place AND or OR
of a local, an `if`, each with the path state there. Also here: the patches
those checks read. Most never name HCR_EL2/MDCR_EL2, so the line view of
bot.rules.analysis passes them by; the checks pick them by a cheap test of
the raw text and read them whole. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from bot.regmodel import RegisterModel
from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import KvmFacts
from bot.rules.analysis import PatchView, SeriesView, read_patch
from bot.rules.bits import Bits
from bot.rules.cexpr import Assign, Binary, Call, Expr, Name, Unary, call_name, expr_text
from bot.rules.core import Context
from bot.rules.cstmt import Decl, ExprStmt, Function, If, Return, walk
from bot.rules.flow import semantics
from bot.rules.interp import Interpreter
from bot.rules.semantic import FnKey, PatchSemantics
from bot.rules.trace import PathState, Trace, register_name


def patches(sv: SeriesView, ctx: Context, wanted: Callable[[str], bool]) -> Iterator[PatchView]:
    """The patches whose mail body passes `wanted`, read whole whether or
    not they name HCR_EL2/MDCR_EL2 (one reading per patch and series)."""
    for pv in sv.patches:
        if not wanted(pv.patch.mail.body):
            continue
        if pv.relevant:
            yield pv
            continue
        key = ("regvalue-view", id(sv), pv.index)
        got = ctx.memo.get(key)
        if not isinstance(got, PatchView):
            got = ctx.memo[key] = read_patch(pv.patch)
        yield got


def patch_semantics(sv: SeriesView, pv: PatchView, ctx: Context) -> PatchSemantics | None:
    return semantics(sv, pv, ctx) if isinstance(ctx.regmodel, RegisterModel) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """A statement the checks look at, with the path state just before it."""

    kind: str               # "and" (x &= M, x = x & M), "or" (x |= v) or "if"
    line: int
    end: int
    target: str             # the local ANDed or ORed ("" for an if)
    expr: Expr              # the mask, the value ORed, or the if's condition
    stmt: If | None
    state: PathState
    function: Function
    always: bool


class Recorder(Interpreter):
    """The interpreter, with [regvalues] register values named as such and
    the in-place ANDs and `if`s of the traced function itself kept."""

    def __init__(self, facts: KvmFacts, evaluator: Evaluator,
                 functions: Mapping[str, list[Function]]) -> None:
        super().__init__(facts, evaluator, functions)
        self.points: list[Point] = []

    def value(self, point: Point, expr: Expr) -> Bits:
        """`expr` evaluated where `point` is."""
        return self._eval(expr, point.state.copy(), point.function, 0, point.line)

    def _named(self, expr: Expr) -> Bits | None:
        if self._storage(expr) is not None:
            return None
        reg = self.facts.regvalues.register_of(expr_text(expr).replace(" ", ""))
        return Bits.source("reg:" + reg) if reg is not None else None

    def _call(self, expr: Call, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        named = self._named(expr)
        return named if named is not None else super()._call(expr, st, fn, depth, line)

    def _load(self, expr: Expr, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        named = self._named(expr)
        return named if named is not None else super()._load(expr, st, fn, depth, line)

    def _assign(self, expr: Assign, st: PathState, fn: Function, depth: int, line: int) -> Bits:
        if depth == 0 and isinstance(expr.target, Name):
            mask = _and_mask(expr)
            kind, what = ("and", mask) if mask is not None else ("or", expr.value)
            if mask is not None or expr.op == "|=":
                self.points.append(Point(kind=kind, line=line, end=self._end or line,
                                         target=expr.target.id, expr=what, stmt=None,
                                         state=st.copy(), function=fn, always=st.always))
        return super()._assign(expr, st, fn, depth, line)

    def _if(self, stmt: If, st: PathState, fn: Function, depth: int) -> list[PathState]:
        if depth == 0:
            self.points.append(Point(kind="if", line=stmt.line, end=stmt.cond_end or stmt.line,
                                     target="", expr=stmt.cond, stmt=stmt, state=st.copy(),
                                     function=fn, always=st.always))
        return super()._if(stmt, st, fn, depth)


def _and_mask(expr: Assign) -> Expr | None:
    """M of `x &= M` or `x = x & M` (`x = M & x`)."""
    if expr.op == "&=":
        return expr.value
    value, target = expr.value, expr.target
    if expr.op == "=" and isinstance(value, Binary) and value.op == "&" \
            and isinstance(target, Name):
        if value.left == target:
            return value.right
        if value.right == target:
            return value.left
    return None


@dataclass(frozen=True, slots=True)
class Traced:
    """One changed function of a patch, traced with its points kept."""

    pv: PatchView
    sem: PatchSemantics
    trace: Trace
    rec: Recorder


def traced(sv: SeriesView, ctx: Context, wanted: Callable[[str], bool]) -> Iterator[Traced]:
    """The changed functions of the patches `patches()` gives, each traced
    once per series however many checks ask (keep-mask, entry state)."""
    for pv in patches(sv, ctx, wanted):
        sem = patch_semantics(sv, pv, ctx)
        if sem is None:
            continue
        for key in sorted(sem.changed, key=lambda k: (k.path, k.name)):
            memo_key = ("regvalue-trace", id(sv), pv.index, key)
            got = ctx.memo.get(memo_key)
            if not isinstance(got, Traced) or got.sem is not sem:
                ran = run(sem, key)
                if ran is None:
                    continue
                got = ctx.memo[memo_key] = Traced(pv, sem, ran[0], ran[1])
            yield got


def run(sem: PatchSemantics, key: FnKey) -> tuple[Trace, Recorder] | None:
    """The function after the patch, traced with its points kept."""
    fn = sem.after.get(key)
    ev = sem.after.evaluator
    if fn is None or ev is None:
        return None
    rec = Recorder(sem.facts, ev, sem.after.functions)
    return rec.run(fn, sem.contexts(key)), rec


def register_of_source(name: str, facts: KvmFacts,
                       params: frozenset[str] = frozenset()) -> str | None:
    """The register a value source holds: a live read, a [regvalues]
    expression, a [[storage]] copy, a parameter named for one (`params`:
    names known to be parameters of a function seen from its middle)."""
    kind, _, rest = name.partition(":")
    rv = facts.regvalues
    if kind == "reg":
        return rest
    if kind == "live":
        return rv.canonical(rest)
    if kind == "param" or (kind == "load" and rest in params):
        return rv.params.get(rest)
    for st in facts.storage:
        if st.name == rest and kind == st.kind:
            return st.register
    return None


_SIGNATURE = re.compile(r"\b\w+\s*\(([^()]*)\)")


def header_params(pv: PatchView, fn: Function) -> frozenset[str]:
    """The parameters of a function the hunks show from its middle, as the
    hunk header that names it spells its signature."""
    if fn.seen_from_start:
        return frozenset(p.name for p in fn.params)
    fv = pv.file(fn.path)
    out: set[str] = set()
    for hunk in fv.diff.hunks if fv is not None and fv.diff is not None else ():
        m = _SIGNATURE.search(hunk.section)
        if m is None or not re.search(r"\b%s\s*\(" % re.escape(fn.name), hunk.section):
            continue
        for param in m.group(1).split(","):
            words = re.findall(r"\w+", param)
            if len(words) >= 2:
                out.add(words[-1])
    return frozenset(out)


def register_expr(expr: Expr, facts: KvmFacts) -> str | None:
    """The register an expression reads or names as storage."""
    reg = facts.regvalues.register_of(expr_text(expr).replace(" ", ""))
    if reg is not None:
        return reg
    name = call_name(expr)
    if name is not None and facts.op_kind(name) == "read" and isinstance(expr, Call) \
            and expr.args:
        return facts.regvalues.canonical(register_name(expr_text(expr.args[0]), name))
    if not isinstance(expr, Name):
        st = facts.storage_of(expr_text(expr).replace(" ", ""))
        if st is not None:
            return st.register
    return None


def holds(fn: Function, facts: KvmFacts) -> dict[str, str]:
    """The locals that only ever hold one register's value: every
    assignment of each reads that register (`sctlr =
    __vcpu_read_sys_reg(vcpu, SCTLR_EL1)` in one case of a switch and
    SCTLR_EL2 in the other are one family)."""
    seen: dict[str, set[str | None]] = {}

    def note(name: str, value: Expr) -> None:
        seen.setdefault(name, set()).add(register_expr(value, facts))

    for stmt in walk(fn.body):
        if isinstance(stmt, Decl):
            for d in stmt.names:
                if d.init is not None:
                    note(d.name, d.init)
        elif isinstance(stmt, ExprStmt) and isinstance(stmt.expr, Assign) \
                and isinstance(stmt.expr.target, Name):
            if stmt.expr.op == "=":
                note(stmt.expr.target.id, stmt.expr.value)
            else:
                seen.setdefault(stmt.expr.target.id, set()).add(None)
    out: dict[str, str] = {}
    for name, regs in seen.items():
        reg = regs.pop() if len(regs) == 1 else None
        if reg is not None:
            out[name] = reg
    return out


def written_as(sem: PatchSemantics, name: str) -> tuple[str, str] | None:
    """(register, writer) when a function after the patch hands what
    `name()` returns straight to a [regvalues] writer or stores it into a
    register value (`vcpu_write_spsr(vcpu, host_spsr_to_spsr32(spsr))`,
    `*vcpu_cpsr(vcpu) = get_except32_cpsr(vcpu, mode)`)."""
    facts = sem.facts
    writers = facts.regvalues.writers
    for fns in sem.after.functions.values():
        for fn in fns:
            for stmt in walk(fn.body):
                expr = stmt.expr if isinstance(stmt, ExprStmt) else (
                    stmt.value if isinstance(stmt, Return) else None)
                if expr is None:
                    continue
                for node in _nodes(expr):
                    if isinstance(node, Call) and call_name(node) in writers:
                        w = writers[call_name(node) or ""]
                        if w.value < len(node.args) and call_name(node.args[w.value]) == name:
                            return _written_register(node, facts), call_name(node) or ""
                    if isinstance(node, Assign) and node.op == "=" \
                            and call_name(node.value) == name:
                        reg = register_expr(node.target, facts)
                        if reg is not None:
                            return reg, expr_text(node.target)
    return None


def _written_register(call: Call, facts: KvmFacts) -> str:
    """The register a writer call writes ([regvalues] writers)."""
    name = call_name(call) or ""
    w = facts.regvalues.writers[name]
    if w.register_arg is not None and w.register_arg < len(call.args):
        return facts.regvalues.canonical(register_name(expr_text(call.args[w.register_arg]),
                                                       name))
    return w.register


def _nodes(expr: Expr) -> Iterator[Expr]:
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Call):
            stack.extend(node.args)
        elif isinstance(node, Binary):
            stack.extend((node.left, node.right))
        elif isinstance(node, Assign):
            stack.extend((node.target, node.value))
        elif isinstance(node, Unary):
            stack.append(node.operand)


def bit_list(mask: int) -> str:
    """"bits 21 and 24", "bit 22"."""
    bits = [str(i) for i in range(64) if mask >> i & 1]
    if len(bits) == 1:
        return "bit " + bits[0]
    return "bits %s and %s" % (", ".join(bits[:-1]), bits[-1])
