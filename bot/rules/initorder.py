"""Rule family 11, init-order: a stored register value used before it is
computed.

The vcpu's HCR_EL2/MDCR_EL2 copies, the host's per-CPU MDCR_EL2 and the
hyp's init parameters each come to exist in one stage of KVM's life and are
first used in a later one (kvm.toml [lifecycle]: boot, each CPU's init,
vcpu init, vcpu ioctls, first run, vcpu load, before each entry, the world
switch). Over the traces of bot.rules.semantic, before and after the patch,
per configuration, three things are checked:

- stages: a computation (`=`, or a call kvm.toml says computes the value)
  that a function did on every path no longer happens there, and the patch
  puts it nowhere, only on some paths, or only in a stage at or after the
  value's first use;
- order inside a function: a read of the value now comes before the
  function computes it (the recomputation moved below the VHE write, the
  flush moved above the copy into the hyp vcpu);
- what a consumer gets: a call that reads the whole object (the cache clean
  for the MMU-off reader, the init hypercall) now sees less of the value
  than before (a bit set after the flush).

Pure: works on the traces it is handed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bot.regmodel import RegisterModel
from bot.regmodel.facts import Ctx, Lifecycle
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.bits import Bits
from bot.rules.core import Severity
from bot.rules.flow import changed_line, decided, field_names, line_at, source_words
from bot.rules.semantic import Pair, PatchSemantics
from bot.rules.trace import Ev, Event, Trace


@dataclass(frozen=True, slots=True)
class _Def:
    """Where a stored value is computed in a function pair's trace."""

    pair: Pair
    event: Event          # the computation (at any call depth)
    top: Event            # the statement of the pair's own function it happens in
    always: bool


def _register(storage: str) -> str:
    return "MDCR_EL2" if "mdcr" in storage.lower() else "HCR_EL2"


def _is_def(e: Event, storage: str, lc: Lifecycle, *, assign_only: bool) -> bool:
    if e.kind is Ev.STORE and e.storage == storage:
        return e.name == "=" or not assign_only
    return e.kind is Ev.CALL and storage in lc.defines.get(e.name, ())


def _top(events: tuple[Event, ...], i: int) -> Event:
    """The event of the function's own statement event i happens under."""
    for j in range(i, -1, -1):
        if events[j].depth == 0:
            return events[j]
    return events[i]


def _defs(pair: Pair, trace: Trace | None, storage: str, ctx: Ctx,
          lc: Lifecycle) -> list[_Def]:
    if trace is None:
        return []
    evs = trace.events
    return [_Def(pair=pair, event=e, top=_top(evs, i), always=not e.cond)
            for i, e in enumerate(evs)
            if ctx in e.contexts and _is_def(e, storage, lc, assign_only=True)]


def check(emit: Emit, pv: PatchView, sem: PatchSemantics) -> None:
    """Every init-order finding of one patch, at most one per stored value."""
    lc = sem.facts.lifecycle
    done: set[str] = set()
    # Only the pairs whose traces store, load or compute (a [lifecycle]
    # defines call) the stored value say anything about it.
    touched: dict[str, list[Pair]] = {}
    for pair in sem.pairs():
        names: set[str] = set()
        for trace in (pair.before, pair.after):
            for e in trace.events if trace is not None else ():
                if e.storage:
                    names.add(e.storage)
                elif e.kind is Ev.CALL and e.name in lc.defines:
                    names.update(lc.defines[e.name])
        for storage in names:
            touched.setdefault(storage, []).append(pair)
    for storage in lc.first_use:
        if _stages(emit, pv, sem, touched.get(storage, []), storage, lc):
            done.add(storage)
    for storage in lc.first_use:
        for pair in touched.get(storage, []):
            if pair.before is None or pair.after is None or storage in done:
                continue
            if _read_early(emit, pv, pair, storage, lc) \
                    or _consumed(emit, pv, pair, storage, sem.model):
                done.add(storage)


# -- stages ---------------------------------------------------------------------------

