"""Rule family 6, barrier, by order: what an erratum makes the world switch
turn off, turned back on before what it will use is in place.

kvm.toml [[reenable]] holds the facts: with the speculative-AT errata the
CPU may walk the EL1&0 stage-1 tables speculatively at EL2, so the nVHE
world switch sets TCR_EL1.EPDx across the switch and clears them only once
the incoming context's TTBRs are written and the stage-2 switch is
synchronised. Each function the patch changes that writes the fact's
register is traced again in the configuration with the erratum (the
capability tests of the fact true in its contexts; a data test beside one
still goes either way), and along its events, per context, a write whose
value may clear one of the bits that keep the thing off is checked
against what must precede it: a write of an `after_writes` register later
on the path with no other write of the register between, or a write of an
`after_sync` register earlier with no isb between (an isb an errata
alternative provides with the capability counts). What the function did
not already do before the patch is reported. Pure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from bot.regmodel.facts import Ctx, Guard, KvmFacts
from bot.regmodel.ordering import Reenable
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.core import Severity
from bot.rules.flow import changed_line, decided, modes
from bot.rules.interp import Interpreter
from bot.rules.semantic import FnKey, Pair, PatchSemantics
from bot.rules.trace import Ev, Event, Trace

# One facts object per (facts, fact): the capability tests decided.
_FORCED: dict[tuple[int, int], tuple[KvmFacts, Reenable, KvmFacts]] = {}
# (kind, the other register): what a rename or a helper split keeps
_Key = tuple[str, str]


def erratum_facts(facts: KvmFacts, fact: Reenable) -> KvmFacts:
    """`facts` in the configuration with the erratum: each test of one of
    the fact's capabilities is true in the fact's contexts (and false
    elsewhere, where the fact says nothing)."""
    key = (id(facts), id(fact))
    hit = _FORCED.get(key)
    if hit is not None and hit[0] is facts and hit[1] is fact:
        return hit[2]
    forced = tuple(Guard(name=test, arg=cap, true_in=possible(facts, fact, cap),
                         maybe_in=frozenset(), source=fact.source)
                   for test in fact.tests for cap in fact.capabilities)
    out = replace(facts, guards=forced + facts.guards)
    if len(_FORCED) > 16:
        _FORCED.clear()
    _FORCED[key] = (facts, fact, out)
    return out


def contexts(fact: Reenable) -> frozenset[Ctx]:
    """Where the fact holds, as contexts."""
    return frozenset(Ctx(c) for c in fact.contexts)


def possible(facts: KvmFacts, fact: Reenable, cap: str) -> frozenset[Ctx]:
    """The fact's contexts where a CPU can have `cap` (a [[guards]] entry of
    one of its tests narrows them: an erratum of CPUs without VHE)."""
    for test in fact.tests:
        g = facts.guard(test, cap)
        if g is not None and g.arg == cap:
            return contexts(fact) & (g.true_in | g.maybe_in)
    return contexts(fact)


def _tested(trace: Trace, facts: KvmFacts, fact: Reenable) -> frozenset[Ctx]:
    """The contexts where every capability of the fact the function tests
    can be present."""
    out = contexts(fact)
    for e in trace.events:
        if e.kind is Ev.GUARD:
            arg = e.name.partition("(")[2].rstrip(")")
            if arg in fact.capabilities:
                out &= possible(facts, fact, arg)
    return out


def _trace(sem: PatchSemantics, side: str, key: FnKey, facts: KvmFacts,
           contexts: frozenset[Ctx]) -> Trace | None:
    s = sem.after if side == "new" else sem.before
    fn = s.get(key)
    if fn is None or s.evaluator is None or not contexts:
        return None
    return Interpreter(facts, s.evaluator, s.functions).run(fn, contexts, irq_off=None)


def _enables(e: Event, fact: Reenable, mask: int) -> bool:
    """A write of the fact's register that may leave a disabling bit clear."""
    if e.kind is not Ev.WRITE or e.register != fact.register:
        return False
    return e.value is None or e.value.ones & mask != mask


def _synchronises(e: Event, fact: Reenable) -> bool:
    """An isb in the configuration with the erratum (an ALTERNATIVE's isb
    with one of its capabilities counts), or an exception return."""
    if e.kind in (Ev.ISB, Ev.ERET):
        return True
    cap = e.name.partition(":")[2]
    return e.kind is Ev.ISB_ERRATA and cap in fact.capabilities


def _workaround(evs: list[Event], fact: Reenable) -> bool:
    """The path is part of the workaround: it tests one of the fact's
    capabilities, or runs an isb an ALTERNATIVE of one provides."""
    for e in evs:
        if e.kind is Ev.GUARD and e.name.partition("(")[2].rstrip(")") in fact.capabilities:
            return True
        if e.kind is Ev.ISB_ERRATA and e.name.partition(":")[2].lstrip("!") in \
                fact.capabilities:
            return True
    return False


