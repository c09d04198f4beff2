"""Rule families 10 and 11 across configurations: work a patch puts on a
path only one configuration runs, that code both run relies on.

The host sets KVM up per configuration. Under nVHE it builds a separate
hypervisor (init_hyp_mode() once, cpu_init_hyp_mode() on each CPU), which
a VHE host, already at EL2, skips; a few things only VHE does sit on the
other side of the same tests (kvm_timer_init_vhe()). Work added there, or
moved there from code both run, is that configuration's own unless other
code depends on it:

- state (init-order): a file-scope or per-CPU variable the added work
  writes, that code the other configuration runs reads (a static lookup
  table filled by init_hyp_mode() and read by cpu_set_hyp_vector() on
  every CPU; kvm.toml [[hyp_state]]: what the world switch reads), with
  no write on that configuration's path;
- an operation (vhe-nvhe): TLB or instruction-cache maintenance of the
  guest's regime (kvm.toml [config_work]), which guests of both
  configurations rely on, with no counterpart in the same stage of KVM's
  life (kvm.toml [lifecycle]) on the other configuration's path.

Where each statement runs comes from bot.rules.configreach. Without a
tree, a variable counts only when the patch declares it (every use is
then in the hunks). nVHE-only set-up that only nVHE uses (hyp stacks, the
init parameters, the hyp's page tables, hypercall plumbing) has no reader
or operation on the other side and stays quiet. Questions: whether the
other configuration really reaches the reader can turn on callers the bot
does not see. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.regmodel.facts import Ctx, KvmFacts
from bot.regmodel.reach import HypState
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView
from bot.rules.configreach import Program, program
from bot.rules.configsites import Site, modes, one_side
from bot.rules.core import Severity, Status
from bot.rules.cstmt import If, Loop, Switch
from bot.rules.stmteffects import stmt_effects

_SIDE = {"vhe": "VHE", "nvhe": "nVHE"}
_A = {"vhe": "a VHE", "nvhe": "an nVHE"}
_OTHER = {"vhe": "nvhe", "nvhe": "vhe"}
_STAGE_WORDS = {"boot": "at KVM's initialisation", "cpu-init": "at each CPU's hyp init"}


@dataclass(frozen=True, slots=True)
class _Hit:
    site: Site
    fv: FileView
    line: Line
    side: str          # the configuration that runs the work
    what: str          # the variable, or the operations
    via: str           # the call the work happens in ("" when the line does it itself)
    reader: Site | HypState | None = None


def _programs(sv: SeriesView, pv: PatchView, facts: KvmFacts, memo: dict[Any, Any],
              side: str) -> Program:
    key = ("onepath", id(pv), side)
    got = memo.get(key)
    if got is None or got[0] is not pv:
        got = memo[key] = (pv, program(sv, pv, facts, side))
    prog: Program = got[1]
    return prog


def _host(facts: KvmFacts, path: str) -> bool:
    return any(c.el == 1 for c in facts.contexts_of(path))


def _deciders(facts: KvmFacts) -> re.Pattern[str]:
    """What can put host code on one configuration's path when only the
    hunks are seen: a configuration test of [[guards]], or a function of
    [[reach]] (compiled once per facts object)."""
    got = _DECIDERS.get(id(facts))
    if got is None or got[0] is not facts:
        names = {g.name for g in facts.guards} | {g.arg for g in facts.guards if g.arg}
        names |= {n for e in facts.config_work.edges for n in (e.caller, e.callee)}
        got = _DECIDERS[id(facts)] = (facts, re.compile(r"\b(%s)\b" % "|".join(
            sorted(map(re.escape, names), key=len, reverse=True))))
    return got[1]


_DECIDERS: dict[int, tuple[KvmFacts, re.Pattern[str]]] = {}


def _worth(sv: SeriesView, pv: PatchView, facts: KvmFacts) -> bool:
    """Host C code changed and, without a kernel tree, a configuration test
    or a [[reach]] function named in the patch: otherwise no statement of it
    can be on one configuration's path only."""
    if not any(_host(facts, fv.path) and not fv.asm for fv in pv.files):
        return False
    return bool(getattr(sv.tree, "files", None)) \
        or _deciders(facts).search(pv.patch.mail.body) is not None


