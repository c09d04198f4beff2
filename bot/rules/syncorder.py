"""Rule family 6, barrier, by order: synchronisation that no longer sits
between the operations it separated.

On each path (bot.rules.semantic traces, per configuration, callees
inlined with the kernel tree), every barrier (isb, dsb, psb/tsb csync, and an
isb an errata alternative provides, named by its capability) sits between two
operations: the last register write, TLBI, AT or exception return before it
and the first after it. A barrier the patch takes away from between the
same two operations (removed, made to follow them, or the operations moved
across it) is reported: stopping SPE sampling or trace before the buffer is
drained and MDCR_EL2 hands it to another regime, the isb between a regime
change and the TLBI that relies on it, and so on. Pure.
"""

from __future__ import annotations

from collections import Counter

from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, Line, PatchView, normalize
from bot.rules.core import Severity
from bot.rules.flow import changed_line, decided, modes
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

_ENDPOINTS = (Ev.WRITE, Ev.TLBI, Ev.AT, Ev.ERET, Ev.UNSEEN)
_SYNCS = (Ev.ISB, Ev.ISB_ERRATA, Ev.DSB)
_Triple = tuple[str, str, str]


def _key(e: Event | None) -> str:
    if e is None:
        return "-"
    if e.kind is Ev.WRITE:
        return "a write of %s" % e.register
    return {Ev.TLBI: "the TLB invalidation", Ev.AT: "the address translation",
            Ev.ERET: "the exception return",
            Ev.UNSEEN: "lines the patch does not show"}.get(e.kind, e.kind.value)


def _sync_name(e: Event) -> str:
    if e.kind is Ev.ISB_ERRATA:
        # ALTERNATIVE()'s isb: "isb:CAP" with the capability, "isb:!CAP" without.
        cap = e.name.partition(":")[2]
        if not cap.lstrip("!"):
            return "the isb() an ALTERNATIVE() provides"
        return "the isb() an ALTERNATIVE() provides %s %s" % (
            "without" if cap.startswith("!") else "with", cap.lstrip("!"))
    return "isb()" if e.kind is Ev.ISB else "%s()" % (e.name or "dsb")


def _triples(trace: Trace, ctx: Ctx) -> list[tuple[_Triple, Event, Event | None, Event | None]]:
    evs = [e for e in trace.events if ctx in e.contexts
           and (e.kind in _ENDPOINTS or e.kind in _SYNCS)]
    out: list[tuple[_Triple, Event, Event | None, Event | None]] = []
    for i, e in enumerate(evs):
        if e.kind not in _SYNCS:
            continue
        prev = next((x for x in reversed(evs[:i]) if x.kind in _ENDPOINTS), None)
        nxt = next((x for x in evs[i + 1:] if x.kind in _ENDPOINTS), None)
        # At the edge of the function: its start or return when the whole
        # function is seen, else whatever the text does not show.
        whole = trace.function.complete
        first = _key(prev) if prev is not None else (
            "the start of %s()" % trace.function.name if whole else "what comes before")
        second = _key(nxt) if nxt is not None else (
            "the return from %s()" % trace.function.name if whole else "what follows")
        out.append(((first, _sync_name(e), second), e, prev, nxt))
    return out


def check(emit: Emit, pv: PatchView, pair: Pair) -> None:
    """One finding per barrier lost on this pair's paths."""
    if pair.before is None or pair.after is None:
        return
    lost_in: dict[_Triple, list[Ctx]] = {}
    where: dict[_Triple, tuple[str, Line, bool]] = {}
    for ctx in sorted({c for o in pair.after.outcomes for c in o.contexts}):
        before, after = _triples(pair.before, ctx), _triples(pair.after, ctx)
        lost = Counter(t for t, *_ in before) - Counter(t for t, *_ in after)
        # An operation the patch removes altogether takes its barrier's
        # place with it: what it no longer does is another rule's finding.
        left = {_key(e) for e in pair.after.events if ctx in e.contexts
                and e.kind in _ENDPOINTS}
        for triple in lost:
            _, sync, prev, nxt = next(x for x in before if x[0] == triple)
            if any(e is not None and _key(e) not in left for e in (prev, nxt)):
                continue
            spot = _spot(pv, pair, sync, prev, nxt)
            if spot is None:
                continue
            lost_in.setdefault(triple, []).append(ctx)
            where.setdefault(triple, spot)
    for triple, ctxs in lost_in.items():
        path, line, removed = where[triple]
        if any(f.patch == pv.index and f.line == line.anchor and f.file == path
               for f in emit.out):
            continue
        first, sync_name, second = triple
        sev = Severity.WARNING if removed and decided(pair) else Severity.QUESTION
        emit(sev, pv, pv.file(path), line, register=None,
             message="%s no longer sits between %s and %s in %s() (%s): what makes %s "
             "take effect before %s now?" % (
                 _cap(sync_name), first, second, pair.key.name, modes(ctxs), first, second))


def _cap(text: str) -> str:
    """Sentence case, a function's name left as it is spelt."""
    return text[:1].upper() + text[1:] if text.startswith("the ") else text


def _moved_within(pv: PatchView, path: str, ln: Line) -> bool:
    """The removed line comes back in the same function: a reorder, which
    the order of operations says something about."""
    fv = pv.file(path)
    key = normalize(ln.text)
    return fv is not None and any(x.added and x.function == ln.function and
                                  normalize(x.text) == key for x in fv.lines)


def _spot(pv: PatchView, pair: Pair, sync: Event, prev: Event | None,
          nxt: Event | None) -> tuple[str, Line, bool] | None:
    """Where to say it: the barrier's removed line, else the line of an
    operation the patch moved across it (only when the whole path is seen)."""
    ln = changed_line(pv, sync, "old")
    if ln is not None and ln.removed:
        if normalize(ln.text) in pv.moved and not pair.from_tree \
                and not _moved_within(pv, sync.path, ln):
            return None   # code moved elsewhere, barrier and all, as far as the text shows
        return sync.path, ln, True
    if not pair.from_tree:
        return None
    for e in (prev, nxt):
        if e is not None:
            ln = changed_line(pv, e, "old")
            if ln is not None:
                return e.path, ln, False
    if pair.anchor is not None and pair.changed:
        return pair.key.path, pair.anchor, False
    return None
