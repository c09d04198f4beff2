"""Kinds l (EL2 access from the nVHE host) and m (per-CPU data and
preemption), and their neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    ARM_C,
    AT_C,
    DEBUG_C,
    KVM_EMULATE_H,
    NVHE_DEBUG_SR,
    NVHE_MEM_PROTECT,
    VHE_DEBUG_SR,
    VHE_SWITCH,
    Change,
    Kernel,
)

GUEST_C = "arch/arm64/kvm/guest.c"
SYS_REGS = "arch/arm64/kvm/sys_regs.c"
PMU_C = "arch/arm64/kvm/pmu.c"
SYSREG_SR_H = "arch/arm64/kvm/hyp/include/hyp/sysreg-sr.h"
# -- l: EL2 registers from EL1 on an nVHE host -------------------------------------

_EL1_ACCESS = (
    (DEBUG_C, "kvm_arm_init_debug",
     "\t__this_cpu_write(mdcr_el2, kvm_call_hyp_ret(__kvm_get_mdcr_el2));\n",
     "\t__this_cpu_write(mdcr_el2, read_sysreg(mdcr_el2));\n",
     "KVM: arm64: Read the boot MDCR_EL2 directly",
     "A hypercall just to read a register is overkill."),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2",
     "\tvcpu->arch.mdcr_el2 = __this_cpu_read(mdcr_el2) & MDCR_EL2_HPMN_MASK;\n",
     "\tvcpu->arch.mdcr_el2 = read_sysreg(mdcr_el2) & MDCR_EL2_HPMN_MASK;\n",
     "KVM: arm64: Take HPMN from the current MDCR_EL2",
     "The per-CPU copy can be stale after a CPU comes back from suspend."),
    (DEBUG_C, "kvm_arm_setup_debug",
     "\tif (has_vhe() && orig_mdcr_el2 != vcpu->arch.mdcr_el2)\n",
     "\tif (orig_mdcr_el2 != vcpu->arch.mdcr_el2)\n",
     "KVM: arm64: Write MDCR_EL2 changes as soon as they happen",
     "Don't wait for the next world switch to apply the new traps."),
    (ARM_C, "cpu_prepare_hyp_mode", "\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n",
     "\t\tparams->hcr_el2 = read_sysreg(hcr_el2) | HCR_HOST_NVHE_FLAGS;\n",
     "KVM: arm64: Keep the HCR_EL2 bits firmware set",
     "Some firmware sets HCR_EL2 bits the host relies on; keep them."),
    (ARM_C, "kvm_arch_vcpu_load", "\tif (has_vhe())\n\t\tkvm_vcpu_load_vhe(vcpu);\n",
     "\tif (read_sysreg(hcr_el2) & HCR_E2H)\n\t\tkvm_vcpu_load_vhe(vcpu);\n",
     "KVM: arm64: Decide VHE from HCR_EL2.E2H at load",
     "E2H is what makes the VHE load path necessary; test it."),
    (ARM_C, "kvm_arch_vcpu_put", "\tif (has_vhe())\n\t\tkvm_vcpu_put_vhe(vcpu);\n",
     "\tif (read_sysreg(hcr_el2) & HCR_E2H)\n\t\tkvm_vcpu_put_vhe(vcpu);\n",
     "KVM: arm64: Decide VHE from HCR_EL2.E2H at put",
     "E2H is what makes the VHE put path necessary; test it."),
    (SYS_REGS, "vcpu_set_hcr", "\tif (has_vhe() || has_hvhe())\n",
     "\tif (read_sysreg(hcr_el2) & HCR_E2H)\n",
     "KVM: arm64: Give guests E2H when the host runs with it",
     "Test the bit itself rather than two capabilities."),
    (DEBUG_C, "kvm_arch_vcpu_load_debug_state_flags",
     "\tif (cpuid_feature_extract_unsigned_field(dfr0, ID_AA64DFR0_EL1_PMSVer_SHIFT) &&\n",
     "\tif (cpuid_feature_extract_unsigned_field(dfr0, ID_AA64DFR0_EL1_PMSVer_SHIFT) &&\n"
     "\t    (read_sysreg(mdcr_el2) & (MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT)) &&\n",
     "KVM: arm64: Only save SPE state when the host owns the buffer",
     "If the profiling buffer is not owned by EL1&0 there is nothing to save."),
    (DEBUG_C, "kvm_arm_clear_debug", "\ttrace_kvm_arm_clear_debug(vcpu->guest_debug);\n",
     "\ttrace_kvm_arm_clear_debug(vcpu->guest_debug);\n\n"
     "\tif (vcpu->guest_debug)\n\t\tsysreg_clear_set(mdcr_el2, MDCR_EL2_TDE, 0);\n",
     "KVM: arm64: Stop routing debug exceptions to EL2 after a debug exit",
     "The host's own debug exceptions should not go to EL2."),
    (KVM_EMULATE_H, None, "\treturn vcpu_has_feature(vcpu, KVM_ARM_VCPU_EL1_32BIT);\n",
     "\treturn !(read_sysreg(hcr_el2) & HCR_RW);\n",
     "KVM: arm64: Use HCR_EL2.RW to detect 32bit EL1",
     "Match the hypervisor's definition."),
    (ARM_C, "cpu_hyp_init_features", "\tkvm_arm_init_debug();\n",
     "\tkvm_arm_init_debug();\n\tWARN_ON(read_sysreg(mdcr_el2) & MDCR_EL2_TDE);\n",
     "KVM: arm64: Catch firmware that routes debug exceptions to EL2",
     "A TDE left set by firmware breaks host debugging."),
    (PMU_C, "kvm_vcpu_pmu_restore_guest", "\tif (!kvm_arm_support_pmu_v3() || !has_vhe())\n"
     "\t\treturn;\n",
     "\tif (!kvm_arm_support_pmu_v3() || !(read_sysreg(mdcr_el2) & MDCR_EL2_HPME))\n"
     "\t\treturn;\n",
     "KVM: arm64: Only switch EL0 counting when EL2 counters are enabled",
     "Without HPME the host does not count at EL2 and there is nothing to switch."),
    (ARM_C, "kvm_arch_vcpu_load", "\tvcpu_set_pauth_traps(vcpu);\n",
     "\tvcpu_set_pauth_traps(vcpu);\n\tif (!has_vhe())\n"
     "\t\tsysreg_clear_set(hcr_el2, 0, HCR_API | HCR_APK);\n",
     "KVM: arm64: nVHE: Make sure the host keeps pointer authentication",
     "The nVHE host must never run with API/APK clear."),
    (ARM_C, "kvm_arch_vcpu_put", "\tkvm_arch_vcpu_put_debug_state_flags(vcpu);\n",
     "\tkvm_arch_vcpu_put_debug_state_flags(vcpu);\n\tif (!has_vhe())\n"
     "\t\twrite_sysreg(HCR_HOST_NVHE_FLAGS, hcr_el2);\n",
     "KVM: arm64: nVHE: Put the host HCR_EL2 back at vcpu put",
     "Belt and braces: the host must not run with a guest HCR_EL2 after put."),
    (DEBUG_C, "kvm_arm_vcpu_init_debug", "\tkvm_arm_setup_mdcr_el2(vcpu);\n",
     "\tkvm_arm_setup_mdcr_el2(vcpu);\n"
     "\tvcpu->arch.mdcr_el2 |= read_sysreg(mdcr_el2) & MDCR_EL2_HPMD;\n",
     "KVM: arm64: Keep EL2 event counting disabled for guests if firmware did",
     "Respect the firmware's choice of HPMD."),
    (SYS_REGS, "vcpu_set_hcr", "\tif (kvm_has_mte(vcpu->kvm))\n",
     "\tvcpu->arch.hcr_el2 |= read_sysreg(hcr_el2) & (HCR_API | HCR_APK);\n\n"
     "\tif (kvm_has_mte(vcpu->kvm))\n",
     "KVM: arm64: Inherit the host's pointer authentication traps",
     "Guests should not get more than the host has."),
    (ARM_C, "cpu_hyp_init_context", "\tif (!is_kernel_in_hyp_mode())\n\t\tcpu_init_hyp_mode();\n",
     "\tif (!is_kernel_in_hyp_mode()) {\n\t\tWARN_ON(read_sysreg(hcr_el2) & HCR_TGE);\n"
     "\t\tcpu_init_hyp_mode();\n\t}\n",
     "KVM: arm64: nVHE: Check that the stub left TGE clear",
     "Catch broken firmware early."),
    (DEBUG_C, "kvm_arch_vcpu_put_debug_state_flags",
     "\tvcpu_clear_flag(vcpu, DEBUG_STATE_SAVE_TRBE);\n",
     "\tvcpu_clear_flag(vcpu, DEBUG_STATE_SAVE_TRBE);\n\n\tif (!has_vhe())\n"
     "\t\twrite_sysreg(__this_cpu_read(mdcr_el2), mdcr_el2);\n",
     "KVM: arm64: nVHE: Restore the boot MDCR_EL2 at put",
     "Leave the debug configuration as firmware set it when the vcpu goes."),
)


@generator("l", True, "el2-register-from-el1", """Host kernel code (arm.c, debug.c,
sys_regs.c, pmu.c, the host half of kvm_emulate.h) now reads or writes
HCR_EL2 or MDCR_EL2 directly; on an nVHE host that code runs at EL1, where
the access is UNDEFINED (it needs a hypercall or a value captured at EL2
init).""")
def _el1_access(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _EL1_ACCESS:
        c = Change(k, function=func or "vcpu_el1_is_32bit", subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c


@generator("l", True, "el2-read-for-vcpu-state", """Host code answering a question
about the vcpu (runnable, pending SError) reads the live HCR_EL2: at EL1 on
nVHE that is UNDEFINED, and on VHE it is the host's value, not the vcpu's.""",
           extra=("shadow-vs-live",))
def _el1_vcpu(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_arch_vcpu_runnable",
               subject="KVM: arm64: Check the virtual interrupt lines in HCR_EL2")
    c.sub(ARM_C, "kvm_arch_vcpu_runnable", "\tbool irq_lines = *vcpu_hcr(v) & (HCR_VI | HCR_VF);\n",
          "\tbool irq_lines = read_sysreg(hcr_el2) & (HCR_VI | HCR_VF);\n")
    c.message = para("Use the register, it is the source of truth.")
    yield c
    c = Change(k, function="__kvm_arm_vcpu_get_events",
               subject="KVM: arm64: Report the pending SError from HCR_EL2")
    c.sub(GUEST_C, "__kvm_arm_vcpu_get_events",
          "\tevents->exception.serror_pending = !!(vcpu->arch.hcr_el2 & HCR_VSE);\n",
          "\tevents->exception.serror_pending = !!(read_sysreg(hcr_el2) & HCR_VSE);\n")
    c.message = para("HCR_EL2.VSE is cleared by hardware; the register is exact.")
    yield c


@generator("l", False, "el2-access-at-el2", """The same HCR_EL2/MDCR_EL2 accesses,
reorganised, in code that only runs at EL2: the nVHE and VHE hyp objects,
pKVM, VHE-only nested virt's AT emulation, and a has_vhe()-guarded host
write.""")
def _el2_only(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path in (NVHE_DEBUG_SR, VHE_DEBUG_SR):
        c = Change(k, function="__kvm_get_mdcr_el2",
                   subject="KVM: arm64: Name the value __kvm_get_mdcr_el2() returns")
        c.sub(path, "__kvm_get_mdcr_el2", "\treturn read_sysreg(mdcr_el2);\n",
              "\tu64 mdcr = read_sysreg(mdcr_el2);\n\n\treturn mdcr;\n")
        c.message = hedged(rng, "Makes it easier to add tracing here.", always=True)
        yield c
    c = Change(k, function="__mmu_config_save",
               subject="KVM: arm64: nv: Save HCR_EL2 first in __mmu_config_save()")
    c.move_line(AT_C, "__mmu_config_save", "\tconfig->hcr\t= read_sysreg(hcr_el2);\n",
                "static void __mmu_config_save(struct mmu_config *config)\n{\n")
    c.message = hedged(rng, "Mirror the order of __mmu_config_restore().")
    yield c
    c = Change(k, function="__pkvm_prot_finalize",
               subject="KVM: arm64: pkvm: Use a local for the host HCR_EL2")
    c.sub(NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\twrite_sysreg(params->hcr_el2, hcr_el2);\n",
          "\thcr = params->hcr_el2;\n\twrite_sysreg(hcr, hcr_el2);\n")
    c.sub(NVHE_MEM_PROTECT, "__pkvm_prot_finalize",
          "\tstruct kvm_nvhe_init_params *params = this_cpu_ptr(&kvm_init_params);\n",
          "\tstruct kvm_nvhe_init_params *params = this_cpu_ptr(&kvm_init_params);\n\tu64 hcr;\n")
    c.message = hedged(rng, "Prepare for a later change.")
    yield c
    c = Change(k, function="fixup_guest_exit",
               subject="KVM: arm64: nv: Read HCR_EL2 once in fixup_guest_exit()")
    c.sub(VHE_SWITCH, "fixup_guest_exit",
          "\tif (vcpu_has_nv(vcpu) && (read_sysreg(hcr_el2) & HCR_NV)) {\n",
          "\tif (vcpu_has_nv(vcpu) && (read_sysreg(hcr_el2) & HCR_NV) != 0) {\n")
    c.message = hedged(rng, "Make the test explicit.", always=True)
    yield c


# -- m: per-CPU host copies and preemption -------------------------------------------

_HOST_COPY_READS = (
    ("__this_cpu_read(mdcr_el2)", DEBUG_C),
    ("*this_cpu_ptr(&mdcr_el2)", DEBUG_C),
    ("per_cpu(mdcr_el2, smp_processor_id())", DEBUG_C),
    ("*host_data_ptr(host_debug_state.mdcr_el2)", DEBUG_C),
)
_PREEMPTIBLE_CALLERS = (
    (GUEST_C, "kvm_arch_vcpu_ioctl_set_guest_debug",
     "\tif (dbg->control & KVM_GUESTDBG_ENABLE) {\n\t\tvcpu->guest_debug = dbg->control;\n",
     "\tif (dbg->control & KVM_GUESTDBG_ENABLE) {\n\t\tvcpu->guest_debug = dbg->control;\n"
     "\t\tkvm_arm_refresh_mdcr_el2(vcpu);\n", "set_guest_debug"),
    (ARM_C, "kvm_arch_vcpu_ioctl_vcpu_init", "\tvcpu_reset_hcr(vcpu);\n",
     "\tvcpu_reset_hcr(vcpu);\n\tkvm_arm_refresh_mdcr_el2(vcpu);\n", "KVM_ARM_VCPU_INIT"),
    (SYS_REGS, "access_pmcr", "\t\tkvm_pmu_handle_pmcr(vcpu, val);\n",
     "\t\tkvm_pmu_handle_pmcr(vcpu, val);\n\t\tkvm_arm_refresh_mdcr_el2(vcpu);\n",
     "a PMCR_EL0 write"),
    (ARM_C, "kvm_arch_vcpu_create", "\tkvm_arm_reset_debug_ptr(vcpu);\n",
     "\tkvm_arm_reset_debug_ptr(vcpu);\n\tkvm_arm_refresh_mdcr_el2(vcpu);\n", "vcpu creation"),
)


@generator("m", True, "host-copy-read-preemptible", """A per-CPU host copy of
MDCR_EL2 read from a path that runs with preemption enabled (an ioctl, a
sysreg trap handler, vcpu creation): the task can move to another CPU between
the read and the use, and __this_cpu_read() there is itself a bug.""")
def _preemptible_read(k: Kernel, rng: random.Random) -> Iterator[Change]:
    combos = [(a, c) for a in _HOST_COPY_READS for c in _PREEMPTIBLE_CALLERS]
    for (accessor, _), (path, func, old, new, where) in rng.sample(combos, 15):
        c = Change(k, function=func,
                   subject="KVM: arm64: Refresh the vcpu's MDCR_EL2 on %s" % where)
        c.insert_after(DEBUG_C, "kvm_arm_vcpu_init_debug", "}\n",
                       "\n/* Recompute the HPMN part of the vcpu's MDCR_EL2. */\n"
                       "void kvm_arm_refresh_mdcr_el2(struct kvm_vcpu *vcpu)\n{\n"
                       "\tvcpu->arch.mdcr_el2 &= ~MDCR_EL2_HPMN_MASK;\n"
                       "\tvcpu->arch.mdcr_el2 |= %s & MDCR_EL2_HPMN_MASK;\n}\n" % accessor,
                       anchor=False)
        c.effect(DEBUG_C, "kvm_arm_refresh_mdcr_el2", accessor)
        c.sub(path, func, old, new)
        c.message = para("""Make sure the counter partition the vcpu sees follows
            the host's as soon as %s changes things.""" % where)
        yield c