def _added_sites(prog: Program, pv: PatchView) -> list[tuple[Site, FileView, Line]]:
    """Statements of host code with a line the patch adds."""
    out: list[tuple[Site, FileView, Line]] = []
    for fv in pv.files:
        if not _host(prog.facts, fv.path):
            continue
        added = {ln.new_no: ln for ln in fv.lines if ln.added and ln.new_no and ln.code.strip()}
        if not added:
            continue
        for fn in prog.all_functions():
            if fn.path != fv.path or not any(fn.start <= no <= fn.end for no in added):
                continue
            for st in prog.sites(fn):
                ln = next((added[no] for no in range(st.line, st.end + 1) if no in added), None)
                if ln is not None:
                    out.append((st, fv, ln))
    return out


def _via(prog: Program, site: Site, test: str, value: str) -> str:
    """The call of `site` through which it does the work ("" for the line itself)."""
    own = stmt_effects(site.stmt, prog.facts)
    if value in getattr(own, test):
        return ""
    for name in sorted(own.calls):
        if value in getattr(prog.fn_effects(name, site.fn.path, 1), test):
            return name
    return ""


# -- state ---------------------------------------------------------------------------

def check_state(emit: Emit, sv: SeriesView, pv: PatchView, facts: KvmFacts,
                memo: dict[Any, Any]) -> None:
    """State the patch sets up on one configuration's path only, that code
    the other configuration runs reads (init-order)."""
    if not _worth(sv, pv, facts):
        return
    new = _programs(sv, pv, facts, memo, "new")
    hits: list[_Hit] = []
    for st, fv, ln in _added_sites(new, pv):
        # What it may write wherever its own tests let it run (no callers
        # followed yet): most statements write nothing in view.
        maybe = new.effects(st, st.contexts).writes
        tracked = [v for v in sorted(maybe) if _tracked(new, v, st.fn.path)]
        side = one_side(new.site_contexts(st)) if tracked else None
        if side is None:
            continue
        writes = new.effects(st).writes
        for var in tracked:
            if var not in writes:
                continue
            reader = _reader(new, var, st.fn.path, _OTHER[side])
            if reader is None or _written_on(new, var, st.fn.path, _OTHER[side]):
                continue
            hits.append(_Hit(site=st, fv=fv, line=ln, side=side, what=var,
                             via=_via(new, st, "writes", var), reader=reader))
    done: set[str] = set()
    for h in _top(new, hits):
        if h.what in done:
            continue
        done.add(h.what)
        old = _programs(sv, pv, facts, memo, "old")
        existed = _tracked(old, h.what, h.site.fn.path) \
            and _reader(old, h.what, h.site.fn.path, _OTHER[h.side]) is not None \
            and not _written_on(old, h.what, h.site.fn.path, _OTHER[h.side]) \
            and _written_on(old, h.what, h.site.fn.path, h.side)
        emit(Severity.QUESTION, pv, h.fv, h.line, register=None, existed=existed,
             message=_state_message(new, h))


def _tracked(prog: Program, var: str, path: str) -> bool:
    """Every write of `var` is in view: a static of a file seen whole, or
    one the patch declares; per-CPU hyp state (kvm.toml [[hyp_state]]) with
    the tree, whose writers kvm.toml names."""
    scope = prog.scopes.get(path)
    if scope is not None and var in scope.statics and (path in prog.whole or var in scope.added):
        return True
    return var in prog.work.hyp_state and bool(prog.whole)


def _reader(prog: Program, var: str, path: str, side: str) -> Site | HypState | None:
    """Code the other configuration runs that reads `var`."""
    state = prog.work.hyp_state.get(var)
    if state is not None and side in modes(frozenset(Ctx(n) for n in state.read_in)):
        return state
    for fn in prog.all_functions():
        if fn.path != path:
            continue
        for st in prog.sites(fn):
            # A test of it may well mean "the other path ran"; a use of its
            # value needs it set up.
            if not isinstance(st.stmt, (If, Loop, Switch)) \
                    and var in stmt_effects(st.stmt, prog.facts).reads \
                    and side in modes(prog.site_contexts(st)):
                return st
    return None


def _written_on(prog: Program, var: str, path: str, side: str) -> bool:
    """A statement the configuration runs writes `var`, itself or through a call."""
    static = var not in prog.work.hyp_state
    for fn in prog.all_functions():
        if (static and fn.path != path) or not _host(prog.facts, fn.path):
            continue
        for st in prog.sites(fn):
            ctxs = _on(prog.site_contexts(st), side)
            if ctxs and var in prog.effects(st, ctxs).writes:
                return True
    return False


