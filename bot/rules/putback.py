"""Rule family 3, host-restore, inside one function: code that changes
HCR_EL2/MDCR_EL2 for a while and puts back what it found.

The nested-virt address translation helpers (__kvm_at_s1e2(), the
__mmu_config_save()/__mmu_config_restore() callers), the TLB helpers and
others read the live register, write a temporary value, and write the
saved one back before they return. Per configuration, a function that
before the patch left the register holding exactly what it held on entry
(the value read back at the start) and after it no longer does - the
restore dropped, made conditional, fed from another source - hands its
caller a changed register. Pure.
"""

from __future__ import annotations

import re

from bot.regmodel import Role
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, PatchView
from bot.rules.bits import MASK64, Bits
from bot.rules.core import Severity
from bot.rules.flow import changed_event, contexts_of, decided, modes, value_words
from bot.rules.semantic import Pair
from bot.rules.trace import WATCHED, Ev, Trace


def _left(trace: Trace, ctx: Ctx, reg: str) -> tuple[Bits, bool] | None:
    for o in trace.outcomes:
        if ctx in o.contexts:
            w = o.regs.get(reg)
            return (w.value, w.always) if w is not None else None
    return None


def _restored(trace: Trace, ctx: Ctx, reg: str) -> bool:
    """The function writes `reg` and leaves it as it found it."""
    left = _left(trace, ctx, reg)
    if left is None:
        return False
    value, always = left
    return always and not value.differs(Bits.source("live:" + reg), MASK64)


def _saved_out_of_view(trace: Trace, ctx: Ctx, reg: str) -> bool:
    """The function, seen only from the middle (a hunk without the kernel
    tree), leaves `reg` written on every path from a plain local whose
    assignment the text does not show: most likely the value it saved."""
    if trace.function.seen_from_start:
        return False
    left = _left(trace, ctx, reg)
    if left is None or not left[1]:
        return False
    names = left[0].sources()
    return bool(names) and all(re.fullmatch(r"load:[a-z_]\w*", n) for n in names)


# Where a write from a kept local, seen without its save, is taken for the
# put-back: helpers outside the map's world switch (nested AT) and the TLB
# switch helpers. The world switch's own writes (__activate_traps()'s
# `hcr` local) install values, not restore them.
_PUTBACK_ROLES = (None, Role.TLB_TO_GUEST, Role.TLB_TO_HOST)


def check(emit: Emit, pv: PatchView, pair: Pair) -> bool:
    if pair.before is None or pair.after is None or not pair.changed:
        return False
    for reg in WATCHED:
        lost = [c for c in contexts_of(pair) if _restored(pair.before, c, reg)
                and not _restored(pair.after, c, reg)]
        guessed = not lost
        if not lost and pair.role in _PUTBACK_ROLES:
            lost = [c for c in contexts_of(pair) if _saved_out_of_view(pair.before, c, reg)
                    and not _saved_out_of_view(pair.after, c, reg)
                    and not _restored(pair.after, c, reg)]
        if not lost:
            continue
        left = _left(pair.after, lost[0], reg)
        now = ("untouched" if left is None else value_words(left[0], MASK64)
               + ("" if left[1] else " on some paths"))
        hit = changed_event(pv, pair.after.events, "new", (Ev.WRITE,), reg) or changed_event(
            pv, pair.before.events, "old", (Ev.WRITE,), reg)
        line = hit[1] if hit is not None else pair.anchor
        if line is None:
            continue
        if guessed:
            emit(Severity.QUESTION, pv, pv.file(pair.key.path), line, register=reg,
                 message="%s() no longer writes %s back at the end from the value it kept "
                 "(the patch does not show where it was saved; %s): does it still put back "
                 "what it found?" % (pair.key.name, reg, modes(lost)))
            return True
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
             pv.file(pair.key.path), line, register=reg,
             message="%s() no longer puts %s back as it found it (%s): it now leaves it %s, "
             "and its caller runs on with that." % (pair.key.name, reg, modes(lost), now))
        return True
    return False
