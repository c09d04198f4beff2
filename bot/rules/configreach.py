"""Which configurations reach a host function, and each statement in it.

KVM's host code runs under VHE (the host kernel at EL2) and under nVHE,
protected nVHE and hVHE (the host at EL1, a separate hypervisor at EL2),
but not all of it in each: kvm_arm_init() calls init_hyp_mode() only when
!is_kernel_in_hyp_mode(), cpu_hyp_init_context() calls cpu_init_hyp_mode()
only then. What a function's callers test (kvm.toml [[guards]]) decides
where it runs; where neither a tree nor the hunks show a caller, kvm.toml
[[reach]] says who calls it under which test.

A `Program` is one side of a patch as far as it can be seen: whole files
with a kernel tree, the hunks without one. `sites()` walks a function's
statements with the contexts each runs in (a configuration test splits
them, an early return under one drops them, a local holding a test is
followed); `Program.reach()` joins those over the function's callers. Also
here: what a statement does that other code may rely on (`Effects`: the
file-scope or per-CPU variables it writes and reads, TLB and cache
maintenance of the guest's regime, the functions it calls), followed into
the bodies of the functions it calls. Pure.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.parse.csource import is_asm
from bot.regmodel.facts import Ctx, KvmFacts
from bot.regmodel.reach import ConfigWork
from bot.rules.analysis import FileView, PatchView, SeriesView
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
    expr_from_text,
    tokenize,
)
from bot.rules.cstmt import (
    Asm,
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
from bot.rules.semantic import file_functions, hunk_functions
from bot.rules.stmtparse import function_from_lines, parse_statements

logger = logging.getLogger(__name__)

_DEPTH = 6   # callers followed up, callees followed down


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


@dataclass(frozen=True, slots=True)
class Reach:
    """Where a function runs, and why there only (empty when nothing restricts it)."""

    contexts: frozenset[Ctx]
    why: str = ""


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


# -- one side of a patch -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FileScope:
    """What a file declares outside its functions: static variables, and
    the ones the patch adds."""

    statics: frozenset[str] = frozenset()
    added: frozenset[str] = frozenset()


@dataclass
class Program:
    """One side ("old" or "new") of a patch's host and hyp C code, as far as
    the tree or the hunks show it."""

    facts: KvmFacts
    functions: dict[str, list[Function]] = field(default_factory=dict)
    whole: set[str] = field(default_factory=set)            # files seen whole (tree)
    scopes: dict[str, FileScope] = field(default_factory=dict)
    new_functions: set[tuple[str, str]] = field(default_factory=set)   # (path, name)
    _reach: dict[tuple[str, str], Reach] = field(default_factory=dict)
    _index: dict[str, list[tuple[Site, str]]] | None = None
    _stages: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    _effects: dict[tuple[str, str, frozenset[Ctx]], Effects] = field(default_factory=dict)
    _site_effects: dict[tuple[str, int, int, frozenset[Ctx]], Effects] = field(
        default_factory=dict)

    @property
    def work(self) -> ConfigWork:
        return self.facts.config_work

    def all_functions(self) -> Iterator[Function]:
        for fns in self.functions.values():
            yield from fns

    def function(self, name: str, path: str | None = None) -> Function | None:
        fns = self.functions.get(name, [])
        for fn in fns:
            if fn.path == path:
                return fn
        return fns[0] if fns else None

    def sites(self, fn: Function) -> tuple[Site, ...]:
        return sites(fn, self.facts)

    # -- effects --------------------------------------------------------------------

    def effects(self, site: Site, contexts: frozenset[Ctx] | None = None) -> Effects:
        """What the statement does in `contexts` (default: wherever it runs),
        with what the functions it calls do there."""
        ctxs = self.site_contexts(site) if contexts is None else contexts
        key = (site.fn.path, id(site.fn), site.line, ctxs)
        got = self._site_effects.get(key)
        if got is None:
            own = stmt_effects(site.stmt, self.facts)
            got = own
            for name in sorted(own.calls):
                got = got | self.fn_effects(name, site.fn.path, 1, ctxs)
            self._site_effects[key] = got
        return got

    def fn_effects(self, name: str, path: str, depth: int,
                   contexts: frozenset[Ctx] | None = None) -> Effects:
        """What a call of `name` does in `contexts`: the statements of its
        body that run there, and what they call (the calls only some
        configurations make inside it count for those only)."""
        fn = self.function(name, path)
        place = self.facts.contexts_of(fn.path if fn is not None else path)
        want = place if contexts is None else _same_modes(place, contexts)
        key = (path, name, want)
        if key in self._effects:
            return self._effects[key]
        self._effects[key] = Effects()     # a recursive call adds nothing more
        out = Effects()
        if fn is not None and depth <= _DEPTH:
            calls: set[str] = set()
            for st in self.sites(fn):
                ctxs = st.contexts & want
                if not ctxs:
                    continue
                e = stmt_effects(st.stmt, self.facts)
                out = out | Effects(writes=e.writes, reads=e.reads, ops=e.ops)
                calls |= e.calls
                for callee in sorted(e.calls - {name}):
                    sub = self.fn_effects(callee, fn.path, depth + 1, ctxs)
                    out = out | Effects(writes=sub.writes, reads=sub.reads, ops=sub.ops)
            out = out | Effects(calls=frozenset(calls))
        for state in self.work.hyp_state.values():
            if name in state.written_by and want:
                out = out | Effects(writes=frozenset({state.name}))
        self._effects[key] = out
        return out

    # -- where functions run ------------------------------------------------------

    def callers(self, fn: Function) -> tuple[list[tuple[Site, str]], bool]:
        """The statements that call `fn` (or hand it on as a pointer: "ptr"),
        and whether those are all of them."""
        out = [(st, how) for st, how in self._uses().get(fn.name, ())
               if st.fn is not fn and (not fn.static or st.fn.path == fn.path)]
        complete = (fn.path in self.whole and fn.static) or (fn.path, fn.name) in \
            self.new_functions
        return out, complete

    def _uses(self) -> dict[str, list[tuple[Site, str]]]:
        """Every name the program's statements call ("call") or name
        otherwise ("ptr"), with the statements (built once)."""
        if self._index is None:
            index: dict[str, list[tuple[Site, str]]] = {}
            for other in self.all_functions():
                for st in self.sites(other):
                    e = stmt_effects(st.stmt, self.facts)
                    for name in e.calls:
                        index.setdefault(name, []).append((st, "call"))
                    for name in e.reads - e.calls:
                        if name in self.functions:
                            index.setdefault(name, []).append((st, "ptr"))
            self._index = index
        return self._index

    def reach(self, fn: Function, _seen: frozenset[tuple[str, str]] = frozenset()) -> Reach:
        """Where `fn` runs: its file's place, narrowed by what its callers
        test around the calls (the text, else kvm.toml [[reach]])."""
        key = (fn.path, fn.name)
        if key in self._reach:
            return self._reach[key]
        base = self.facts.contexts_of(fn.path)
        if key in _seen or len(_seen) >= _DEPTH:
            return Reach(base)
        seen = _seen | {key}
        shown, complete = self.callers(fn)
        parts: list[tuple[frozenset[Ctx], str]] = []
        by_caller: dict[str, list[tuple[Site, str]]] = {}
        for st, how in shown:
            by_caller.setdefault(st.fn.name, []).append((st, how))
        via_data: dict[str, list[str]] = {}
        edges = self.work.edges_to(fn.name, fn.path)
        # kvm.toml names every caller of a callee it lists.
        complete = complete or bool(edges)
        for edge in edges:
            caller = self.function(edge.caller, fn.path)
            if caller is not None and caller.complete:
                continue    # the text shows whether and under what it calls
            if caller is None and fn.path in self.whole:
                continue    # no such caller in this kernel
            # A caller the hunks show in part: the test around the call may be
            # above what they show, and kvm.toml knows it.
            by_caller.pop(edge.caller, None)
            ctxs = self.facts.contexts_of(fn.path)
            if edge.guard:
                split = guard_split(self.facts, expr_from_text(edge.guard.lstrip("!") + "()"),
                                    ctxs)
                if split is not None:
                    ctxs = split[1] if edge.guard.startswith("!") else split[0]
                via_data.setdefault(edge.guard, []).append(edge.caller)
            up = self.reach(caller, seen) if caller is not None else Reach(base)
            parts.append((_same_modes(base, up.contexts & ctxs), up.why if not edge.guard
                          else "\0" + edge.guard))
        # kvm.toml names the callers of several kernel versions: one sentence per test.
        parts = [(c, "%s() calls %s() only %s" % ("()/".join(via_data[w[1:]]), fn.name,
                                                 _under(w[1:])) if w.startswith("\0") else w)
                 for c, w in parts]
        for name, calls in by_caller.items():
            for st, how in calls:
                if how == "ptr":
                    return self._keep(key, Reach(base))
                up = self.reach(st.fn, seen)
                tests = [g for g in st.guards if g not in up.why]
                why = "%s() calls %s() only %s" % (name, fn.name, _under(" && ".join(tests))) \
                    if tests and st.contexts != self.facts.contexts_of(st.fn.path) else up.why
                parts.append((_same_modes(base, up.contexts & st.contexts), why))
        if not parts or not complete:
            return self._keep(key, Reach(base))
        ctxs = base & frozenset().union(*(c for c, _ in parts))
        why = next((w for c, w in parts if c and w), "") if ctxs != base else ""
        return self._keep(key, Reach(ctxs, why))

    def _keep(self, key: tuple[str, str], r: Reach) -> Reach:
        self._reach[key] = r
        return r

    def site_contexts(self, site: Site) -> frozenset[Ctx]:
        return self.reach(site.fn).contexts & site.contexts

    def why(self, site: Site) -> str:
        """Why the statement runs only where it does, in words."""
        r = self.reach(site.fn)
        if site.contexts != self.facts.contexts_of(site.fn.path) and site.guards:
            own = "the statement runs only %s" % _under(" && ".join(site.guards))
            return own + ("; " + r.why if r.why else "")
        return r.why

    def stages(self, fn: Function, _seen: frozenset[tuple[str, str]] = frozenset()
               ) -> frozenset[str]:
        """The [lifecycle] stages `fn` runs in: its own, else its callers'."""
        key = (fn.path, fn.name)
        if key in self._stages:
            return self._stages[key]
        own = self.facts.lifecycle.stage_of.get(fn.name)
        if own is not None:
            out = frozenset({own})
        elif key in _seen or len(_seen) >= _DEPTH:
            return frozenset()
        else:
            found: set[str] = set()
            shown, _ = self.callers(fn)
            for st, how in shown:
                if how == "call":
                    found |= self.stages(st.fn, _seen | {key})
            for edge in self.work.edges_to(fn.name, fn.path):
                caller = self.function(edge.caller, fn.path)
                if caller is not None:
                    found |= self.stages(caller, _seen | {key})
                elif edge.caller in self.facts.lifecycle.stage_of:
                    found.add(self.facts.lifecycle.stage_of[edge.caller])
            out = frozenset(found)
        if not _seen:
            self._stages[key] = out
        return out


