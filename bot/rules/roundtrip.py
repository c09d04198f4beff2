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

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.assume import Assumed
from bot.rules.bits import MASK64, Bits
from bot.rules.core import Severity
from bot.rules.flow import field_names, line_at, modes, value_words
from bot.rules.semantic import FnKey, Pair, PatchSemantics, calls_of
from bot.rules.trace import Ev, Trace, Written


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
            if after is not None:
                _crossed(emit, pv, pair, after, before, save, restore)
            if before is None or after is None:
                if after is None:
                    _half(emit, pv, sem, pair, save if key.name == restore else restore)
                break
            anchor = _anchor(pairs, first, FnKey(path=key.path, name=restore))
            if anchor is not None:
                _compare(emit, pv, anchor, "%s() and %s()" % (save, restore), before, after,
                         model=sem.model)
            break
        _callers(emit, pv, sem, pairs, save, restore, tlb)


def _crossed(emit: Emit, pv: PatchView, pair: Pair, after: Trace, before: Trace | None,
             save: str, restore: str) -> None:
    """The second half writes a register back from what the first half
    saved of another register (`write_sysreg(config->vtcr, vttbr_el2)`): the
    saved state is not put back, and the register gets a foreign value."""
    def crossings(trace: Trace) -> dict[tuple[str, str], Written]:
        out: dict[tuple[str, str], Written] = {}
        for o in trace.outcomes:
            for reg, w in o.regs.items():
                if w.function != restore:
                    continue
                for src, mask in w.value.srcs:
                    other = src[5:] if src.startswith("live:") else None
                    if other and other != reg and mask == MASK64:
                        out.setdefault((reg, other), w)
        return out

    old = crossings(before) if before is not None else {}
    for (reg, other), w in sorted(crossings(after).items()):
        if (reg, other) in old:
            continue
        ln = line_at(pv, pair.key.path, w.line, "new")
        if ln is None or not ln.added:
            continue
        emit(Severity.WARNING, pv, pv.file(pair.key.path), ln,
             register=reg if reg in ("HCR_EL2", "MDCR_EL2") else None,
             message="%s() writes %s back from what %s() saved of %s: %s ends with %s's "
             "value instead of its own." % (restore, reg, save, other, reg, other))
        return


def _half(emit: Emit, pv: PatchView, sem: PatchSemantics, pair: Pair, other: str) -> None:
    """One half of a pair changed and the other not at hand (no kernel
    tree, a hunk of one function): what this half leaves in the registers
    and in the memory it shares with the other (the context structure),
    path by path; a change there is asked about."""
    if pair.anchor is None:
        return
    before, after = sem.memory_trace("old", pair.key), sem.memory_trace("new", pair.key)
    if before is not None and after is not None:
        _compare(emit, pv, (pair, pair.anchor), "%s()" % pair.key.name, before, after,
                 other=other, model=sem.model)


def _callers(emit: Emit, pv: PatchView, sem: PatchSemantics, pairs: dict[FnKey, Pair],
             save: str, restore: str, tlb: bool) -> None:
    """A changed function that runs the pair itself (__kvm_tlbi_s1e2()
    around its TLBI): what it leaves, path by path, compared the same way
    (the restore made unconditional where the save is not, a path that
    returns between them)."""
    for key, pair in sorted(pairs.items(), key=lambda kv: (kv[0].path, kv[0].name)):
        if key.name in (save, restore) or not pair.changed or pair.anchor is None:
            continue
        fn = sem.after.get(key)
        if fn is None or not {save, restore} <= calls_of(fn):
            continue
        is_tlb = sem.role(FnKey(path=key.path, name=save)) in (Role.TLB_TO_GUEST,
                                                               Role.TLB_TO_HOST)
        if is_tlb != tlb:
            continue
        before, after = sem.memory_trace("old", key), sem.memory_trace("new", key)
        if before is not None and after is not None:
            _compare(emit, pv, (pair, pair.anchor), "%s() (its %s() and %s())" % (
                key.name, save, restore), before, after, model=sem.model)


def _anchor(pairs: dict[FnKey, Pair], *keys: FnKey) -> tuple[Pair, Line] | None:
    for k in keys:
        p = pairs.get(k)
        if p is not None and p.anchor is not None:
            return p, p.anchor
    return None


