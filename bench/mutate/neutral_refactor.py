"""Semantics-preserving refactors: a macro with the same value, independent
statements reordered, a helper moved into a header, an accessor for the
same storage."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged
from mutate.source import (
    ARM_C,
    AT_C,
    DEBUG_C,
    EL2_SETUP_H,
    HYP_DEBUG_SR_H,
    HYP_SWITCH_H,
    KVM_ARM_H,
    KVM_EMULATE_H,
    NVHE_DEBUG_SR,
    NVHE_HYP_MAIN,
    NVHE_MEM_PROTECT,
    NVHE_PKVM,
    NVHE_SWITCH,
    NVHE_TLB,
    VHE_SWITCH,
    VHE_TLB,
    Change,
    GeneratorError,
    Kernel,
    func_span,
)

SYS_REGS = "arch/arm64/kvm/sys_regs.c"
VGIC_SR = "arch/arm64/kvm/hyp/vgic-v3-sr.c"
GUEST_C = "arch/arm64/kvm/guest.c"

# The functions of the save/restore map and their neighbours in 6.12.
FUNCS = (
    (VHE_SWITCH, "__compute_hcr"), (VHE_SWITCH, "__activate_traps"),
    (VHE_SWITCH, "__deactivate_traps"), (VHE_SWITCH, "__vcpu_load_activate_traps"),
    (VHE_SWITCH, "__vcpu_put_deactivate_traps"), (VHE_SWITCH, "kvm_vcpu_load_vhe"),
    (VHE_SWITCH, "kvm_vcpu_put_vhe"), (VHE_SWITCH, "fixup_guest_exit"),
    (VHE_SWITCH, "__kvm_vcpu_run_vhe"), (VHE_SWITCH, "__kvm_vcpu_run"),
    (VHE_SWITCH, "__hyp_call_panic"), (VHE_SWITCH, "hyp_panic"),
    (NVHE_SWITCH, "__activate_traps"), (NVHE_SWITCH, "__deactivate_traps"),
    (NVHE_SWITCH, "__kvm_vcpu_run"), (NVHE_SWITCH, "hyp_panic"),
    (HYP_SWITCH_H, "__activate_traps_common"), (HYP_SWITCH_H, "__deactivate_traps_common"),
    (HYP_SWITCH_H, "___activate_traps"), (HYP_SWITCH_H, "___deactivate_traps"),
    (VHE_TLB, "enter_vmid_context"), (VHE_TLB, "exit_vmid_context"),
    (NVHE_TLB, "enter_vmid_context"), (NVHE_TLB, "exit_vmid_context"),
    (NVHE_DEBUG_SR, "__debug_save_spe"), (NVHE_DEBUG_SR, "__debug_save_trace"),
    (NVHE_DEBUG_SR, "__debug_save_host_buffers_nvhe"),
    (HYP_DEBUG_SR_H, "__debug_switch_to_guest_common"),
    (HYP_DEBUG_SR_H, "__debug_switch_to_host_common"),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2"), (DEBUG_C, "kvm_arm_setup_debug"),
    (DEBUG_C, "kvm_arm_init_debug"), (DEBUG_C, "kvm_arm_vcpu_init_debug"),
    (DEBUG_C, "kvm_arch_vcpu_load_debug_state_flags"),
    (ARM_C, "cpu_prepare_hyp_mode"), (ARM_C, "kvm_arch_vcpu_load"),
    (ARM_C, "vcpu_set_pauth_traps"), (ARM_C, "kvm_arch_vcpu_run_pid_change"),
    (KVM_EMULATE_H, "vcpu_reset_hcr"), (KVM_EMULATE_H, "vcpu_clear_wfx_traps"),
    (AT_C, "__mmu_config_save"), (AT_C, "__mmu_config_restore"), (AT_C, "__kvm_at_s1e2"),
    (NVHE_PKVM, "pvm_init_traps_aa64pfr0"), (NVHE_PKVM, "pvm_init_traps_aa64dfr0"),
    (NVHE_MEM_PROTECT, "__pkvm_prot_finalize"), (SYS_REGS, "vcpu_set_hcr"),
    (VGIC_SR, "__vgic_v3_get_gic_config"),
)

_BOUNDARY = re.compile(r"(;|\{|\}|^\s*)$")


def _statements(k: Kernel, path: str, func: str) -> list[tuple[str, str]]:
    """(previous line, line) pairs of single-line statements of `func` that
    start at a statement boundary: safe places for a comment or a split."""
    text = k.text(path)
    lo, hi = func_span(text, func)
    lines = text[lo:hi].split("\n")
    out = []
    for prev, line in itertools.pairwise(lines):
        s = line.strip()
        if not s.endswith(";") or not line.startswith("\t") or s.startswith(("/*", "*", "#")):
            continue
        if '"' in s or "\\" in s or s.count("(") != s.count(")"):
            continue
        if not _BOUNDARY.search(prev.rstrip()) or prev.strip().startswith(("if", "else", "for",
                                                                            "while")):
            continue
        out.append((prev, line))
    return out


def _unique(k: Kernel, path: str, func: str, line: str) -> bool:
    text = k.text(path)
    lo, hi = func_span(text, func)
    return text.count(line + "\n", lo, hi) == 1

# -- a macro with the same value ----------------------------------------------------------


@generator("", False, "macro-same-value", """A macro defined by the patch that
expands to exactly what it replaces (a flag group, a shifted field mask, the
per-CPU host copy, a masked HCR_EL2 value).""")
def _macro(k: Kernel, rng: random.Random) -> Iterator[Change]:
    def make(subject: str) -> Change:
        return Change(k, subject=subject, message=hedged(
            rng, "Give the expression a name; it expands to exactly what it replaces."))

    c = make("KVM: arm64: Name the pointer authentication host flags")
    c.function = "HCR_HOST_NVHE_FLAGS"
    c.sub(KVM_ARM_H, None, "#define HCR_HOST_NVHE_FLAGS (HCR_RW | HCR_API | HCR_APK | HCR_ATA)\n",
          "#define HCR_HOST_PAUTH (HCR_API | HCR_APK)\n"
          "#define HCR_HOST_NVHE_FLAGS (HCR_RW | HCR_HOST_PAUTH | HCR_ATA)\n")
    yield c
    for field in ("E2PB", "E2TB"):
        c = make("KVM: arm64: Add MDCR_EL2_%s_EL1 for the EL1&0 owned buffer" % field)
        c.function = "pvm_init_traps_aa64dfr0"
        c.insert_after(KVM_ARM_H, None, "#define MDCR_EL2_%s_SHIFT\t(UL(%s))\n"
                       % (field, "12" if field == "E2PB" else "24"),
                       "#define MDCR_EL2_%s_EL1\t(MDCR_EL2_%s_MASK << MDCR_EL2_%s_SHIFT)\n"
                       % (field, field, field))
        c.sub(NVHE_PKVM, "pvm_init_traps_aa64dfr0",
              "\t\tmdcr_clear |= MDCR_EL2_%s_MASK << MDCR_EL2_%s_SHIFT;\n" % (field, field),
              "\t\tmdcr_clear |= MDCR_EL2_%s_EL1;\n" % field)
        yield c
    c = make("KVM: arm64: VHE: Add a helper macro for the TLB HCR_EL2 value")
    c.function = "enter_vmid_context"
    c.insert_before(VHE_TLB, None, "static void enter_vmid_context(",
                    "#define tlb_hcr_el2(hcr)\t((hcr) & ~HCR_TGE)\n\n")
    c.sub(VHE_TLB, "enter_vmid_context", "\tval = read_sysreg(hcr_el2);\n\tval &= ~HCR_TGE;\n",
          "\tval = tlb_hcr_el2(read_sysreg(hcr_el2));\n")
    yield c
    c = make("KVM: arm64: nv: Add a macro for the AT HCR_EL2 value")
    c.function = "__kvm_at_s1e01_fast"
    c.insert_before(AT_C, None, "static void __mmu_config_save(",
                    "#define AT_HCR_EL2(hcr)\t\t(((hcr) & ~HCR_TGE) | HCR_VM)\n\n")
    c.sub(AT_C, "__kvm_at_s1e01_fast",
          "\twrite_sysreg((config.hcr & ~HCR_TGE) | HCR_VM,\thcr_el2);\n",
          "\twrite_sysreg(AT_HCR_EL2(config.hcr),\thcr_el2);\n")
    yield c
    c = make("KVM: arm64: Name the MDCR_EL2 traps every guest gets")
    c.function = "kvm_arm_setup_mdcr_el2"
    c.insert_before(DEBUG_C, None, "static DEFINE_PER_CPU(u64, mdcr_el2);\n",
                    "#define MDCR_EL2_GUEST_TRAPS\t(MDCR_EL2_TPM | MDCR_EL2_TPMS |\t\\\n"
                    "\t\t\t\t MDCR_EL2_TTRF | MDCR_EL2_TPMCR |\t\\\n"
                    "\t\t\t\t MDCR_EL2_TDRA | MDCR_EL2_TDOSA)\n\n")
    c.sub(DEBUG_C, "kvm_arm_setup_mdcr_el2",
          "\tvcpu->arch.mdcr_el2 |= (MDCR_EL2_TPM |\n\t\t\t\tMDCR_EL2_TPMS |\n"
          "\t\t\t\tMDCR_EL2_TTRF |\n\t\t\t\tMDCR_EL2_TPMCR |\n\t\t\t\tMDCR_EL2_TDRA |\n"
          "\t\t\t\tMDCR_EL2_TDOSA);\n", "\tvcpu->arch.mdcr_el2 |= MDCR_EL2_GUEST_TRAPS;\n")
    yield c
    c = make("KVM: arm64: pkvm: Name the RAS traps")
    c.function = "pvm_init_traps_aa64pfr0"
    c.insert_before(NVHE_PKVM, None, "/*\n * Set trap register values based on features in "
                    "ID_AA64PFR0.\n", "#define PVM_HCR_RAS_TRAPS\t(HCR_TERR | HCR_TEA)\n\n")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64pfr0", "\t\thcr_set |= HCR_TERR | HCR_TEA;\n",
          "\t\thcr_set |= PVM_HCR_RAS_TRAPS;\n")
    yield c
    c = make("KVM: arm64: Name the host's saved MDCR_EL2")
    c.function = "__activate_traps_common"
    c.insert_before(HYP_SWITCH_H, None, "static inline void __activate_traps_common(",
                    "#define host_saved_mdcr_el2\t(*host_data_ptr(host_debug_state.mdcr_el2))\n\n")
    c.sub(HYP_SWITCH_H, "__activate_traps_common",
          "\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2);\n",
          "\thost_saved_mdcr_el2 = read_sysreg(mdcr_el2);\n")
    c.sub(HYP_SWITCH_H, "__deactivate_traps_common",
          "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n",
          "\twrite_sysreg(host_saved_mdcr_el2, mdcr_el2);\n")
    yield c
    c = make("KVM: arm64: vgic-v3: Name the interrupt overrides")
    c.function = "__vgic_v3_get_gic_config"
    c.insert_after(KVM_ARM_H, None, "#define HCR_VM\t\t(UL(1) << 0)\n",
                   "#define HCR_INT_OVERRIDES\t(HCR_AMO | HCR_FMO | HCR_IMO)\n")
    c.sub(VGIC_SR, "__vgic_v3_get_gic_config",
          "\tsysreg_clear_set(hcr_el2, 0, HCR_AMO | HCR_FMO | HCR_IMO);\n",
          "\tsysreg_clear_set(hcr_el2, 0, HCR_INT_OVERRIDES);\n")
    c.sub(VGIC_SR, "__vgic_v3_get_gic_config",
          "\tsysreg_clear_set(hcr_el2, HCR_AMO | HCR_FMO | HCR_IMO, 0);\n",
          "\tsysreg_clear_set(hcr_el2, HCR_INT_OVERRIDES, 0);\n")
    yield c
    c = make("KVM: arm64: Name the RAS traps in vcpu_set_hcr()")
    c.function = "vcpu_set_hcr"
    c.sub(SYS_REGS, "vcpu_set_hcr",
          "\t\t/* route synchronous external abort exceptions to EL2 */\n"
          "\t\tvcpu->arch.hcr_el2 |= HCR_TEA;\n\t\t/* trap error record accesses */\n"
          "\t\tvcpu->arch.hcr_el2 |= HCR_TERR;\n",
          "\t\t/* route SEAs to EL2, trap error record accesses */\n"
          "\t\tvcpu->arch.hcr_el2 |= HCR_RAS_TRAPS;\n")
    c.insert_before(SYS_REGS, None, "static void vcpu_set_hcr(",
                    "#define HCR_RAS_TRAPS\t(HCR_TEA | HCR_TERR)\n\n")
    yield c
    c = make("arm64: el2_setup: Use a named mask for the SPE owner")
    c.function = "__init_el2_debug"
    c.insert_after(KVM_ARM_H, None, "#define MDCR_EL2_E2PB_SHIFT\t(UL(12))\n",
                   "#define MDCR_EL2_E2PB_EL1\t(MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT)\n")
    c.sub(EL2_SETUP_H, ".macro __init_el2_debug",
          "\tmov\tx0, #(MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT)\n",
          "\tmov\tx0, #MDCR_EL2_E2PB_EL1\n")
    yield c
    c = make("KVM: arm64: Write the VHE host flags bit by bit")
    c.function = "HCR_HOST_VHE_FLAGS"
    c.sub(KVM_ARM_H, None, "#define HCR_HOST_VHE_FLAGS (HCR_RW | HCR_TGE | HCR_E2H)\n",
          "#define HCR_HOST_VHE_FLAGS (HCR_E2H | HCR_TGE | HCR_RW)\n")
    yield c


# -- reorder independent statements ------------------------------------------------------

_SWAPS = (
    (ARM_C, "kvm_arch_vcpu_load",
     "\tif (kvm_vcpu_should_clear_twe(vcpu))\n\t\tvcpu->arch.hcr_el2 &= ~HCR_TWE;\n"
     "\telse\n\t\tvcpu->arch.hcr_el2 |= HCR_TWE;\n\n",
     "\tif (kvm_vcpu_should_clear_twi(vcpu))\n\t\tvcpu->arch.hcr_el2 &= ~HCR_TWI;\n"
     "\telse\n\t\tvcpu->arch.hcr_el2 |= HCR_TWI;\n\n"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0",
     "\t/* Trap Debug */\n\tif (!FIELD_GET(ARM64_FEATURE_MASK(ID_AA64DFR0_EL1_DebugVer), "
     "feature_ids))\n\t\tmdcr_set |= MDCR_EL2_TDRA | MDCR_EL2_TDA | MDCR_EL2_TDE;\n\n",
     "\t/* Trap OS Double Lock */\n"
     "\tif (!FIELD_GET(ARM64_FEATURE_MASK(ID_AA64DFR0_EL1_DoubleLock), "
     "feature_ids))\n\t\tmdcr_set |= MDCR_EL2_TDOSA;\n\n"),
    (NVHE_PKVM, "pvm_init_traps_aa64pfr0",
     "\t/* Trap RAS unless all current versions are supported */\n"
     "\tif (FIELD_GET(ARM64_FEATURE_MASK(ID_AA64PFR0_EL1_RAS), feature_ids) <\n"
     "\t    ID_AA64PFR0_EL1_RAS_V1P1) {\n\t\thcr_set |= HCR_TERR | HCR_TEA;\n"
     "\t\thcr_clear |= HCR_FIEN;\n\t}\n\n",
     "\t/* Trap AMU */\n\tif (!FIELD_GET(ARM64_FEATURE_MASK(ID_AA64PFR0_EL1_AMU), feature_ids)) {\n"
     "\t\thcr_clear |= HCR_AMVOFFEN;\n\t}\n\n"),
    (AT_C, "__mmu_config_save", "\tconfig->ttbr0\t= read_sysreg_el1(SYS_TTBR0);\n",
     "\tconfig->ttbr1\t= read_sysreg_el1(SYS_TTBR1);\n"),
    (AT_C, "__mmu_config_save", "\tconfig->vttbr\t= read_sysreg(vttbr_el2);\n",
     "\tconfig->vtcr\t= read_sysreg(vtcr_el2);\n"),
    (SYS_REGS, "vcpu_set_hcr", "\tif (cpus_have_final_cap(ARM64_HAS_STAGE2_FWB))\n"
     "\t\tvcpu->arch.hcr_el2 |= HCR_FWB;\n\n",
     "\tif (cpus_have_final_cap(ARM64_HAS_EVT) &&\n"
     "\t    !cpus_have_final_cap(ARM64_MISMATCHED_CACHE_TYPE) &&\n"
     "\t    kvm_read_vm_id_reg(kvm, SYS_CTR_EL0) == read_sanitised_ftr_reg(SYS_CTR_EL0))\n"
     "\t\tvcpu->arch.hcr_el2 |= HCR_TID4;\n\telse\n\t\tvcpu->arch.hcr_el2 |= HCR_TID2;\n\n"),
    (KVM_EMULATE_H, "vcpu_set_wfx_traps", "\tvcpu->arch.hcr_el2 |= HCR_TWE;\n",
     "\tvcpu->arch.hcr_el2 |= HCR_TWI;\n"),
    (VHE_SWITCH, "__kvm_vcpu_run_vhe", "\thost_ctxt = host_data_ptr(host_ctxt);\n",
     "\tguest_ctxt = &vcpu->arch.ctxt;\n"),
    (NVHE_HYP_MAIN, "flush_hyp_vcpu", "\thyp_vcpu->vcpu.arch.hcr_el2\t= host_vcpu->arch.hcr_el2;\n",
     "\thyp_vcpu->vcpu.arch.mdcr_el2\t= host_vcpu->arch.mdcr_el2;\n"),
    (AT_C, "__mmu_config_restore", "\twrite_sysreg_el1(config->ttbr0,\tSYS_TTBR0);\n",
     "\twrite_sysreg_el1(config->ttbr1,\tSYS_TTBR1);\n"),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2",
     "\t/* Is the VM being debugged by userspace? */\n\tif (vcpu->guest_debug)\n"
     "\t\t/* Route all software debug exceptions to EL2 */\n"
     "\t\tvcpu->arch.mdcr_el2 |= MDCR_EL2_TDE;\n\n",
     "\t/*\n\t * Trap debug register access when one of the following is true:\n"
     "\t *  - Userspace is using the hardware to debug the guest\n"
     "\t *  (KVM_GUESTDBG_USE_HW is set).\n"
     "\t *  - The guest is not using debug (DEBUG_DIRTY clear).\n"
     "\t *  - The guest has enabled the OS Lock (debug exceptions are blocked).\n\t */\n"
     "\tif ((vcpu->guest_debug & KVM_GUESTDBG_USE_HW) ||\n"
     "\t    !vcpu_get_flag(vcpu, DEBUG_DIRTY) ||\n\t    kvm_vcpu_os_lock_enabled(vcpu))\n"
     "\t\tvcpu->arch.mdcr_el2 |= MDCR_EL2_TDA;\n\n"),
    (ARM_C, "cpu_prepare_hyp_mode", "\tparams->mair_el2 = read_sysreg(mair_el1);\n",
     "\tparams->pgd_pa = kvm_mmu_get_httbr();\n"),
)


@generator("", False, "independent-reorder", """Two adjacent independent
statements (or blocks) swapped: each sets different bits or different
storage, neither reads what the other writes, and no barrier or register
write sits between them.""")
def _reorder(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, first, second in _SWAPS:
        c = Change(k, function=func, subject="KVM: arm64: Reorder the setup in %s()" % func)
        if second.startswith("\tparams->pgd_pa"):
            c.delete_line(path, func, second)
            c.insert_before(path, func, first, second)
        else:
            c.sub(path, func, first + second, second + first)
        c.message = hedged(rng, "Group the statements by the feature they deal with.")
        yield c


# -- move a helper into a header -----------------------------------------------------------


def _cut_function(c: Change, path: str, func: str, lead: str = "") -> str:
    """Remove `func` (with its leading comment `lead` and one blank line after
    it) from `path`; returns its text."""
    text = c.text(path)
    lo, hi = func_span(text, func)
    start = lo - len(lead)
    if lead and text[start:lo] != lead:
        raise GeneratorError("%s: unexpected text before %s" % (path, func))
    whole = text[start:hi]
    tail = "\n" if text[hi:hi + 1] == "\n" else ""
    c.sub(path, None, whole + tail, "", anchor=False)
    return whole


@generator("", False, "helper-moved-to-header", """A static helper moved, unchanged
apart from `static inline`, into a header its callers include: the code that
runs is the same.""")
def _move(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="__vcpu_load_activate_traps",
               subject="KVM: arm64: VHE: Move the load/put trap helpers to hyp/switch.h")
    moved = []
    for func in ("__vcpu_load_activate_traps", "__vcpu_put_deactivate_traps"):
        body = _cut_function(c, VHE_SWITCH, func)
        moved.append(body.replace("static void ", "static inline void ", 1))
    c.insert_before(HYP_SWITCH_H, None, "static inline void ___activate_traps(",
                    "\n".join(moved) + "\n")
    c.message = hedged(rng, "Keep all the trap activation helpers in one place.", always=True)
    yield c
    c = Change(k, function="__debug_save_spe",
               subject="KVM: arm64: Move the SPE save/restore helpers to hyp/debug-sr.h")
    moved = []
    for func in ("__debug_save_spe", "__debug_restore_spe"):
        body = _cut_function(c, NVHE_DEBUG_SR, func)
        moved.append(body.replace("static void ", "static inline void ", 1))
    c.insert_before(HYP_DEBUG_SR_H, None, "static inline void __debug_switch_to_guest_common(",
                    "\n".join(moved) + "\n")
    c.message = hedged(rng, "So that the VHE side can use them later.")
    yield c
    c = Change(k, function="__mmu_config_save",
               subject="KVM: arm64: nv: Move the MMU config helpers to a header")
    text = k.text(AT_C)
    start = text.index("struct mmu_config {\n")
    end = func_span(text, "__mmu_config_restore")[1]
    block = text[start:end]
    c.sub(AT_C, None, block + "\n", "", anchor=False)
    c.sub(AT_C, None, "#include <asm/kvm_mmu.h>\n", "#include <asm/kvm_mmu.h>\n\n"
          "#include \"at.h\"\n")
    c.new_file("arch/arm64/kvm/at.h", "/* SPDX-License-Identifier: GPL-2.0-only */\n"
               "#ifndef __ARM64_KVM_AT_H__\n#define __ARM64_KVM_AT_H__\n\n"
               "#include <asm/kvm_hyp.h>\n\n"
               + block.replace("static void ", "static inline void ")
               + "\n#endif /* __ARM64_KVM_AT_H__ */\n")
    c.message = hedged(rng, "at.c is getting big.")
    yield c


# -- accessors for the same storage -----------------------------------------------------


_ACCESSOR_FUNCS = (
    (ARM_C, "kvm_arch_vcpu_load"), (ARM_C, "vcpu_set_pauth_traps"), (SYS_REGS, "vcpu_set_hcr"),
    (KVM_EMULATE_H, "vcpu_clear_wfx_traps"), (KVM_EMULATE_H, "vcpu_set_wfx_traps"),
    (NVHE_SWITCH, "__activate_traps"), (GUEST_C, "__kvm_arm_vcpu_get_events"),
)


@generator("", False, "accessor-same-storage", """vcpu->arch.hcr_el2 and
*vcpu_hcr(vcpu) are the same storage (vcpu_hcr() returns its address); so
are *host_data_ptr(a.b) and host_data_ptr(a)->b, and &this_cpu_ptr(
&kvm_host_data)->host_ctxt and host_data_ptr(host_ctxt) in hyp code.""")
def _accessor(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func in _ACCESSOR_FUNCS:
        c = Change(k, function=func, subject="KVM: arm64: Use vcpu_hcr() in %s()" % func)
        c.sub_all(path, func, "vcpu->arch.hcr_el2", "*vcpu_hcr(vcpu)", anchor=True)
        c.message = hedged(rng, "Go through the accessor like the rest of the code.")
        yield c
        text = k.text(path)
        lo, hi = func_span(text, func)
        lines = [ln for ln in text[lo:hi].split("\n") if "vcpu->arch.hcr_el2" in ln
                 and text.count(ln + "\n", lo, hi) == 1]
        if len(lines) > 1:
            line = rng.choice(lines)
            c = Change(k, function=func, subject="KVM: arm64: Use vcpu_hcr() in %s()" % func)
            c.sub(path, func, line + "\n", line.replace("vcpu->arch.hcr_el2", "*vcpu_hcr(vcpu)")
                  + "\n")
            c.message = hedged(rng, "Use the accessor for the shadow HCR_EL2.")
            yield c
    for path, func in ((NVHE_TLB, "enter_vmid_context"), (NVHE_TLB, "exit_vmid_context")):
        c = Change(k, function=func, subject="KVM: arm64: nVHE: Use host_data_ptr() in %s()" % func)
        c.sub(path, func, "\thost_ctxt = &this_cpu_ptr(&kvm_host_data)->host_ctxt;\n",
              "\thost_ctxt = host_data_ptr(host_ctxt);\n")
        c.message = hedged(rng, "Use the helper every other user of the host data has.")
        yield c
    c = Change(k, function="__debug_save_host_buffers_nvhe",
               subject="KVM: arm64: nVHE: Spell the host debug state accesses alike")
    c.sub(NVHE_DEBUG_SR, "__debug_restore_host_buffers_nvhe",
          "\t\t__debug_restore_spe(*host_data_ptr(host_debug_state.pmscr_el1));\n",
          "\t\t__debug_restore_spe(host_data_ptr(host_debug_state)->pmscr_el1);\n")
    c.message = hedged(rng, "Same storage.")
    yield c
