"""Rule families 11, 13 and 16: when values exist, who may read them, and
which copy holds which value.

Each compares the traces of bot.rules.semantic before and after the patch:
the vcpu's HCR_EL2/MDCR_EL2 must be computed before the first vcpu load
(init-order); per-CPU host copies are read with preemption disabled
(preemption); the live register holds the guest's value only between
activate and deactivate, the vcpu's copy everywhere (shadow-vs-live).
"""

from __future__ import annotations

from bot.data import Series
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import EL1
from bot.rules import exitwindow, initorder, loadedcopy, onepath
from bot.rules.analysis import Emit, PatchView, view
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import changed_line, line_at, semantics
from bot.rules.hostregime import live_host_into_guest_regime
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

# Roles that run with preemption disabled by their callers (vcpu load/put
# under the run loop's preempt_disable, init on each CPU by IPI).
_PREEMPT_OFF_ROLES = (Role.VCPU_LOAD, Role.VCPU_PUT, Role.INIT, Role.ENTRY, Role.EXIT,
                      Role.RUN, Role.EARLY_EXIT, Role.PANIC)
# Roles inside the guest's activate..deactivate window, where the live
# register holds the guest's value.
_IN_WINDOW = (Role.ENTRY, Role.EXIT, Role.EARLY_EXIT, Role.PANIC, Role.RUN)


def _changed(pv: PatchView, e: Event, side: str) -> bool:
    return changed_line(pv, e, side) is not None


def _register_of(storage: str) -> str:
    return "MDCR_EL2" if "mdcr" in storage else "HCR_EL2"


@rule(id="init-order", category=Category.INIT_ORDER, severity=Severity.WARNING,
      summary="vcpu->arch.hcr_el2/mdcr_el2 is no longer computed before the first load")
def init_order(series: Series, ctx: Context) -> list[Finding]:
    """On VHE part of HCR_EL2/MDCR_EL2 is written at vcpu load, not at each
    entry, so vcpu->arch.hcr_el2 and mdcr_el2 (and the per-CPU host copies)
    must hold their final value before the first kvm_arch_vcpu_load. Moving
    their computation later, or dropping it (or the call to the function
    that does it) from vcpu init, loads a stale or zero value into the
    register."""
    sv = view(series, ctx)
    emit = Emit(rule="init-order", category=Category.INIT_ORDER, sv=sv, compared=True)
    mdl = ctx.regmodel
    if not isinstance(mdl, RegisterModel):
        return emit.out
    for pv in sv.relevant():
        onepath.check_state(emit, sv, pv, mdl.facts, ctx.memo)
        sem = semantics(sv, pv, ctx)
        if sem is not None:
            initorder.check(emit, pv, sem)
    return emit.out


@rule(id="preemption", category=Category.PREEMPTION, severity=Severity.QUESTION,
      summary="a per-CPU host copy read without preemption disabled")
def preemption(series: Series, ctx: Context) -> list[Finding]:
    """The host's HCR_EL2/MDCR_EL2 copies are per-CPU. __this_cpu_read()
    from preemptible code can read one CPU's copy and then run on another,
    so the guest gets the wrong host's HPMN. The caller must have
    preemption disabled (vcpu load/put and the run loop do); removing the
    preempt_disable() around code that computes such values reopens it."""
    sv = view(series, ctx)
    emit = Emit(rule="preemption", category=Category.PREEMPTION, sv=sv, compared=True)
    mdl = ctx.regmodel
    if not isinstance(mdl, RegisterModel):
        return emit.out
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        for pair in sem.pairs():
            if pair.after is None:
                continue
            place = mdl.facts.contexts_of(pair.key.path)
            if not place & EL1:
                continue  # hyp code: runs with preemption off by construction
            if pair.role not in _PREEMPT_OFF_ROLES:
                _percpu_reads(emit, pv, pair, mdl)
            if pair.before is not None:
                _dropped_protection(emit, pv, pair)
    return emit.out


