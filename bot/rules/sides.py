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
from bot.rules.interp import Ev, Event, Trace
from bot.rules.semantic import Pair

SIDED_ROLES = (Role.ENTRY, Role.EXIT, Role.VCPU_LOAD, Role.VCPU_PUT, Role.TLB_TO_GUEST,
                Role.TLB_TO_HOST)
ORDER = "order"   # the hit's "register" when the order changed, not a value
_KINDS = (Ev.WRITE, Ev.ISB, Ev.ISB_ERRATA, Ev.DSB, Ev.TLBI, Ev.AT, Ev.IRQ_OFF, Ev.IRQ_ON)


def _item(e: Event) -> str | None:
    if e.kind is Ev.WRITE:
        return "write:%s" % e.register
    if e.kind in _KINDS:
        return e.kind.value
    if e.kind is Ev.CALL and e.depth == 0:
        return "call:%s" % e.name
    return None


def signature(trace: Trace, ctx: Ctx) -> tuple[str, ...]:
    return tuple(item for e in trace.events if ctx in e.contexts
                 and (item := _item(e)) is not None)


def _reordered(before: tuple[str, ...], after: tuple[str, ...]) -> bool:
    """The order changed, or a barrier or call was added: not a write or a
    barrier taken away (the barrier and host-restore rules say that), not a
    write added (the value check does)."""
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
        if _reordered(signature(pair.before, ctx), signature(pair.after, ctx)):
            changed.add(ctx)
    if not changed or all(c.mode in ("pkvm", "hvhe") for c in changed):
        return None
    modes = {"vhe" if c.mode == "vhe" else "nvhe" for c in changed}
    return modes.pop() if len(modes) == 1 else None