def hits(trace: Trace, ctx: Ctx, fact: Reenable, mask: int,
         loaders: frozenset[str] = frozenset()) -> list[tuple[str, Event, Event]]:
    """("write", enabling write, the later write it should follow: of
    `after_writes` or `after_sync`) and
    ("sync", enabling write, the earlier write not yet synchronised), on
    the paths of `ctx` through code that takes part in the workaround. A
    call the bot cannot follow (the guest's run, between the switch to it
    and back) ends what belongs to one switch; `loaders` ([[loaders]])
    are followed as the register writes they are."""
    evs = [e for e in trace.events if ctx in e.contexts]
    if not _workaround(evs, fact):
        return []
    unseen = set(trace.unresolved) - loaders

    def boundary(x: Event) -> bool:
        return x.kind is Ev.ERET or (x.kind is Ev.CALL and x.name in unseen)

    out: list[tuple[str, Event, Event]] = []
    for i, e in enumerate(evs):
        if not _enables(e, fact, mask):
            continue
        for x in evs[i + 1:]:
            if boundary(x) or (x.kind is Ev.WRITE and x.register == fact.register):
                break   # what comes after is that write's to answer for
            if x.kind is Ev.WRITE and x.register in fact.after_writes + fact.after_sync:
                out.append(("write", e, x))
                break
        for x in reversed(evs[:i]):
            # An isb only some paths run synchronises a write that is as
            # conditional (taken as the same branch), not an unconditional one.
            if (_synchronises(x, fact) and (e.cond or not x.cond)) or boundary(x):
                break
            if x.kind is Ev.WRITE and x.register in fact.after_sync:
                out.append(("sync", e, x))
                break
    return out


def _cap_named(trace: Trace, fact: Reenable) -> str:
    """The capability the function tests, as it spells it."""
    for e in trace.events:
        if e.kind is Ev.GUARD:
            arg = e.name.partition("(")[2].rstrip(")")
            if arg in fact.capabilities:
                return arg
    return fact.capabilities[0]


def check(emit: Emit, pv: PatchView, sem: PatchSemantics) -> None:
    """Each [[reenable]] fact, on each changed function that writes its register."""
    done: set[tuple[str, int]] = set()
    for fact in sem.facts.order.reenables:
        mask = sem.evaluator("new").value(fact.disabled_by)
        if not mask:
            continue
        facts = erratum_facts(sem.facts, fact)
        for pair in sem.pairs():
            if not pair.changed or pair.after is None or not any(
                    e.kind is Ev.WRITE and e.register == fact.register
                    for e in pair.after.events):
                continue
            _pair(emit, pv, sem, pair, fact, facts, mask, done)


def _pair(emit: Emit, pv: PatchView, sem: PatchSemantics, pair: Pair, fact: Reenable,
          facts: KvmFacts, mask: int, done: set[tuple[str, int]]) -> None:
    ctxs = sem.contexts(pair.key) & contexts(fact)
    after = _trace(sem, "new", pair.key, facts, ctxs)
    if after is None:
        return
    before = _trace(sem, "old", pair.key, facts, ctxs) if pair.before is not None else None
    found: dict[_Key, tuple[Event, Event, list[Ctx]]] = {}
    for ctx in sorted(ctxs & _tested(after, sem.facts, fact)):
        loaders = frozenset(sem.facts.loaders)
        new = hits(after, ctx, fact, mask, loaders)
        old = Counter((k, x.register or "") for k, _, x in (
            hits(before, ctx, fact, mask, loaders) if before else []))
        seen: Counter[_Key] = Counter()
        for kind, e, x in new:
            key = (kind, x.register or "")
            seen[key] += 1
            if seen[key] <= old[key]:
                continue   # so before the patch: not its doing
            found.setdefault(key, (e, x, []))[2].append(ctx)
    for (kind, _), (e, x, hit_ctxs) in found.items():
        ln = changed_line(pv, e, "new") or changed_line(pv, x, "new") or pair.anchor
        if ln is None or (e.path, e.line) in done:
            continue
        done.add((e.path, e.line))
        _emit(emit, pv, pair, fact, after, kind, e, x, hit_ctxs, ln)


def _emit(emit: Emit, pv: PatchView, pair: Pair, fact: Reenable, trace: Trace, kind: str,
          e: Event, x: Event, ctxs: list[Ctx], ln: Line) -> None:
    sure = decided(pair) and e.always and x.always and not (e.cond or x.cond)
    where = "line %d%s" % (x.line, "" if x.function == e.function else " (in %s())"
                           % x.function)
    if kind == "write":
        what = ("before %s is written at %s: a speculative walk in between combines the "
                "new %s with the previous context's %s. Should it come after the %s "
                "(and an isb)?" % (x.register, where, fact.register,
                                   "stage 2" if x.register in fact.after_sync else "tables",
                                   "/".join(fact.after_writes + fact.after_sync)))
    else:
        what = ("after %s is written at %s with no isb between: a speculative walk may "
                "still use the previous stage 2. What synchronises the %s write first?"
                % (x.register, where, x.register))
    own = ln.function == e.function and e.line <= (ln.new_no or 0) <= max(e.end, e.line)
    this = ("this %s write" if own else "its %s write at line %d") % (
        (fact.register,) if own else (fact.register, e.line))
    emit(Severity.WARNING if sure else Severity.QUESTION, pv, pv.file(e.path), ln,
         register=None,
         message="With %s (%s), %s() turns %s back on: %s may leave %s clear %s"
         % (_cap_named(trace, fact), modes(ctxs), e.function, fact.name, this,
            fact.disabled_by, what),
         evidence=(ln.text.rstrip(),))
