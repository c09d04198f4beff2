"""Each statement of a function with the execution contexts it runs in.

A configuration test (`has_vhe()`, `is_kernel_in_hyp_mode()`, kvm.toml
[[guards]]) splits the contexts of the code under it; an early return
under one drops them for what follows; a local that holds a test
(`in_hyp_mode = is_kernel_in_hyp_mode()`) is followed to the test. The
function's callers are not applied here (bot.rules.configreach does).
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.regmodel.facts import Ctx, KvmFacts
from bot.rules.cexpr import Assign, Binary, Expr, Name, Unary
from bot.rules.cstmt import (
    Block,
    Decl,
    ExprStmt,
    Function,
    If,
    Jump,
    Label,
    Loop,
    Return,
    Stmt,
    Switch,
)
from bot.rules.guards import guard_names, guard_split


@dataclass(frozen=True, slots=True)
class Site:
    """One statement of a function and the contexts it runs in there
    (the function's own callers not yet applied)."""

    fn: Function
    stmt: Stmt
    line: int
    end: int
    contexts: frozenset[Ctx]
    guards: tuple[str, ...]    # configuration tests in force ("!" when negated)
    cond: bool                 # under a test of data, not of the configuration


def modes(contexts: frozenset[Ctx]) -> frozenset[str]:
    """"vhe" and/or "nvhe" (nVHE, protected nVHE and hVHE are one side)."""
    return frozenset("vhe" if c.mode == "vhe" else "nvhe" for c in contexts)


def one_side(contexts: frozenset[Ctx]) -> str | None:
    """"nvhe" when only the nVHE family runs it (plain nVHE among them),
    "vhe" when only VHE does; None when both or neither."""
    if Ctx.VHE in contexts:
        return "vhe" if contexts <= {Ctx.VHE} else None
    return "nvhe" if contexts & {Ctx.NVHE_HOST, Ctx.NVHE_HYP} else None


# -- statements with their contexts ------------------------------------------------

_SITES: dict[int, tuple[Function, tuple[Site, ...]]] = {}


def sites(fn: Function, facts: KvmFacts) -> tuple[Site, ...]:
    """Every statement of `fn` with the contexts it runs in (memoised per function)."""
    got = _SITES.get(id(fn))
    if got is not None and got[0] is fn:
        return got[1]
    walker = _Walker(fn, facts)
    walker.block(fn.body, facts.contexts_of(fn.path), (), False)
    out = tuple(walker.out)
    if len(_SITES) > 20000:
        _SITES.clear()
    _SITES[id(fn)] = (fn, out)
    return out


class _Walker:
    def __init__(self, fn: Function, facts: KvmFacts) -> None:
        self.fn, self.facts = fn, facts
        self.entry = facts.contexts_of(fn.path)
        self.aliases: dict[str, Expr] = {}     # locals holding a configuration test
        self.out: list[Site] = []

    def site(self, stmt: Stmt, end: int, ctxs: frozenset[Ctx], guards: tuple[str, ...],
             cond: bool) -> None:
        self.out.append(Site(fn=self.fn, stmt=stmt, line=stmt.line, end=max(end, stmt.line),
                             contexts=ctxs, guards=guards, cond=cond))

    def block(self, stmts: tuple[Stmt, ...] | list[Stmt], ctxs: frozenset[Ctx],
              guards: tuple[str, ...], cond: bool) -> frozenset[Ctx]:
        """Walk statements in order; the contexts that run past them."""
        for stmt in stmts:
            ctxs = self.stmt(stmt, ctxs, guards, cond)
        return ctxs

    def stmt(self, stmt: Stmt, ctxs: frozenset[Ctx], guards: tuple[str, ...],
             cond: bool) -> frozenset[Ctx]:
        if isinstance(stmt, Block):
            return self.block(stmt.stmts, ctxs, guards, cond)
        if isinstance(stmt, Label):
            return self.entry      # a goto may land here from anywhere
        if isinstance(stmt, If):
            self.site(stmt, stmt.cond_end, ctxs, guards, cond)
            test = self._subst(stmt.cond)
            split = guard_split(self.facts, test, ctxs)
            if split is None:
                then = self.stmt(stmt.then, ctxs, guards, True)
                other = self.stmt(stmt.other, ctxs, guards, True) if stmt.other else ctxs
                return then | other
            names = tuple(guard_names(self.facts, test))
            yes, no, _ = split
            negated = tuple(n[1:] if n.startswith("!") else "!" + n for n in names)
            then = self.stmt(stmt.then, yes, guards + names, cond) if yes else frozenset()
            if stmt.other is not None:
                other = self.stmt(stmt.other, no, guards + negated, cond) if no else no
            else:
                other = no
            return then | other
        if isinstance(stmt, (Loop, Switch)):
            self.site(stmt, stmt.line, ctxs, guards, cond)
            self.stmt(stmt.body, ctxs, guards, True)
            return ctxs
        # A fragment's first lines may close a block the hunk does not show:
        # only a function seen from its start leaves it there.
        if isinstance(stmt, Return):
            self.site(stmt, stmt.end, ctxs, guards, cond)
            return frozenset() if self.fn.seen_from_start else ctxs
        if isinstance(stmt, Jump):
            return frozenset() if stmt.kind == "goto" and self.fn.seen_from_start else ctxs
        if isinstance(stmt, Decl):
            for d in stmt.names:
                if d.init is not None and self._is_test(d.init):
                    self.aliases[d.name] = d.init
            self.site(stmt, stmt.end, ctxs, guards, cond)
            return ctxs
        if isinstance(stmt, ExprStmt):
            e = stmt.expr
            if isinstance(e, Assign) and e.op == "=" and isinstance(e.target, Name) \
                    and self._is_test(e.value):
                self.aliases[e.target.id] = e.value
            self.site(stmt, stmt.end, ctxs, guards, cond)
            return ctxs
        self.site(stmt, stmt.line, ctxs, guards, cond)
        return ctxs

    def _is_test(self, expr: Expr) -> bool:
        split = guard_split(self.facts, expr, self.entry)
        return split is not None and split[2]

    def _subst(self, expr: Expr) -> Expr:
        """The condition with locals that hold a configuration test replaced by it."""
        if isinstance(expr, Name) and expr.id in self.aliases:
            return self.aliases[expr.id]
        if isinstance(expr, Unary) and expr.op == "!":
            return Unary(op="!", operand=self._subst(expr.operand))
        if isinstance(expr, Binary) and expr.op in ("&&", "||"):
            return Binary(op=expr.op, left=self._subst(expr.left), right=self._subst(expr.right))
        return expr