def _same_modes(base: frozenset[Ctx], ctxs: frozenset[Ctx]) -> frozenset[Ctx]:
    """The contexts of `base` in the configurations of `ctxs` (a hyp call
    from the nVHE host runs in the nVHE hyp)."""
    kinds = {c.mode for c in ctxs}
    return frozenset(c for c in base if c.mode in kinds)


def _under(test: str) -> str:
    return "under %s%s" % (test, "()" if test and not test.endswith(")") else "")


# -- building a side ----------------------------------------------------------------

def program(sv: SeriesView, pv: PatchView, facts: KvmFacts, side: str) -> Program:
    """The C code of the files `pv` changes, on one side ("old", "new")."""
    prog = Program(facts=facts)
    index = pv.index if side == "new" else pv.index - 1
    for fv in pv.files:
        path = fv.path
        if is_asm(path) or not path.endswith((".c", ".h")):
            continue
        text = sv.file_after_index(index, path) if sv.tree is not None else None
        if text is not None and getattr(sv.tree, "applied", True):
            fns = list(file_functions(path, text))
            prog.whole.add(path)
            lines = text.split("\n")
            inside: set[int] = set()
            for fn in fns:
                inside.update(range(fn.start, fn.end + 1))
            scope = [(i + 1, t) for i, t in enumerate(lines) if i + 1 not in inside]
            added: set[str] = set()
        else:
            fns = _hunk_functions(fv, side)
            shown = [ln for ln in fv.lines if (ln.new_side if side == "new" else ln.old_side)
                     and ln.function is None]
            scope = [((ln.new_no if side == "new" else ln.old_no) or 0, ln.text)
                     for ln in shown]
            added = set(_statics([(0, ln.text) for ln in shown if ln.added], facts)) \
                if side == "new" else set()
        for fn in fns:
            prog.functions.setdefault(fn.name, []).append(fn)
        prog.scopes[path] = FileScope(statics=frozenset(_statics(scope, facts)),
                                      added=frozenset(added))
        if side == "new":
            prog.new_functions |= _new_functions(fv, fns)
    return prog


