"""Rule families 10 to 14 and 16: where and when the registers are touched.

VHE and nVHE kept in step, values initialised before the first load, no
EL2 register read from the nVHE host at EL1, per-CPU host copies read with
preemption off, 64-bit storage, and the live register read only while it
holds the guest's value.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.regmodel import RegisterModel
from bot.regmodel.facts import EL1, Ctx
from bot.rules import capmerge, e2honly, kconfigsym, onepath, redirect, sides, width
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, view
from bot.rules.bits import Bits
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import (
    WATCHED,
    Stores,
    always_written,
    changed_line,
    contexts_of,
    line_at,
    modes,
    resolve,
    returned,
    semantics,
    series_stores,
)
from bot.rules.guards import one_side_only
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

_OTHER_SIDE = re.compile(r"(?i)\bn?vhe\b|non-vhe|both (paths|modes)|hVHE|protected mode")
_VHE_GUARD = re.compile(r"\b(has_vhe|is_kernel_in_hyp_mode|is_hyp_mode_available|"
                        r"cpus_have_final_cap\s*\(\s*ARM64_HAS_VIRT_HOST_EXTN|"
                        r"has_hvhe|in_hyp)\b|vhe")
_PREEMPT_OFF = re.compile(r"\b(preempt_disable|get_cpu|local_irq_disable|local_irq_save|"
                          r"migrate_disable|guard\s*\(\s*preempt|scoped_guard\s*\(\s*preempt|"
                          r"lockdep_assert_preemption_disabled)\b")
_HOST_COPY = re.compile(r"(?i)mdcr|hcr")
_GENMASK = re.compile(r"GENMASK(?:_ULL)?\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_SAVE_RESTORE_ROLES = ("entry", "exit", "vcpu-load", "vcpu-put", "panic", "early-exit")
_OUTSIDE_WINDOW = ("vcpu-load", "vcpu-put", "tlb-to-guest", "tlb-to-host", "vcpu-init")


_SWITCH_ROLES = ("entry", "exit", "panic", "early-exit")


def _touches(ln: Line) -> bool:
    return any(a.register in M.WATCHED and a.kind != "read" for a in ln.facts.accesses) or any(
        a.vcpu or a.host for a in ln.facts.assigns)


@rule(id="vhe-nvhe", category=Category.VHE_NVHE, severity=Severity.QUESTION,
      summary="the VHE or nVHE save/restore changes alone, or a VHE test that is not one")
def vhe_nvhe(series: Series, ctx: Context) -> list[Finding]:
    """VHE and nVHE switch the same registers through different code
    (hyp/vhe and hyp/nvhe since 5.9). A change to what one of them writes
    to HCR_EL2/MDCR_EL2 on the switch path either applies to the other too,
    or there is an architectural reason it does not, which the patch should
    give; code only one configuration can reach (nested virtualisation is
    VHE-only) is not asked about. And is_kernel_in_hyp_mode() is no VHE
    test: it is true at EL2 in both modes, so a helper shared by the host
    and the nVHE hyp code that branches on it takes the VHE path in nVHE
    hyp code."""
    sv = view(series, ctx)
    emit = Emit(rule="vhe-nvhe", category=Category.VHE_NVHE, sv=sv, compared=True)
    mdl = ctx.regmodel
    if not isinstance(mdl, RegisterModel):
        return emit.out
    changed_modes: dict[str, list[tuple[PatchView, Pair, str]]] = {}
    for pv in sv.relevant():
        onepath.check_ops(emit, sv, pv, mdl.facts, ctx.memo)
        e2honly.check(emit, pv, mdl.facts)
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        stores = series_stores(sv, ctx)
        redirect.check(emit, pv, sem)
        for pair in sem.pairs():
            _el2_test(emit, pv, pair, mdl)
            capmerge.check(emit, pv, pair)
            if pair.role not in sides.SIDED_ROLES or pair.before is None or pair.after is None:
                continue
            moved = [p for p in sem.pairs() if p.key.name == pair.key.name and p is not pair]
            for reg in WATCHED:
                mode = _value_change_mode(pv, pair, reg, mdl, stores, moved)
                if mode is not None:
                    changed_modes.setdefault(mode, []).append((pv, pair, reg))
            mode = sides.order_change_mode(pair, mdl)
            if mode is not None:
                changed_modes.setdefault(mode, []).append((pv, pair, sides.ORDER))
    for mode, hits in changed_modes.items():
        if any(other in changed_modes for other in _OTHER_MODES[mode]):
            continue
        pv, pair, reg = hits[0]
        fv, ln = _pair_line(pv, pair, reg)
        if ln is None:
            continue
        said = _OTHER_SIDE.search(pv.message) is not None
        if reg == sides.ORDER:
            emit(Severity.QUESTION, pv, fv, ln, register=None,
                 message="this changes what the %s %s() does or in what order (register writes, "
                 "barriers, the calls it makes), and the series leaves the %s side alone: %s"
                 % (_MODE_NAME[mode], pair.key.name, "nVHE" if mode == "vhe" else "VHE",
                    "the commit message says why; is the reason architectural?" if said
                    else "does the other configuration not need the same, and why?"))
            continue
        emit(Severity.QUESTION, pv, fv, ln, register=reg,
             message="this changes what the %s %s() writes to %s, and the series leaves the "
             "%s side alone: %s" % (
                 _MODE_NAME[mode], pair.key.name, reg,
                 "nVHE" if mode == "vhe" else "VHE",
                 "the commit message says why; is the reason architectural?" if said else
                 "does the other configuration not need it, and why?"))
    return emit.out


_MODE_NAME = {"vhe": "VHE", "nvhe": "nVHE"}
_OTHER_MODES = {"vhe": ("nvhe",), "nvhe": ("vhe",)}


def _changed_line(pv: PatchView, path: str, number: int) -> Line | None:
    ln = line_at(pv, path, number, "new")
    return ln if ln is not None and ln.kind.value != " " else None


def _value_change_mode(pv: PatchView, pair: Pair, reg: str, mdl: RegisterModel,
                       stores: Stores, moved: list[Pair]) -> str | None:
    """The one side ("vhe" or "nvhe") whose written value of `reg` this pair
    changes, unless only code a single configuration can reach changed
    (protected mode and hVHE are nVHE's alone; nested virtualisation VHE's)."""
    changed: set[Ctx] = set()
    fr = mdl.role(pair.key.name, pair.key.path)
    returns = fr is not None and reg in fr.registers
    for c in contexts_of(pair):
        old = always_written(pair.before, c, reg)
        new = always_written(pair.after, c, reg)
        if old is None and new is None and returns:
            # A function that computes the value for its caller to write.
            old, new = returned(pair.before, c), returned(pair.after, c)
        if old is not None and new is None:
            # Moved to a function of the same name elsewhere (the 5.9 split).
            new = next((always_written(p.after, c, reg) for p in moved
                        if always_written(p.after, c, reg) is not None), None)
        if old is None and new is None:
            # Not written as far as the text shows: what it hands the map's
            # function that writes it (___activate_traps(vcpu, hcr)).
            if _handed(pair.before, c, reg, mdl) != _handed(pair.after, c, reg, mdl):
                changed.add(c)
            continue
        if new is None and not (pair.after is not None and pair.after.complete):
            continue  # not written as far as the bot can follow: not a decided change
        if old is None or new is None or resolve(old, c, stores).differs(
                resolve(new, c, stores)):
            changed.add(c)
    sides = {"vhe" if c.mode == "vhe" else "nvhe" for c in changed}
    if len(sides) != 1 or all(c.mode in ("pkvm", "hvhe") for c in changed):
        return None
    assert pair.after is not None
    writes = [e for e in pair.after.events
              if (e.kind in (Ev.WRITE, Ev.STORE, Ev.RETURN) or (e.kind is Ev.CALL and e.args))
              and (e.register == reg or e.kind is not Ev.WRITE)
              and _changed_line(pv, e.path, e.line) is not None]
    if writes and all(one_side_only(mdl.facts, e.guards) for e in writes):
        return None
    removed = pair.before is not None and any(
        e.kind is Ev.WRITE and e.register == reg and (ln := line_at(pv, e.path, e.line, "old"))
        is not None and ln.removed for e in pair.before.events)
    whole = pair.from_tree or (pair.before is not None and pair.before.function.complete
                               and pair.after.function.complete)
    if not (writes or removed or whole):
        return None  # what the hunks show of the two sides differs, not the code
    return sides.pop()


def _handed(trace: Trace | None, c: Ctx, reg: str, mdl: RegisterModel) -> tuple[Bits, ...]:
    """The arguments of the calls, not followed, to functions the map says
    write `reg`, in order."""
    if trace is None:
        return ()
    return tuple(a for e in trace.events
                 if e.kind is Ev.CALL and c in e.contexts and e.args
                 and any(reg in r.registers for r in mdl.roles(e.name))
                 for a in e.args)


def _pair_line(pv: PatchView, pair: Pair, reg: str) -> tuple[FileView | None, Line | None]:
    assert pair.after is not None
    for e in pair.after.events:
        if e.kind is Ev.WRITE and e.register == reg:
            ln = _changed_line(pv, e.path, e.line)
            if ln is not None:
                return pv.file(e.path), ln
    return pv.file(pair.key.path), pair.anchor


def _el2_test(emit: Emit, pv: PatchView, pair: Pair, mdl: RegisterModel) -> None:
    """A configuration test true at EL2 in both modes, used to choose VHE
    behaviour in code that also runs in the nVHE hyp object."""
    if pair.after is None:
        return
    place = mdl.facts.contexts_of(pair.key.path)
    if not (Ctx.VHE in place and any(c.el == 2 and c.mode != "vhe" for c in place)):
        return  # host-only code: there the test does tell VHE from nVHE
    for e in pair.after.events:
        if e.kind is not Ev.GUARD:
            continue
        for name in (e.name,):
            g = mdl.facts.guard(name)
            if g is None or Ctx.VHE not in g.true_in or not any(
                    c.el == 2 and c.mode != "vhe" for c in g.true_in):
                continue
            ln = line_at(pv, e.path, e.line, "new")
            fv = pv.file(e.path)
            if ln is None or fv is None:
                continue
            guard_ln = _guard_line(fv, ln, name) or ln
            if guard_ln.kind.value == " " and ln.kind.value == " ":
                continue
            emit(Severity.WARNING, pv, fv, guard_ln, register=_guarded_register(pair, e),
                 message="%s() runs at EL2 in both VHE and nVHE hyp code, and %s() is true "
                 "at EL2 in both modes: the test cannot tell them apart; has_vhe() is the VHE "
                 "test." % (pair.key.name, name))
            return


def _guarded_register(pair: Pair, guard: Event) -> str | None:
    """The register the code under a test touches (the first after it)."""
    assert pair.after is not None
    for e in pair.after.events:
        if e.line >= guard.line and e.kind in (Ev.WRITE, Ev.READ) and e.register in WATCHED:
            return e.register
        if e.line >= guard.line and e.kind is Ev.STORE and e.storage and (
                "mdcr" in e.storage or "hcr" in e.storage):
            return "MDCR_EL2" if "mdcr" in e.storage else "HCR_EL2"
    return None


def _guard_line(fv: FileView, ln: Line, name: str) -> Line | None:
    """The line above `ln` in its function that tests `name`."""
    for x in reversed(fv.lines):
        if x.new_side and x.function == ln.function and name in x.code \
                and (x.new_no or 0) <= (ln.new_no or 0):
            return x
    return None


def _register(ln: Line) -> str | None:
    for a in ln.facts.accesses:
        if a.register in M.WATCHED:
            return a.register
    for assign in ln.facts.assigns:
        return assign.register
    return None


def _newly_at_el1(pair: Pair, e: Event) -> bool:
    """The same access ran at EL1 in fewer configurations before the patch."""
    if pair.before is None or not pair.changed:
        return False
    was: set[Ctx] = set()
    for b in pair.before.events:
        if (b.kind, b.register, b.function) == (e.kind, e.register, e.function):
            was |= b.contexts & EL1
    now = e.contexts & EL1
    return bool(now - was) and any(
        (b.kind, b.register, b.function) == (e.kind, e.register, e.function)
        for b in pair.before.events)


def _guarded(sv: SeriesView, pv: PatchView, fv: FileView, ln: Line) -> tuple[bool, bool]:
    """(guarded by a VHE check, whole function seen)."""
    fn = sv.function(pv, fv, ln.function or "")
    texts = [t for n, t in fn.lines if n <= (ln.new_no or 0)] or [ln.text]
    guarded = any(_VHE_GUARD.search(t) for t in texts) or bool(
        ln.function and "vhe" in ln.function)
    return guarded, fn.complete


@rule(id="el2-access", category=Category.EL2_ACCESS, severity=Severity.WARNING,
      summary="EL1 code of the nVHE host reads or writes HCR_EL2/MDCR_EL2 directly")
def el2_access(series: Series, ctx: Context) -> list[Finding]:
    """The nVHE host kernel runs at EL1, where HCR_EL2 and MDCR_EL2 are not
    accessible: a read_sysreg() there is UNDEFINED. Host code gets these
    values with a hyp call (__kvm_get_mdcr_el2) or from what EL2 init
    captured; only code that runs at EL2 (the hyp objects, VHE-only code
    such as nested virtualisation) may access them, and host code may on
    the paths a has_vhe() test leaves to VHE."""
    sv = view(series, ctx)
    emit = Emit(rule="el2-access", category=Category.EL2_ACCESS, sv=sv)
    mdl = ctx.regmodel
    if not isinstance(mdl, RegisterModel):
        return emit.out
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        seen: set[tuple[str, int]] = set()
        for pair in sem.pairs():
            if pair.after is None:
                continue
            for e in pair.after.events:
                if e.kind not in (Ev.READ, Ev.WRITE) or e.register not in WATCHED:
                    continue
                at_el1 = sorted(c for c in e.contexts if c in EL1)
                if not at_el1 or (e.path, e.line) in seen:
                    continue
                ln = changed_line(pv, e, "new")
                fv = pv.file(e.path)
                if ln is None and pair.anchor is not None and _newly_at_el1(pair, e):
                    # The access is old; the test that kept it from EL1 is gone.
                    ln, fv = pair.anchor, pv.file(pair.key.path)
                if ln is None or fv is None:
                    continue
                seen.add((e.path, e.line))
                emit(Severity.WARNING if e.seen else Severity.QUESTION, pv, fv, ln,
                     register=e.register,
                     message="%s() %s %s at EL1 on a %s host, where it cannot be accessed: "
                     "use a hyp call or the value captured at EL2 init%s." % (
                         e.function, "reads" if e.kind is Ev.READ else "writes", e.register,
                         modes(at_el1),
                         "" if e.seen else " (or show the has_vhe() test, which the patch "
                         "does not)"))
    return emit.out


@rule(id="register-width", category=Category.REGISTER_WIDTH, severity=Severity.WARNING,
      summary="an HCR_EL2/MDCR_EL2 value kept in fewer than 64 bits")
def register_width(series: Series, ctx: Context) -> list[Finding]:
    """HCR_EL2 and MDCR_EL2 are 64-bit registers with fields above bit 31
    (E2H, API/APK, ATA in HCR_EL2; HPMFZS, PMEE, EBWE in MDCR_EL2). A u32
    field, variable or return type silently drops them, and the host or
    guest then runs with those bits cleared."""
    sv = view(series, ctx)
    emit = Emit(rule="register-width", category=Category.REGISTER_WIDTH, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        if isinstance(mdl, RegisterModel):
            width.check_defines(emit, pv, mdl)
            sem = semantics(sv, pv, ctx)
            for pair in sem.pairs() if sem is not None else ():
                width.check_pair(emit, pv, pair)
        for fv in pv.files:
            if not fv.path.startswith(("arch/arm64/", "virt/kvm/arm/", "include/kvm/")):
                continue
            before = {(d.name, d.type) for f in pv.files for x in f.changed if x.removed
                      for d in x.facts.decls}
            for ln in fv.changed:
                if not ln.added or any(f.line == ln.anchor and f.file == fv.path
                                       for f in emit.out):
                    continue
                for d in ln.facts.decls:
                    if d.width >= 64:
                        continue
                    existed = (d.name, d.type) in before
                    gm = _GENMASK.search(ln.code)
                    if d.from_value:
                        if gm is None:
                            continue
                        bits = int(gm.group(1)) - int(gm.group(2)) + 1
                        if bits <= d.width:
                            continue
                        emit(Severity.WARNING, pv, fv, ln, register=d.register,
                             message="GENMASK(%s, %s) keeps %d bits of the %s value, but %s is "
                             "a %s: the top %d bit(s) are lost." % (
                                 gm.group(1), gm.group(2), bits, d.register, d.name, d.type,
                                 bits - d.width), existed=existed)
                        continue
                    what = "returns" if d.function else "holds"
                    emit(Severity.WARNING, pv, fv, ln, register=d.register,
                         message="%s %s %s in a %s, but %s is a 64-bit register: use u64." % (
                             d.name, what, d.register, d.type, d.register), existed=existed)
    kconfigsym.check(emit, sv, ctx)
    return emit.out
