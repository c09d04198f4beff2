"""Rule family 10, vhe-nvhe, by order: what one configuration's switch path
does, in order, per configuration.

The value check in bot.rules.paths compares what a switch-path function
writes. The same function can change without changing a value: two writes
or two calls swapped, a barrier added, an errata-only isb made
unconditional. The signature compared here is the ordered list of
register writes (by register), barriers, TLB maintenance, address
translation, interrupt masking and the calls the function itself makes;
the configurations whose signature a patch changes say which side changed.
Pure.
"""

from __future__ import annotations

from collections import Counter

from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules.guards import one_side_only
from bot.rules.semantic import Pair
from bot.rules.trace import WATCHED, Ev, Trace

SIDED_ROLES = (Role.ENTRY, Role.EXIT, Role.VCPU_LOAD, Role.VCPU_PUT, Role.TLB_TO_GUEST,
                Role.TLB_TO_HOST)
ORDER = "order"   # the hit's "register" when the order changed, not a value
_KINDS = (Ev.WRITE, Ev.ISB, Ev.ISB_ERRATA, Ev.DSB, Ev.TLBI, Ev.AT, Ev.IRQ_OFF, Ev.IRQ_ON)


def signature(trace: Trace, ctx: Ctx, mdl: RegisterModel) -> tuple[str, ...]:
    """Writes (by register), barriers, TLB maintenance, AT, interrupt
    masking, and the calls the function makes for their effects: into the
    map, followed into their body, or made as statements the text cannot
    follow (not an accessor used in an expression)."""
    out: list[str] = []
    evs = [e for e in trace.events if ctx in e.contexts]
    for i, e in enumerate(evs):
        if e.kind is Ev.WRITE:
            out.append("write:%s" % e.register)
        elif e.kind in _KINDS:
            out.append(e.kind.value)
        elif e.kind is Ev.CALL and e.depth == 0:
            followed = i + 1 < len(evs) and evs[i + 1].depth == 1 \
                and evs[i + 1].function == e.name
            if mdl.roles(e.name) or followed or e.name in trace.unresolved:
                out.append("call:%s" % e.name)
    return tuple(out)


def _writes_watched(trace: Trace, ctx: Ctx, mdl: RegisterModel) -> bool:
    """The function switches HCR_EL2/MDCR_EL2 here: it writes one, or it
    is (or calls) a function the map says writes one."""
    fr = mdl.role(trace.function.name, trace.function.path)
    if fr is not None and fr.registers:
        return True
    for e in trace.events:
        if ctx not in e.contexts:
            continue
        if e.kind is Ev.WRITE and e.register in WATCHED:
            return True
        if e.kind is Ev.CALL and any(r.registers for r in mdl.roles(e.name)):
            return True
    return False


def _reordered(before: tuple[str, ...], after: tuple[str, ...]) -> bool:
    """The order changed, or a barrier or call was added: not a write or a
    barrier taken away (the barrier and host-restore rules say that), not a
    write added (of HCR_EL2/MDCR_EL2 the value check says it; another
    register's write that one configuration's code gains, such as nVHE's
    VBAR_EL2, is that configuration's business)."""
    if before == after:
        return False
    removed = Counter(before) - Counter(after)
    added = Counter(after) - Counter(before)
    if not removed and not added:
        return True   # the same operations in another order
    return any(not item.startswith("write:") for item in added)


def order_change_mode(pair: Pair, mdl: RegisterModel) -> str | None:
    """"vhe" or "nvhe" when the pair's ordered signature changes in
    contexts of one side only (protected and hVHE alone do not count: they
    are nVHE's own); None otherwise."""
    if pair.role not in SIDED_ROLES or pair.before is None or pair.after is None \
            or not pair.changed:
        return None
    changed: set[Ctx] = set()
    for ctx in sorted({c for o in pair.after.outcomes for c in o.contexts}):
        if not (_writes_watched(pair.before, ctx, mdl) or _writes_watched(pair.after, ctx, mdl)):
            continue   # the function does not switch HCR_EL2/MDCR_EL2 here
        if _reordered(signature(pair.before, ctx, mdl), signature(pair.after, ctx, mdl)):
            changed.add(ctx)
    if not changed or all(c.mode in ("pkvm", "hvhe") for c in changed):
        return None
    # What the patch adds only under a test one side alone can pass (an
    # erratum of CPUs without VHE) is no change the other side could need.
    added = {ln.new_no for ln in pair.changed if ln.added}
    tests = {g.name for g in mdl.facts.guards}
    events = [e for e in pair.after.events if e.line in added and e.path == pair.key.path
              and (e.kind in _KINDS or (e.kind is Ev.CALL and e.name not in tests
                                        and not mdl.facts.op("patched", e.name)))]
    if events and all(one_side_only(mdl.facts, e.guards) for e in events):
        return None
    modes = {"vhe" if c.mode == "vhe" else "nvhe" for c in changed}
    return modes.pop() if len(modes) == 1 else None
