"""Rule family 8, polarity, by values: PSTATE on exception entry set from
an SCTLR field with the opposite polarity.

Taking an exception sets some PSTATE bits from a field of the target
exception level's SCTLR: PAN is set when SPAN is 0 (and left as it was
when SPAN is 1), SSBS follows DSSBS, the AArch32 CPSR.E follows EE and
CPSR.T follows TE (kvm.toml [[regvalues.on_entry]], Arm ARM D1 and G1).
KVM emulates exception entry for its guests (hyp/exception.c, the
AArch32 injection of 2019-2020), and builds the new PSTATE bit by bit.
An `if` that tests one of those fields of a value read from SCTLR and sets
(or clears) the PSTATE bit it decides in a value that holds the guest's
PSTATE, on the side of the test where the architecture says the opposite,
gives the guest the wrong PSTATE; when the test is made on every path of
a function seen whole, that is decided, and a warning. The same test with
the architecture's polarity (`if (!(sctlr & SCTLR_EL1_SPAN)) new |=
PSR_PAN_BIT;`) is quiet. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.regmodel.facts import KvmFacts
from bot.regmodel.valuefacts import EntryEffect
from bot.rules.analysis import Emit, Line, PatchView, SeriesView
from bot.rules.bits import MASK64
from bot.rules.cexpr import Assign, Binary, Cast, Expr, Name, Num, Unary
from bot.rules.core import Context, Severity
from bot.rules.cstmt import Block, ExprStmt, Function, Return, Stmt, walk
from bot.rules.flow import line_at
from bot.rules.regvalue import (
    Point,
    Recorder,
    holds,
    register_expr,
    register_of_source,
    traced,
    written_as,
)
from bot.rules.semantic import PatchSemantics


@dataclass(frozen=True, slots=True, kw_only=True)
class _Test:
    """A test of one bit of a register value: true when the bit is `when`."""

    register: str
    bit: int
    when: int


def _stems(facts: KvmFacts) -> tuple[str, ...]:
    """How a patch that reads the registers of [[regvalues.on_entry]] spells
    them, at the least ("sctlr" for SCTLR_ELx)."""
    return tuple(sorted({e.register.split("_EL")[0].lower() for e in facts.regvalues.on_entry}))


def _changes(body: str, stems: tuple[str, ...]) -> bool:
    """A line the patch adds or removes names one of the registers (the
    test or the PSTATE bit it sets is what changes, or nothing does)."""
    low = body.lower()
    if not any(s in low for s in stems):
        return False
    return any(line[:1] in "+-" and not line.startswith(("+++", "---"))
               and any(s in line for s in stems) for line in low.splitlines())


def check(emit: Emit, sv: SeriesView, ctx: Context) -> None:
    model = ctx.regmodel
    if model is None or not model.facts.regvalues.on_entry:
        return
    stems = _stems(model.facts)
    for t in traced(sv, ctx, lambda body: _changes(body, stems)):
        local = holds(t.trace.function, t.sem.facts)
        for point in t.rec.points:
            if point.kind == "if":
                _point(emit, t.pv, t.sem, t.rec, point, local)


def _point(emit: Emit, pv: PatchView, sem: PatchSemantics, rec: Recorder, point: Point,
           local: dict[str, str]) -> None:
    facts = sem.facts
    test = _bit_test(point.expr, rec, point, local, facts)
    stmt = point.stmt
    if test is None or stmt is None:
        return
    effects = [e for e in facts.regvalues.on_entry
               if e.register == test.register and e.bit == test.bit]
    if not effects:
        return
    for branch, value in ((stmt.then, test.when), (stmt.other, 1 - test.when)):
        for op, target, bits, line in _bit_ops(branch, rec, point):
            for eff in effects:
                if not bits >> eff.set_bit & 1:
                    continue
                sets = op == "set"
                wrong = (value == eff.when) != sets
                if not wrong or not _holds_target(target, eff, point, sem):
                    continue
                ln = _changed(pv, point.function.path, point.line, line)
                if ln is None:
                    return
                whole = sem.from_tree or point.function.complete
                _emit(emit, pv, point, ln, eff, sets, value,
                      Severity.WARNING if whole and point.always else Severity.QUESTION)
                return


def _emit(emit: Emit, pv: PatchView, point: Point, ln: Line, eff: EntryEffect, sets: bool,
          value: int, severity: Severity) -> None:
    arch = "sets %s.%s when %s.%s is %d and leaves it as it was otherwise" % (
        eff.target, eff.sets, eff.register, eff.field, eff.when)
    emit(severity, pv, pv.file(point.function.path), ln, register=eff.target,
         fields=(eff.sets,),
         message="%s() %s %s.%s (bit %d) when %s.%s (bit %d) is %d, but exception entry %s: "
         "the guest's new %s gets the opposite of what the architecture gives it%s" % (
             point.function.name, "sets" if sets else "clears", eff.target, eff.sets,
             eff.set_bit, eff.register, eff.field, eff.bit, value, arch, eff.target,
             "." if severity is Severity.WARNING else ". Is the test inverted?"))


def _bit_test(expr: Expr, rec: Recorder, point: Point, local: dict[str, str],
              facts: KvmFacts) -> _Test | None:
    """The register bit `expr` tests, and the value that makes it true."""
    if isinstance(expr, Cast):
        return _bit_test(expr.operand, rec, point, local, facts)
    if isinstance(expr, Unary) and expr.op == "!":
        inner = _bit_test(expr.operand, rec, point, local, facts)
        return None if inner is None else _Test(register=inner.register, bit=inner.bit,
                                                when=1 - inner.when)
    if isinstance(expr, Binary) and expr.op in ("==", "!="):
        for side, other in ((expr.left, expr.right), (expr.right, expr.left)):
            const = rec.value(point, other).value
            inner = _bit_test(side, rec, point, local, facts) if const is not None else None
            if inner is None or const is None:
                continue
            equal = 1 if const else 0
            if const not in (0, 1 << inner.bit):
                return None
            when = inner.when if equal else 1 - inner.when
            return _Test(register=inner.register, bit=inner.bit,
                         when=when if expr.op == "==" else 1 - when)
        return None
    if not isinstance(expr, Binary) or expr.op != "&":
        return None
    value = rec.value(point, expr)
    live = ~value.zeros & MASK64
    if live == 0 or live & (live - 1):
        return None
    bit = live.bit_length() - 1
    register = None
    src = value.source_at(bit)
    if src is not None:
        register = register_of_source(src, facts)
    for side in (expr.left, expr.right):
        if register is None and isinstance(side, Name):
            register = local.get(side.id)
        if register is None and not isinstance(side, Name | Num):
            register = register_expr(side, facts)
    return None if register is None else _Test(register=register, bit=bit, when=1)


def _bit_ops(branch: Stmt | None, rec: Recorder,
             point: Point) -> list[tuple[str, str, int, int]]:
    """("set"|"clear", local, bits, line) for each `x |= C` / `x &= ~C` the
    branch makes itself (not under a further condition)."""
    if branch is None:
        return []
    stmts = branch.stmts if isinstance(branch, Block) else (branch,)
    out: list[tuple[str, str, int, int]] = []
    for s in stmts:
        a = s.expr if isinstance(s, ExprStmt) else None
        if not isinstance(a, Assign) or not isinstance(a.target, Name):
            continue
        target = a.target.id
        if a.op == "|=":
            bits = rec.value(point, a.value).value
            if bits:
                out.append(("set", target, bits, s.line))
        elif a.op == "&=" and isinstance(a.value, Unary) and a.value.op == "~":
            bits = rec.value(point, a.value.operand).value
            if bits:
                out.append(("clear", target, bits, s.line))
    return out


def _holds_target(name: str, eff: EntryEffect, point: Point, sem: PatchSemantics) -> bool:
    """The local is the new value of `eff.target`: it holds bits of that
    register already, or the function stores it as one, or returns it to a
    caller that does."""
    facts = sem.facts
    v = point.state.env.get(name)
    if v is not None and any(register_of_source(n, facts) == eff.target for n, _ in v.srcs):
        return True
    fn = point.function
    if _stored_as(fn, name, eff.target, facts):
        return True
    if _returns(fn, name):
        written = written_as(sem, fn.name)
        return written is not None and written[0] == eff.target
    return False


def _stored_as(fn: Function, name: str, register: str, facts: KvmFacts) -> bool:
    for s in walk(fn.body):
        if isinstance(s, ExprStmt) and isinstance(s.expr, Assign) and s.expr.op == "=" \
                and s.expr.value == Name(name) \
                and register_expr(s.expr.target, facts) == register:
            return True
    return False


def _returns(fn: Function, name: str) -> bool:
    return any(isinstance(s, Return) and s.value == Name(name) for s in walk(fn.body))


def _changed(pv: PatchView, path: str, first: int, last: int) -> Line | None:
    """The first added line from the test to the statement it guards."""
    for no in range(first, max(first, last) + 1):
        ln = line_at(pv, path, no, "new")
        if ln is not None and ln.added:
            return ln
    return None

