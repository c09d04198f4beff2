"""Rule families 10 to 14 and 16: where and when the registers are touched.

VHE and nVHE kept in step, values initialised before the first load, no
EL2 register read from the nVHE host at EL1, per-CPU host copies read with
preemption off, 64-bit storage, and the live register read only while it
holds the guest's value.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, normalize, view
from bot.rules.core import Category, Context, Finding, Severity, Status, rule

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
      summary="the VHE or nVHE save/restore changes alone, without saying why")
def vhe_nvhe(series: Series, ctx: Context) -> list[Finding]:
    """VHE and nVHE switch the same registers through different code
    (hyp/vhe and hyp/nvhe since 5.9). A change to how one of them saves or
    restores HCR_EL2/MDCR_EL2 either applies to the other too, or there is
    an architectural reason it does not; the commit message should say."""
    sv = view(series, ctx)
    emit = Emit(rule="vhe-nvhe", category=Category.VHE_NVHE, sv=sv)
    sides = {"vhe": set(), "nvhe": set()}  # type: dict[str, set[int]]
    for pv in sv.relevant():
        for fv in pv.files:
            if (fv.vhe or fv.nvhe) and any(
                    _touches(ln) and normalize(ln.text) not in pv.moved
                    and M.role(ctx.regmodel, ln.function, fv.path) in _SWITCH_ROLES
                    for ln in fv.changed):
                sides["vhe" if fv.vhe else "nvhe"].add(pv.index)
    for pv in sv.relevant():
        if _OTHER_SIDE.search(pv.message) and re.search(r"(?i)n(on-)?vhe", pv.message):
            continue
        for fv in pv.files:
            if not (fv.vhe or fv.nvhe):
                continue
            mine, other = ("vhe", "nvhe") if fv.vhe else ("nvhe", "vhe")
            if pv.index not in sides[mine] or sides[other]:
                continue
            ln = next((x for x in fv.changed if _touches(x) and M.role(
                ctx.regmodel, x.function, fv.path) in _SWITCH_ROLES), None)
            if ln is None:
                continue
            emit(Severity.QUESTION, pv, fv, ln, register=_register(ln),
                 message="this changes how the %s path switches %s, and the series leaves the "
                 "%s path alone: does the other one not need it, and why?" % (
                     "VHE" if mine == "vhe" else "nVHE", _register(ln) or "it",
                     "nVHE" if mine == "vhe" else "VHE"))
            break
    return emit.out


def _register(ln: Line) -> str | None:
    for a in ln.facts.accesses:
        if a.register in M.WATCHED:
            return a.register
    for assign in ln.facts.assigns:
        return assign.register
    return None


@rule(id="init-order", category=Category.INIT_ORDER, severity=Severity.WARNING,
      summary="vcpu->arch.hcr_el2/mdcr_el2 is no longer computed before the first load")
def init_order(series: Series, ctx: Context) -> list[Finding]:
    """On VHE part of HCR_EL2/MDCR_EL2 is written at vcpu load, not at each
    entry, so vcpu->arch.hcr_el2 and mdcr_el2 (and the per-CPU host copies)
    must hold their final value before the first kvm_arch_vcpu_load. Moving
    their computation later, or dropping it from vcpu init, loads a stale
    or zero value into the register."""
    sv = view(series, ctx)
    emit = Emit(rule="init-order", category=Category.INIT_ORDER, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        added = [(fv, ln, a) for fv in pv.files for ln in fv.changed if ln.added
                 for a in ln.facts.assigns if a.vcpu and a.op == "="]
        added_targets = {a.target for _, _, a in added}
        for fv in pv.files:
            for ln in fv.changed:
                if not ln.removed or fv.deleted:
                    continue
                role = M.role(mdl, ln.function, fv.path)
                if role != "vcpu-init":
                    continue
                for a in ln.facts.assigns:
                    if not a.vcpu or a.op != "=":
                        continue
                    if a.target not in added_targets:
                        emit(Severity.WARNING, pv, fv, ln, register=a.register,
                             message="%s is no longer initialised in %s(): what computes it "
                             "before the first vcpu load writes it to %s?" % (
                                 a.target, ln.function, a.register))
                        continue
                    for fv2, ln2, a2 in added:
                        if a2.target == a.target and M.role(mdl, ln2.function, fv2.path) in (
                                "vcpu-load", "entry", "vcpu-put"):
                            emit(Severity.QUESTION, pv, fv2, ln2, register=a.register,
                                 status=Status.OPEN,
                                 message="%s is now computed in %s() instead of %s(): is that "
                                 "before the first load that writes it to %s?" % (
                                     a.target, ln2.function, ln.function, a.register))
    return emit.out


def _el1_file(fv: FileView) -> bool:
    p = fv.path
    if fv.hyp or not p.endswith(".c"):
        return False
    return p.startswith(("arch/arm64/kvm/", "virt/kvm/arm/", "arch/arm64/kernel/"))


def _guarded(sv: SeriesView, pv: PatchView, fv: FileView, ln: Line) -> tuple[bool, bool]:
    """(guarded by a VHE check, whole function seen)."""
    fn = sv.function(pv, fv, ln.function or "")
    texts = [t for n, t in fn.lines if n <= (ln.new_no or 0)] or [ln.text]
    guarded = any(_VHE_GUARD.search(t) for t in texts) or bool(
        ln.function and "vhe" in ln.function)
    return guarded, fn.complete


@rule(id="el2-access", category=Category.EL2_ACCESS, severity=Severity.WARNING,
      summary="EL1 code of the nVHE host reads HCR_EL2/MDCR_EL2 directly")
def el2_access(series: Series, ctx: Context) -> list[Finding]:
    """The nVHE host kernel runs at EL1, where HCR_EL2 and MDCR_EL2 are not
    accessible: a read_sysreg() there is UNDEFINED. Host code gets these
    values with a hyp call (__kvm_get_mdcr_el2) or from what EL2 init
    captured; only VHE-only code may read them directly."""
    sv = view(series, ctx)
    emit = Emit(rule="el2-access", category=Category.EL2_ACCESS, sv=sv)
    for pv in sv.relevant():
        for fv in pv.files:
            if not _el1_file(fv):
                continue
            for ln in fv.changed:
                if not ln.added:
                    continue
                regs = [a.register for a in ln.facts.accesses if a.register in M.WATCHED]
                if not regs:
                    continue
                guarded, complete = _guarded(sv, pv, fv, ln)
                if guarded:
                    continue
                emit(Severity.WARNING if complete else Severity.QUESTION, pv, fv, ln,
                     register=regs[0],
                     message="%s() runs at EL1 on a nVHE host, where %s cannot be accessed: "
                     "use a hyp call or the value captured at EL2 init%s." % (
                         ln.function, regs[0], "" if complete else
                         " (or show the VHE-only guard, which the patch does not)"))
    return emit.out


@rule(id="preemption", category=Category.PREEMPTION, severity=Severity.QUESTION,
      summary="a per-CPU host copy read without preemption disabled")
def preemption(series: Series, ctx: Context) -> list[Finding]:
    """The host's HCR_EL2/MDCR_EL2 copies are per-CPU. __this_cpu_read()
    from preemptible code can read one CPU's copy and then run on another,
    so the guest gets the wrong host's HPMN. The caller must have
    preemption disabled (vcpu load/put and the run loop do)."""
    sv = view(series, ctx)
    emit = Emit(rule="preemption", category=Category.PREEMPTION, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        for fv in pv.files:
            if fv.hyp or not fv.path.endswith(".c"):
                continue
            for ln in fv.changed:
                if not ln.added or not any(p in ("__this_cpu_read", "this_cpu_ptr")
                                           for p in ln.facts.percpu):
                    continue
                if not _HOST_COPY.search(ln.code):
                    continue
                if M.role(mdl, ln.function, fv.path) in ("vcpu-load", "vcpu-put", "init"):
                    continue
                fn = sv.function(pv, fv, ln.function or "")
                if any(_PREEMPT_OFF.search(t) for n, t in fn.lines if n <= (ln.new_no or 0)):
                    continue
                emit(Severity.QUESTION, pv, fv, ln, register=_register(ln) or (
                    "MDCR_EL2" if "mdcr" in ln.code.lower() else "HCR_EL2"),
                     message="%s() reads a per-CPU host copy: is preemption disabled on every "
                     "path that calls it?" % ln.function)
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
    for pv in sv.relevant():
        for fv in pv.files:
            if not fv.path.startswith(("arch/arm64/", "virt/kvm/arm/", "include/kvm/")):
                continue
            before = {(d.name, d.type) for f in pv.files for x in f.changed if x.removed
                      for d in x.facts.decls}
            for ln in fv.changed:
                if not ln.added:
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
    return emit.out


def _feeds_vcpu(fv: FileView, ln: Line) -> bool:
    """The value read on this line goes into vcpu state (this or the next line)."""
    nxt = [x for x in fv.lines if x.new_side and x.function == ln.function
           and 0 <= (x.new_no or 0) - (ln.new_no or 0) <= 1]
    return any("vcpu" in x.code for x in nxt)


@rule(id="shadow-vs-live", category=Category.SHADOW_VS_LIVE, severity=Severity.WARNING,
      summary="the live HCR_EL2/MDCR_EL2 read where it does not hold the guest's value")
def shadow_vs_live(series: Series, ctx: Context) -> list[Finding]:
    """Between __activate_traps and __deactivate_traps the live HCR_EL2 holds
    the guest's value; anywhere else it holds the host's. Code that wants the
    guest's configuration outside that window must read vcpu->arch.hcr_el2,
    and code inside it that changes the shadow must also write the live
    register if the change is meant to apply before the next entry."""
    sv = view(series, ctx)
    emit = Emit(rule="shadow-vs-live", category=Category.SHADOW_VS_LIVE, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        for fv in pv.files:
            for ln in fv.changed:
                if not ln.added:
                    continue
                reads = [a.register for a in ln.facts.accesses
                         if a.kind == "read" and a.register in M.WATCHED]
                if not reads:
                    continue
                role = M.role(mdl, ln.function, fv.path)
                if role in ("entry", "exit", "early-exit", "panic"):
                    continue
                if role in _OUTSIDE_WINDOW and _feeds_vcpu(fv, ln):
                    emit(Severity.WARNING, pv, fv, ln, register=reads[0],
                         message="%s() runs outside the guest's activate/deactivate window, so "
                         "the live %s holds the host's value here: use vcpu->arch.%s." % (
                             ln.function, reads[0], reads[0].lower()))
                elif not fv.hyp and "vcpu" in ln.code and _guarded(sv, pv, fv, ln)[0]:
                    emit(Severity.QUESTION, pv, fv, ln, register=reads[0],
                         message="this reads the live %s from host code: is the guest's value "
                         "loaded at this point, or is vcpu->arch.%s meant?" % (
                             reads[0], reads[0].lower()))
    return emit.out