def _paths(trace: Trace, ctx: Ctx, regs: list[str]) -> list[_End]:
    """What the pair leaves in `regs` in one configuration, path by path
    (the pair is followed with the paths kept apart), with what each path's
    conditions said. A slot named "mem:..." is memory the function leaves
    (_shared)."""
    out: list[_End] = []
    for o in trace.outcomes:
        if ctx in o.contexts:
            shared = _shared(trace, o.stored)
            ws = {r: shared.get(r) if r.startswith("mem:") else o.regs.get(r) for r in regs}
            out.append(_End(key=tuple(_key(ws[r]) for r in regs), writes=ws,
                            assumed=o.assumed))
    return out


@dataclass(frozen=True, slots=True)
class _End:
    """What one path of a pair leaves in the registers, and what it assumed."""

    key: tuple[object, ...]
    writes: dict[str, Written | None]
    assumed: Assumed


def _partner(end: _End, others: list[_End], regs: list[str], named: set[str]) -> _End | None:
    """The other side's path this one is compared with: one that took the
    same conditions (or compatible ones), the nearest in what it leaves;
    None when one of those leaves exactly the same."""
    same = [o for o in others if o.assumed == end.assumed]
    pool = same or [o for o in others if o.assumed.compatible(end.assumed)] or others
    if any(o.key == end.key for o in pool):
        return None
    return min(pool, key=lambda o: _distance(o.key, end.key, regs, named))


def _shared(trace: Trace, stored: Mapping[str, Bits]) -> dict[str, Written]:
    """Memory reached through the function's parameters (what one half of
    a pair leaves for the other in the context structure), by parameter
    position so that a renamed parameter is the same memory."""
    params = {p.name: i for i, p in enumerate(trace.function.params)}
    out: dict[str, Written] = {}
    for key, value in stored.items():
        m = re.match(r"mem:(?:param:)?(\w+)(->.+)$", key)
        if m is None:
            continue
        # By position when the parameter is in view; else (a hunk that
        # starts inside the function) by the pointer's name.
        base = "%d" % params[m.group(1)] if m.group(1) in params else m.group(1)
        out["mem:%s%s" % (base, m.group(2))] = Written(value=value, always=True, line=0,
                                                       function="")
    return out


def _named(pair: Pair, before: Trace, after: Trace) -> set[str]:
    """The registers the patch's changed lines name, directly or through a
    kvm.toml [[loaders]] helper they call."""
    text = " ".join(ln.text for ln in pair.changed)
    upper = text.upper()
    out = {r for o in before.outcomes + after.outcomes for r in o.regs
           if r.split("_EL", 1)[0] in upper}
    for e in before.events + after.events:
        if e.kind is Ev.WRITE and e.register and e.value is not None and any(
                n.startswith("call:") and n.split("(", 1)[0][5:] in text
                for n in e.value.sources()):
            out.add(e.register)
    return out


def _distance(a: tuple[object, ...], b: tuple[object, ...], regs: list[str],
              named: set[str]) -> tuple[int, int]:
    diff = [r for r, x, y in zip(regs, a, b, strict=True) if x != y]
    return len(diff), sum(r not in named for r in diff)


def _key(w: Written | None) -> object:
    """A value as the comparison sees it: one set from memory the same way
    is one value however the memory is reached (a refactor through another
    pointer); None: the register is not written."""
    if w is None:
        return None
    v = w.value
    mem = ("load:", "vcpu:", "percpu:", "host-copy:", "guest-hyp:")
    if v.srcs and all(n.startswith(mem) for n in v.sources()):
        return ("memory", v.known, v.ones)
    return (v.ones, v.zeros, v.srcs)


