"""Rule family 10 (VHE and nVHE together): a configuration test that no
longer decides a configuration.

A capability only one kind of CPU has (kvm.toml [[guards]] with
`maybe_in`: an erratum of CPUs without VHE) decides, in the other
configuration, which side of an `if` runs. Replaced by a test that any
configuration can pass (two errata capabilities merged into one), the same
code in a helper both configurations run now takes the other side there
too: registers it wrote on every path of that configuration it now writes
on some paths only, with no line of that configuration's own code changed.
Found by comparing, per execution context, the registers each side of the
patch writes on every path. Pure.
"""

from __future__ import annotations

from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, PatchView
from bot.rules.core import Severity
from bot.rules.flow import changed_line, modes
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Trace


def _always(trace: Trace, ctx: Ctx) -> dict[str, int]:
    """Registers written on every path of `ctx`, with the line."""
    out: dict[str, int] = {}
    for o in trace.outcomes:
        if ctx in o.contexts:
            for reg, w in o.regs.items():
                if w.always:
                    out[reg] = w.line
    return out


def _sometimes(trace: Trace, ctx: Ctx) -> set[str]:
    return {reg for o in trace.outcomes if ctx in o.contexts
            for reg, w in o.regs.items() if not w.always}


def check(emit: Emit, pv: PatchView, pair: Pair) -> None:
    """Registers the function wrote on every path of some context, that it
    still writes there but on some paths only, where the patch changed a
    condition the old side decided by a configuration test."""
    before, after = pair.before, pair.after
    if before is None or after is None or not pair.changed:
        return
    guards = [e for e in before.events if e.kind is Ev.GUARD and e.depth == 0
              and changed_line(pv, e, "old") is not None]
    if not guards:
        return
    ctxs = {c for o in before.outcomes for c in o.contexts} & \
        {c for o in after.outcomes for c in o.contexts}
    lost: dict[Ctx, list[str]] = {}
    for c in sorted(ctxs):
        was = _always(before, c)
        now, some = _always(after, c), _sometimes(after, c)
        regs = sorted(r for r in was if r not in now and r in some)
        if regs:
            lost[c] = regs
    if not lost or len(lost) == len(ctxs) or all(c.mode in ("pkvm", "hvhe") for c in lost):
        # Every configuration alike is not one configuration's business;
        # protected mode and hVHE alone follow nVHE by design.
        return
    where = sorted(lost)
    regs = sorted({r for c in where for r in lost[c]})
    ln = pair.anchor
    g = guards[0]
    if ln is None:
        return
    names = " and ".join(regs)
    test = g.name if "(" in g.name else g.name + "()"
    one = len(regs) == 1
    emit(Severity.QUESTION, pv, pv.file(pair.key.path), ln, register=None,
         message="on %s the configuration test at line %d (%s) decided which side of it "
         "%s() runs, and it wrote %s on every path; the patch's test can go either way "
         "there, so %s %s now written on some paths only. Does other code write %s on %s, "
         "or should the test still tell the configurations apart?" % (
             modes(where), g.line, test, pair.key.name, names, names,
             "is" if one else "are", "it" if one else "them", modes(where)))