def _stages(emit: Emit, pv: PatchView, sem: PatchSemantics, pairs: list[Pair], storage: str,
            lc: Lifecycle) -> bool:
    first = lc.used_from(storage)
    lost: list[tuple[Pair, _Def, Ctx]] = []
    gained: list[_Def] = []
    for pair in pairs:
        contexts = _contexts(pair)
        for ctx in sorted(contexts):
            before = _defs(pair, pair.before, storage, ctx, lc)
            after = _defs(pair, pair.after, storage, ctx, lc)
            had = [d for d in before if d.always]
            has = [d for d in after if d.always]
            if had and not has:
                lost.append((pair, had[0], ctx))
            gained.extend(d for d in after if not _same_place(d, before))
    for pair, d, ctx in lost:
        name = pair.key.name
        rank = lc.stage(name)
        if rank is None and name not in lc.defines:
            continue  # not a function the value's life is known to go through
        still = [g for g in gained if g.pair is pair and ctx in g.event.contexts]
        elsewhere = [g for g in gained if g.pair is not pair and ctx in g.event.contexts]
        earlier = [g for g in elsewhere if _before(_rank(g, lc), first)]
        if earlier:
            continue
        what = _words(storage)
        at = _old_line(pv, d)
        sev = Severity.WARNING if decided(pair) else Severity.QUESTION
        if still:
            g = still[0]
            emit(sev, pv, pv.file(g.top.path), _new_line(pv, g) or at, register=_register(storage),
                 message="%s() now computes %s only on some paths: what holds it on the others "
                 "before %s?" % (name, what, _use_words(storage, lc)))
            return True
        if elsewhere:
            g = elsewhere[0]
            where = lc.stage_of.get(g.pair.key.name, "?")
            line = _block_start(pv, g.top.path, _new_line(pv, g)) or at
            emit(sev, pv, pv.file(g.top.path if line is not at else d.top.path), line,
                 register=_register(storage),
                 message="%s is now computed in %s() (%s) instead of %s(): that runs after %s."
                 % (what, g.pair.key.name, where, name, _use_words(storage, lc)))
            return True
        if at is None:
            continue
        emit(sev, pv, pv.file(d.top.path), at, register=_register(storage),
             message="%s() no longer computes %s: what does, before %s?"
             % (name, what, _use_words(storage, lc)))
        return True
    return False


def _block_start(pv: PatchView, path: str, line: Line | None) -> Line | None:
    """The first line of the run of added lines `line` is in (code moved as
    a block is quoted where the block starts)."""
    fv = pv.file(path)
    if line is None or fv is None or not line.added:
        return line
    lines = list(fv.lines)
    i = next((k for k, ln in enumerate(lines) if ln is line), None)
    if i is None:
        return line
    while i > 0 and lines[i - 1].added and lines[i - 1].hunk == line.hunk:
        i -= 1
    return lines[i]


def _contexts(pair: Pair) -> frozenset[Ctx]:
    out: frozenset[Ctx] = frozenset()
    for trace in (pair.before, pair.after):
        if trace is not None:
            for o in trace.outcomes:
                out |= o.contexts
    return out


def _same_place(d: _Def, before: list[_Def]) -> bool:
    """A computation the function already made before the patch."""
    key = (d.event.function, d.event.kind, d.event.name)
    return any((b.event.function, b.event.kind, b.event.name) == key
               and b.always == d.always for b in before)


def _before(rank: int | None, first: int | None) -> bool:
    """A computation in a stage of this rank comes before the first use
    (a stage no fact names is given the benefit of the doubt)."""
    return rank is None or first is None or rank < first


def _rank(d: _Def, lc: Lifecycle) -> int | None:
    return lc.stage(d.pair.key.name)


def _words(storage: str) -> str:
    return source_words("x:" + storage)


def _use_words(storage: str, lc: Lifecycle) -> str:
    stage = lc.first_use.get(storage, "")
    return {"vcpu-ioctls": "the vcpu ioctls read it",
            "vcpu-load": "the first vcpu load writes it to %s" % _register(storage),
            "first-run": "the vcpu's first run derives its values from it",
            "cpu-init": "each CPU's hyp init reads it"}.get(stage, "its first use (%s)" % stage)


def _old_line(pv: PatchView, d: _Def) -> Line | None:
    return changed_line(pv, d.top, "old") or line_at(pv, d.top.path, d.top.line, "old")


def _new_line(pv: PatchView, d: _Def) -> Line | None:
    return changed_line(pv, d.top, "new") or line_at(pv, d.top.path, d.top.line, "new")


# -- order inside a function ---------------------------------------------------------

def _early_reads(trace: Trace, storage: str, ctx: Ctx, lc: Lifecycle) -> list[Event] | None:
    """The reads of `storage` before the function first computes it (None:
    it never does). A read-modify-write's own read is no use."""
    evs = [e for e in trace.events if ctx in e.contexts]
    out: list[Event] = []
    for i, e in enumerate(evs):
        if _is_def(e, storage, lc, assign_only=True):
            return out
        if e.kind is Ev.LOAD and e.storage == storage and e.value is None \
                and not _rmw(evs, i, storage):
            out.append(e)
    return None


def _rmw(evs: list[Event], i: int, storage: str) -> bool:
    for e in evs[i + 1:]:
        if e.storage == storage and e.kind in (Ev.STORE, Ev.LOAD):
            return e.kind is Ev.STORE and e.line == evs[i].line
    return False


