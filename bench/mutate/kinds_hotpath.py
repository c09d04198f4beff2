"""Kind e (constants stay constants on the world switch), and its
neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    ARM_C,
    HYP_SWITCH_H,
    KVM_HOST_H,
    NVHE_SWITCH,
    VHE_SWITCH,
    VHE_TLB,
    Change,
    Kernel,
)

VHE_HCR = "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n"
NVHE_HCR = "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, hcr_el2);\n"
MDCR_RESTORE = "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n"
MDCR_SAVE = "\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2);\n"
# -- e: a host constant or a switch helper gains loads ----------------------------

_HOST_LOADS = (
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     "\twrite_sysreg(vcpu->arch.host_hcr_el2, hcr_el2);\n",
     "\t/* Values of trap registers for the guest. */\n",
     "\t/* The host's HCR_EL2, restored on exit (VHE). */\n\tu64 host_hcr_el2;\n\n"),
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     "\twrite_sysreg(__this_cpu_read(kvm_host_hcr_el2), hcr_el2);\n", None, None),
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     "\twrite_sysreg(*host_data_ptr(host_ctxt.hcr_el2), hcr_el2);\n", None, None),
    (VHE_TLB, "exit_vmid_context", VHE_HCR, "\twrite_sysreg(cxt->hcr, hcr_el2);\n",
     None, None),
    (VHE_TLB, "exit_vmid_context", VHE_HCR,
     "\twrite_sysreg(__this_cpu_read(kvm_host_hcr_el2), hcr_el2);\n", None, None),
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     "\twrite_sysreg(READ_ONCE(kvm_vhe_host_hcr), hcr_el2);\n", None, None),
    (VHE_TLB, "exit_vmid_context", VHE_HCR,
     "\twrite_sysreg(READ_ONCE(kvm_vhe_host_hcr), hcr_el2);\n", None, None),
)


@generator("e", True, "host-constant-to-load", """The VHE host HCR_EL2, the
compile-time constant HCR_HOST_VHE_FLAGS on every VHE host, is now loaded
from memory (a vcpu field, a per-CPU variable, host data, the TLB context) on
each exit or TLB switch back, though no VHE host configuration differs.""")
def _constant_to_load(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, field_after, field in _HOST_LOADS:
        c = Change(k, function=func,
                   subject="KVM: arm64: VHE: Restore the host HCR_EL2 from a saved copy")
        c.sub(path, func, old, new)
        if field_after is not None and field is not None:
            c.insert_before(KVM_HOST_H, None, field_after, field, anchor=False)
            c.insert_before(VHE_SWITCH, "kvm_vcpu_load_vhe",
                            "\t__vcpu_load_switch_sysregs(vcpu);\n",
                            "\tvcpu->arch.host_hcr_el2 = read_sysreg(hcr_el2);\n", anchor=False)
        elif "kvm_host_hcr_el2" in new:
            c.insert_before(VHE_SWITCH, None, "DEFINE_PER_CPU(unsigned long, kvm_hyp_vector);\n",
                            "DEFINE_PER_CPU(u64, kvm_host_hcr_el2);\n", anchor=False)
            if path == VHE_TLB:
                c.insert_before(VHE_TLB, None, "struct tlb_inv_context {",
                                "DECLARE_PER_CPU(u64, kvm_host_hcr_el2);\n\n", anchor=False)
            c.insert_before(VHE_SWITCH, "kvm_vcpu_load_vhe",
                            "\t__vcpu_load_switch_sysregs(vcpu);\n",
                            "\t__this_cpu_write(kvm_host_hcr_el2, read_sysreg(hcr_el2));\n",
                            anchor=False)
        elif "kvm_vhe_host_hcr" in new:
            c.insert_before(path, None, "DEFINE_PER_CPU(unsigned long, kvm_hyp_vector);\n"
                            if path == VHE_SWITCH else "struct tlb_inv_context {",
                            "static u64 kvm_vhe_host_hcr __ro_after_init = HCR_HOST_VHE_FLAGS;\n\n",
                            anchor=False)
        elif "cxt->hcr" in new:
            c.insert_after(VHE_TLB, None, "\tunsigned long\t\tflags;\n", "\tu64\t\t\thcr;\n",
                           anchor=False)
            c.sub(VHE_TLB, "enter_vmid_context", "\tval = read_sysreg(hcr_el2);\n",
                  "\tval = cxt->hcr = read_sysreg(hcr_el2);\n", anchor=False)
        c.message = para("""Hardcoding the host's HCR_EL2 value on the way out
            assumes nothing else ever changes it. Save what the host had and put
            that back instead, which is more robust.""")
        yield c


_SWITCH_LOADS = (
    (HYP_SWITCH_H, "___activate_traps",
     "\tif (cpus_have_final_cap(ARM64_WORKAROUND_CAVIUM_TX2_219_TVM))\n",
     "\tif (this_cpu_has_cap(ARM64_WORKAROUND_CAVIUM_TX2_219_TVM))\n",
     "KVM: arm64: Check the TX2 erratum on the running CPU"),
    (HYP_SWITCH_H, "__activate_traps_common", "\tif (cpus_have_final_cap(ARM64_HAS_HCX)) {\n",
     "\tif (this_cpu_has_cap(ARM64_HAS_HCX)) {\n",
     "KVM: arm64: Check for HCX on the running CPU"),
    (HYP_SWITCH_H, "__deactivate_traps_common", "\tif (cpus_have_final_cap(ARM64_HAS_HCX))\n",
     "\tif (this_cpu_has_cap(ARM64_HAS_HCX))\n",
     "KVM: arm64: Check for HCX on the running CPU on exit"),
    (HYP_SWITCH_H, "___deactivate_traps", "\tif (vcpu->arch.hcr_el2 & HCR_VSE) {\n",
     "\tif (vcpu->arch.fault.esr_el2 || kvm_vcpu_get_esr(vcpu) ||\n"
     "\t    (vcpu->arch.hcr_el2 & HCR_VSE)) {\n",
     "KVM: arm64: Catch pending SErrors after any fault on exit"),
    (HYP_SWITCH_H, "___activate_traps", "\twrite_sysreg(hcr, hcr_el2);\n",
     "\tWARN_ON_ONCE(!(hcr & HCR_RW) && !kvm_vcpu_has_feature(vcpu->kvm,\n"
     "\t\t\t\t\t\t\t KVM_ARM_VCPU_EL1_32BIT));\n\twrite_sysreg(hcr, hcr_el2);\n",
     "KVM: arm64: Sanity check the guest's RW bit on entry"),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\tWARN_ON(vcpu->arch.mdcr_el2 != __vcpu_sys_reg(vcpu, MDCR_EL2) && !vcpu_has_nv(vcpu));\n"
     + MDCR_RESTORE, "KVM: arm64: Warn about out-of-sync MDCR_EL2 copies on exit"),
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     VHE_HCR + "\tWARN_ON_ONCE(read_sysreg(hcr_el2) != vcpu->kvm->arch.host_hcr);\n",
     "KVM: arm64: VHE: Check the host HCR_EL2 after restoring it"),
    (NVHE_SWITCH, "__activate_traps", "\t___activate_traps(vcpu, vcpu->arch.hcr_el2);\n",
     "\t___activate_traps(vcpu, vcpu->arch.hcr_el2 |\n"
     "\t\t\t  (kern_hyp_va(vcpu->kvm)->arch.flags & BIT(KVM_ARCH_FLAG_MTE_ENABLED) ?\n"
     "\t\t\t   HCR_ATA : 0));\n",
     "KVM: arm64: nVHE: Derive ATA from the VM's flags on entry"),
    (HYP_SWITCH_H, "___deactivate_traps", "\tif (vcpu->arch.hcr_el2 & HCR_VSE) {\n",
     "\tif (vcpu_get_flag(vcpu, PENDING_EXCEPTION) || (vcpu->arch.hcr_el2 & HCR_VSE)) {\n",
     "KVM: arm64: Resync VSE when an exception is pending too"),
    (NVHE_SWITCH, "__activate_traps",
     "\tif (cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n",
     "\tif (this_cpu_has_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n",
     "KVM: arm64: nVHE: Apply the speculative AT workaround per CPU"),
    (HYP_SWITCH_H, "__activate_traps_common", "\tif (kvm_arm_support_pmu_v3()) {\n",
     "\tif (kvm_vcpu_has_pmu(vcpu)) {\n",
     "KVM: arm64: Only trap PMU EL0 accesses for vcpus with a PMU"),
    (HYP_SWITCH_H, "___activate_traps",
     "\tif (cpus_have_final_cap(ARM64_HAS_RAS_EXTN) && (hcr & HCR_VSE))\n",
     "\tif (this_cpu_has_cap(ARM64_HAS_RAS_EXTN) && (hcr & HCR_VSE))\n",
     "KVM: arm64: Check for RAS on the running CPU before writing VSESR_EL2"),
    (HYP_SWITCH_H, "__deactivate_traps_common", "\tif (cpus_have_final_cap(ARM64_HAS_HCX))\n",
     "\tif (vcpu->arch.hcrx_el2)\n",
     "KVM: arm64: Only restore HCRX_EL2 if the vcpu used it"),
)


@generator("e", True, "switch-helper-gains-loads", """A world-switch helper that
used a boot-time capability (a static branch) or the vcpu's shadow HCR_EL2
now loads per-CPU, VM or fault state (this_cpu_has_cap(), vcpu->kvm fields,
a WARN on every entry or exit).""")
def _switch_loads(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject in _SWITCH_LOADS:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = para("""Big.LITTLE systems and heterogeneous firmware make it
            worth checking the actual state on the way through rather than
            trusting what was decided at boot.""")
        yield c


# -- neighbours of e --------------------------------------------------------------


@generator("e", False, "constant-stays-constant", """The host HCR_EL2 constant
spelled differently (the flag set's bits written out, a macro with the same
expansion) or a load added off the switch path (vcpu load, init): the exit
path still writes a compile-time constant.""")
def _constant_stays(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func in ((VHE_SWITCH, "__deactivate_traps"), (VHE_TLB, "exit_vmid_context")):
        c = Change(k, function=func,
                   subject="KVM: arm64: VHE: Spell out the host HCR_EL2 bits")
        c.sub(path, func, VHE_HCR, "\twrite_sysreg(HCR_RW | HCR_TGE | HCR_E2H, hcr_el2);\n")
        c.message = hedged(rng, "Make the regime bits being restored visible here.")
        yield c
    c = Change(k, function="__deactivate_traps",
               subject="KVM: arm64: VHE: Name the exit value of HCR_EL2")
    c.insert_before(VHE_SWITCH, None, "static void __deactivate_traps(",
                    "#define HCR_VHE_EXIT_FLAGS\tHCR_HOST_VHE_FLAGS\n\n")
    c.sub(VHE_SWITCH, "__deactivate_traps", VHE_HCR,
          "\twrite_sysreg(HCR_VHE_EXIT_FLAGS, hcr_el2);\n")
    c.message = hedged(rng, "Name the value written on exit.", always=True)
    yield c
    c = Change(k, function="kvm_arch_vcpu_load",
               subject="KVM: arm64: Warn about a stray TGE in the vcpu's HCR_EL2 at load")
    c.insert_before(ARM_C, "kvm_arch_vcpu_load", "\tvcpu_set_pauth_traps(vcpu);\n",
                    "\tWARN_ON_ONCE(vcpu->arch.hcr_el2 & HCR_TGE);\n\n")
    c.message = para("""A guest HCR_EL2 with TGE set would be fatal. Check it at
        load time, off the world-switch path.""")
    yield c
