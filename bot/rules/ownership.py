"""Rule family 9, pmu-ownership, on the values that carry the host's
MDCR_EL2 ownership outside the exit path.

The host's HPMN (how many counters it keeps) and its E2PB/E2TB buffer
ownership travel through more than the restore on exit: __kvm_get_mdcr_el2()
returns the live value the host captures at init, kvm_arm_setup_mdcr_el2()
derives the vcpu's value from that capture (HPMN kept, E2PB/E2TB cleared on
purpose), the entry paths write the vcpu's value. For every function a
patch changes, per configuration, the owned fields of each such value -
what it writes to MDCR_EL2, what it leaves in a stored MDCR_EL2 value,
what it returns - are compared before and after; a change of how they are
made (taken from the host's value, forced, cleared) is reported. Pure.
"""

from __future__ import annotations

from bot.regmodel import RegisterModel
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.bits import Bits
from bot.rules.core import Severity
from bot.rules.flow import (
    always_written,
    changed_line,
    contexts_of,
    decided,
    field_mask,
    modes,
    returned,
    source_words,
    value_words,
)
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Trace

OWNED = ("HPMN", "E2PB", "E2TB")
_REG = "MDCR_EL2"


def _carriers(sem_storage: list[str], trace: Trace, ctx: Ctx) -> dict[str, Bits]:
    """What carries an MDCR_EL2 value out of the function on `ctx`'s paths."""
    out: dict[str, Bits] = {}
    w = always_written(trace, ctx, _REG)
    if w is not None:
        out["what it writes to MDCR_EL2"] = w
    for o in trace.outcomes:
        if ctx in o.contexts:
            for st in sem_storage:
                v = o.stored.get(st)
                if v is not None:
                    out["what it leaves in %s" % source_words("x:" + st)] = v
    ret = returned(trace, ctx)
    if ret is not None and _REG in trace.function.name.upper():
        out["what it returns"] = ret
    return out


def _forced_or_lost(old: Bits, new: Bits, mask: int) -> bool:
    """The field is now forced (known bits where it came from a value) or no
    longer known at all, or its forced value changed; a value that only
    comes from another source is other rules' business (same-value)."""
    if not old.differs(new, mask):
        return False
    forced = new.known & mask & ~old.known
    lost = new.unknown_mask & mask & ~old.unknown_mask
    changed = (old.ones ^ new.ones) & old.known & new.known & mask
    return bool(forced or lost or changed)


def check(emit: Emit, pv: PatchView, pair: Pair, model: RegisterModel) -> None:
    if pair.before is None or pair.after is None or not pair.changed:
        return
    storage = [st.name for st in model.facts.storage if st.register == _REG]
    for name in OWNED:
        mask = field_mask(model, _REG, name)
        if not mask:
            continue
        hits: list[Ctx] = []
        pick: tuple[str, Bits, Bits] | None = None
        for c in contexts_of(pair):
            old = _carriers(storage, pair.before, c)
            new = _carriers(storage, pair.after, c)
            for what in sorted(old.keys() & new.keys()):
                if _forced_or_lost(old[what], new[what], mask):
                    hits.append(c)
                    pick = pick or (what, old[what], new[what])
                    break
        if pick is None:
            continue
        line = _line(pv, pair)
        if line is None:
            continue
        what, was, now = pick
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
             pv.file(pair.key.path), line, register=_REG, fields=(name,),
             message="in %s of %s(), MDCR_EL2.%s was %s and is now %s (%s): the host's "
             "counters and buffers depend on it." % (
                 what, pair.key.name, name, value_words(was, mask), value_words(now, mask),
                 modes(hits)))
        return


def _line(pv: PatchView, pair: Pair) -> Line | None:
    """The changed write or store of MDCR_EL2, else the pair's own change."""
    assert pair.after is not None
    for e in pair.after.events:
        if (e.kind is Ev.WRITE and e.register == _REG) or (
                e.kind in (Ev.STORE, Ev.RETURN) and "mdcr" in (e.storage or e.function).lower()):
            ln = changed_line(pv, e, "new")
            if ln is not None:
                return ln
    return pair.anchor
