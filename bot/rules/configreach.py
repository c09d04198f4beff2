"""Which configurations reach a host function, and each statement in it.

KVM's host code runs under VHE (the host kernel at EL2) and under nVHE,
protected nVHE and hVHE (the host at EL1, a separate hypervisor at EL2),
but not all of it in each: kvm_arm_init() calls init_hyp_mode() only when
!is_kernel_in_hyp_mode(), cpu_hyp_init_context() calls cpu_init_hyp_mode()
only then. What a function's callers test (kvm.toml [[guards]]) around
the calls decides where it runs; where neither a tree nor the hunks show
a caller whole, kvm.toml [[reach]] says who calls it under which test.

A `Program` is one side of a patch as far as it can be seen: whole files
with a kernel tree, the hunks without one, and what their file scope
declares. `Program.reach()` joins the contexts of the statements that call
a function (bot.rules.configsites) over its callers; `Program.effects()`
follows what a statement does (bot.rules.stmteffects) into the functions
it calls, in the configurations that make the call. Pure.
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
from bot.rules.cexpr import expr_from_text, tokenize
from bot.rules.configsites import Site, sites
from bot.rules.cstmt import Decl, Function
from bot.rules.guards import guard_split
from bot.rules.semantic import file_functions, hunk_functions
from bot.rules.stmteffects import Effects, stmt_effects
from bot.rules.stmtparse import function_from_lines, parse_statements

logger = logging.getLogger(__name__)

_DEPTH = 6   # callers followed up, callees followed down


@dataclass(frozen=True, slots=True)
class Reach:
    """Where a function runs, and why there only (empty when nothing restricts it)."""

    contexts: frozenset[Ctx]
    why: str = ""


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
