"""What a statement does that other code may rely on: the variables it
writes and reads (through per-CPU accessors too), the maintenance of the
guest's TLBs and instruction cache it performs (kvm.toml [config_work]),
and the functions it calls, or runs at EL2 through a hypercall. Pure.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from bot.regmodel.facts import KvmFacts
from bot.rules.cexpr import (
    Assign,
    Binary,
    Call,
    Cast,
    Expr,
    Index,
    Member,
    Name,
    Ternary,
    Unary,
    call_name,
)
from bot.rules.cstmt import Asm, Decl, ExprStmt, If, Loop, Return, Stmt, Switch


@dataclass(frozen=True, slots=True)
class Effects:
    """What statements do that other code may rely on."""

    writes: frozenset[str] = frozenset()
    reads: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()      # "tlbi alle1", "__kvm_flush_vm_context()"
    calls: frozenset[str] = frozenset()    # called directly, or run at EL2 by a hyp call

    def __or__(self, other: Effects) -> Effects:
        return Effects(writes=self.writes | other.writes, reads=self.reads | other.reads,
                       ops=self.ops | other.ops, calls=self.calls | other.calls)


# -- what statements do --------------------------------------------------------------

def _root(expr: Expr, accessors: frozenset[str]) -> str | None:
    """The variable an lvalue (or a per-CPU accessor's argument) names."""
    while True:
        if isinstance(expr, Name):
            return expr.id
        if isinstance(expr, (Index, Member)):
            expr = expr.base
        elif isinstance(expr, (Unary, Cast)) and (not isinstance(expr, Unary)
                                                   or expr.op in ("*", "&")):
            expr = expr.operand
        elif isinstance(expr, Call) and call_name(expr) in accessors and expr.args:
            expr = expr.args[0]
        else:
            return None


class _Effects:
    """Collects what one statement's expressions do."""

    def __init__(self, facts: KvmFacts) -> None:
        work = facts.config_work
        self.work = work
        self.accessors = work.percpu_accessors | facts.ops.get("percpu", frozenset()) \
            | facts.ops.get("percpu_write", frozenset())
        self.writers = facts.ops.get("percpu_write", frozenset())
        self.tlbi = facts.ops.get("tlbi", frozenset())
        self.writes: set[str] = set()
        self.reads: set[str] = set()
        self.ops: set[str] = set()
        self.calls: set[str] = set()

    def result(self) -> Effects:
        return Effects(writes=frozenset(self.writes), reads=frozenset(self.reads),
                       ops=frozenset(self.ops), calls=frozenset(self.calls))

    def stmt(self, stmt: Stmt) -> None:
        if isinstance(stmt, ExprStmt):
            self.expr(stmt.expr)
        elif isinstance(stmt, Decl):
            for d in stmt.names:
                if d.init is not None:
                    self.expr(d.init)
        elif isinstance(stmt, (If, Loop)):
            self.expr(stmt.cond)
        elif isinstance(stmt, Switch):
            self.expr(stmt.expr)
        elif isinstance(stmt, Return) and stmt.value is not None:
            self.expr(stmt.value)
        elif isinstance(stmt, Asm):
            self.asm(stmt.text)

    def asm(self, text: str) -> None:
        words = re.findall(r"\w+", text.lower())
        for a, b in itertools.pairwise(words):
            if (a == "tlbi" and b in self.work.tlbi) or (a == "ic" and b in self.work.ic):
                self.ops.add("%s %s" % (a, b))

    def expr(self, root: Expr) -> None:
        stack: list[Expr] = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, Name):
                self.reads.add(node.id)
            elif isinstance(node, Call):
                self.call(node, stack)
            elif isinstance(node, Assign):
                target = _root(node.target, self.accessors)
                if target is not None:
                    self.writes.add(target)
                    if node.op != "=":
                        self.reads.add(target)
                stack.extend(_inner(node.target))
                stack.append(node.value)
            elif isinstance(node, Binary):
                stack.extend((node.left, node.right))
            elif isinstance(node, (Unary, Cast)):
                stack.append(node.operand)
            elif isinstance(node, Member):
                stack.append(node.base)
            elif isinstance(node, Index):
                stack.extend((node.base, node.index))
            elif isinstance(node, Ternary):
                stack.extend((node.cond, node.then, node.other))

    def call(self, node: Call, stack: list[Expr]) -> None:
        name = call_name(node)
        if name is None:
            stack.append(node.func)
            stack.extend(node.args)
            return
        self.calls.add(name)
        args = node.args
        first = args[0] if args else None
        if name in self.work.hyp_calls and isinstance(first, Name):
            self.calls.add(first.id)
            if first.id in self.work.calls:
                self.ops.add(first.id + "()")
            stack.extend(args[1:])
            return
        if name in self.work.calls:
            self.ops.add(name + "()")
        if name in self.tlbi and isinstance(first, Name) and first.id in self.work.tlbi:
            self.ops.add("tlbi " + first.id)
            return
        if name in self.writers and first is not None:
            target = _root(first, self.accessors)
            if target is not None:
                self.writes.add(target)
            stack.extend(args[1:])
            return
        if name not in self.accessors:
            # A variable handed by address to a function may be filled by it.
            for arg in args:
                if isinstance(arg, Unary) and arg.op == "&" and isinstance(arg.operand, Name):
                    self.writes.add(arg.operand.id)
        stack.extend(args)


def _inner(target: Expr) -> list[Expr]:
    """The parts of an lvalue that are read (indexes, pointers), not its root."""
    out: list[Expr] = []
    while True:
        if isinstance(target, Index):
            out.append(target.index)
            target = target.base
        elif isinstance(target, Member):
            target = target.base
        elif isinstance(target, (Unary, Cast)):
            target = target.operand
        elif isinstance(target, Call):
            out.extend(target.args[1:])
            if not target.args:
                return out
            target = target.args[0]
        else:
            return out


def stmt_effects(stmt: Stmt, facts: KvmFacts) -> Effects:
    col = _Effects(facts)
    col.stmt(stmt)
    return col.result()
