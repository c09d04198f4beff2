"""Rule family 6: regime changes are synchronised.

A write to HCR_EL2 that flips TGE or E2H changes which translation regime
EL0/EL2 accesses use; it takes effect only after a context synchronisation
event, and with TGE clear an interrupt would be taken with the guest's
regime live. Assembly is bot.rules.asmorder's; family 7 (the TLB switch
helpers undo what they change) is bot.rules.tlbsym.
"""

from __future__ import annotations

from bot.data import Series
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules import asmorder, errseq, syncneed, syncorder, tgewindow, walkorder
from bot.rules.analysis import (
    Emit,
    Line,
    PatchView,
    view,
)
from bot.rules.bits import Bits
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import contexts_of, decided, line_at, semantics
from bot.rules.semantic import FnKey, Pair, PatchSemantics
from bot.rules.trace import Ev, Event, Trace


@rule(id="barrier", category=Category.BARRIER, severity=Severity.WARNING,
      summary="a TGE/E2H change without isb(), or TGE cleared with interrupts unmasked")
def barrier(series: Series, ctx: Context) -> list[Finding]:
    """Changing HCR_EL2.TGE or E2H (or stage-2 state: VM, FWB) changes the
    translation regime, and the change is only guaranteed to be seen after
    a context synchronisation event: the TLBI or AT that relies on it needs
    an unconditional isb() first (an ERET also does; an isb that only an
    errata alternative provides is not one). While TGE is clear the host's
    own EL0 regime is not in force, so an interrupt taken then runs host
    code with the guest's configuration: TGE is cleared only with
    interrupts masked. Ordering facts of kvm.toml say more: with the
    speculative-AT errata, stage-1 walks of the EL1&0 regime come back on
    only after the incoming TTBRs are written and the stage-2 switch is
    synchronised; an isb after a write of fields only EL1/EL0 see is not
    needed before the exception return that gets there; and a barrier an
    erratum needs right before an access must not be separable from it by
    an interrupt."""
    sv = view(series, ctx)
    emit = Emit(rule="barrier", category=Category.BARRIER, sv=sv, compared=True)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx) if isinstance(mdl, RegisterModel) else None
        if sem is not None and isinstance(mdl, RegisterModel):
            for pair in sem.pairs():
                if pair.after is not None and pair.role not in _ERET_ROLES:
                    _regime_sync(emit, pv, pair, mdl)
            for pair in sem.pairs():
                syncorder.check(emit, pv, pair)
            walkorder.check(emit, pv, sem)
            _tge_windows(emit, pv, sem, mdl)
        for fv in pv.files:
            if fv.asm or fv.path.endswith("el2_setup.h"):
                asmorder.check(emit, sv, pv, fv, mdl)
                syncneed.check(emit, sv, pv, fv, mdl)
        errseq.check(emit, sv, pv, mdl if isinstance(mdl, RegisterModel) else None, sem)
    return emit.out


def _tge_windows(emit: Emit, pv: PatchView, sem: PatchSemantics, mdl: RegisterModel) -> None:
    """TGE clear with interrupts unmasked, in each changed function and
    across each save/restore pair of kvm.toml [[round_trips]]."""
    f = mdl.lookup("TGE", "HCR_EL2")
    if f is None:
        return
    for pair in sem.pairs():
        if pair.before is not None and pair.after is not None and pair.changed and \
                tgewindow.check(emit, pv, pair.before, pair.after, f.mask,
                                (pair.key.path, pair.anchor) if pair.anchor else None,
                                "%s()" % pair.key.name):
            return
    keys = {p.key: p for p in sem.pairs() if p.changed}
    for save, restore in sem.facts.round_trips:
        for key, pair in keys.items():
            if key.name not in (save, restore):
                continue
            first = FnKey(path=key.path, name=save)
            before = sem.round_trip("old", first, restore)
            after = sem.round_trip("new", first, restore)
            if before is not None and after is not None and tgewindow.check(
                    emit, pv, before, after, f.mask,
                    (key.path, pair.anchor) if pair.anchor else None,
                    "%s() then %s()" % (save, restore)):
                return


# Roles that end in an exception return (to the guest, or to the host's
# EL0/EL1): the return synchronises what they wrote.
_ERET_ROLES = (Role.ENTRY, Role.EXIT, Role.EARLY_EXIT)
_TLB_ROLES = (Role.TLB_TO_GUEST, Role.TLB_TO_HOST)