@generator("m", True, "preemption-protection-dropped", """The preempt_disable()
around a per-CPU host copy read removed, or the caller moved out of the
preemption-disabled part of the run loop.""")
def _preempt_dropped(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_arm_vcpu_init_debug",
               subject="KVM: arm64: Drop the preemption dance from kvm_arm_vcpu_init_debug()")
    c.sub(DEBUG_C, "kvm_arm_vcpu_init_debug",
          "\tpreempt_disable();\n\tkvm_arm_setup_mdcr_el2(vcpu);\n\tpreempt_enable();\n",
          "\tkvm_arm_setup_mdcr_el2(vcpu);\n")
    c.message = para("The vcpu is not running yet; nothing can race with us here.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_ioctl_run",
               subject="KVM: arm64: Set up the debug state before disabling preemption")
    c.delete_line(ARM_C, "kvm_arch_vcpu_ioctl_run", "\t\tkvm_arm_setup_debug(vcpu);\n")
    c.insert_before(ARM_C, "kvm_arch_vcpu_ioctl_run", "\t\tpreempt_disable();\n",
                    "\t\tkvm_arm_setup_debug(vcpu);\n\n")
    c.message = para("Keep the non-preemptible section as short as possible.")
    yield c
    c = Change(k, function="kvm_vcpu_pmu_restore_guest",
               subject="KVM: arm64: pmu: Don't disable preemption to restore guest events")
    c.sub(PMU_C, "kvm_vcpu_pmu_restore_guest", "\tpreempt_disable();\n", "")
    c.sub(PMU_C, "kvm_vcpu_pmu_restore_guest", "\tpreempt_enable();\n", "", anchor=False)
    c.message = para("Both callers already run with preemption disabled.")
    yield c
    for where, path, func, old in (
            ("set_guest_debug", GUEST_C, "kvm_arch_vcpu_ioctl_set_guest_debug",
             "\t\t\tvcpu->arch.external_debug_state = dbg->arch;\n\t\t}\n"),
            ("vcpu creation", ARM_C, "kvm_arch_vcpu_create", "\tkvm_arm_reset_debug_ptr(vcpu);\n")):
        c = Change(k, function=func,
                   subject="KVM: arm64: Compute MDCR_EL2 early on %s" % where)
        c.insert_after(path, func, old, "\t\tkvm_arm_setup_debug(vcpu);\n" if path == GUEST_C
                       else "\tkvm_arm_setup_debug(vcpu);\n")
        c.message = para("Have the traps right before the first entry.")
        yield c