def _on(contexts: frozenset[Ctx], side: str) -> frozenset[Ctx]:
    """The contexts of one side ("vhe", "nvhe")."""
    return frozenset(c for c in contexts if modes(frozenset({c})) == {side})


def _state_message(prog: Program, h: _Hit) -> str:
    other = _SIDE[_OTHER[h.side]]
    who = "%s() sets up" % h.via if h.via else "this sets up"
    why = prog.why(h.site)
    if isinstance(h.reader, HypState):
        reads = "the %s world switch reads it%s" % (
            other, " (%s)" % h.reader.note if h.reader.note else "")
    else:
        assert h.reader is not None
        reads = "%s() reads it under %s as well" % (h.reader.fn.name, other)
    return ("%s %s on the %s path only%s, but %s, and nothing on the %s path sets it up: "
            "what initialises it for %s host?" % (
                who, h.what, _SIDE[h.side], " (%s)" % why if why else "", reads, other,
                _A[_OTHER[h.side]]))


# -- operations --------------------------------------------------------------------

def check_ops(emit: Emit, sv: SeriesView, pv: PatchView, facts: KvmFacts,
              memo: dict[Any, Any]) -> None:
    """Maintenance both configurations' guests rely on, that the patch puts
    on one configuration's path only (vhe-nvhe)."""
    if not _worth(sv, pv, facts):
        return
    new = _programs(sv, pv, facts, memo, "new")
    hits: list[_Hit] = []
    for st, fv, ln in _added_sites(new, pv):
        ops = new.effects(st).ops
        if not ops:
            continue
        side = one_side(new.site_contexts(st))
        stages = new.stages(st.fn)
        if side is None or not stages or _op_on(new, ops, _OTHER[side], stages):
            continue
        what = ", ".join(sorted(ops))
        via = next((v for v in (_via(new, st, "ops", op) for op in sorted(ops)) if v), "")
        hits.append(_Hit(site=st, fv=fv, line=ln, side=side, what=what, via=via))
    for h in _top(new, hits)[:1]:
        old = _programs(sv, pv, facts, memo, "old")
        ops = new.effects(h.site).ops
        stages = new.stages(h.site.fn)
        moved = _op_on(old, ops, _OTHER[h.side], stages)
        existed = not moved and _op_on(old, ops, h.side, stages)
        emit(Severity.QUESTION, pv, h.fv, h.line, register=None, existed=existed,
             status=Status.OPEN if moved else None,
             message=_op_message(new, h, stages, moved))


def _op_on(prog: Program, ops: frozenset[str], side: str, stages: frozenset[str]) -> bool:
    """Host code of the configuration does one of `ops` in one of `stages`."""
    for fn in prog.all_functions():
        if not _host(prog.facts, fn.path):
            continue
        for st in prog.sites(fn):
            ctxs = _on(prog.site_contexts(st), side)
            if ctxs and prog.effects(st, ctxs).ops & ops and prog.stages(fn) & stages:
                return True
    return False


def _op_message(prog: Program, h: _Hit, stages: frozenset[str], moved: bool) -> str:
    other = _SIDE[_OTHER[h.side]]
    when = " and ".join(_STAGE_WORDS.get(s, "in the %s stage" % s) for s in sorted(stages))
    why = prog.why(h.site)
    return ("this maintenance of the guest's TLBs or instruction cache (%s%s) %s %s on %s "
            "only%s, and nothing %s runs %s does it: %s host runs guests on the same CPUs, "
            "does it not need the same?" % (
                h.what, ", in %s()" % h.via if h.via else "", "now runs" if moved else "runs",
                when, _SIDE[h.side], " (%s)" % why if why else "", other, when,
                _A[_OTHER[h.side]]))


def _top(prog: Program, hits: list[_Hit]) -> list[_Hit]:
    """Hits not inside a helper another hit's statement reaches for the
    same work (the call in init_hyp_mode(), not the helper's own lines)."""
    called: dict[str, set[str]] = {}
    for h in hits:
        called.setdefault(h.what, set()).update(_reached(prog, h.site))
    return [h for h in hits if h.site.fn.name not in called.get(h.what, set())]


def _reached(prog: Program, site: Site) -> set[str]:
    """The functions a statement calls, and those they call, in view."""
    todo = list(stmt_effects(site.stmt, prog.facts).calls)
    seen: set[str] = set()
    while todo and len(seen) < 64:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        fn = prog.function(name, site.fn.path)
        if fn is not None:
            for st in prog.sites(fn):
                todo.extend(stmt_effects(st.stmt, prog.facts).calls)
    return seen
