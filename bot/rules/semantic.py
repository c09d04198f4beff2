"""The semantic model of one patch: its functions before and after, and what
they do to HCR_EL2/MDCR_EL2 in each execution context.

For every function the patch changes, and every function of the
save/restore map (kvm.toml [[functions]]) that reaches one of them through
calls the text shows, the interpreter (bot.rules.interp) is run on the
function as it was before the patch and as it is after. With a kernel tree
(`Context.tree`, a TreeSnapshot) both sides are whole files at the patch's
base and after it; without one they are what the hunks show, and a trace
says it is incomplete. Rules compare the two traces: a value that changed,
a write that went away, a barrier that is no longer between a write and
what depends on it. Pure: everything comes from the series and the model.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from dataclasses import dataclass, field

from bot.parse.csource import c_functions, is_asm
from bot.regmodel import RegisterModel, Role
from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import Ctx, KvmFacts
from bot.rules.analysis import FileView, Line, PatchView, SeriesView
from bot.rules.cexpr import Assign, Binary, Call, Cast, Expr, Index, Member, Name, Ternary, Unary
from bot.rules.cstmt import (
    Decl,
    ExprStmt,
    Function,
    If,
    Loop,
    Return,
    walk,
)
from bot.rules.interp import Interpreter
from bot.rules.stmtparse import function_from_lines
from bot.rules.trace import Trace

_DEF_LINE = r"^[A-Za-z_][^;]*\b%s\s*\("
# Interrupts as the callers of each role leave them: the world switch runs
# with DAIF masked (kvm_vcpu_run_vhe, the nVHE hyp's exception entry); the
# TLB helpers are called with interrupts on and mask them themselves. Any
# other function: unknown.
_IRQS_AT_START: dict[Role | None, bool | None] = {
    Role.ENTRY: True, Role.EXIT: True, Role.EARLY_EXIT: True, Role.PANIC: True,
    Role.RUN: True, Role.TLB_TO_GUEST: False, Role.TLB_TO_HOST: True}


@dataclass(frozen=True, slots=True, kw_only=True)
class FnKey:
    """A function named by its file and name."""

    path: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    """One function before and after the patch, traced in its contexts."""

    key: FnKey
    role: Role | None
    before: Trace | None
    after: Trace | None
    changed: tuple[Line, ...]       # the patch's changed lines in this function
    reaches: tuple[FnKey, ...]      # changed functions it reaches through calls
    from_tree: bool

    # The changed line a finding about this pair is quoted at: the first
    # added line, or the first changed one (set by __post_init__).
    anchor: Line | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        first = next((ln for ln in self.changed if ln.added),
                     self.changed[0] if self.changed else None)
        object.__setattr__(self, "anchor", first)


def _group(lines: list[Line], side: str) -> dict[str, list[Line]]:
    out: dict[str, list[Line]] = {}
    for ln in lines:
        if ln.function and (ln.new_side if side == "new" else ln.old_side):
            out.setdefault(ln.function, []).append(ln)
    return out


@functools.lru_cache(maxsize=4096)
def _def_line(name: str) -> re.Pattern[str]:
    """The first line of a definition of `name`."""
    return re.compile(_DEF_LINE % re.escape(name))


def hunk_functions(fv: FileView, side: str) -> list[Function]:
    """The functions one side of a file's hunks shows, as far as it shows
    them (worked out once per file view and side)."""
    key = ("hunk_functions", side)
    got = fv.derived.get(key)
    if not isinstance(got, tuple):
        got = fv.derived[key] = tuple(_hunk_functions(fv, side))
    return [fn for fn in got if isinstance(fn, Function)]


def _hunk_functions(fv: FileView, side: str) -> list[Function]:
    out: list[Function] = []
    for name, lines in _group(list(fv.lines), side).items():
        numbered = [((ln.new_no if side == "new" else ln.old_no) or 0, ln.text) for ln in lines]
        numbered.sort()
        contiguous = all(b[0] - a[0] == 1 for a, b in itertools.pairwise(numbered))
        start = _def_line(name)
        has_start = any(start.match(text) for _, text in numbered[:4])
        out.append(function_from_lines(name, fv.path, numbered, has_start=has_start,
                                       has_end=numbered[-1][1].startswith("}"),
                                       gaps=not contiguous))
    return out


_PP = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
_DEFINED = re.compile(r"\bdefined\s*\(?\s*(\w+)|^\s*(\w+)\s*$")


def open_conditions(lines: list[str]) -> tuple[tuple[tuple[str, ...], bool], ...]:
    """The preprocessor conditionals still open after `lines`: for each,
    the macros its condition tests (empty when it is not a plain
    `defined()` test) and whether it is negated (#ifndef, #else)."""
    stack: list[tuple[tuple[str, ...], bool]] = []
    for text in lines:
        m = _PP.match(text)
        if m is None:
            continue
        word, rest = m.group(1), m.group(2).split("//")[0].split("/*")[0]
        if word in ("if", "ifdef", "ifndef"):
            names: tuple[str, ...] = ()
            if word == "if":
                parts = [p for p in re.split(r"\|\|", rest)]
                found = [_DEFINED.search(p) for p in parts]
                if all(f is not None for f in found) and "!" not in rest and "&&" not in rest:
                    names = tuple((f.group(1) or f.group(2)) for f in found if f is not None)
            else:
                names = (rest.strip(),) if rest.strip() else ()
            stack.append((names, word == "ifndef"))
        elif word == "else" and stack:
            names, neg = stack[-1]
            stack[-1] = (names, not neg)
        elif word == "elif" and stack:
            stack[-1] = ((), False)
        elif word == "endif" and stack:
            stack.pop()
    return tuple(stack)


def restrict(contexts: frozenset[Ctx], conditions: tuple[tuple[tuple[str, ...], bool], ...],
             facts: KvmFacts) -> frozenset[Ctx]:
    """Contexts narrowed by the open conditionals that test configuration
    macros (kvm.toml guards such as __KVM_NVHE_HYPERVISOR__)."""
    out = contexts
    for names, negated in conditions:
        guards = [facts.guard(n) for n in names]
        if not names or any(g is None for g in guards):
            continue
        can = frozenset().union(*((g.true_in | g.maybe_in) for g in guards if g is not None))
        sure = frozenset().union(*(g.true_in for g in guards if g is not None))
        out = out - sure if negated else out & can
    return out


@functools.lru_cache(maxsize=256)
def file_functions(path: str, text: str) -> tuple[Function, ...]:
    """Every function of a whole C file (memoised by content: the same file
    is read for many patches of a series)."""
    lines = text.split("\n")
    out: list[Function] = []
    for span in c_functions(text):
        numbered = [(i + 1, lines[i]) for i in range(span.start, min(span.end, len(lines) - 1) + 1)]
        out.append(function_from_lines(span.name, path, numbered, has_start=span.has_start,
                                       has_end=span.has_end))
    return tuple(out)


def calls_of(fn: Function) -> frozenset[str]:
    """Names of the functions `fn` calls (worked out once per function:
    parsed functions are shared by content, bot.rules.stmtparse)."""
    hit = _CALLS.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    if len(_CALLS) > 1024:
        _CALLS.clear()
    names = frozenset(_calls_of(fn))
    _CALLS[id(fn)] = (fn, names)
    return names


_CALLS: dict[int, tuple[Function, frozenset[str]]] = {}


def _calls_of(fn: Function) -> set[str]:
    out: set[str] = set()
    for stmt in walk(fn.body):
        if isinstance(stmt, ExprStmt):
            _call_names(stmt.expr, out)
        elif isinstance(stmt, Decl):
            for d in stmt.names:
                if d.init is not None:
                    _call_names(d.init, out)
        elif isinstance(stmt, If | Loop):
            _call_names(stmt.cond, out)
        elif isinstance(stmt, Return) and stmt.value is not None:
            _call_names(stmt.value, out)
    return out


def _call_names(expr: Expr, out: set[str]) -> None:
    """Add the names of the functions `expr` calls to `out`."""
    stack: list[Expr] = [expr]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        node = pop()
        kind = type(node)
        if kind is Call:
            assert isinstance(node, Call)
            if type(node.func) is Name:
                out.add(node.func.id)
            else:
                push(node.func)
            extend(node.args)
        elif kind is Binary:
            assert isinstance(node, Binary)
            push(node.left)
            push(node.right)
        elif kind is Assign:
            assert isinstance(node, Assign)
            push(node.target)
            push(node.value)
        elif kind is Unary or kind is Cast:
            push(node.operand)  # type: ignore[union-attr]
        elif kind is Member:
            push(node.base)  # type: ignore[union-attr]
        elif kind is Index:
            assert isinstance(node, Index)
            push(node.base)
            push(node.index)
        elif kind is Ternary:
            assert isinstance(node, Ternary)
            push(node.cond)
            push(node.then)
            push(node.other)


@dataclass(slots=True)
class _Side:
    """The functions of one side (before or after the patch) and their evaluator."""

    functions: dict[str, list[Function]] = field(default_factory=dict)
    evaluator: Evaluator | None = None

    def add(self, fn: Function) -> None:
        self.functions.setdefault(fn.name, []).append(fn)

    def get(self, key: FnKey) -> Function | None:
        for fn in self.functions.get(key.name, []):
            if fn.path == key.path:
                return fn
        return None


class PatchSemantics:
    """Before/after traces of the functions one patch changes or reaches."""

    def __init__(self, sv: SeriesView, pv: PatchView, model: RegisterModel,
                 era: str | None = None) -> None:
        self.sv = sv
        self.pv = pv
        self.model = model
        self.facts = model.facts
        self.before = _Side()
        self.after = _Side()
        self.from_tree = False
        tree = sv.tree
        files = [fv for fv in pv.files if not is_asm(fv.path)
                 and fv.path.endswith((".c", ".h"))]
        snapshot_paths: list[str] = []
        if tree is not None and getattr(tree, "applied", True):
            snapshot_paths = sorted({p for _, p in getattr(tree, "files", {})})
        if snapshot_paths:
            self.from_tree = True
            for path in snapshot_paths:
                if not path.endswith((".c", ".h")):
                    continue
                old = sv.file_after_index(pv.index - 1, path)
                new = sv.file_after_index(pv.index, path)
                for text, side in ((old, self.before), (new, self.after)):
                    if text is not None:
                        for fn in file_functions(path, text):
                            side.add(fn)
        else:
            for fv in files:
                for fn in hunk_functions(fv, "old"):
                    self.before.add(fn)
                for fn in hunk_functions(fv, "new"):
                    self.after.add(fn)
        base = Evaluator.of(model, era)
        self.before.evaluator = base.with_defines(_side_text(files, "old"))
        self.after.evaluator = base.with_defines(_side_text(files, "new"))
        self.changed: dict[FnKey, list[Line]] = {}
        for fv in files:
            for ln in fv.changed:
                if ln.function:
                    self.changed.setdefault(FnKey(path=fv.path, name=ln.function), []).append(ln)
        self._pairs: list[Pair] | None = None
        self._contexts: dict[FnKey, frozenset[Ctx]] = {}
        self._graphs: dict[str, dict[FnKey, frozenset[str]]] = {}
        # Each file side's lines: their numbers (ascending) and texts.
        self._side_lines: dict[tuple[str, str], tuple[list[int], list[str]]] = {}

    def evaluator(self, side: str) -> Evaluator:
        """The register model's evaluator with the patch's own #defines on
        one side ("old" or "new")."""
        ev = (self.after if side == "new" else self.before).evaluator
        assert ev is not None
        return ev

    def role(self, key: FnKey) -> Role | None:
        """The function's role in the map, by name and file; a file the map
        does not list (code moved by a series) still gets the role every
        entry of that name agrees on."""
        fr = self.model.role(key.name, key.path)
        if fr is not None:
            return fr.role
        roles = {r.role for r in self.model.roles(key.name)}
        return roles.pop() if len(roles) == 1 else None

    def contexts(self, key: FnKey, _seen: frozenset[FnKey] = frozenset()) -> frozenset[Ctx]:
        """Where the function runs: its file's place, narrowed by the
        configuration #ifs it is defined under; a static or inline helper
        runs only where the callers the text shows run."""
        memo = self._contexts
        if key in memo:
            return memo[key]
        base = self.facts.contexts_of(key.path)
        side = "new" if self.after.get(key) is not None else "old"
        fn = (self.after if side == "new" else self.before).get(key)
        if fn is None:
            return base
        own = restrict(base, open_conditions(self._lines_before(key.path, fn.start, side)),
                       self.facts) if fn.start else base
        if (fn.static or fn.inline or key.path.endswith(".h")) and len(_seen) < 6:
            callers = self._callers(key, side)
            if callers:
                inherited = frozenset().union(*(self.contexts(c, _seen | {key})
                                                for c in callers if c not in _seen))
                if inherited:
                    own = own & inherited or own
        if not _seen:
            memo[key] = own
        return own

    def _callers(self, key: FnKey, side: str) -> list[FnKey]:
        graph = self._graph(side)
        out = []
        for caller, calls in graph.items():
            if caller != key and key.name in calls and (
                    caller.path == key.path or key.path.endswith(".h")):
                out.append(caller)
        return out

    def _graph(self, side: str) -> dict[FnKey, frozenset[str]]:
        if side not in self._graphs:
            functions = (self.after if side == "new" else self.before).functions
            self._graphs[side] = {FnKey(path=fn.path, name=fn.name): calls_of(fn)
                                  for fns in functions.values() for fn in fns}
        return self._graphs[side]

    def _lines_before(self, path: str, start: int, side: str) -> list[str]:
        if self.from_tree:
            text = self.sv.file_after_index(self.pv.index - (side == "old"), path)
            return text.split("\n")[:max(start - 1, 0)] if text is not None else []
        got = self._side_lines.get((path, side))
        if got is None:
            fv = self.pv.file(path)
            numbered = [] if fv is None else sorted(
                ((ln.new_no if side == "new" else ln.old_no) or 0, k, ln.text)
                for k, ln in enumerate(fv.lines)
                if (ln.new_side if side == "new" else ln.old_side))
            got = self._side_lines[(path, side)] = ([no for no, _, _ in numbered],
                                                     [text for _, _, text in numbered])
        numbers, texts = got
        return texts[:bisect.bisect_left(numbers, start)]

    def _trace(self, side: _Side, key: FnKey,
               contexts: frozenset[Ctx] | None = None) -> Trace | None:
        fn = side.get(key)
        if fn is None or side.evaluator is None:
            return None
        interp = Interpreter(self.facts, side.evaluator, side.functions)
        return interp.run(fn, self.contexts(key) if contexts is None else contexts,
                          irq_off=_IRQS_AT_START.get(self.role(key)))

    def memory_trace(self, side: str, key: FnKey) -> Trace | None:
        """The function followed path by path with memory (as round_trip
        follows a pair), for one that runs a pair itself."""
        s = self.after if side == "new" else self.before
        fn = s.get(key)
        if fn is None or s.evaluator is None:
            return None
        return Interpreter(self.facts, s.evaluator, s.functions, memory=True).run(
            fn, self.contexts(key))

    def round_trip(self, side: str, first: FnKey, second: str) -> Trace | None:
        """`first` then `second` (its counterpart, called with the same
        argument names) run as one sequence on one side, with what the first
        saves in memory handed to the second: what a caller of the pair
        sees (enter_vmid_context(); ...; exit_vmid_context())."""
        s = self.after if side == "new" else self.before
        one = s.get(first)
        two = s.get(FnKey(path=first.path, name=second))
        if one is None or two is None or s.evaluator is None:
            return None
        # The second gets what the first was given of the same type.
        handed = {p.name: next((q.name for q in one.params if q.type == p.type), p.name)
                  for p in two.params}
        # The trace's function: the pair as one (its name, span, parameters).
        both = Function(name="%s+%s" % (one.name, two.name), path=first.path, params=one.params,
                        returns="", qualifiers=("static",), body=(), start=one.start,
                        end=two.end, has_start=True, has_end=True)
        interp = Interpreter(self.facts, s.evaluator, s.functions, memory=True)
        return interp.run_pair(both, one, two, self.contexts(first), handed)

    def _moves(self) -> dict[FnKey, dict[FnKey, frozenset[Ctx]]]:
        """Code the patch moves into another file: a definition new in file
        B of a function file A defined before, where B runs in some of A's
        contexts (splitting switch.c into VHE and nVHE files). In those
        contexts B's copy is what runs after the patch: A -> {B: contexts}."""
        out: dict[FnKey, dict[FnKey, frozenset[Ctx]]] = {}
        for name, fns in self.after.functions.items():
            olds = self.before.functions.get(name, [])
            old_paths = {fn.path for fn in olds}
            for fn in fns:
                if fn.path in old_paths:
                    continue
                b = FnKey(path=fn.path, name=name)
                for old in olds:
                    a = FnKey(path=old.path, name=name)
                    shared = self.contexts(a) & self.contexts(b)
                    if shared:
                        out.setdefault(a, {})[b] = shared
        return out

    def _reaching(self) -> dict[FnKey, set[FnKey]]:
        """Functions that reach a changed function through calls (on either
        side), with the changed functions each reaches."""
        changed_names = {k.name for k in self.changed}
        out: dict[FnKey, set[FnKey]] = {k: {k} for k in self.changed}
        for side in (self.before, self.after):
            graph = {FnKey(path=fn.path, name=fn.name): calls_of(fn)
                     for fns in side.functions.values() for fn in fns}
            memo: dict[FnKey, set[str]] = {}

            def reach(key: FnKey, seen: frozenset[FnKey], g: dict[FnKey, frozenset[str]] = graph,
                      m: dict[FnKey, set[str]] = memo, s: _Side = side) -> set[str]:
                if key in m:
                    return m[key]
                found = set(g.get(key, ())) & changed_names
                for name in g.get(key, ()):
                    for fn in s.functions.get(name, []):
                        sub = FnKey(path=fn.path, name=fn.name)
                        if sub not in seen and len(seen) < 6:
                            found |= reach(sub, seen | {sub})
                m[key] = found
                return found

            for key in graph:
                names = reach(key, frozenset({key}))
                if names:
                    targets = {k for k in self.changed if k.name in names}
                    out.setdefault(key, set()).update(targets)
        return out

    def pairs(self) -> list[Pair]:
        """Every changed function and every role function reaching one."""
        if self._pairs is not None:
            return self._pairs
        pairs: list[Pair] = []
        moves = self._moves()
        moved_from = {b: (a, ctxs) for a, targets in moves.items() for b, ctxs in targets.items()}
        for key, reached in sorted(self._reaching().items(), key=lambda kv: (kv[0].path,
                                                                             kv[0].name)):
            role = self.role(key)
            if key not in self.changed and role is None:
                continue
            lines: list[Line] = []
            for k in sorted(reached, key=lambda k: (k.path, k.name)):
                lines.extend(self.changed.get(k, []))
            if key in moved_from:
                # The copy in its new file, against the original in the
                # contexts the copy now serves.
                origin, ctxs = moved_from[key]
                role = role or self.role(origin)
                before = self._trace(self.before, origin, ctxs)
                after = self._trace(self.after, key, ctxs)
            elif key in moves:
                rest = self.contexts(key) - frozenset().union(*moves[key].values())
                if not rest:
                    continue
                before = self._trace(self.before, key, rest)
                after = self._trace(self.after, key, rest)
            else:
                before = self._trace(self.before, key)
                after = self._trace(self.after, key)
            pairs.append(Pair(key=key, role=role, before=before, after=after,
                              changed=tuple(lines),
                              reaches=tuple(sorted(reached, key=lambda k: (k.path, k.name))),
                              from_tree=self.from_tree))
        self._pairs = pairs
        return pairs


def _side_text(files: list[FileView], side: str) -> str:
    """One side of the patch's C text, for the evaluator's #defines (a macro
    the patch changes has its old value before; one it defines in a .c file
    counts there too)."""
    out: list[str] = []
    for fv in files:
        for ln in fv.lines:
            if ln.new_side if side == "new" else ln.old_side:
                out.append(ln.text)
    return "\n".join(out)
