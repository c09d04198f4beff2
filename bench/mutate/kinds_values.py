"""Kinds n (width), o (host-flag placement) and p (shadow versus live),
and their neighbours."""

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
