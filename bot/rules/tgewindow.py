"""Rule family 6, barrier: interrupts unmasked while HCR_EL2.TGE is clear.

While TGE is clear the host's EL0 regime is not in force: an interrupt
taken then runs host code with the guest's configuration. Along each path
(a function's trace, or a save/restore pair run in turn), per
configuration, the writes of HCR_EL2 say when TGE is known clear and the
interrupt state is tracked with them; a path that now reaches a point with
TGE clear and interrupts unmasked (the restore of the interrupt state moved
before TGE is set back, the masking dropped) where it did not before is
reported. Pure.
"""

from __future__ import annotations

from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.core import Severity
from bot.rules.flow import changed_line, modes
from bot.rules.trace import Ev, Event, Trace


def _exposed(trace: Trace, ctx: Ctx, tge: int) -> Event | None:
    """The first event at which TGE is known clear with interrupts unmasked
    (path by path when the trace kept paths apart: there a conditional
    write is certain on its own path)."""
    if trace.apart:
        for o in trace.outcomes:
            if ctx in o.contexts:
                hit = _exposed_on(trace.path_events(o), ctx, tge, concrete=True)
                if hit is not None:
                    return hit
        return None
    return _exposed_on(list(trace.events), ctx, tge, concrete=False)


def _exposed_on(events: list[Event], ctx: Ctx, tge: int, *, concrete: bool) -> Event | None:
    clear = False
    for e in events:
        if ctx not in e.contexts:
            continue
        if e.kind is Ev.WRITE and e.register == "HCR_EL2" and e.value is not None:
            clear = bool(e.value.zeros & tge) and (concrete or not e.cond)
            continue
        # Unmasked, or no longer known to be masked (the caller decides): a
        # path that was masked before the patch is what is compared.
        if clear and (e.kind is Ev.IRQ_ON or (e.irq_off is not True and e.kind in (
                Ev.CALL, Ev.WRITE, Ev.TLBI, Ev.AT, Ev.ISB))):
            return e
    return None


def check(emit: Emit, pv: PatchView, before: Trace, after: Trace, tge: int,
          where: tuple[str, Line] | None, name: str) -> bool:
    hits: list[Ctx] = []
    event: Event | None = None
    for ctx in sorted({c for o in after.outcomes for c in o.contexts}):
        if _exposed(before, ctx, tge) is not None:
            continue
        e = _exposed(after, ctx, tge)
        if e is not None:
            hits.append(ctx)
            event = event or e
    if event is None:
        return False
    ln = changed_line(pv, event, "new")
    path = event.path
    if ln is None and where is not None:
        path, ln = where
    if ln is None:
        return False
    emit(Severity.WARNING, pv, pv.file(path), ln, register="HCR_EL2", fields=("TGE",),
         message="%s now reaches a point with HCR_EL2.TGE clear and interrupts unmasked (%s): "
         "an interrupt taken there runs host code in the guest's regime." % (name, modes(hits)))
    return True
