"""Rule family 16 (shadow versus live): the guest's regime built from the
host's HCR_EL2.

Outside the guest's activate..deactivate window the live HCR_EL2 holds the
host's value. Code that performs an address translation for a guest there
(nested virtualisation's AT emulation) switches to the guest's EL1&0
regime by writing HCR_EL2 with TGE clear. Built from the live register,
that value keeps the host's HCR_EL2.VM, which no host but the protected one
sets: the AT then walks the guest's stage-1 tables with their own
addresses untranslated by stage 2. The vcpu's copy, or the live value with
VM set, is what such code means. Found by values, path by path (memory
mode: a value saved into a structure by a helper and written back later is
still the live read). Pure.
"""

from __future__ import annotations

from bot.regmodel import RegisterModel
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.core import Severity
from bot.rules.flow import changed_line, field_mask
from bot.rules.semantic import Pair, PatchSemantics
from bot.rules.trace import Ev, Event, Trace

_LIVE = "live:HCR_EL2"


def _quick(trace: Trace) -> bool:
    """The function writes HCR_EL2 and performs an AT somewhere."""
    kinds = {(e.kind, e.register) for e in trace.events}
    return (Ev.WRITE, "HCR_EL2") in kinds and any(k is Ev.AT for k, _ in kinds)


def _hit(events: list[Event], tge: int, vm: int) -> tuple[Event, Event] | None:
    """On one path: the first HCR_EL2 write of a value copied from the
    register as the path found it, TGE known clear and VM the host's, and
    an AT after it with no other HCR_EL2 write between."""
    wrote = False
    for i, e in enumerate(events):
        if e.kind is not Ev.WRITE or e.register != "HCR_EL2":
            continue
        if wrote:
            return None
        wrote = True
        v = e.value
        if v is None or not v.zeros & tge or v.source_at(vm.bit_length() - 1) != _LIVE:
            return None
        for x in events[i + 1:]:
            if x.kind is Ev.WRITE and x.register == "HCR_EL2":
                return None
            if x.kind is Ev.AT:
                return e, x
    return None


def _hits(trace: Trace | None, tge: int, vm: int) -> list[tuple[Event, Event]]:
    """Each path's (write, AT) that _hit finds, once per write."""
    out: dict[int, tuple[Event, Event]] = {}
    for o in trace.outcomes if trace is not None else ():
        found = _hit(trace.path_events(o), tge, vm) if trace is not None else None
        if found is not None:
            out.setdefault(found[0].line, found)
    return list(out.values())


def _nearest_before(pair: Pair, write: Event) -> Line | None:
    """The last line the patch changed in the function at or before the
    write (a removed `val |= HCR_VM;` above it), else the pair's anchor."""
    best: Line | None = None
    for ln in pair.changed:
        no = ln.new_no or ln.old_no or 0
        if no <= write.line and (best is None or no >= (best.new_no or best.old_no or 0)):
            best = ln
    return best or pair.anchor


def live_host_into_guest_regime(emit: Emit, pv: PatchView, pair: Pair,
                                sem: PatchSemantics, mdl: RegisterModel,
                                in_window: bool) -> None:
    """A function outside the window that writes the live HCR_EL2 back with
    TGE cleared and VM as the host left it, then translates an address in
    the guest's regime."""
    if in_window or pair.after is None or not _quick(pair.after):
        return
    tge, vm = field_mask(mdl, "HCR_EL2", "TGE"), field_mask(mdl, "HCR_EL2", "VM")
    if not tge or not vm:
        return
    after = _hits(sem.memory_trace("new", pair.key), tge, vm)
    if not after:
        return
    # Already so before the patch: only where the patch touches the write
    # or the AT itself.
    before = _hits(sem.memory_trace("old", pair.key), tge, vm) if pair.before else []
    for write, at in after:
        ln = changed_line(pv, write, "new") or changed_line(pv, at, "new")
        if ln is None and not before:
            ln = _nearest_before(pair, write)
        if ln is None:
            continue
        emit(Severity.QUESTION, pv, pv.file(write.path), ln, register="HCR_EL2",
             message="%s() runs outside the guest's activate/deactivate window, where the "
             "live HCR_EL2 holds the host's value; the value it writes back from it clears "
             "TGE but keeps the host's VM bit (clear on every host but protected KVM's), so "
             "the AT at line %d%s walks the guest's stage-1 tables without stage-2 "
             "translation. Was the vcpu's HCR_EL2, or HCR_VM set, meant?" % (
                 write.function, at.line,
                 "" if at.function == write.function else " (in %s())" % at.function))
        return