def _regime_masks(mdl: RegisterModel) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in mdl.facts.ops.get("regime", frozenset()):
        reg, _, name = item.partition(".")
        f = mdl.lookup(name, reg)
        if reg == "HCR_EL2" and f is not None:
            out[f.name] = f.mask
    # The facts are a frozenset: without an order the fields named in a
    # message would change with the hash seed. Highest bit first.
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _regime_writes(trace: Trace, c: Ctx, masks: dict[str, int]
                   ) -> list[tuple[int, Event, tuple[str, ...], bool]]:
    """HCR_EL2 writes that may change a regime field on the paths of `c`:
    (index, event, fields, TGE known cleared)."""
    out = []
    prev: Bits | None = None
    for i, e in enumerate(trace.events):
        if c not in e.contexts or e.kind is not Ev.WRITE or e.register != "HCR_EL2" \
                or e.value is None:
            continue
        names = []
        for name, mask in masks.items():
            new = e.value
            if new.src_mask & mask and all(s.startswith("live:")
                                           for s in new.sources(mask)) and prev is None:
                continue  # kept as it was
            if prev is not None and not prev.differs(new, mask):
                continue
            if not (new.known & mask) and prev is None:
                continue  # not known to change anything
            names.append(name)
        tge = masks.get("TGE", 0)
        out.append((i, e, tuple(names), bool(e.value.zeros & tge)))
        prev = e.value
    return [w for w in out if w[2]]


def _synced(trace: Trace, index: int, c: Ctx, to_end: bool) -> Event | None:
    """The unconditional isb (or ERET) after event `index`, before the next
    TLBI/AT (and, with `to_end`, before the function returns)."""
    alternatives: set[str] = set()
    for e in trace.events[index + 1:]:
        if c not in e.contexts:
            continue
        if e.kind in (Ev.ISB, Ev.ERET) and e.always:
            return e
        if e.kind is Ev.ISB_ERRATA and e.always and e.name.startswith("isb:"):
            # isb with the capability and isb without it: always an isb.
            cap = e.name[4:]
            if (cap[1:] if cap.startswith("!") else "!" + cap) in alternatives:
                return e
            alternatives.add(cap)
        if e.kind in (Ev.TLBI, Ev.AT):
            return None
    return None if to_end else trace.events[-1]


def _isb_taken(emit: Emit, pv: PatchView, pair: Pair, reported: set[tuple[str, int]]) -> None:
    """An isb right after an HCR_EL2 write, removed or moved away from it by
    the patch, whatever the value written (the hunks may not show it)."""
    after, before = pair.after, pair.before
    if before is None or after is None:
        return
    for c in contexts_of(pair):
        old = [i for i, e in enumerate(before.events) if e.kind is Ev.WRITE
               and e.register == "HCR_EL2" and c in e.contexts]
        new = [i for i, e in enumerate(after.events) if e.kind is Ev.WRITE
               and e.register == "HCR_EL2" and c in e.contexts]
        for n, i in enumerate(old):
            if n >= len(new) or not _isb_next(before, i, c) or _isb_next(after, new[n], c):
                continue
            e = after.events[new[n]]
            if ("sync", e.line) in reported:
                continue
            removed = _removed(pv, before, i, c)
            where = removed or line_at(pv, e.path, e.line, "new") or pair.anchor
            if where is None:
                continue
            reported.add(("sync", e.line))
            emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
                 pv.file(removed_path(pv, removed)) if removed is not None else pv.file(e.path),
                 where, register="HCR_EL2",
                 message="this %s the isb() that followed the HCR_EL2 write in %s(): what "
                 "makes the new configuration take effect before what comes next now?" % (
                     "removes" if removed is not None else "moves away", e.function))


_STEPS = (Ev.WRITE, Ev.READ, Ev.TLBI, Ev.AT, Ev.CALL, Ev.ISB, Ev.ISB_ERRATA, Ev.ERET, Ev.DSB)


def _isb_next(trace: Trace, index: int, c: Ctx) -> bool:
    """The next step after event `index` on the paths of `c` is an
    unconditional isb."""
    for e in trace.events[index + 1:]:
        if c not in e.contexts or e.kind not in _STEPS:
            continue
        return e.kind is Ev.ISB and e.always
    return False


def _needs_sync(trace: Trace, index: int, c: Ctx, role: Role | None) -> bool:
    """Something relies on the new regime: a TLBI/AT later in the trace, or
    the TLB helper's caller."""
    if role in _TLB_ROLES:
        return True
    return any(e.kind in (Ev.TLBI, Ev.AT) and c in e.contexts
               for e in trace.events[index + 1:])