def _compare(emit: Emit, pv: PatchView, anchor: tuple[Pair, Line], label: str,
             before: Trace, after: Trace, other: str | None = None,
             model: RegisterModel | None = None) -> None:
    """`other`: the half not at hand (compare what this one leaves in
    memory too, and ask). A register's end states are described by the
    bits that differ, named as the model's fields when it knows them."""
    pair, line = anchor
    named = _named(pair, before, after)
    changed: dict[str, list[Ctx]] = {}
    ends: dict[str, list[tuple[Written | None, Written | None]]] = {}
    for ctx in sorted({c for o in after.outcomes for c in o.contexts}):
        if not any(ctx in o.contexts for o in before.outcomes):
            continue
        regs = sorted({r for o in before.outcomes + after.outcomes if ctx in o.contexts
                       for r in o.regs})
        if other is not None:
            regs += sorted({m for t in (before, after) for o in t.outcomes if ctx in o.contexts
                            for m in _shared(t, o.stored)})
        pb, pa = _paths(before, ctx, regs), _paths(after, ctx, regs)
        for mine, theirs, side in ((pa, pb, 1), (pb, pa, 0)):
            if not theirs:
                continue
            for end in mine:
                near = _partner(end, theirs, regs, named)
                if near is None:
                    continue
                for i, reg in enumerate(regs):
                    if end.key[i] == near.key[i]:
                        continue
                    if ctx not in changed.setdefault(reg, []):
                        changed[reg].append(ctx)
                    was, now = (near, end) if side else (end, near)
                    ends.setdefault(reg, []).append((was.writes[reg], now.writes[reg]))
        irq_b = {o.irq_off for o in before.outcomes if ctx in o.contexts}
        irq_a = {o.irq_off for o in after.outcomes if ctx in o.contexts}
        if irq_b == {False} and irq_a != {False}:
            changed.setdefault("interrupts", []).append(ctx)
    sev = Severity.WARNING if pair.from_tree and other is None else Severity.QUESTION
    tail = "the two sides no longer undo each other." if other is None else (
        "the patch does not show %s(): does it still undo exactly this?" % other)
    if "interrupts" in changed:
        emit(sev, pv, pv.file(pair.key.path), line, register=None,
             message="after %s, interrupts are no longer unmasked again as they were (%s): "
             "%s" % (label, modes(changed["interrupts"]), tail))
    regs_of = sorted((r for r in changed if r != "interrupts"),
                     key=lambda r: (r not in ("HCR_EL2", "MDCR_EL2"), r not in named, _order(r)))
    if not regs_of:
        return
    # One finding per pair: the first register in full, the others named.
    first = regs_of[0]
    gone, new, bits = _end_words(first, ends.get(first, []), model)
    rest = [_slot_words(r) for r in regs_of[1:]]
    also = " (%s %s too)" % (", ".join(rest[:-1]) + " and " + rest[-1] if len(rest) > 1
                             else rest[0], "change" if len(rest) > 1 else "changes") \
        if rest else ""
    emit(sev, pv, pv.file(pair.key.path), line,
         register=next((r for r in regs_of if r in ("HCR_EL2", "MDCR_EL2")), None),
         message="after %s, %s%s is now left %s on a path where it was left %s (%s)%s: %s" % (
             label, _slot_words(first), bits, " or ".join(new[:3]), " or ".join(gone[:3]),
             modes(changed[first]), also, tail))


def _slot_words(slot: str) -> str:
    """A register by name; memory as what the function saves there."""
    if not slot.startswith("mem:"):
        return slot
    base, _, field = slot[4:].partition("->")
    return "what it saves in %s->%s" % (
        "its parameter %d" % (int(base) + 1) if base.isdigit() else base, field)


def _order(reg: str) -> str:
    """VTTBR before VTCR (by what the reader knows the helpers for)."""
    return reg.replace("VTTBR", "VT0")


def _state(w: Written | None, mask: int = MASK64) -> str:
    if w is None:
        return "untouched"
    return value_words(w.value, mask)


def _end_words(slot: str, ends: list[tuple[Written | None, Written | None]],
               model: RegisterModel | None) -> tuple[list[str], list[str], str]:
    """How the register was left and is now left, in words, over the bits
    that differ; and those bits as the register's fields (" (its VM bit)"),
    when they are not the whole value."""
    mask = 0
    for a, b in ends:
        if a is not None and b is not None:
            mask |= a.value.differs(b.value)
    mask = mask or MASK64
    gone = list(dict.fromkeys(_state(a, mask) for a, _ in ends))
    new = list(dict.fromkeys(_state(b, mask) for _, b in ends))
    names = field_names(model, slot, mask) if model is not None and mask != MASK64 else ()
    bits = " (its %s %s)" % ("/".join(names), "bit" if len(names) == 1 and mask & (mask - 1) == 0
                              else "field" if len(names) == 1 else "fields") if names else ""
    return gone, new, bits