def _percpu_reads(emit: Emit, pv: PatchView, pair: Pair, mdl: RegisterModel) -> None:
    assert pair.after is not None
    evs = pair.after.events
    for i, e in enumerate(evs):
        percpu = (e.kind is Ev.LOAD and (e.name.startswith(("host-copy:", "percpu:",
                                                              "load:percpu-var:"))
                                         or any(op in e.name for op in
                                                mdl.facts.ops.get("percpu", ()))))
        if not percpu or e.preempt_off is True:
            continue
        if "mdcr" not in e.name.lower() and "hcr" not in e.name.lower():
            continue
        # The read itself changed, or the call of this function that reaches
        # it (a helper that reads the copy, now called from here).
        top = next((x for x in reversed(evs[:i + 1]) if x.depth == 0), e)
        ln = changed_line(pv, e, "new") or (changed_line(pv, top, "new") if e.depth else None)
        if ln is None:
            continue
        where = e.path if changed_line(pv, e, "new") is not None else top.path
        emit(Severity.QUESTION, pv, pv.file(where), ln,
             register="MDCR_EL2" if "mdcr" in e.name.lower() else "HCR_EL2",
             message="%s() reads a per-CPU host copy%s: is preemption disabled on every path "
             "that calls it?" % (e.function, "" if where == e.path and not e.depth
                                 else " (reached from %s())" % pair.key.name))
        return


def _dropped_protection(emit: Emit, pv: PatchView, pair: Pair) -> None:
    assert pair.before is not None and pair.after is not None
    removed = [e for e in pair.before.events if e.kind is Ev.PREEMPT_OFF and not e.depth
               and _changed(pv, e, "old")]
    if not removed or any(e.kind is Ev.PREEMPT_OFF for e in pair.after.events):
        return
    off = removed[0]
    inside = _between(pair.before, off)
    if not inside:
        return
    ln = line_at(pv, off.path, off.line, "old")
    emit(Severity.QUESTION, pv, pv.file(off.path), ln, register=None,
         message="this removes the preempt_disable() around %s() in %s(): what keeps the "
         "per-CPU state it reads from changing CPU under it now?" % (
             "(), ".join(inside), pair.key.name))


def _between(trace: Trace, off: Event) -> list[str]:
    """The calls made between a preempt_disable() and its preempt_enable()."""
    out: list[str] = []
    started = False
    for e in trace.events:
        if e is off:
            started = True
            continue
        if not started:
            continue
        if e.kind is Ev.PREEMPT_ON:
            break
        if e.kind is Ev.CALL and e.name not in out:
            out.append(e.name)
    return out


@rule(id="shadow-vs-live", category=Category.SHADOW_VS_LIVE, severity=Severity.WARNING,
      summary="the live HCR_EL2/MDCR_EL2 read where the vcpu's copy is meant, or the reverse")
def shadow_vs_live(series: Series, ctx: Context) -> list[Finding]:
    """Between __activate_traps and __deactivate_traps the live HCR_EL2 holds
    the guest's value; anywhere else it holds the host's. Code that wants the
    guest's configuration must read vcpu->arch.hcr_el2 unless it only runs
    inside that window; and code that wants what hardware changed in the
    live register (HCR_EL2.VSE, cleared when the guest takes the SError)
    must read the register, not the copy."""
    sv = view(series, ctx)
    emit = Emit(rule="shadow-vs-live", category=Category.SHADOW_VS_LIVE, sv=sv, compared=True)
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        loadedcopy.check(emit, sv, pv, sem.model)
        exitwindow.check(emit, sv, pv, sem.model)
        pairs = sem.pairs()
        for pair in pairs:
            in_window = pair.role in _IN_WINDOW or any(
                p.role in _IN_WINDOW and pair.key in p.reaches for p in pairs)
            if pair.after is not None and pair.role not in _IN_WINDOW:
                _live_into_copy(emit, pv, pair)
            live_host_into_guest_regime(emit, pv, pair, sem, sem.model, in_window)
            if pair.before is None or pair.after is None:
                continue
            _swapped(emit, pv, pair)
            _reads_own_write(emit, pv, pair)
    return emit.out


def _reads_own_write(emit: Emit, pv: PatchView, pair: Pair) -> None:
    """A read of the live register that got what it held when the function
    was called (the guest's value, on the way out) now gets what this path
    wrote before it (the host's): the read moved past the write."""
    assert pair.before is not None and pair.after is not None

    def reads(trace: Trace) -> dict[tuple[str, str | None], list[Event]]:
        out: dict[tuple[str, str | None], list[Event]] = {}
        for e in trace.events:
            if e.kind is Ev.READ and e.register in ("HCR_EL2", "MDCR_EL2") and e.value:
                out.setdefault((e.function, e.register), []).append(e)
        return out

    live = "live:%s"
    before, after = reads(pair.before), reads(pair.after)
    for key, evs in after.items():
        was = before.get(key, [])
        if not was or not all(live % key[1] in (b.value.sources() if b.value else ())
                              for b in was):
            continue
        for e in evs:
            if e.value is None or live % key[1] in e.value.sources():
                continue
            ln = changed_line(pv, e, "new") or pair.anchor
            if ln is None:
                return
            emit(Severity.WARNING if pair.from_tree else Severity.QUESTION, pv,
                 pv.file(pair.key.path), ln, register=key[1],
                 message="%s() reads %s where the path has already written it: the read now "
                 "gets what %s() wrote, not the value the register held before (the guest's "
                 "on the way out)." % (e.function, key[1], pair.key.name))
            return