def _regime_sync(emit: Emit, pv: PatchView, pair: Pair, mdl: RegisterModel) -> None:
    masks = _regime_masks(mdl)
    after, before = pair.after, pair.before
    assert after is not None
    reported: set[tuple[str, int]] = set()
    for c in contexts_of(pair):
        new_writes = _regime_writes(after, c, masks)
        old_writes = _regime_writes(before, c, masks) if before is not None else []
        for n, (i, e, names, tge_clear) in enumerate(new_writes):
            needs = _needs_sync(after, i, c, pair.role)
            synced = _synced(after, i, c, to_end=pair.role in _TLB_ROLES)
            old = old_writes[n] if n < len(old_writes) else None
            was_synced = old is not None and before is not None and _synced(
                before, old[0], c, to_end=pair.role in _TLB_ROLES) is not None
            ln = line_at(pv, e.path, e.line, "new")
            # An isb right after a regime write is there for what follows,
            # even where the hunks do not show what: taking it away (or
            # putting something between) is a change to explain.
            lost_isb = old is not None and before is not None and _isb_next(
                before, old[0], c) and not _isb_next(after, i, c)
            if lost_isb:
                was_synced = True
            if old is not None and not was_synced and set(names) <= set(old[2]):
                continue  # as unsynchronised before the patch: not this patch's doing
            if ((needs and synced is None) or lost_isb) and ("sync", e.line) not in reported:
                removed = _removed(pv, before, old[0] if old else None, c)
                where = removed if removed is not None else ln
                if where is None or (ln is not None and ln.kind.value == " " and removed is None
                                     and not was_synced and not _changed_near(pair, e)):
                    continue
                if was_synced and removed is None and where is ln and ln is not None \
                        and ln.kind.value == " ":
                    where = pair.anchor or ln
                reported.add(("sync", e.line))
                sure = decided(pair) or (pair.after is not None and was_synced)
                emit(Severity.WARNING if sure else Severity.QUESTION, pv,
                     pv.file(e.path) if removed is None else pv.file(removed_path(pv, removed)),
                     where, register="HCR_EL2", fields=names,
                     message=("this %s the isb() that made the HCR_EL2.%s change in %s() take "
                              "effect before %s: what synchronises it now?" if was_synced else
                              "this write changes HCR_EL2.%s but no unconditional isb() follows "
                              "it in %s() before %s: the new regime is not guaranteed to be in "
                              "effect.")
                     % ((("removes" if removed is not None else "loses"), "/".join(names),
                         e.function, _what(pair.role)) if was_synced else
                        ("/".join(names), e.function, _what(pair.role))))
            if tge_clear and c is Ctx.VHE and ("irq", e.line) not in reported:
                old_masked = old is not None and old[1].irq_off is True
                if e.irq_off is True or (e.irq_off is None and not old_masked):
                    continue
                if e.irq_off is False and not (pair.from_tree or e.seen or old_masked):
                    continue
                where = ln if ln is not None and ln.kind.value != " " else pair.anchor
                if where is None:
                    continue
                reported.add(("irq", e.line))
                emit(Severity.WARNING if e.irq_off is False else Severity.QUESTION, pv,
                     pv.file(e.path), where, register="HCR_EL2", fields=("TGE",),
                     message="HCR_EL2.TGE is cleared in %s() %s: an interrupt taken now runs "
                     "the host with the guest's regime." % (
                         e.function, "with interrupts unmasked" if e.irq_off is False
                         else "without interrupts masked on every path"))
    _isb_taken(emit, pv, pair, reported)


def removed_path(pv: PatchView, ln: Line) -> str:
    for fv in pv.files:
        if ln in fv.lines:
            return fv.path
    return ""


def _removed(pv: PatchView, before: Trace | None, index: int | None, c: Ctx) -> Line | None:
    """The removed isb line that synchronised write `index` before the patch."""
    if before is None or index is None:
        return None
    for e in before.events[index + 1:]:
        if c in e.contexts and e.kind is Ev.ISB:
            ln = line_at(pv, e.path, e.line, "old")
            if ln is not None and ln.removed:
                return ln
            return None
    return None


def _changed_near(pair: Pair, e: Event) -> bool:
    return any(ln.new_no is not None and abs(ln.new_no - e.line) <= 3 for ln in pair.changed)


def _what(role: Role | None) -> str:
    if role in _TLB_ROLES:
        return "it returns to the TLB maintenance that relies on it"
    return "the TLB maintenance that relies on it"
