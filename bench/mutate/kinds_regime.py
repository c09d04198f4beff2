"""Kinds f (regime changes synchronised) and g (TLB-switch symmetry), and
their neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    AT_C,
    EL2_SETUP_H,
    NVHE_DEBUG_SR,
    NVHE_MEM_PROTECT,
    NVHE_SWITCH,
    NVHE_TLB,
    VHE_TLB,
    Change,
    Kernel,
)

VGIC_SR = "arch/arm64/kvm/hyp/vgic-v3-sr.c"
SYS_REGS = "arch/arm64/kvm/sys_regs.c"
HYP_INIT = "arch/arm64/kvm/hyp/nvhe/hyp-init.S"
ALT_ISB = "\tasm(ALTERNATIVE(\"isb\", \"nop\", ARM64_WORKAROUND_SPECULATIVE_AT));\n"
# -- f: synchronisation ---------------------------------------------------------

_ISB_DROPS = (
    (VHE_TLB, "enter_vmid_context", "\twrite_sysreg(val, hcr_el2);\n\tisb();\n",
     "\twrite_sysreg(val, hcr_el2);\n",
     "KVM: arm64: VHE: Drop the isb() from enter_vmid_context()",
     "The TLBI that follows is ordered after the HCR_EL2 write anyway."),
    (VHE_TLB, "exit_vmid_context", "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n\tisb();\n",
     "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n",
     "KVM: arm64: VHE: Avoid back-to-back synchronisation in exit_vmid_context()",
     "__load_stage2() right below synchronises the context anyway."),
    (AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(val, hcr_el2);\n\t\tisb();\n",
     "\t\twrite_sysreg(val, hcr_el2);\n",
     "KVM: arm64: nv: Trim the barriers in __kvm_at_s1e2()",
     "The AT instruction is context-synchronising for its own translation."),
    (AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(hcr, hcr_el2);\n\t\tisb();\n",
     "\t\twrite_sysreg(hcr, hcr_el2);\n",
     "KVM: arm64: nv: Don't synchronise after restoring HCR_EL2 in AT S1E2",
     "The exception return to the guest synchronises the context."),
    (AT_C, "__kvm_at_s1e01_fast",
     "\twrite_sysreg((config.hcr & ~HCR_TGE) | HCR_VM,\thcr_el2);\n\tisb();\n",
     "\twrite_sysreg((config.hcr & ~HCR_TGE) | HCR_VM,\thcr_el2);\n",
     "KVM: arm64: nv: Remove a redundant isb() from the fast AT path",
     "__load_stage2() above already provides the synchronisation we need."),
    (NVHE_SWITCH, "__activate_traps",
     "\t\tisb();\n\t\t/*\n\t\t * At this stage, and thanks",
     "\t\t/*\n\t\t * At this stage, and thanks",
     "KVM: arm64: nVHE: Drop an isb() from the speculative AT workaround",
     "The SCTLR_EL1 write is followed by an isb() already."),
    (NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\n" + ALT_ISB, "",
     "KVM: arm64: pkvm: Simplify __pkvm_prot_finalize()",
     "The TLB invalidation below is followed by dsb() and isb()."),
    (NVHE_TLB, "enter_vmid_context", "\n" + ALT_ISB, "",
     "KVM: arm64: nVHE: Drop the ISB juggling from enter_vmid_context()",
     "The callers' dsb() before the TLBI orders everything."),
    (VGIC_SR, "__vgic_v3_get_gic_config",
     "\tsysreg_clear_set(hcr_el2, 0, HCR_AMO | HCR_FMO | HCR_IMO);\n\tisb();\n",
     "\tsysreg_clear_set(hcr_el2, 0, HCR_AMO | HCR_FMO | HCR_IMO);\n",
     "KVM: arm64: vgic-v3: One isb() is enough when probing ICC_SRE_EL1",
     "The isb() after the ICC_SRE_EL1 write covers both writes."),
    (EL2_SETUP_H, ".macro init_el2_hcr",
     "\torr\tx0, x0, #HCR_E2H\n\tmsr\thcr_el2, x0\n\tisb\n",
     "\torr\tx0, x0, #HCR_E2H\n\tmsr\thcr_el2, x0\n",
     "arm64: el2_setup: Drop an isb from init_el2_hcr",
     "The macro's callers synchronise before using EL2 registers."),
)


@generator("f", True, "isb-dropped", """The isb() after a write that changes TGE,
E2H, VM or the stage-2 context (or after the IMO/FMO/AMO override the next
ICC_SRE_EL1 write relies on) removed: the TLBI, AT or access that follows
may run in the old regime.""")
def _isb_dropped(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _ISB_DROPS:
        c = Change(k, function=func.split()[-1], subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c


@generator("f", True, "isb-made-conditional", """An unconditional isb() after a
TGE or VM change replaced by an errata alternative (or moved past the
operation that depends on it, or replaced by a dsb()): on CPUs without the
erratum nothing synchronises the regime change.""")
def _isb_conditional(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: VHE: Use the same barrier as nVHE in enter_vmid_context()")
    c.sub(VHE_TLB, "enter_vmid_context", "\twrite_sysreg(val, hcr_el2);\n\tisb();\n",
          "\twrite_sysreg(val, hcr_el2);\n" + ALT_ISB)
    c.message = para("""nVHE only issues an isb() here when the speculative AT
        workaround does not already provide one. Do the same on VHE.""")
    yield c
    c = Change(k, function="__kvm_at_s1e2",
               subject="KVM: arm64: nv: Synchronise once after the AT")
    c.sub(AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(val, hcr_el2);\n\t\tisb();\n",
          "\t\twrite_sysreg(val, hcr_el2);\n")
    c.sub(AT_C, "__kvm_at_s1e2", "\t\tisb();\n\n\t\tif (!fail)",
          "\t\tisb();\n\t\tisb();\n\n\t\tif (!fail)", anchor=False)
    c.message = para("Collect the barriers after the translation.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Use a dsb() when restoring HCR_EL2 after TLBI")
    c.sub(VHE_TLB, "exit_vmid_context", "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n\tisb();\n",
          "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n\tdsb(nsh);\n")
    c.message = para("""What matters after the invalidation is that it has
        completed before we go back to the host.""")
    yield c


@generator("f", True, "irqs-enabled-tge-clear", """TGE cleared (or the AT regime
switched) with interrupts enabled: the irqsave is dropped, moved after the
HCR_EL2 write, or the interrupt restore moved before the host HCR_EL2 is
back; an interrupt taken then is handled in the guest's regime.""")
def _irqs(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: VHE: Mask interrupts only around the TLB switch")
    c.move_line(VHE_TLB, "enter_vmid_context", "\tlocal_irq_save(cxt->flags);\n",
                "\twrite_sysreg(val, hcr_el2);\n")
    c.message = para("""Only the stage-2 switch and the TLBI need interrupts
        masked; the errata handling above does not.""")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Unmask interrupts as early as possible")
    # After the comment's last line (the line where the text given starts),
    # before the host's HCR_EL2 is written back.
    c.move_line(VHE_TLB, "exit_vmid_context", "\tlocal_irq_restore(cxt->flags);\n",
                "\t */\n\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n")
    c.message = para("Keep the interrupt latency of TLB maintenance down.")
    yield c
    for func, old, new in (
            ("__kvm_at_s1e2", "\tscoped_guard(write_lock_irqsave, &vcpu->kvm->mmu_lock) {\n",
             "\tscoped_guard(write_lock, &vcpu->kvm->mmu_lock) {\n"),
            ("__kvm_at_s1e01_fast", "\tguard(write_lock_irqsave)(&vcpu->kvm->mmu_lock);\n",
             "\tguard(write_lock)(&vcpu->kvm->mmu_lock);\n")):
        c = Change(k, function=func,
                   subject="KVM: arm64: nv: Don't disable interrupts around AT emulation")
        c.sub(AT_C, func, old, new)
        c.message = para("""The mmu_lock is never taken from interrupt context;
            disabling interrupts here is unnecessary.""")
        yield c


@generator("f", True, "buffer-handover-unsynchronised", """The host's SPE or trace
buffer handed to another regime (MDCR_EL2.E2PB/E2TB at __activate_traps())
before sampling is stopped and drained, or with the drain's synchronisation
(isb, psb/tsb csync, the dsb before the switch) removed.""")
def _buffers(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="__kvm_vcpu_run",
               subject="KVM: arm64: nVHE: Save the host buffers after installing the traps")
    c.move_line(NVHE_SWITCH, "__kvm_vcpu_run", "\t__debug_save_host_buffers_nvhe(vcpu);\n",
                "\t__activate_traps(vcpu);\n")
    c.message = para("""Group the debug state handling with the rest of the
        guest context setup.""")
    yield c
    for func, old, new, subject in (
            ("__debug_save_spe", "\twrite_sysreg_el1(0, SYS_PMSCR);\n\tisb();\n",
             "\twrite_sysreg_el1(0, SYS_PMSCR);\n",
             "KVM: arm64: nVHE: Drop the isb() before psb csync"),
            ("__debug_save_spe", "\n\t/* Now drain all buffered data to memory */\n"
             "\tpsb_csync();\n", "",
             "KVM: arm64: nVHE: Don't drain SPE on entry"),
            ("__debug_save_trace", "\t/* Drain the trace buffer to memory */\n\ttsb_csync();\n",
             "", "KVM: arm64: nVHE: Don't drain the trace buffer on entry")):
        c = Change(k, function=func, subject=subject)
        c.sub(NVHE_DEBUG_SR, func, old, new)
        c.message = para("""The dsb(nsh) in __kvm_vcpu_run() already makes sure the
            buffer is idle before the world switch.""")
        yield c
    c = Change(k, function="__kvm_vcpu_run",
               subject="KVM: arm64: nVHE: Only one dsb(nsh) per world switch")
    c.sub(NVHE_SWITCH, "__kvm_vcpu_run", "\t * rule R_LFHQG and subsequent information "
          "statements.\n\t */\n\tdsb(nsh);\n",
          "\t * rule R_LFHQG and subsequent information statements.\n\t */\n")
    c.message = para("The exit path needs its barrier; the entry path is covered by the "
                     "exception entry.")
    yield c


# -- neighbours of f ----------------------------------------------------------------


@generator("f", False, "isb-kept-between", """The isb() moves (or is spelled
differently) but still sits, unconditionally, between the regime write and
what depends on it.""")
def _isb_kept(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="__kvm_at_s1e2",
               subject="KVM: arm64: nv: Initialise par before switching regime")
    c.sub(AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(val, hcr_el2);\n\t\tisb();\n\n"
          "\t\tpar = SYS_PAR_EL1_F;\n",
          "\t\twrite_sysreg(val, hcr_el2);\n\n\t\tpar = SYS_PAR_EL1_F;\n\t\tisb();\n")
    c.message = hedged(rng, "Keep the barrier next to the AT it protects.")
    yield c
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: VHE: Use sysreg_clear_set() for TGE")
    c.sub(VHE_TLB, "enter_vmid_context",
          "\tval = read_sysreg(hcr_el2);\n\tval &= ~HCR_TGE;\n\twrite_sysreg(val, hcr_el2);\n"
          "\tisb();\n", "\tsysreg_clear_set(hcr_el2, HCR_TGE, 0);\n\tisb();\n")
    c.message = hedged(rng, "sysreg_clear_set() says what we do.", always=True)
    yield c
    c = Change(k, function="__vgic_v3_get_gic_config",
               subject="KVM: arm64: vgic-v3: Comment the override dance")
    c.sub(VGIC_SR, "__vgic_v3_get_gic_config",
          "\tsysreg_clear_set(hcr_el2, 0, HCR_AMO | HCR_FMO | HCR_IMO);\n\tisb();\n",
          "\tsysreg_clear_set(hcr_el2, 0, HCR_AMO | HCR_FMO | HCR_IMO);\n"
          "\t/* The overrides must be visible to the ICC_SRE_EL1 write below */\n\tisb();\n")
    c.message = hedged(rng, "Say why the isb() is there.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Spell the isb() in exit_vmid_context() as an asm")
    c.sub(VHE_TLB, "exit_vmid_context", "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n\tisb();\n",
          "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n"
          "\tasm volatile(\"isb\" : : : \"memory\");\n")
    c.message = hedged(rng, "Match the style of the surrounding inline assembly.")
    yield c


# -- g: TLB switch symmetry ---------------------------------------------------------

_G_DROPS = (
    (VHE_TLB, "exit_vmid_context", "\tlocal_irq_restore(cxt->flags);\n", "enter_vmid_context",
     "\tlocal_irq_save(cxt->flags);", "KVM: arm64: VHE: Let callers restore interrupts"),
    (VHE_TLB, "exit_vmid_context", "\t\twrite_sysreg_el1(cxt->tcr, SYS_TCR);\n",
     "enter_vmid_context", "\t\twrite_sysreg_el1(val, SYS_TCR);",
     "KVM: arm64: VHE: Leave TCR_EL1 alone when leaving the VMID context"),
    (VHE_TLB, "exit_vmid_context", "\t\twrite_sysreg_el1(cxt->sctlr, SYS_SCTLR);\n",
     "enter_vmid_context", "\t\twrite_sysreg_el1(val, SYS_SCTLR);",
     "KVM: arm64: VHE: SCTLR_EL1 needs no restore after TLB maintenance"),
    (VHE_TLB, "exit_vmid_context",
     "\t/* ... and the stage-2 MMU context that we switched away from */\n"
     "\tif (cxt->mmu)\n\t\t__load_stage2(cxt->mmu, cxt->mmu->arch);\n\n",
     "enter_vmid_context", "\t__load_stage2(mmu, mmu->arch);",
     "KVM: arm64: VHE: Don't reload the previous stage-2 after TLBI"),
    (NVHE_TLB, "exit_vmid_context", "\n\t\twrite_sysreg_el1(cxt->tcr, SYS_TCR);\n",
     "enter_vmid_context", "\t\twrite_sysreg_el1(val, SYS_TCR);",
     "KVM: arm64: nVHE: Don't restore TCR_EL1 after TLB maintenance"),
    (NVHE_TLB, "exit_vmid_context",
     "\t\tif (!(cxt->sctlr & SCTLR_ELx_M)) {\n\t\t\twrite_sysreg_el1(cxt->sctlr, SYS_SCTLR);\n"
     "\t\t\tisb();\n\t\t}\n\n", "enter_vmid_context", "\t\t\t\twrite_sysreg_el1(val, SYS_SCTLR);",
     "KVM: arm64: nVHE: Leave SCTLR_EL1.M set after TLB maintenance"),
    (NVHE_TLB, "exit_vmid_context",
     "\tif (vcpu)\n\t\t__load_stage2(mmu, kern_hyp_va(mmu->arch));\n\telse\n"
     "\t\t__load_host_stage2();\n\n", "enter_vmid_context", "\t\t__load_host_stage2();",
     "KVM: arm64: nVHE: Skip the stage-2 reload after TLBI"),
)


@generator("g", True, "switch-back-drops-restore", """What enter_vmid_context()
changes (interrupt mask, TCR_EL1.EPDx and SCTLR_EL1.M under the speculative
AT erratum, the stage-2 context) is no longer put back by
exit_vmid_context().""")
def _g_drop(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, other, other_line, subject in _G_DROPS:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, "\n" if old.startswith("\n") else "")
        c.effect(path, other, other_line)
        c.message = para("""The callers of the TLB maintenance helpers run with the
            state they need already; nothing to undo here.""")
        yield c


@generator("g", True, "switch-back-restores-wrong-thing", """The two helpers stop
matching: the value saved is the modified one, the restore happens on a
condition the change did not have, or the restore runs when enter changed
nothing (early returns), clobbering state enter never touched.""")
def _g_mismatch(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, reg, field in ((VHE_TLB, "TCR", "tcr"), (NVHE_TLB, "TCR", "tcr")):
        c = Change(k, function="enter_vmid_context",
                   subject="KVM: arm64: Save the %s_EL1 value we install" % reg)
        c.sub(path, "enter_vmid_context", "\t\tval = cxt->%s = read_sysreg_el1(SYS_%s);\n"
              "\t\tval |= TCR_EPD1_MASK | TCR_EPD0_MASK;\n" % (field, reg),
              "\t\tval = read_sysreg_el1(SYS_%s);\n\t\tval |= TCR_EPD1_MASK | TCR_EPD0_MASK;\n"
              "\t\tcxt->%s = val;\n" % (reg, field))
        c.effect(path, "exit_vmid_context", "write_sysreg_el1(cxt->tcr, SYS_TCR);")
        c.message = para("Keep the value we wrote around, it is what we need to check.")
        yield c
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: VHE: Save SCTLR_EL1 after setting M")
    c.sub(VHE_TLB, "enter_vmid_context", "\t\tval = cxt->sctlr = read_sysreg_el1(SYS_SCTLR);\n"
          "\t\tval |= SCTLR_ELx_M;\n",
          "\t\tval = read_sysreg_el1(SYS_SCTLR);\n\t\tval |= SCTLR_ELx_M;\n\t\tcxt->sctlr = val;\n")
    c.effect(VHE_TLB, "exit_vmid_context", "write_sysreg_el1(cxt->sctlr, SYS_SCTLR);")
    c.message = para("Record the state the TLB maintenance runs with.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Only restore the EL1 context if we switched stage-2")
    c.sub(VHE_TLB, "exit_vmid_context",
          "\tif (cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n",
          "\tif (cxt->mmu && cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n")
    c.effect(VHE_TLB, "enter_vmid_context",
             "\tif (cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {")
    c.message = para("Without a stage-2 switch there is no EL1 context to restore.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: nVHE: Always restore SCTLR_EL1 after TLB maintenance")
    c.sub(NVHE_TLB, "exit_vmid_context",
          "\t\tif (!(cxt->sctlr & SCTLR_ELx_M)) {\n\t\t\twrite_sysreg_el1(cxt->sctlr, SYS_SCTLR);\n"
          "\t\t\tisb();\n\t\t}\n",
          "\t\twrite_sysreg_el1(cxt->sctlr, SYS_SCTLR);\n\t\tisb();\n")
    c.effect(NVHE_TLB, "enter_vmid_context", "\t\t\tcxt->sctlr = SCTLR_ELx_M;")
    c.message = para("Make the restore unconditional, it is simpler to reason about.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: nVHE: Drop the early return from exit_vmid_context()")
    c.sub(NVHE_TLB, "exit_vmid_context", "\tif (!mmu)\n\t\treturn;\n\n", "")
    c.effect(NVHE_TLB, "enter_vmid_context", "\t\tif (mmu == host_s2_mmu)")
    c.message = para("exit_vmid_context() copes with every context now.")
    yield c
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: nVHE: Set the EPD bits for every TLB invalidation")
    c.sub(NVHE_TLB, "enter_vmid_context",
          "\tif (cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n\t\tu64 val;\n",
          "\t{\n\t\tu64 val;\n")
    c.effect(NVHE_TLB, "exit_vmid_context",
             "\tif (cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {")
    c.message = para("""Stopping stage-1 walks during the invalidation is good
        hygiene on every CPU, not only the affected ones.""")
    yield c


@generator("g", True, "switch-state-not-saved", """enter_vmid_context() stops
saving what exit_vmid_context() puts back (the interrupt state, SCTLR_EL1
before M is set, cxt->mmu on the early-return paths), or exit restores
something enter did not change (interrupts forced on, TCR only with SCTLR,
an exit without an enter).""")
def _g_unsaved(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: VHE: Use local_irq_disable() for TLB maintenance")
    c.sub(VHE_TLB, "enter_vmid_context", "\tlocal_irq_save(cxt->flags);\n",
          "\tlocal_irq_disable();\n")
    c.effect(VHE_TLB, "exit_vmid_context", "\tlocal_irq_restore(cxt->flags);")
    c.message = para("The TLB maintenance is always called with interrupts enabled.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Re-enable interrupts after TLB maintenance")
    c.sub(VHE_TLB, "exit_vmid_context", "\tlocal_irq_restore(cxt->flags);\n",
          "\tlocal_irq_enable();\n")
    c.effect(VHE_TLB, "enter_vmid_context", "\tlocal_irq_save(cxt->flags);")
    c.message = para("Callers always have interrupts enabled.")
    yield c
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: nVHE: Record the SCTLR_EL1 we run the TLBI with")
    c.sub(NVHE_TLB, "enter_vmid_context",
          "\t\t\tval = cxt->sctlr = read_sysreg_el1(SYS_SCTLR);\n"
          "\t\t\tif (!(val & SCTLR_ELx_M)) {\n\t\t\t\tval |= SCTLR_ELx_M;\n"
          "\t\t\t\twrite_sysreg_el1(val, SYS_SCTLR);\n\t\t\t\tisb();\n\t\t\t}\n",
          "\t\t\tval = read_sysreg_el1(SYS_SCTLR);\n"
          "\t\t\tif (!(val & SCTLR_ELx_M)) {\n\t\t\t\tval |= SCTLR_ELx_M;\n"
          "\t\t\t\twrite_sysreg_el1(val, SYS_SCTLR);\n\t\t\t\tisb();\n\t\t\t}\n"
          "\t\t\tcxt->sctlr = val;\n")
    c.effect(NVHE_TLB, "exit_vmid_context", "\t\tif (!(cxt->sctlr & SCTLR_ELx_M)) {")
    c.message = para("Save the state the invalidation actually ran with.")
    yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: nVHE: Restore TCR_EL1 together with SCTLR_EL1")
    c.sub(NVHE_TLB, "exit_vmid_context",
          "\t\t\twrite_sysreg_el1(cxt->sctlr, SYS_SCTLR);\n\t\t\tisb();\n\t\t}\n\n"
          "\t\twrite_sysreg_el1(cxt->tcr, SYS_TCR);\n",
          "\t\t\twrite_sysreg_el1(cxt->sctlr, SYS_SCTLR);\n\t\t\tisb();\n"
          "\t\t\twrite_sysreg_el1(cxt->tcr, SYS_TCR);\n\t\t}\n")
    c.effect(NVHE_TLB, "enter_vmid_context", "\t\twrite_sysreg_el1(val, SYS_TCR);")
    c.message = para("Both registers belong to the same workaround; restore them together.")
    yield c
    c = Change(k, function="__kvm_tlbi_s1e2",
               subject="KVM: arm64: VHE: Always leave the VMID context after an EL2 TLBI")
    c.sub(VHE_TLB, "__kvm_tlbi_s1e2", "\tif (mmu)\n\t\texit_vmid_context(&cxt);\n",
          "\texit_vmid_context(&cxt);\n")
    c.effect(VHE_TLB, "__kvm_tlbi_s1e2", "\t\tenter_vmid_context(mmu, &cxt);")
    c.message = para("Make sure the host's HCR_EL2 is back whatever happened.")
    yield c
    c = Change(k, function="enter_vmid_context",
               subject="KVM: arm64: nVHE: Only reset cxt->mmu when switching contexts")
    c.delete_line(NVHE_TLB, "enter_vmid_context", "\tcxt->mmu = NULL;\n")
    c.insert_before(NVHE_TLB, "enter_vmid_context",
                    "\tif (cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n",
                    "\tcxt->mmu = NULL;\n\n", anchor=False)
    c.effect(NVHE_TLB, "exit_vmid_context", "\tif (!mmu)")
    c.message = para("There is nothing to record when we return early.")
    yield c


@generator("g", False, "switch-changed-symmetrically", """Both helpers changed
together with the same meaning: the saved fields renamed on both sides, or
the erratum handling moved into a pair of helpers called at the same
places.""")
def _g_symmetric(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path in (VHE_TLB, NVHE_TLB):
        c = Change(k, function="enter_vmid_context",
                   subject="KVM: arm64: Rename the saved EL1 registers in tlb_inv_context")
        c.sub_all(path, None, "cxt->tcr", "cxt->saved_tcr")
        c.sub_all(path, None, "cxt->sctlr", "cxt->saved_sctlr")
        c.sub(path, None, "\tu64\t\t\ttcr;\n\tu64\t\t\tsctlr;\n",
              "\tu64\t\t\tsaved_tcr;\n\tu64\t\t\tsaved_sctlr;\n")
        c.message = hedged(rng, "Make it obvious which fields are saved copies.",
                           always=True)
        yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Name the interrupt state in tlb_inv_context")
    c.sub_all(VHE_TLB, None, "cxt->flags", "cxt->irq_flags")
    c.sub(VHE_TLB, None, "\tunsigned long\t\tflags;\n", "\tunsigned long\t\tirq_flags;\n")
    c.message = hedged(rng, "flags is too generic a name.")
    yield c