def _hunk_functions(fv: FileView, side: str) -> list[Function]:
    """hunk_functions(), with the new side's lines that a hunk header
    names by a function the patch renames (the header quotes the old file)
    given to the function defined above them."""
    if side != "new":
        return hunk_functions(fv, side)
    defined: dict[str, int] = {}
    gone: set[str] = set()
    for ln in fv.lines:
        if ln.function and ln.text[:1].isalpha() and _def_line(ln.function).match(ln.text):
            if ln.removed:
                gone.add(ln.function)
            elif ln.new_no:
                defined[ln.function] = ln.new_no
    gone -= set(defined)
    if not gone:
        return hunk_functions(fv, side)
    groups: dict[str, list[tuple[int, str]]] = {}
    for ln in fv.lines:
        if not ln.new_side or ln.function is None or ln.new_no is None:
            continue
        name = ln.function
        if name in gone:
            above = [(no, n) for n, no in defined.items() if no <= ln.new_no]
            if not above:
                continue
            name = max(above)[1]
        groups.setdefault(name, []).append((ln.new_no, ln.text))
    out: list[Function] = []
    for name, numbered in groups.items():
        numbered.sort()
        gaps = any(b[0] - a[0] != 1 for a, b in itertools.pairwise(numbered))
        has_start = any(_def_line(name).match(text) for _, text in numbered[:4])
        out.append(function_from_lines(name, fv.path, numbered, has_start=has_start,
                                       has_end=numbered[-1][1].startswith("}"), gaps=gaps))
    return out