def _live_into_copy(emit: Emit, pv: PatchView, pair: Pair) -> None:
    """Outside the activate..deactivate window, the live register read to
    compute the vcpu's copy: the live value there is the host's."""
    assert pair.after is not None
    events = pair.after.events
    for i, e in enumerate(events):
        if e.kind is not Ev.READ or e.register not in ("HCR_EL2", "MDCR_EL2") \
                or not _changed(pv, e, "new"):
            continue
        target = "vcpu.%s" % e.register.lower()
        for x in events[i + 1:]:
            if x.line - e.line > 3:
                break
            if x.kind is Ev.STORE and x.storage == target:
                ln = line_at(pv, e.path, e.line, "new")
                emit(Severity.WARNING, pv, pv.file(e.path), ln, register=e.register,
                     message="%s() runs outside the guest's activate/deactivate window, where "
                     "the live %s holds the host's value, and uses it for vcpu->arch.%s." % (
                         e.function, e.register, e.register.lower()))
                return


def _shadow(e: Event) -> str | None:
    """The register whose copy (the vcpu's, or the guest hypervisor's) an
    event loads."""
    if e.kind is Ev.LOAD and e.storage and e.storage.split(".", 1)[0] in ("vcpu", "guest-hyp"):
        return _register_of(e.storage.lower())
    return None


def _reads(trace: Trace, pv: PatchView, side: str) -> tuple[dict[str, list[Event]],
                                                            dict[str, list[Event]]]:
    """Live reads and copy loads, by register, on the lines the patch changed."""
    live: dict[str, list[Event]] = {}
    copy: dict[str, list[Event]] = {}
    for e in trace.events:
        if not _changed(pv, e, side):
            continue
        if e.kind is Ev.READ and e.register in ("HCR_EL2", "MDCR_EL2"):
            live.setdefault(e.register, []).append(e)
        reg = _shadow(e)
        if reg is not None:
            copy.setdefault(reg, []).append(e)
    return live, copy


def _swapped(emit: Emit, pv: PatchView, pair: Pair) -> None:
    """The patch replaces reads of the copy with reads of the live register,
    or the reverse, on the lines it changes."""
    assert pair.before is not None and pair.after is not None
    live_old, copy_old = _reads(pair.before, pv, "old")
    live_new, copy_new = _reads(pair.after, pv, "new")
    for reg in ("HCR_EL2", "MDCR_EL2"):
        d_live = len(live_new.get(reg, [])) - len(live_old.get(reg, []))
        d_copy = len(copy_new.get(reg, [])) - len(copy_old.get(reg, []))
        if d_live > 0 and d_copy < 0:
            e = live_new[reg][0]
            inside = pair.role in _IN_WINDOW
            emit(Severity.QUESTION if inside else Severity.WARNING, pv, pv.file(e.path),
                 changed_line(pv, e, "new"), register=reg,
                 message="%s() now reads the live %s where it read the vcpu's copy: %s" % (
                     e.function, reg,
                     "is it only ever called between activate and deactivate, where the live "
                     "register holds the guest's value?" if inside else
                     "outside the guest's activate..deactivate window the live register holds "
                     "the host's value."))
            return
        if d_live < 0 and d_copy <= 0 and pair.role in (Role.EXIT, Role.EARLY_EXIT) \
                and not live_new.get(reg):
            e = live_old[reg][0]
            emit(Severity.QUESTION, pv, pv.file(e.path), changed_line(pv, e, "old"),
                 register=reg,
                 message="%s() no longer reads the live %s on the way out of the guest: the "
                 "vcpu's copy then misses what hardware changed while the guest ran (as "
                 "HCR_EL2.VSE, cleared when the guest takes the SError)." % (
                     e.function, reg))
            return
        if d_live < 0 and d_copy > 0:
            e = copy_new[reg][0]
            emit(Severity.QUESTION, pv, pv.file(e.path), line_at(pv, e.path, e.line, "new"),
                 register=reg,
                 message="%s() now reads the vcpu's copy of %s where it read the live register: "
                 "does nothing (hardware, the guest) change the live value the copy misses?" % (
                     e.function, reg))
            return
