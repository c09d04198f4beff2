"""Kind k (initialised before use), and its neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    ARM_C,
    DEBUG_C,
    NVHE_HYP_MAIN,
    NVHE_MEM_PROTECT,
    Change,
    Kernel,
)

MDCR_RESTORE = "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n"
MDCR_SAVE = "\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2);\n"
E2PB = "(MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT)"
E2TB = "(MDCR_EL2_E2TB_MASK << MDCR_EL2_E2TB_SHIFT)"
# -- k: initialised before use ------------------------------------------------------


@generator("k", True, "computed-after-first-use", """vcpu->arch.mdcr_el2/hcr_el2 or
a per-CPU host copy is now computed after something uses it: the init call
dropped or moved past the first vcpu load, the VHE MDCR_EL2 write before the
recomputation, the host copy captured after the vcpu value is derived from
it, the hyp's init parameters written after they are flushed for the
MMU-off read.""")
def _init_order(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_arch_vcpu_run_pid_change",
               subject="KVM: arm64: Compute the debug traps lazily")
    c.delete_line(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.message = para("kvm_arm_setup_debug() computes them before every entry anyway.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_run_pid_change",
               subject="KVM: arm64: Initialise the debug traps from the run ioctl")
    c.delete_line(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.insert_after(ARM_C, "kvm_arch_vcpu_ioctl_run", "\tvcpu_load(vcpu);\n",
                   "\n\tif (!vcpu_has_run_once(vcpu))\n\t\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.message = para("Keep the first-run initialisation next to the run loop.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_ioctl_vcpu_init",
               subject="KVM: arm64: Reset HCR_EL2 on first run only")
    c.delete_line(ARM_C, "kvm_arch_vcpu_ioctl_vcpu_init", "\tvcpu_reset_hcr(vcpu);\n")
    c.insert_after(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_calculate_traps(vcpu);\n",
                   "\tvcpu_reset_hcr(vcpu);\n")
    c.message = para("""There is no point in computing HCR_EL2 at every
        KVM_ARM_VCPU_INIT; do it once, when the vcpu first runs.""")
    yield c
    c = Change(k, function="kvm_arch_vcpu_ioctl_vcpu_init",
               subject="KVM: arm64: Don't reset HCR_EL2 on KVM_ARM_VCPU_INIT")
    c.delete_line(ARM_C, "kvm_arch_vcpu_ioctl_vcpu_init", "\tvcpu_reset_hcr(vcpu);\n")
    c.message = para("kvm_calculate_traps() sets up what the vcpu needs.")
    yield c
    c = Change(k, function="kvm_arm_setup_debug",
               subject="KVM: arm64: Recompute MDCR_EL2 after the debug setup")
    c.delete_line(DEBUG_C, "kvm_arm_setup_debug", "\tkvm_arm_setup_mdcr_el2(vcpu);\n")
    c.insert_after(DEBUG_C, "kvm_arm_setup_debug", "\t\twrite_sysreg(vcpu->arch.mdcr_el2, "
                   "mdcr_el2);\n", "\n\tkvm_arm_setup_mdcr_el2(vcpu);\n")
    c.message = para("""The MDCR_EL2 value depends on the flags set up above
        (DEBUG_DIRTY); compute it last.""")
    yield c
    c = Change(k, function="kvm_arm_setup_debug",
               subject="KVM: arm64: Simplify the VHE MDCR_EL2 update")
    c.sub(DEBUG_C, "kvm_arm_setup_debug",
          "\tunsigned long mdscr, orig_mdcr_el2 = vcpu->arch.mdcr_el2;\n",
          "\tunsigned long mdscr, orig_mdcr_el2;\n")
    c.insert_after(DEBUG_C, "kvm_arm_setup_debug", "\tkvm_arm_setup_mdcr_el2(vcpu);\n",
                   "\torig_mdcr_el2 = vcpu->arch.mdcr_el2;\n")
    c.message = para("Take the reference value once MDCR_EL2 has been computed.")
    yield c
    c = Change(k, function="cpu_hyp_init_features",
               subject="KVM: arm64: Read the boot MDCR_EL2 when a vcpu first runs")
    c.delete_line(ARM_C, "cpu_hyp_init_features", "\tkvm_arm_init_debug();\n")
    c.insert_after(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_arm_vcpu_init_debug(vcpu);\n",
                   "\tkvm_arm_init_debug();\n")
    c.message = para("Nobody needs the boot value before a vcpu runs.")
    yield c
    c = Change(k, function="cpu_hyp_init_features",
               subject="KVM: arm64: Don't read the boot MDCR_EL2 at CPU init")
    c.delete_line(ARM_C, "cpu_hyp_init_features", "\tkvm_arm_init_debug();\n")
    c.message = para("Nothing needs the boot value any more.")
    yield c
    c = Change(k, function="cpu_prepare_hyp_mode",
               subject="KVM: arm64: Fill in the host HCR_EL2 last")
    block = ("\tif (is_protected_kvm_enabled())\n"
             "\t\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS;\n"
             "\telse\n\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n"
             "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n\t\tparams->hcr_el2 |= HCR_E2H;\n")
    c.sub(ARM_C, "cpu_prepare_hyp_mode", block, "")
    c.insert_after(ARM_C, "cpu_prepare_hyp_mode", "\tkvm_flush_dcache_to_poc(params, "
                   "sizeof(*params));\n", "\n" + block)
    c.message = para("Group the HCR_EL2 setup at the end, where it is easy to find.")
    yield c
    for line, what in (("\thyp_vcpu->vcpu.arch.mdcr_el2\t= host_vcpu->arch.mdcr_el2;\n",
                        "MDCR_EL2"),
                       ("\thyp_vcpu->vcpu.arch.hcr_el2\t= host_vcpu->arch.hcr_el2;\n",
                        "HCR_EL2")):
        c = Change(k, function="flush_hyp_vcpu",
                   subject="KVM: arm64: pkvm: Don't copy the host's %s for the hyp vcpu" % what)
        c.delete_line(NVHE_HYP_MAIN, "flush_hyp_vcpu", line)
        c.message = para("The hyp vcpu's trap values are set up at init.")
        yield c
    c = Change(k, function="handle___kvm_vcpu_run",
               subject="KVM: arm64: pkvm: Flush the hyp vcpu once it has run")
    c.move_line(NVHE_HYP_MAIN, "handle___kvm_vcpu_run", "\t\tflush_hyp_vcpu(hyp_vcpu);\n",
                "\t\tret = __kvm_vcpu_run(&hyp_vcpu->vcpu);\n")
    c.message = para("Keep the flush next to the sync of the state back to the host.")
    yield c
    c = Change(k, function="kvm_arm_vcpu_init_debug",
               subject="KVM: arm64: Defer the debug trap setup to the first entry")
    c.sub(DEBUG_C, "kvm_arm_vcpu_init_debug",
          "\tpreempt_disable();\n\tkvm_arm_setup_mdcr_el2(vcpu);\n\tpreempt_enable();\n",
          "\tvcpu_set_flag(vcpu, DEBUG_DIRTY);\n")
    c.message = para("kvm_arm_setup_debug() does the real work before entry.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_run_pid_change",
               subject="KVM: arm64: Initialise the debug traps at first load")
    c.delete_line(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.insert_after(ARM_C, "kvm_arch_vcpu_load", "\t\tkvm_vcpu_load_vhe(vcpu);\n",
                   "\tif (!vcpu_has_run_once(vcpu))\n\t\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.message = para("Do the one-off debug setup where the vcpu state is loaded.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_ioctl_vcpu_init",
               subject="KVM: arm64: Reset HCR_EL2 when loading a vcpu that never ran")
    c.delete_line(ARM_C, "kvm_arch_vcpu_ioctl_vcpu_init", "\tvcpu_reset_hcr(vcpu);\n")
    c.insert_after(ARM_C, "kvm_arch_vcpu_load", "\t\tkvm_vcpu_load_vhe(vcpu);\n",
                   "\tif (!vcpu_has_run_once(vcpu))\n\t\tvcpu_reset_hcr(vcpu);\n")
    c.message = para("Compute the guest's HCR_EL2 as late as possible.")
    yield c
    c = Change(k, function="cpu_prepare_hyp_mode",
               subject="KVM: arm64: Pick the host HCR_EL2 when installing the hyp vectors")
    block = ("\tif (is_protected_kvm_enabled())\n"
             "\t\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS;\n"
             "\telse\n\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n"
             "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n\t\tparams->hcr_el2 |= HCR_E2H;\n")
    c.sub(ARM_C, "cpu_prepare_hyp_mode", block, "")
    c.insert_after(ARM_C, "cpu_init_hyp_mode", "\thyp_install_host_vector();\n",
                   "\n\t{\n\t\tstruct kvm_nvhe_init_params *params = "
                   "this_cpu_ptr_nvhe_sym(kvm_init_params);\n\n"
                   + block.replace("\t", "\t\t").replace("\t\t\t\tparams", "\t\t\tparams")
                   + "\t}\n")
    c.message = para("Keep the host HCR_EL2 choice next to where the hyp is entered.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_run_pid_change",
               subject="KVM: arm64: Only set up the debug traps with an in-kernel irqchip")
    c.delete_line(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.insert_after(ARM_C, "kvm_arch_vcpu_run_pid_change",
                   "\t\t * Map the VGIC hardware resources before running a vcpu the\n"
                   "\t\t * first time on this VM.\n\t\t */\n",
                   "\t\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.message = para("Group the first-run setup that needs the vgic.")
    yield c
    c = Change(k, function="kvm_arch_vcpu_ioctl_vcpu_init",
               subject="KVM: arm64: Only reset HCR_EL2 when re-initialising a vcpu")
    c.delete_line(ARM_C, "kvm_arch_vcpu_ioctl_vcpu_init", "\tvcpu_reset_hcr(vcpu);\n")
    c.sub(ARM_C, "kvm_arch_vcpu_ioctl_vcpu_init", "\t\t\ticache_inval_all_pou();\n\t}\n",
          "\t\t\ticache_inval_all_pou();\n\n\t\tvcpu_reset_hcr(vcpu);\n\t}\n")
    c.message = para("A fresh vcpu has nothing to reset.")
    yield c
    c = Change(k, function="cpu_prepare_hyp_mode",
               subject="KVM: arm64: hVHE: Set E2H after flushing the other parameters")
    c.move_line(ARM_C, "cpu_prepare_hyp_mode", "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n",
                "\tkvm_flush_dcache_to_poc(params, sizeof(*params));\n")
    c.move_line(ARM_C, "cpu_prepare_hyp_mode", "\t\tparams->hcr_el2 |= HCR_E2H;\n",
                "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n", anchor=False)
    c.message = para("E2H is special; keep it apart from the rest.")
    yield c
    c = Change(k, function="__pkvm_prot_finalize",
               subject="KVM: arm64: pkvm: Set HCR_EL2.VM just before installing it")
    c.move_line(NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\tparams->hcr_el2 |= HCR_VM;\n",
                "\tkvm_flush_dcache_to_poc(params, sizeof(*params));\n")
    c.message = para("Keep the HCR_EL2 update next to its write.")
    yield c


@generator("k", False, "computed-earlier", """The computation moved earlier, still
before every use (the debug traps before the MPIDR data, the host HCR_EL2
before the other init parameters).""")
def _earlier(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_arch_vcpu_run_pid_change",
               subject="KVM: arm64: Initialise the debug traps first")
    c.move_line(ARM_C, "kvm_arch_vcpu_run_pid_change", "\tkvm_init_mpidr_data(kvm);\n",
                "\tkvm_arm_vcpu_init_debug(vcpu);\n")
    c.message = hedged(rng, "Order the first-run setup by what it touches.", always=True)
    yield c
    c = Change(k, function="cpu_prepare_hyp_mode",
               subject="KVM: arm64: Set up the host HCR_EL2 before TCR_EL2")
    block = ("\tif (is_protected_kvm_enabled())\n"
             "\t\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS;\n"
             "\telse\n\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n"
             "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n\t\tparams->hcr_el2 |= HCR_E2H;\n")
    c.sub(ARM_C, "cpu_prepare_hyp_mode", block, "")
    c.insert_before(ARM_C, "cpu_prepare_hyp_mode", "\tparams->mair_el2 = read_sysreg(mair_el1);\n",
                    block + "\n")
    c.message = hedged(rng, "The host HCR_EL2 does not depend on TCR_EL2.")
    yield c