def _read_early(emit: Emit, pv: PatchView, pair: Pair, storage: str, lc: Lifecycle) -> bool:
    assert pair.before is not None and pair.after is not None
    for ctx in sorted(_contexts(pair)):
        after = _early_reads(pair.after, storage, ctx, lc)
        if not after:
            continue
        before = _early_reads(pair.before, storage, ctx, lc) or []
        extra = Counter(_read_key(e) for e in after) - Counter(_read_key(e) for e in before)
        if not extra:
            continue
        read = next(e for e in after if _read_key(e) in extra)
        first_def = _first_def(pair.after, storage, ctx, lc)
        anchor = _changed(pv, [first_def, read] if first_def is not None else [read], "new")
        where = (anchor[0].path, anchor[1]) if anchor is not None else (
            (pair.key.path, pair.anchor) if pair.anchor is not None else None)
        if where is None:
            continue   # (the pair's own change is what reordered them)
        what = _words(storage)
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
             pv.file(where[0]), where[1], register=_register(storage),
             message="%s() now reads %s%s before it computes it%s: that read gets the value "
             "from before." % (pair.key.name, what, _via(read, pair),
                              " (line %d)" % first_def.line if first_def is not None else ""))
        return True
    return False


def _read_key(e: Event) -> tuple[str, str]:
    return e.function, e.name


def _via(e: Event, pair: Pair) -> str:
    if e.name.startswith("consume:"):
        return " (%s() reads the whole object)" % e.name.partition(":")[2]
    if e.function != pair.key.name:
        return " (in %s())" % e.function
    return ""


def _first_def(trace: Trace, storage: str, ctx: Ctx, lc: Lifecycle) -> Event | None:
    evs = trace.events
    for i, e in enumerate(evs):
        if ctx in e.contexts and _is_def(e, storage, lc, assign_only=True):
            return _top(evs, i)
    return None


def _changed(pv: PatchView, events: Iterable[Event], side: str) -> tuple[Event, Line] | None:
    for e in events:
        ln = changed_line(pv, e, side)
        if ln is not None:
            return e, ln
    return None


# -- what a consumer of the whole object gets ----------------------------------------

def _consumed(emit: Emit, pv: PatchView, pair: Pair, storage: str,
              model: RegisterModel) -> bool:
    assert pair.before is not None and pair.after is not None
    for ctx in sorted(_contexts(pair)):
        final_b, final_a = _final(pair.before, storage, ctx), _final(pair.after, storage, ctx)
        if final_b is None or final_a is None or final_b.differs(final_a):
            continue   # the value itself changed: not the order (other rules' business)
        before = _consumes(pair.before, storage, ctx)
        after = _consumes(pair.after, storage, ctx)
        for key, vb in before.items():
            if key not in after or vb is None:
                continue
            va = after[key]
            # Decided differences only: a bit known set now known clear (or
            # the reverse), or nothing computed at all any more.
            if va is not None and not (vb.ones & va.zeros or vb.zeros & va.ones):
                continue
            lost = vb.ones & (va.zeros if va is not None else ~0)
            e = next(x for x in pair.after.events if ctx in x.contexts
                     and (x.function, x.name, x.storage) == key[:3])
            anchor = _changed(pv, [e] + _defs_near(pair.after, storage, ctx), "new")
            if anchor is None:
                continue
            names = field_names(model, _register(storage), lost) if lost else ()
            missing = " (%s no longer set there)" % ", ".join(names) if names else ""
            emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
                 pv.file(anchor[0].path), anchor[1], register=_register(storage),
                 message="%s() now hands %s to %s() before it is fully computed%s: the reader "
                 "gets the earlier value." % (pair.key.name, _words(storage),
                                              e.name.partition(":")[2], missing))
            return True
    return False


def _final(trace: Trace, storage: str, ctx: Ctx) -> Bits | None:
    """What the function leaves in `storage` (None: it stores nothing)."""
    for o in trace.outcomes:
        if ctx in o.contexts:
            return o.stored.get(storage)
    return None


_Key = tuple[str, str, str | None, int]


def _consumes(trace: Trace, storage: str, ctx: Ctx) -> dict[_Key, Bits | None]:
    out: dict[_Key, Bits | None] = {}
    seen: Counter[tuple[str, str, str | None]] = Counter()
    for e in trace.events:
        if ctx in e.contexts and e.kind is Ev.LOAD and e.storage == storage \
                and e.name.startswith("consume:"):
            k = (e.function, e.name, e.storage)
            out[k + (seen[k],)] = e.value
            seen[k] += 1
    return out


def _defs_near(trace: Trace, storage: str, ctx: Ctx) -> list[Event]:
    evs = trace.events
    return [_top(evs, i) for i, e in enumerate(evs)
            if ctx in e.contexts and e.kind is Ev.STORE and e.storage == storage]
