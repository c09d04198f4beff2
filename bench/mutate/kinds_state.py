"""Kinds i (PMU/SPE/trace ownership) and j (VHE and nVHE together), and
their neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    DEBUG_C,
    EL2_SETUP_H,
    HYP_DEBUG_SR_H,
    HYP_SWITCH_H,
    KVM_EMULATE_H,
    NVHE_DEBUG_SR,
    NVHE_PKVM,
    NVHE_SWITCH,
    VHE_SWITCH,
    Change,
    Kernel,
)

MDCR_RESTORE = "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n"
MDCR_SAVE = "\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2);\n"
E2PB = "(MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT)"
E2TB = "(MDCR_EL2_E2TB_MASK << MDCR_EL2_E2TB_SHIFT)"
# -- i: PMU/SPE/trace ownership -------------------------------------------------

_OWNERSHIP = (
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) & ~MDCR_EL2_HPMN_MASK,\n"
     "\t\t     mdcr_el2);\n", "KVM: arm64: Don't hand the host the guest's counters",
     "The counter partition is the guest's business; give the host a clean HPMN."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) & ~%s,\n"
     "\t\t     mdcr_el2);\n" % E2PB, "KVM: arm64: Keep the SPE buffer at EL2 after a guest run",
     "The profiling buffer should only be given back once the host restores SPE."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) & ~%s,\n"
     "\t\t     mdcr_el2);\n" % E2TB, "KVM: arm64: Keep the trace buffer at EL2 after a guest run",
     "The trace buffer should only be given back once the host restores TRBE."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) | %s,\n"
     "\t\t     mdcr_el2);\n" % E2PB, "KVM: arm64: Make sure the host owns SPE after a guest run",
     "Give the profiling buffer to the EL1&0 regime on the way out, as we used to."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) | %s,\n"
     "\t\t     mdcr_el2);\n" % E2TB, "KVM: arm64: Make sure the host owns TRBE after a guest run",
     "Give the trace buffer to the EL1&0 regime on the way out."),
    (HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE,
     "\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2) &\n"
     "\t\t\t\t\t\t     ~MDCR_EL2_HPMN_MASK;\n",
     "KVM: arm64: Don't carry HPMN over the world switch",
     "HPMN is recomputed by the host PMU driver; there is no need to save it."),
    (HYP_SWITCH_H, "__activate_traps_common", "\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n",
     "\twrite_sysreg(vcpu->arch.mdcr_el2 | MDCR_EL2_HPMN_MASK, mdcr_el2);\n",
     "KVM: arm64: Give guests all the event counters",
     "Guests should see every counter the PMU implements."),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2",
     "\tvcpu->arch.mdcr_el2 = __this_cpu_read(mdcr_el2) & MDCR_EL2_HPMN_MASK;\n",
     "\tvcpu->arch.mdcr_el2 = MDCR_EL2_HPMN_MASK;\n",
     "KVM: arm64: Don't depend on the boot HPMN for guests",
     "Firmware's HPMN choice has nothing to do with what the guest is given."),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2", "\t\t\t\tMDCR_EL2_TDOSA);\n",
     "\t\t\t\tMDCR_EL2_TDOSA);\n\tvcpu->arch.mdcr_el2 |= %s;\n" % E2PB,
     "KVM: arm64: Let the guest own its profiling buffer",
     "Guests with SPE want the buffer owned by their own EL1&0 regime."),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2", "\t\t\t\tMDCR_EL2_TDOSA);\n",
     "\t\t\t\tMDCR_EL2_TDOSA);\n\tvcpu->arch.mdcr_el2 |= %s;\n" % E2TB,
     "KVM: arm64: Let the guest own the trace buffer",
     "Guests with TRBE want the trace buffer owned by their own EL1&0 regime."),
    (DEBUG_C, "kvm_arm_init_debug",
     "\t__this_cpu_write(mdcr_el2, kvm_call_hyp_ret(__kvm_get_mdcr_el2));\n",
     "\t__this_cpu_write(mdcr_el2, 0);\n",
     "KVM: arm64: Stop asking the hypervisor for the boot MDCR_EL2",
     "Save a hypercall per CPU at init; the value is recomputed for each vcpu."),
    (DEBUG_C, "kvm_arm_setup_debug", "\t\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n",
     "\t\twrite_sysreg(vcpu->arch.mdcr_el2 & ~MDCR_EL2_HPMN_MASK, mdcr_el2);\n",
     "KVM: arm64: VHE: Don't expose counters when updating MDCR_EL2",
     "Updating the traps must not widen the set of counters the guest can use."),
    (NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
     "\t__deactivate_traps_common(vcpu);\n\tsysreg_clear_set(mdcr_el2, %s, 0);\n" % E2PB,
     "KVM: arm64: nVHE: Keep SPE at EL2 until the host restores it",
     "The host restores its profiling state later; keep the buffer at EL2 until then."),
    (NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
     "\t__deactivate_traps_common(vcpu);\n\tsysreg_clear_set(mdcr_el2, %s, 0);\n" % E2TB,
     "KVM: arm64: nVHE: Keep TRBE at EL2 until the host restores it",
     "The host restores its trace state later; keep the buffer at EL2 until then."),
    (NVHE_DEBUG_SR, "__kvm_get_mdcr_el2", "\treturn read_sysreg(mdcr_el2);\n",
     "\treturn read_sysreg(mdcr_el2) & ~MDCR_EL2_HPMN_MASK;\n",
     "KVM: arm64: nVHE: Hide the counter partition from the host",
     "The host does not need to know how many counters firmware reserved."),
    ("arch/arm64/kvm/hyp/vhe/debug-sr.c", "__kvm_get_mdcr_el2", "\treturn read_sysreg(mdcr_el2);\n",
     "\treturn read_sysreg(mdcr_el2) | MDCR_EL2_HPMN_MASK;\n",
     "KVM: arm64: VHE: Report every counter as available to guests",
     "Let guests use the whole PMU."),
)


@generator("i", True, "ownership-lost-or-forced", """On the way back (or in what
the guest is given) HPMN is dropped or forced, or E2PB/E2TB ownership is
cleared or forced: the host does not get the counter partition and buffer
ownership it set up (E2PB is 0b11 for an nVHE host with SPE, 0b00 under VHE
or without SPE).""", extra=("same-value",))
def _ownership(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _OWNERSHIP:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c


@generator("i", True, "feature-bits-set-blindly", """The EL2 setup sets the SPE
or trace-buffer ownership bits without probing ID_AA64DFR0_EL1 (or without
checking that firmware left the buffer to EL1&0): on CPUs without the feature
the bits are RES0, and where EL2 owns the buffer EL1 gets it anyway.""")
def _blind(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for field, probe, mask in (
            ("SPE", "\tmov\tx0, #(MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT)\n"
                    "\torr\tx2, x2, x0\t\t\t// If we don't have VHE, then\n", E2PB),
            ("TRBE", "\tmov\tx0, #(MDCR_EL2_E2TB_MASK << MDCR_EL2_E2TB_SHIFT)\n"
                     "\torr\tx2, x2, x0\t\t\t// allow the EL1&0 translation\n", E2TB)):
        c = Change(k, function="__init_el2_debug",
                   subject="arm64: el2_setup: Give %s to EL1 unconditionally" % field)
        c.sub(EL2_SETUP_H, ".macro __init_el2_debug", probe, "", anchor=False)
        c.insert_before(EL2_SETUP_H, ".macro __init_el2_debug",
                        "\t/* Statistical profiling */\n" if field == "SPE" else
                        "\t/* Trace buffer */\n",
                        "\tmov\tx0, #%s\t// %s owned by EL1&0\n\torr\tx2, x2, x0\n\n"
                        % (mask, field))
        c.message = para("""The ownership bits are ignored when the feature is not
            there, so the probing only costs instructions.""")
        yield c
    c = Change(k, function="__init_el2_debug",
               subject="arm64: el2_setup: Don't check TRBIDR_EL1.P")
    c.sub(EL2_SETUP_H, ".macro __init_el2_debug",
          "\tmrs_s\tx0, SYS_TRBIDR_EL1\n\tand\tx0, x0, TRBIDR_EL1_P\n"
          "\tcbnz\tx0, .Lskip_trace_\\@\t\t// If TRBE is available at EL2\n\n", "")
    c.message = para("If TRBE is implemented, EL1 gets it.")
    yield c
    c = Change(k, function="kvm_arm_setup_mdcr_el2",
               subject="KVM: arm64: Always trap the debug comms channel")
    c.sub(DEBUG_C, "kvm_arm_setup_mdcr_el2", "\t\t\t\tMDCR_EL2_TDOSA);\n",
          "\t\t\t\tMDCR_EL2_TDOSA |\n\t\t\t\tMDCR_EL2_TDCC);\n")
    c.message = para("Guests have no business with the DCC; trap it like pKVM does.")
    yield c


@generator("i", False, "ownership-same-bits", """The same HPMN, E2PB and E2TB bits
kept through an equivalent expression (GENMASK for the masks, FIELD_GET of a
shift-0 field).""")
def _ownership_same(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for new in ("\tvcpu->arch.mdcr_el2 = __this_cpu_read(mdcr_el2) & GENMASK(4, 0);\n",
                "\tvcpu->arch.mdcr_el2 = FIELD_GET(MDCR_EL2_HPMN_MASK, "
                "__this_cpu_read(mdcr_el2));\n"):
        c = Change(k, function="kvm_arm_setup_mdcr_el2",
                   subject="KVM: arm64: Spell the HPMN extraction differently")
        c.sub(DEBUG_C, "kvm_arm_setup_mdcr_el2",
              "\tvcpu->arch.mdcr_el2 = __this_cpu_read(mdcr_el2) & MDCR_EL2_HPMN_MASK;\n", new)
        c.message = hedged(rng, "Make the field extraction explicit.", always=True)
        yield c
    c = Change(k, function="pvm_init_traps_aa64dfr0",
               subject="KVM: arm64: pkvm: Use GENMASK() for the buffer owner fields")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64dfr0",
          "\t\tmdcr_clear |= MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT;\n",
          "\t\tmdcr_clear |= GENMASK(13, 12);\t/* E2PB */\n")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64dfr0",
          "\t\tmdcr_clear |= MDCR_EL2_E2TB_MASK << MDCR_EL2_E2TB_SHIFT;\n",
          "\t\tmdcr_clear |= GENMASK(25, 24);\t/* E2TB */\n")
    c.message = hedged(rng, "Easier to compare with the Arm ARM.")
    yield c


# -- j: VHE and nVHE together; is_kernel_in_hyp_mode() ----------------------------

_ONE_SIDED = (
    (VHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, __compute_hcr(vcpu));\n",
     "\t___activate_traps(vcpu, __compute_hcr(vcpu) & ~HCR_TWI);\n",
     "KVM: arm64: VHE: Don't trap WFI", "WFI trapping costs more than it saves."),
    (NVHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, vcpu->arch.hcr_el2);\n",
     "\t___activate_traps(vcpu, vcpu->arch.hcr_el2 & ~HCR_TWE);\n",
     "KVM: arm64: nVHE: Don't trap WFE", "WFE trapping costs more than it saves."),
    (NVHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, vcpu->arch.hcr_el2);\n",
     "\t___activate_traps(vcpu, vcpu->arch.hcr_el2 | HCR_TID2);\n",
     "KVM: arm64: nVHE: Trap the cache ID registers", "Hide the host's cache topology."),
    (VHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, __compute_hcr(vcpu));\n",
     "\t___activate_traps(vcpu, __compute_hcr(vcpu) | HCR_TSW);\n",
     "KVM: arm64: VHE: Always trap set/way maintenance", "Set/way is never what a guest "
     "wants."),
    (NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n\n"
     "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, hcr_el2);\n",
     "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, hcr_el2);\n\n"
     "\t__deactivate_traps_common(vcpu);\n",
     "KVM: arm64: nVHE: Restore HCR_EL2 before the common traps",
     "Put the host's HCR_EL2 back as early as possible."),
    (VHE_SWITCH, "kvm_vcpu_load_vhe", "\t__vcpu_load_switch_sysregs(vcpu);\n"
     "\t__vcpu_load_activate_traps(vcpu);\n",
     "\t__vcpu_load_activate_traps(vcpu);\n\t__vcpu_load_switch_sysregs(vcpu);\n",
     "KVM: arm64: VHE: Activate the traps first at load",
     "The traps should be in place before the guest's EL1 state is loaded."),
    (VHE_SWITCH, "kvm_vcpu_put_vhe", "\t__vcpu_put_deactivate_traps(vcpu);\n"
     "\t__vcpu_put_switch_sysregs(vcpu);\n",
     "\t__vcpu_put_switch_sysregs(vcpu);\n\t__vcpu_put_deactivate_traps(vcpu);\n",
     "KVM: arm64: VHE: Save the guest's sysregs before dropping the traps",
     "Mirror the order used at load."),
    (NVHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, vcpu->arch.hcr_el2);\n"
     "\t__activate_traps_common(vcpu);\n",
     "\t__activate_traps_common(vcpu);\n\t___activate_traps(vcpu, vcpu->arch.hcr_el2);\n",
     "KVM: arm64: nVHE: Install MDCR_EL2 before HCR_EL2",
     "The debug traps should be in place first."),
    (NVHE_SWITCH, "__deactivate_traps", "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2,"
     " hcr_el2);\n", "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, hcr_el2);\n"
     "\tisb();\n", "KVM: arm64: nVHE: Synchronise the host HCR_EL2 on exit",
     "Make the host's traps effective immediately."),
    (VHE_SWITCH, "__deactivate_traps", "\tasm(ALTERNATIVE(\"nop\", \"isb\", "
     "ARM64_WORKAROUND_SPECULATIVE_AT));\n",
     "\tisb();\n", "KVM: arm64: VHE: Always synchronise before switching to the host regime",
     "Not only the affected CPUs benefit from the barrier."),
    (NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
     "\t__deactivate_traps_common(vcpu);\n\twrite_sysreg(0, pmselr_el0);\n",
     "KVM: arm64: nVHE: Sanitise PMSELR_EL0 on exit",
     "Don't leak the guest's counter selection."),
    (VHE_SWITCH, "__vcpu_load_activate_traps", "\t__activate_traps_common(vcpu);\n",
     "\t__activate_traps_common(vcpu);\n\tisb();\n",
     "KVM: arm64: VHE: Synchronise the traps at load",
     "Make the new MDCR_EL2 effective right away."),
)


@generator("j", True, "one-configuration-changed", """A save/restore change made
on the VHE or the nVHE path only (traps, ordering of the HCR_EL2/MDCR_EL2
writes, barriers) with no reason given for leaving the other path as it is.""")
def _one_sided(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _ONE_SIDED:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c
    c = Change(k, function="__deactivate_traps",
               subject="KVM: arm64: nVHE: Restore the common traps first on exit")
    c.move_line(NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
                "\t___deactivate_traps(vcpu);\n")
    c.message = para("Give the host its debug and PMU configuration back as early as possible.")
    yield c


_HYP_MODE = (
    (HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE,
     "\tif (!is_kernel_in_hyp_mode())\n\t" + MDCR_SAVE,
     "KVM: arm64: Only save the host MDCR_EL2 on nVHE",
     "VHE switches MDCR_EL2 at load and put; the host copy is only needed on nVHE."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\tif (!is_kernel_in_hyp_mode())\n\t" + MDCR_RESTORE,
     "KVM: arm64: Only restore the host MDCR_EL2 on nVHE",
     "On VHE the host's MDCR_EL2 comes back at put."),
    (HYP_SWITCH_H, "___activate_traps", "\twrite_sysreg(hcr, hcr_el2);\n",
     "\tif (is_kernel_in_hyp_mode())\n\t\thcr |= HCR_E2H;\n\n\twrite_sysreg(hcr, hcr_el2);\n",
     "KVM: arm64: Make sure VHE guests run with E2H",
     "A VHE host must never run a guest with E2H clear."),
    (HYP_SWITCH_H, "___deactivate_traps", "\tif (vcpu->arch.hcr_el2 & HCR_VSE) {\n",
     "\tif (is_kernel_in_hyp_mode() && (vcpu->arch.hcr_el2 & HCR_VSE)) {\n",
     "KVM: arm64: Only track the pending SError on VHE",
     "nVHE resyncs HCR_EL2.VSE from the host on the next run."),
    (HYP_DEBUG_SR_H, "__debug_switch_to_guest_common",
     "\tif (!vcpu_get_flag(vcpu, DEBUG_DIRTY))\n\t\treturn;\n",
     "\tif (!is_kernel_in_hyp_mode())\n\t\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n\n"
     "\tif (!vcpu_get_flag(vcpu, DEBUG_DIRTY))\n\t\treturn;\n",
     "KVM: arm64: Refresh MDCR_EL2 before switching debug state on nVHE",
     "nVHE has no vcpu load hook to do it."),
    (KVM_EMULATE_H, "vcpu_el1_is_32bit", "\treturn !(vcpu->arch.hcr_el2 & HCR_RW);\n",
     "\tif (!is_kernel_in_hyp_mode())\n\t\treturn false;\n\n"
     "\treturn !(vcpu->arch.hcr_el2 & HCR_RW);\n",
     "KVM: arm64: nVHE does not support 32bit EL1 in hyp",
     "Short-circuit the check on nVHE."),
    (HYP_SWITCH_H, "__activate_traps_common", "\twrite_sysreg(1 << 15, hstr_el2);\n",
     "\tif (!is_kernel_in_hyp_mode())\n\t\twrite_sysreg(1 << 15, hstr_el2);\n",
     "KVM: arm64: Only trap impdef cp15 accesses on nVHE",
     "VHE hosts handle these at load."),
)


@generator("j", True, "is-kernel-in-hyp-mode-as-vhe", """A helper compiled into
both hyp objects tells VHE from nVHE with is_kernel_in_hyp_mode(), which is
true at EL2 in both modes: the nVHE branch it means to take is never taken
(or the VHE-only one always is).""")
def _hyp_mode(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _HYP_MODE:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c


@generator("j", False, "one-configuration-only-code", """A change to code only one
configuration runs (VHE-only nested virt's __compute_hcr, the nVHE-only SPE
and trace save, pKVM's trap setup, a has_vhe() test in host code), with the
same behaviour: there is no counterpart to change.""")
def _one_config(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="__compute_hcr",
               subject="KVM: arm64: nv: One trap group per line in __compute_hcr()")
    c.sub(VHE_SWITCH, "__compute_hcr", "\t\thcr |= HCR_NV | HCR_NV2 | HCR_AT | HCR_TTLB;\n",
          "\t\thcr |= HCR_NV | HCR_NV2;\n\t\thcr |= HCR_AT | HCR_TTLB;\n")
    c.message = hedged(rng, "Separate the NV enables from the traps they imply.")
    yield c
    c = Change(k, function="__debug_save_host_buffers_nvhe",
               subject="KVM: arm64: nVHE: Use a local for the host debug state")
    c.sub(NVHE_DEBUG_SR, "__debug_save_host_buffers_nvhe",
          "\tif (vcpu_get_flag(vcpu, DEBUG_STATE_SAVE_SPE))\n"
          "\t\t__debug_save_spe(host_data_ptr(host_debug_state.pmscr_el1));\n",
          "\tif (vcpu_get_flag(vcpu, DEBUG_STATE_SAVE_SPE))\n"
          "\t\t__debug_save_spe(&host_data_ptr(host_debug_state)->pmscr_el1);\n")
    c.message = hedged(rng, "Same storage, spelled like the rest of the file.")
    yield c
    c = Change(k, function="pvm_init_traps_aa64mmfr1",
               subject="KVM: arm64: pkvm: Set the LOR trap directly")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64mmfr1",
          "\tconst u64 feature_ids = pvm_read_id_reg(vcpu, SYS_ID_AA64MMFR1_EL1);\n"
          "\tu64 hcr_set = 0;\n\n\t/* Trap LOR */\n"
          "\tif (!FIELD_GET(ARM64_FEATURE_MASK(ID_AA64MMFR1_EL1_LO), feature_ids))\n"
          "\t\thcr_set |= HCR_TLOR;\n\n\tvcpu->arch.hcr_el2 |= hcr_set;\n",
          "\tconst u64 feature_ids = pvm_read_id_reg(vcpu, SYS_ID_AA64MMFR1_EL1);\n\n"
          "\t/* Trap LOR */\n"
          "\tif (!FIELD_GET(ARM64_FEATURE_MASK(ID_AA64MMFR1_EL1_LO), feature_ids))\n"
          "\t\tvcpu->arch.hcr_el2 |= HCR_TLOR;\n")
    c.message = hedged(rng, "A single bit does not need a local.", always=True)
    yield c
    c = Change(k, function="kvm_arm_setup_debug",
               subject="KVM: arm64: Split the VHE-only MDCR_EL2 update")
    c.sub(DEBUG_C, "kvm_arm_setup_debug",
          "\tif (has_vhe() && orig_mdcr_el2 != vcpu->arch.mdcr_el2)\n"
          "\t\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n",
          "\tif (has_vhe()) {\n\t\tif (orig_mdcr_el2 != vcpu->arch.mdcr_el2)\n"
          "\t\t\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n\t}\n")
    c.message = hedged(rng, "Make the VHE-only part stand out.")
    yield c