@generator("m", False, "host-copy-read-protected", """The same per-CPU reads kept
where preemption is disabled, spelled differently: guard(preempt)(),
get_cpu()/put_cpu(), this_cpu_read() inside the protected region.""")
def _preempt_kept(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for new, what in (("\tguard(preempt)();\n\tkvm_arm_setup_mdcr_el2(vcpu);\n", "guard(preempt)"),
                      ("\tget_cpu();\n\tkvm_arm_setup_mdcr_el2(vcpu);\n\tput_cpu();\n",
                       "get_cpu()")):
        c = Change(k, function="kvm_arm_vcpu_init_debug",
                   subject="KVM: arm64: Use %s in kvm_arm_vcpu_init_debug()" % what)
        c.sub(DEBUG_C, "kvm_arm_vcpu_init_debug",
              "\tpreempt_disable();\n\tkvm_arm_setup_mdcr_el2(vcpu);\n\tpreempt_enable();\n", new)
        c.message = hedged(rng, "Shorter, same protection.", always=True)
        yield c
    c = Change(k, function="kvm_arm_setup_mdcr_el2",
               subject="KVM: arm64: Use this_cpu_read() for the boot MDCR_EL2")
    c.sub(DEBUG_C, "kvm_arm_setup_mdcr_el2", "__this_cpu_read(mdcr_el2)", "this_cpu_read(mdcr_el2)")
    c.message = hedged(rng, "Both callers run with preemption disabled; this is the "
                       "checked variant anyway.")
    yield c
