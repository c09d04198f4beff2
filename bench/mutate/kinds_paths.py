"""Kinds l (EL2 access from the nVHE host), m (per-CPU data and preemption),
n (width), o (host-flag placement) and p (shadow versus live), and their
neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    ARM_C,
    AT_C,
    DEBUG_C,
    HYP_SWITCH_H,
    KVM_ARM_H,
    KVM_ASM_H,
    KVM_EMULATE_H,
    KVM_HOST_H,
    NESTED_C,
    NVHE_DEBUG_SR,
    NVHE_MEM_PROTECT,
    NVHE_PKVM,
    NVHE_SWITCH,
    TRACE_EXIT_H,
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
                       "\tvcpu->arch.mdcr_el2 |= %s & MDCR_EL2_HPMN_MASK;\n}\n" % accessor)
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


# -- n: width ------------------------------------------------------------------------

_NARROW = (
    (KVM_HOST_H, None, "\tu64 hcr_el2;\n\tu64 hcrx_el2;\n\tu64 mdcr_el2;\n",
     "\tu64 hcr_el2;\n\tu64 hcrx_el2;\n\tu32 mdcr_el2;\n", "kvm_vcpu_arch",
     "KVM: arm64: Shrink struct kvm_vcpu_arch", "MDCR_EL2 only has 32 bits worth of fields "
     "KVM uses; don't waste space."),
    (KVM_HOST_H, None, "\t\t/* Values of trap registers for the host before guest entry. */\n"
     "\t\tu64 mdcr_el2;\n", "\t\t/* Values of trap registers for the host before guest entry. */\n"
     "\t\tu32 mdcr_el2;\n", "kvm_host_data", "KVM: arm64: Shrink host_debug_state",
     "The host's MDCR_EL2 fits in 32 bits."),
    (KVM_ASM_H, None, "\tunsigned long hcr_el2;\n", "\tu32 hcr_el2;\n", "kvm_nvhe_init_params",
     "KVM: arm64: Pack kvm_nvhe_init_params", "Keep the init parameters in one cache line."),
    (DEBUG_C, None, "static DEFINE_PER_CPU(u64, mdcr_el2);\n",
     "static DEFINE_PER_CPU(u32, mdcr_el2);\n", "mdcr_el2 (per-CPU)",
     "KVM: arm64: Keep the boot MDCR_EL2 in 32 bits", "Only HPMN is ever used from it."),
    (HYP_SWITCH_H, "___activate_traps", "static inline void ___activate_traps(struct kvm_vcpu "
     "*vcpu, u64 hcr)\n", "static inline void ___activate_traps(struct kvm_vcpu *vcpu, "
     "unsigned int hcr)\n", "___activate_traps", "KVM: arm64: Use the natural type for hcr",
     "Avoid a 64bit argument on the hot path."),
    (VHE_SWITCH, "__compute_hcr", "static u64 __compute_hcr(struct kvm_vcpu *vcpu)\n{\n"
     "\tu64 hcr = vcpu->arch.hcr_el2;\n", "static u32 __compute_hcr(struct kvm_vcpu *vcpu)\n{\n"
     "\tu32 hcr = vcpu->arch.hcr_el2;\n", "__compute_hcr",
     "KVM: arm64: nv: Use u32 in __compute_hcr()", "Matches the register's traps."),
    (AT_C, None, "\tu64\tvtcr;\n\tu64\thcr;\n", "\tu64\tvtcr;\n\tu32\thcr;\n", "mmu_config",
     "KVM: arm64: nv: Shrink struct mmu_config", "It lives on the stack of the AT path."),
    (AT_C, "__kvm_at_s1e2", "\t\tu64 val, hcr;\n", "\t\tu64 val;\n\t\tu32 hcr;\n", "__kvm_at_s1e2",
     "KVM: arm64: nv: Tidy up __kvm_at_s1e2() locals", "One declaration per purpose."),
    (NVHE_PKVM, "pvm_init_traps_aa64pfr0", "\tu64 hcr_set = HCR_RW;\n\tu64 hcr_clear = 0;\n",
     "\tu32 hcr_set = HCR_RW;\n\tu32 hcr_clear = 0;\n", "pvm_init_traps_aa64pfr0",
     "KVM: arm64: pkvm: Use u32 for the HCR_EL2 trap masks", "Smaller code."),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "\tu64 mdcr_set = 0;\n\tu64 mdcr_clear = 0;\n",
     "\tu32 mdcr_set = 0;\n\tu32 mdcr_clear = 0;\n", "pvm_init_traps_aa64dfr0",
     "KVM: arm64: pkvm: Use u32 for the MDCR_EL2 trap masks",
     "All the bits we touch are below bit 32."),
    (DEBUG_C, "kvm_arm_setup_debug",
     "\tunsigned long mdscr, orig_mdcr_el2 = vcpu->arch.mdcr_el2;\n",
     "\tunsigned long mdscr;\n\tu32 orig_mdcr_el2 = vcpu->arch.mdcr_el2;\n", "kvm_arm_setup_debug",
     "KVM: arm64: Split the locals of kvm_arm_setup_debug()", "One per line."),
    (TRACE_EXIT_H, None, "\tTP_PROTO(const char *name, __u64 value),\n\tTP_ARGS(name, value),\n\n"
     "\tTP_STRUCT__entry(\n\t\t__field(const char *, name)\n\t\t__field(__u64, value)\n",
     "\tTP_PROTO(const char *name, __u32 value),\n\tTP_ARGS(name, value),\n\n"
     "\tTP_STRUCT__entry(\n\t\t__field(const char *, name)\n\t\t__field(__u32, value)\n",
     "kvm_arm_set_dreg32", "KVM: arm64: Make kvm_arm_set_dreg32 live up to its name",
     "The tracepoint is called dreg32; record 32 bits."),
    (KVM_EMULATE_H, "vcpu_hcr", "static inline unsigned long *vcpu_hcr(struct kvm_vcpu *vcpu)\n"
     "{\n\treturn (unsigned long *)&vcpu->arch.hcr_el2;\n",
     "static inline u32 *vcpu_hcr(struct kvm_vcpu *vcpu)\n{\n"
     "\treturn (u32 *)&vcpu->arch.hcr_el2;\n",
     "vcpu_hcr", "KVM: arm64: Return a u32 pointer from vcpu_hcr()",
     "The callers only look at the interrupt bits."),
    (HYP_SWITCH_H, "__deactivate_traps_common",
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n",
     "\twrite_sysreg(lower_32_bits(*host_data_ptr(host_debug_state.mdcr_el2)), mdcr_el2);\n",
     "__deactivate_traps_common", "KVM: arm64: Only restore the architected MDCR_EL2 bits",
     "Don't write back bits above 31, which we never set."),
    (NVHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, vcpu->arch.hcr_el2);\n",
     "\t___activate_traps(vcpu, (u32)vcpu->arch.hcr_el2);\n", "__activate_traps",
     "KVM: arm64: nVHE: Be explicit about the HCR_EL2 value width",
     "Make the conversion visible."),
    (KVM_HOST_H, None, "\t/* Values of trap registers for the guest. */\n\tu64 hcr_el2;\n",
     "\t/* Values of trap registers for the guest. */\n\tu32 hcr_el2;\n", "kvm_vcpu_arch",
     "KVM: arm64: Shrink the guest HCR_EL2 copy", "Keep the hot vcpu fields together."),
    (NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\twrite_sysreg(params->hcr_el2, hcr_el2);\n",
     "\twrite_sysreg((u32)params->hcr_el2, hcr_el2);\n", "__pkvm_prot_finalize",
     "KVM: arm64: pkvm: Don't write reserved upper HCR_EL2 bits",
     "Only the low word of the host value is meaningful."),
    (ARM_C, "vcpu_set_pauth_traps", "\t\t\tu64 val;\n", "\t\t\tu32 val;\n",
     "vcpu_set_pauth_traps", "KVM: arm64: Use u32 for the pauth trap bits",
     "Smaller code."),
    (AT_C, "__kvm_at_s1e2", "\t\tu64 val, hcr;\n", "\t\tu32 val;\n\t\tu64 hcr;\n",
     "__kvm_at_s1e2", "KVM: arm64: nv: Narrow the temporary HCR_EL2 in __kvm_at_s1e2()",
     "The temporary only carries trap bits."),
)


@generator("n", True, "narrowed-storage", """Storage, a parameter, a return value,
a cast or a tracepoint field for HCR_EL2/MDCR_EL2 made 32 bits wide: bits
63:32 (E2H, TLOR, NV*, FWB, TID4/5, ATA...; MDCR's HPMFZS, PMSSE, EBWE...)
are lost, or a u32 clear mask zero-extends and clears them.""")
def _narrow(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, what, subject, why in _NARROW:
        c = Change(k, function=what, subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c
    for path in (NVHE_DEBUG_SR, VHE_DEBUG_SR):
        c = Change(k, function="__kvm_get_mdcr_el2",
                   subject="KVM: arm64: Return MDCR_EL2 as a u32")
        c.sub(path, "__kvm_get_mdcr_el2", "u64 __kvm_get_mdcr_el2(void)\n",
              "u32 __kvm_get_mdcr_el2(void)\n")
        c.sub(KVM_ASM_H, None, "extern u64 __kvm_get_mdcr_el2(void);\n",
              "extern u32 __kvm_get_mdcr_el2(void);\n", anchor=False)
        c.message = para("That is what the hypercall hands back to the host anyway.")
        yield c


@generator("n", False, "widened-everywhere", """Types of HCR_EL2/MDCR_EL2 storage
made explicitly 64-bit where they already were (unsigned long is 64 bits on
arm64), consumers included.""")
def _widened(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_nvhe_init_params",
               subject="KVM: arm64: Use u64 for the hyp's HCR_EL2 init parameter")
    c.sub(KVM_ASM_H, None, "\tunsigned long hcr_el2;\n", "\tu64 hcr_el2;\n")
    c.message = hedged(rng, "Say how wide the register is.", always=True)
    yield c
    c = Change(k, function="kvm_arm_setup_debug",
               subject="KVM: arm64: Use u64 for the saved MDCR_EL2 in kvm_arm_setup_debug()")
    c.sub(DEBUG_C, "kvm_arm_setup_debug",
          "\tunsigned long mdscr, orig_mdcr_el2 = vcpu->arch.mdcr_el2;\n",
          "\tunsigned long mdscr;\n\tu64 orig_mdcr_el2 = vcpu->arch.mdcr_el2;\n")
    c.message = hedged(rng, "MDCR_EL2 is a 64bit register.")
    yield c
    c = Change(k, function="kvm_arm_set_dreg32",
               subject="KVM: arm64: Use u64 in the kvm_arm_set_dreg32 tracepoint")
    c.sub(TRACE_EXIT_H, None, "\tTP_PROTO(const char *name, __u64 value),\n",
          "\tTP_PROTO(const char *name, u64 value),\n")
    c.message = hedged(rng, "Kernel-internal type for a kernel-internal tracepoint.")
    yield c


# -- o: host-flag placement ------------------------------------------------------------

_O_BITS = ("HCR_TWE", "HCR_TWI", "HCR_TSW", "HCR_TIDCP", "HCR_TID3", "HCR_TTLB", "HCR_TACR",
           "HCR_TPU", "HCR_FB")


def _o_variant(c: Change, config: str, bit: str) -> str:
    if config == "nvhe":
        c.sub(ARM_C, "cpu_prepare_hyp_mode", "\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n",
              "\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS | %s;\n" % bit)
        return "the non-protected nVHE host"
    if config == "protected":
        c.sub(KVM_ARM_H, None, "#define HCR_HOST_NVHE_PROTECTED_FLAGS (HCR_HOST_NVHE_FLAGS | "
              "HCR_TSC)\n", "#define HCR_HOST_NVHE_PROTECTED_FLAGS (HCR_HOST_NVHE_FLAGS | "
              "HCR_TSC | %s)\n" % bit)
        return "the protected host"
    if config == "hvhe":
        c.sub(ARM_C, "cpu_prepare_hyp_mode", "\t\tparams->hcr_el2 |= HCR_E2H;\n",
              "\t\tparams->hcr_el2 |= HCR_E2H | %s;\n" % bit)
        return "the hVHE host"
    c.sub(NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\tparams->hcr_el2 |= HCR_VM;\n",
          "\tparams->hcr_el2 |= HCR_VM | %s;\n" % bit)
    return "the host once pKVM is finalised"


@generator("o", True, "host-value-gains-bit", """One host configuration's runtime
HCR_EL2 (the non-protected nVHE value, the protected flag set, the hVHE
value, the value pKVM installs at finalisation) gains a trap bit the other
EL1 host configurations lack, and the bit matters in all of them; the patch
says nothing about why.""")
def _host_gains(k: Kernel, rng: random.Random) -> Iterator[Change]:
    combos = [(cfg, bit) for cfg in ("nvhe", "protected", "hvhe", "finalize") for bit in _O_BITS]
    for cfg, bit in rng.sample(combos, 22):
        c = Change(k)
        who = _o_variant(c, cfg, bit)
        c.function = {"nvhe": "cpu_prepare_hyp_mode", "hvhe": "cpu_prepare_hyp_mode",
                      "protected": "HCR_HOST_NVHE_PROTECTED_FLAGS",
                      "finalize": "__pkvm_prot_finalize"}[cfg]
        c.subject = "KVM: arm64: Set %s for %s" % (bit, who.replace("the ", "", 1))
        c.message = para("Set %s in the HCR_EL2 value used for %s." % (bit, who))
        yield c


@generator("o", False, "host-value-consistent", """The host flag sets rewritten
with the same values (TSC moved from the protected #define into the init
code that picks it, terms reordered), or ATA added to the VHE host set, where
with E2H and TGE both 1 it has no effect.""")
def _host_consistent(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="HCR_HOST_VHE_FLAGS",
               subject="KVM: arm64: Add HCR_ATA to the VHE host flags")
    c.sub(KVM_ARM_H, None, "#define HCR_HOST_VHE_FLAGS (HCR_RW | HCR_TGE | HCR_E2H)\n",
          "#define HCR_HOST_VHE_FLAGS (HCR_RW | HCR_TGE | HCR_E2H | HCR_ATA)\n")
    c.message = para("""Keep the host flag sets alike. ATA has no effect when E2H
        and TGE are both set, so this changes nothing for the VHE host.""")
    yield c
    c = Change(k, function="cpu_prepare_hyp_mode",
               subject="KVM: arm64: Open-code the protected host flags")
    c.sub(ARM_C, "cpu_prepare_hyp_mode",
          "\t\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS;\n",
          "\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS | HCR_TSC;\n")
    c.sub(KVM_ARM_H, None, "#define HCR_HOST_NVHE_PROTECTED_FLAGS (HCR_HOST_NVHE_FLAGS | "
          "HCR_TSC)\n", "")
    c.message = hedged(rng, "The define has a single user.", always=True)
    yield c
    c = Change(k, function="HCR_HOST_NVHE_FLAGS",
               subject="KVM: arm64: Sort the nVHE host flags by bit")
    c.sub(KVM_ARM_H, None, "#define HCR_HOST_NVHE_FLAGS (HCR_RW | HCR_API | HCR_APK | HCR_ATA)\n",
          "#define HCR_HOST_NVHE_FLAGS (HCR_ATA | HCR_API | HCR_APK | HCR_RW)\n")
    c.message = hedged(rng, "Highest bit first, like the field list.", always=True)
    yield c


# -- p: shadow versus live ---------------------------------------------------------------

_LIVE_FOR_SHADOW = (
    (KVM_EMULATE_H, None, "static __always_inline bool vcpu_el1_is_32bit(struct kvm_vcpu *vcpu)\n"
     "{\n\treturn !(vcpu->arch.hcr_el2 & HCR_RW);\n",
     "static __always_inline bool vcpu_el1_is_32bit(struct kvm_vcpu *vcpu)\n"
     "{\n\treturn !(read_sysreg(hcr_el2) & HCR_RW);\n", "vcpu_el1_is_32bit",
     "KVM: arm64: Read HCR_EL2.RW from the register in hyp",
     "At EL2 the register is at hand; no need to go through memory."),
    (VHE_SWITCH, "kvm_hyp_handle_eret", "\tif ((__vcpu_sys_reg(vcpu, HCR_EL2) & HCR_NV) ||\n",
     "\tif ((read_sysreg(hcr_el2) & HCR_NV) ||\n", "kvm_hyp_handle_eret",
     "KVM: arm64: nv: Use the live HCR_EL2 in the ERET fast path",
     "We are in the exit path; HCR_EL2 is live."),
    (AT_C, "setup_s1_walk", "\thcr = __vcpu_sys_reg(vcpu, HCR_EL2);\n",
     "\thcr = read_sysreg(hcr_el2);\n", "setup_s1_walk",
     "KVM: arm64: nv: Don't go through the vcpu for HCR_EL2 in the S1 walker",
     "Cheaper than the VNCR lookup."),
    (AT_C, "compute_par_s12", "\tif (__vcpu_sys_reg(vcpu, HCR_EL2) & HCR_FWB) {\n",
     "\tif (read_sysreg(hcr_el2) & HCR_FWB) {\n", "compute_par_s12",
     "KVM: arm64: nv: Take FWB from HCR_EL2 when combining attributes",
     "FWB is a property of the hardware configuration."),
    (AT_C, "compute_par_s12", "\tif ((__vcpu_sys_reg(vcpu, HCR_EL2) & HCR_CD) &&\n",
     "\tif ((read_sysreg(hcr_el2) & HCR_CD) &&\n", "compute_par_s12",
     "KVM: arm64: nv: Take CD from HCR_EL2 when combining attributes",
     "Use the register directly."),
    (AT_C, "compute_par_s1", "\t\t    (__vcpu_sys_reg(vcpu, HCR_EL2) & HCR_DC)) {\n",
     "\t\t    (read_sysreg(hcr_el2) & HCR_DC)) {\n", "compute_par_s1",
     "KVM: arm64: nv: Take DC from HCR_EL2", "Use the register directly."),
    (NESTED_C, "lookup_s2_mmu", "\thcr = vcpu_read_sys_reg(vcpu, HCR_EL2);\n",
     "\thcr = read_sysreg(hcr_el2);\n", "lookup_s2_mmu",
     "KVM: arm64: nv: Read HCR_EL2 directly in lookup_s2_mmu()",
     "vcpu_read_sys_reg() is expensive when the state is not loaded."),
    (NESTED_C, "get_s2_mmu_nested",
     "\ts2_mmu->nested_stage2_enabled = vcpu_read_sys_reg(vcpu, HCR_EL2) & HCR_VM;\n",
     "\ts2_mmu->nested_stage2_enabled = read_sysreg(hcr_el2) & HCR_VM;\n", "get_s2_mmu_nested",
     "KVM: arm64: nv: Read HCR_EL2.VM directly", "Cheaper than the sysreg accessor."),
    (HYP_SWITCH_H, "__fpsimd_save_fpexc32", "\tif (!vcpu_el1_is_32bit(vcpu))\n",
     "\tif (read_sysreg(hcr_el2) & HCR_RW)\n", "__fpsimd_save_fpexc32",
     "KVM: arm64: Check HCR_EL2.RW directly before saving FPEXC32",
     "Avoid the indirection through the vcpu."),
    (SYSREG_SR_H, "__sysreg32_restore_state", "\tif (!vcpu_el1_is_32bit(vcpu))\n",
     "\tif (read_sysreg(hcr_el2) & HCR_RW)\n", "__sysreg32_restore_state",
     "KVM: arm64: Check HCR_EL2.RW directly before restoring 32bit state",
     "Avoid the indirection through the vcpu."),
    (SYSREG_SR_H, "__sysreg32_save_state", "\tif (!vcpu_el1_is_32bit(vcpu))\n",
     "\tif (read_sysreg(hcr_el2) & HCR_RW)\n", "__sysreg32_save_state",
     "KVM: arm64: Check HCR_EL2.RW directly before saving 32bit state",
     "Avoid the indirection through the vcpu."),
    ("arch/arm64/kvm/hyp/nvhe/hyp-main.c", "sync_hyp_vcpu",
     "\thost_vcpu->arch.hcr_el2\t\t= hyp_vcpu->vcpu.arch.hcr_el2;\n",
     "\thost_vcpu->arch.hcr_el2\t\t= read_sysreg(hcr_el2);\n", "sync_hyp_vcpu",
     "KVM: arm64: pkvm: Sync HCR_EL2 back from the register",
     "The register has what the guest ended up with."),
    ("arch/arm64/kvm/hyp/nvhe/hyp-main.c", "flush_hyp_vcpu",
     "\thyp_vcpu->vcpu.arch.hcr_el2\t= host_vcpu->arch.hcr_el2;\n",
     "\thyp_vcpu->vcpu.arch.hcr_el2\t= read_sysreg(hcr_el2) | host_vcpu->arch.hcr_el2;\n",
     "flush_hyp_vcpu", "KVM: arm64: pkvm: Keep the hyp's HCR_EL2 bits for the hyp vcpu",
     "The hyp vcpu must carry what the hypervisor enforces."),
)


@generator("p", True, "live-for-shadow", """The live HCR_EL2 read where the vcpu's
value (shadow, or the guest hypervisor's virtual HCR_EL2) is meant, in code
that runs outside activate..deactivate (after the exit restored the host
value, in host-context AT/nested code, before entry) or where the live value
is KVM's merged one rather than the guest's.""")
def _live_for_shadow(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, what, subject, why in _LIVE_FOR_SHADOW:
        c = Change(k, function=what, subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c
    for path, func, line in ((VHE_SWITCH, "__deactivate_traps",
                              "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n"),
                             (NVHE_SWITCH, "__deactivate_traps",
                              "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, "
                              "hcr_el2);\n")):
        c = Change(k, function=func,
                   subject="KVM: arm64: Restore the host HCR_EL2 first on exit")
        c.move_line(path, func, "\t___deactivate_traps(vcpu);\n", line)
        c.effect(HYP_SWITCH_H, "___deactivate_traps", "read_sysreg(hcr_el2) & HCR_VSE")
        c.message = para("Give the host its traps back before anything else.")
        yield c


@generator("p", True, "shadow-for-live", """The vcpu's shadow HCR_EL2 used where
the live register is meant: the VSE bit hardware clears when the guest takes
the SError, the NV bit __compute_hcr() merged in, the HCR_EL2 the AT
emulation must build on.""")
def _shadow_for_live(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="___deactivate_traps",
               subject="KVM: arm64: Simplify the pending SError tracking")
    c.sub(HYP_SWITCH_H, "___deactivate_traps", "\t\tvcpu->arch.hcr_el2 |= read_sysreg(hcr_el2) & "
          "HCR_VSE;\n", "\t\tvcpu->arch.hcr_el2 |= *vcpu_hcr(vcpu) & HCR_VSE;\n")
    c.message = para("No need to read the register back, we know what we wrote.")
    yield c
    c = Change(k, function="___deactivate_traps",
               subject="KVM: arm64: Don't read HCR_EL2 back on exit")
    c.sub(HYP_SWITCH_H, "___deactivate_traps", "\tif (vcpu->arch.hcr_el2 & HCR_VSE) {\n"
          "\t\tvcpu->arch.hcr_el2 &= ~HCR_VSE;\n\t\tvcpu->arch.hcr_el2 |= read_sysreg(hcr_el2) & "
          "HCR_VSE;\n\t}\n", "")
    c.message = para("Reading HCR_EL2 on every exit is not free; the shadow is enough.")
    yield c
    for new in ("\tif (vcpu_has_nv(vcpu) && (vcpu->arch.hcr_el2 & HCR_NV)) {\n",
                "\tif (vcpu_has_nv(vcpu) && (__vcpu_sys_reg(vcpu, HCR_EL2) & HCR_NV)) {\n"):
        c = Change(k, function="fixup_guest_exit",
                   subject="KVM: arm64: nv: Avoid reading HCR_EL2 in fixup_guest_exit()")
        c.sub(VHE_SWITCH, "fixup_guest_exit",
              "\tif (vcpu_has_nv(vcpu) && (read_sysreg(hcr_el2) & HCR_NV)) {\n", new)
        c.message = para("The vcpu has the value; no need for a system register read.")
        yield c
    c = Change(k, function="__kvm_at_s1e01_fast",
               subject="KVM: arm64: nv: Build the AT HCR_EL2 from the vcpu's value")
    c.sub(AT_C, "__kvm_at_s1e01_fast",
          "\twrite_sysreg((config.hcr & ~HCR_TGE) | HCR_VM,\thcr_el2);\n",
          "\twrite_sysreg((vcpu->arch.hcr_el2 & ~HCR_TGE) | HCR_VM,\thcr_el2);\n")
    c.message = para("config.hcr is not initialised on the skip_mmu_switch path; use the "
                     "vcpu's value.")
    yield c


@generator("p", False, "shadow-live-same", """Shadow and live reads kept as they
were, through another name for the same storage (*vcpu_hcr() for
vcpu->arch.hcr_el2) or a local holding the same live read.""")
def _same_storage(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="___deactivate_traps",
               subject="KVM: arm64: Use vcpu_hcr() in ___deactivate_traps()")
    c.sub_all(HYP_SWITCH_H, "___deactivate_traps", "vcpu->arch.hcr_el2", "*vcpu_hcr(vcpu)")
    c.message = hedged(rng, "Use the accessor.", always=True)
    yield c
    c = Change(k, function="fixup_guest_exit",
               subject="KVM: arm64: nv: Name the live HCR_EL2 in fixup_guest_exit()")
    c.sub(VHE_SWITCH, "fixup_guest_exit",
          "\tif (vcpu_has_nv(vcpu) && (read_sysreg(hcr_el2) & HCR_NV)) {\n",
          "\tu64 hcr = read_sysreg(hcr_el2);\n\n\tif (vcpu_has_nv(vcpu) && (hcr & HCR_NV)) {\n")
    c.message = hedged(rng, "Shorter condition.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_runnable",
               subject="KVM: arm64: Use vcpu->arch.hcr_el2 in kvm_arch_vcpu_runnable()")
    c.sub(ARM_C, "kvm_arch_vcpu_runnable", "\tbool irq_lines = *vcpu_hcr(v) & (HCR_VI | HCR_VF);\n",
          "\tbool irq_lines = v->arch.hcr_el2 & (HCR_VI | HCR_VF);\n")
    c.message = hedged(rng, "No need for the accessor here.")
    yield c