def _def_line(name: str) -> re.Pattern[str]:
    return re.compile(r"^[A-Za-z_][^;]*\b%s\s*\(" % re.escape(name))


def _new_functions(fv: FileView, fns: list[Function]) -> set[tuple[str, str]]:
    """Functions whose definition the patch adds, with no definition of the
    same name removed or kept (every call of one is an added line)."""
    out: set[tuple[str, str]] = set()
    for fn in fns:
        if not fn.has_start:
            continue
        pattern = _def_line(fn.name)
        defs = [ln for ln in fv.lines if pattern.match(ln.text)]
        if defs and all(ln.added for ln in defs):
            out.add((fv.path, fn.name))
    return out


def _statics(lines: list[tuple[int, str]], facts: KvmFacts) -> list[str]:
    """Names of the static variables file-scope lines declare (a C
    declaration, or a per-CPU definition macro: its last argument)."""
    out: list[str] = []
    defines = facts.config_work.percpu_defines
    for _, text in lines:
        stripped = text.strip()
        if not stripped.startswith("static") or not stripped.endswith(";"):
            continue
        ids = [t.text for t in tokenize(stripped) if t.kind == "id"]
        if defines.intersection(ids):
            out.append(ids[-1])
            continue
        for stmt in parse_statements(stripped):
            if isinstance(stmt, Decl):
                out.extend(d.name for d in stmt.names)
    return out
