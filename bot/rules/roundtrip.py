"""Rule family 7, tlb-symmetry by values: what the TLB switch helpers leave
behind as a pair.

enter_vmid_context() (__tlb_switch_to_guest) saves state into its context
structure and changes registers (HCR_EL2.TGE, TCR_EL1.EPDx and SCTLR_EL1.M
for the speculative-AT erratum, the stage-2 context, the interrupt mask);
exit_vmid_context() puts it back from what was saved. Run one after the
other (bot.rules.semantic.PatchSemantics.round_trip, memory followed from
the first into the second), they leave each register and the interrupt
mask in some state; a patch that changes that state, per configuration,
broke the symmetry however it is spelt (a restore dropped, a value saved
after it was modified, a restore made conditional). Pure.
"""

from __future__ import annotations

from bot.regmodel import Role
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.bits import MASK64, Bits
from bot.rules.core import Severity
from bot.rules.flow import modes, value_words
from bot.rules.interp import Outcome, Trace, Written
from bot.rules.semantic import FnKey, Pair, PatchSemantics


def check(emit: Emit, pv: PatchView, sem: PatchSemantics, *, tlb: bool) -> None:
    """The kvm.toml [[round_trips]] whose either half the patch changes;
    `tlb`: the TLB switch helpers' (tlb-symmetry) or the others'
    (host-restore)."""
    pairs = {p.key: p for p in sem.pairs()}
    for save, restore in sem.facts.round_trips:
        for key, pair in sorted(pairs.items(), key=lambda kv: (kv[0].path, kv[0].name)):
            if key.name not in (save, restore) or not pair.changed:
                continue
            first = FnKey(path=key.path, name=save)
            is_tlb = sem.role(first) in (Role.TLB_TO_GUEST, Role.TLB_TO_HOST)
            if is_tlb != tlb:
                break
            before = sem.round_trip("old", first, restore)
            after = sem.round_trip("new", first, restore)
            if before is None or after is None:
                break
            anchor = _anchor(pairs, first, FnKey(path=key.path, name=restore))
            if anchor is not None:
                _compare(emit, pv, anchor, save, restore, before, after)
            break


def _anchor(pairs: dict[FnKey, Pair], *keys: FnKey) -> tuple[Pair, Line] | None:
    for k in keys:
        p = pairs.get(k)
        if p is not None and p.anchor is not None:
            return p, p.anchor
    return None


def _outcome(trace: Trace, ctx: Ctx) -> Outcome | None:
    return next((o for o in trace.outcomes if ctx in o.contexts), None)


def _compare(emit: Emit, pv: PatchView, anchor: tuple[Pair, Line], enter: str, leave: str,
             before: Trace, after: Trace) -> None:
    pair, line = anchor
    changed: dict[str, list[Ctx]] = {}
    words: dict[str, tuple[str, str]] = {}
    for ctx in sorted({c for o in after.outcomes for c in o.contexts}):
        ob, oa = _outcome(before, ctx), _outcome(after, ctx)
        if ob is None or oa is None:
            continue
        for reg in sorted(ob.regs.keys() | oa.regs.keys()):
            wb, wa = ob.regs.get(reg), oa.regs.get(reg)
            if wb is not None and wa is not None and wb.always == wa.always and (
                    not wb.value.differs(wa.value) or _both_memory(wb.value, wa.value)):
                continue
            changed.setdefault(reg, []).append(ctx)
            words.setdefault(reg, (_state(wb), _state(wa)))
        if ob.irq_off != oa.irq_off and ob.irq_off is False:
            changed.setdefault("interrupts", []).append(ctx)
    sev = Severity.WARNING if pair.from_tree else Severity.QUESTION
    for reg, ctxs in changed.items():
        if reg == "interrupts":
            msg = ("after %s() and %s(), interrupts are no longer unmasked again as they were "
                   "(%s): the two sides no longer undo each other." % (enter, leave, modes(ctxs)))
            emit(sev, pv, pv.file(pair.key.path), line, register=None, message=msg)
            continue
        was, now = words[reg]
        emit(sev, pv, pv.file(pair.key.path), line,
             register=reg if reg in ("HCR_EL2", "MDCR_EL2") else None,
             message="after %s() and %s(), %s is left %s, where it was left %s (%s): the two "
             "sides no longer undo each other." % (enter, leave, reg, now, was, modes(ctxs)))


def _both_memory(a: Bits, b: Bits) -> bool:
    """Both values set from memory the same way, only spelt differently (a
    refactor that reaches the same field through another pointer): not a
    register the pair saves and restores."""
    mem = ("load:", "vcpu:", "percpu:", "host-copy:", "guest-hyp:")
    return a.known == b.known and a.ones == b.ones and bool(a.srcs) and bool(b.srcs) \
        and all(n.startswith(mem) for n in a.sources() + b.sources())


def _state(w: Written | None) -> str:
    if w is None:
        return "untouched"
    text = value_words(w.value, MASK64)
    return text if w.always else text + " on some paths only"
