"""Kinds c (host state restored on every path) and d (the same host
value), and their neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    ARM_C,
    AT_C,
    HYP_SWITCH_H,
    NVHE_MEM_PROTECT,
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
# -- c: a path back to the host no longer restores the host value ---------------

_DROPPED_WRITES = (
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     "KVM: arm64: VHE: Drop the HCR_EL2 write from __deactivate_traps()",
     """kvm_call_hyp() already ends with an isb() and the host's view of
     HCR_EL2 is what the VHE host always runs with, so writing it again on
     every exit only costs cycles."""),
    (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR,
     "KVM: arm64: nVHE: Don't rewrite HCR_EL2 on guest exit",
     """The host HCR_EL2 is installed by __kvm_hyp_init and the hyp never
     changes it, so there is no need to write it back on every exit."""),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "KVM: arm64: Stop restoring MDCR_EL2 in __deactivate_traps_common()",
     """The host configures MDCR_EL2 once at boot; the guest value only
     matters while the guest runs."""),
    (VHE_TLB, "exit_vmid_context", VHE_HCR,
     "KVM: arm64: VHE: Only touch TGE in the TLB invalidation path",
     """Restoring the whole of HCR_EL2 when leaving the VMID context is
     overkill: the only thing enter_vmid_context() changed was the stage-2
     context, which we put back below."""),
    (AT_C, "__mmu_config_restore", "\twrite_sysreg(config->hcr,\thcr_el2);\n",
     "KVM: arm64: nv: Don't restore HCR_EL2 after a fast AT",
     """The AT emulation only needs the guest's stage-1 registers back; HCR_EL2
     is left as the caller set it."""),
    (AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(hcr, hcr_el2);\n",
     "KVM: arm64: nv: Simplify the AT S1E2 emulation",
     """The isb() after the AT already synchronises everything we need;
     the HCR_EL2 write afterwards is redundant."""),
)


@generator("c", True, "host-write-dropped", """The write of the host HCR_EL2 or
MDCR_EL2 removed from an exit, TLB-switch-back or AT-restore path: the host
runs on with the guest's (or the temporary) value.""")
def _host_write_dropped(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, line, subject, why in _DROPPED_WRITES:
        c = Change(k, function=func, subject=subject)
        c.delete_line(path, func, line)
        c.message = para(why)
        yield c


_DROPPED_CALLS = (
    (VHE_SWITCH, "__hyp_call_panic", "\t__deactivate_traps(vcpu);\n",
     "KVM: arm64: VHE: Keep the guest state intact for the panic message",
     "Dumping the guest's traps is more useful than restoring the host's on the way to "
     "panic()."),
    (NVHE_SWITCH, "hyp_panic", "\t\t__deactivate_traps(vcpu);\n",
     "KVM: arm64: nVHE: Do less work in hyp_panic()",
     "The host is about to panic anyway; restoring its traps is pointless."),
    (VHE_SWITCH, "__vcpu_put_deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
     "KVM: arm64: VHE: Skip the trap teardown at vcpu put",
     "The traps are reprogrammed on the next load anyway."),
    (VHE_SWITCH, "kvm_vcpu_put_vhe", "\t__vcpu_put_deactivate_traps(vcpu);\n",
     "KVM: arm64: VHE: Don't deactivate traps on put",
     "A vcpu that is put is normally loaded again on the same CPU."),
    (NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
     "KVM: arm64: nVHE: Don't tear down the common traps on exit",
     "The host does not use the traps __activate_traps_common() sets up."),
)


@generator("c", True, "restore-call-dropped", """A call that restores the host
value removed from an exit, panic or vcpu-put path: that path returns to
the host with the guest's HCR_EL2 or MDCR_EL2.""")
def _restore_call_dropped(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, line, subject, why in _DROPPED_CALLS:
        c = Change(k, function=func, subject=subject)
        c.delete_line(path, func, line)
        c.message = para(why)
        yield c


_CONDITIONAL = (
    (VHE_SWITCH, "__deactivate_traps", VHE_HCR,
     "\tif (!vcpu_has_nv(vcpu))\n\t\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n",
     "KVM: arm64: nv: Leave HCR_EL2 alone for nested guests on exit",
     "For a nested guest the next entry reprograms HCR_EL2 from __compute_hcr()."),
    (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR,
     "\tif (!vcpu_is_protected(vcpu))\n"
     "\t\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, hcr_el2);\n",
     "KVM: arm64: pkvm: Keep the guest HCR_EL2 for protected vcpus",
     "Protected vcpus are re-entered without going through the host in most cases."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\tif (vcpu_get_flag(vcpu, DEBUG_DIRTY))\n"
     "\t\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n",
     "KVM: arm64: Only restore MDCR_EL2 when the guest used debug",
     "Without DEBUG_DIRTY nothing debug-related changed, so skip the write."),
    (NVHE_SWITCH, "__kvm_vcpu_run", "\t__deactivate_traps(vcpu);\n",
     "\tif (ARM_EXCEPTION_CODE(exit_code) != ARM_EXCEPTION_IRQ)\n"
     "\t\t__deactivate_traps(vcpu);\n",
     "KVM: arm64: nVHE: Fast path for IRQ exits",
     "An IRQ exit is followed by an immediate re-entry in most cases."),
)


@generator("c", True, "restore-made-conditional", """The host restore wrapped in a
condition that is false on some path back to the host (nested guests,
protected vcpus, no debug use, IRQ exits): on that path the host keeps the
guest's value.""")
def _restore_conditional(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _CONDITIONAL:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = para(why)
        yield c


_EARLY = """\t/* A vcpu made invalid at exit goes straight back to the host. */
\tif (unlikely(!vcpu_get_flag(vcpu, VCPU_INITIALIZED)))
\t\treturn ARM_EXCEPTION_IL;

"""


@generator("c", True, "early-exit-skips-restore", """An early return added after the
guest exit but before __deactivate_traps(), or before the HCR_EL2 write in
the TLB switch back: that exit reaches the host without the host value.""")
def _early_exit(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func in ((NVHE_SWITCH, "__kvm_vcpu_run"), (VHE_SWITCH, "__kvm_vcpu_run_vhe")):
        c = Change(k, function=func,
                   subject="KVM: arm64: Bail out early for vcpus made invalid on exit")
        c.insert_after(path, func, "\t} while (fixup_guest_exit(vcpu, &exit_code));\n",
                       "\n" + _EARLY.rstrip("\n") + "\n")
        c.message = para("""fixup_guest_exit() can clear VCPU_INITIALIZED for a
            protected vcpu caught running AArch32. Nothing of its state is worth
            saving, so return straight away.""")
        yield c
    c = Change(k, function="exit_vmid_context",
               subject="KVM: arm64: VHE: Return early from exit_vmid_context()")
    c.insert_before(VHE_TLB, "exit_vmid_context", "\t/*\n\t * We're done with the TLB",
                    "\tif (!cxt->mmu && !cpus_have_final_cap(ARM64_WORKAROUND_SPECULATIVE_AT)) {\n"
                    "\t\tlocal_irq_restore(cxt->flags);\n\t\treturn;\n\t}\n\n")
    c.message = para("""Like the nVHE version, there is nothing to restore when no
        other stage-2 context was switched away from.""")
    yield c


@generator("c", True, "caller-left-behind", """A restore helper's contract changes
(it no longer writes the host value; callers must) and one caller is not
updated: the panic path, the VHE vcpu-put path, or one TLB flush.""")
def _caller_left(k: Kernel, rng: random.Random) -> Iterator[Change]:
    # __deactivate_traps_common() no longer restores MDCR_EL2; nVHE updated,
    # VHE's vcpu put is not.
    c = Change(k, function="__deactivate_traps_common",
               subject="KVM: arm64: Split the MDCR_EL2 restore out of __deactivate_traps_common()")
    c.delete_line(HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE.rstrip("\n")
                  + "\n")
    c.insert_before(HYP_SWITCH_H, None, "static inline void __deactivate_traps_common(",
                    "static inline void __deactivate_traps_mdcr(struct kvm_vcpu *vcpu)\n{\n"
                    + MDCR_RESTORE + "}\n\n", anchor=False)
    c.sub(NVHE_SWITCH, "__deactivate_traps", "\t__deactivate_traps_common(vcpu);\n",
          "\t__deactivate_traps_mdcr(vcpu);\n\t__deactivate_traps_common(vcpu);\n", anchor=False)
    c.message = para("""The nVHE exit path wants to restore MDCR_EL2 separately
        from the rest of the common traps. Split it into its own helper.""")
    yield c
    for path, func, line, caller, other in (
            (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR, "__kvm_vcpu_run", "hyp_panic"),
            (VHE_SWITCH, "__deactivate_traps", VHE_HCR, "__kvm_vcpu_run_vhe",
             "__hyp_call_panic")):
        c = Change(k, function=func,
                   subject="KVM: arm64: Let the run loop restore the host HCR_EL2")
        c.delete_line(path, func, line)
        c.insert_after(path, caller, "\t__deactivate_traps(vcpu);\n", line, anchor=False)
        c.effect(path, other, "__deactivate_traps(vcpu);")
        c.message = para("""__deactivate_traps() should only undo what
            __activate_traps() did. Move the host HCR_EL2 write to %s(), which
            is where the host context is restored.""" % caller)
        yield c
    callers = ["__kvm_tlb_flush_vmid_ipa", "__kvm_tlb_flush_vmid_ipa_nsh",
               "__kvm_tlb_flush_vmid_range", "__kvm_tlb_flush_vmid", "__kvm_flush_cpu_context"]
    for left in rng.sample(callers, 2):
        c = Change(k, function="exit_vmid_context",
                   subject="KVM: arm64: VHE: Restore HCR_EL2 in the TLB invalidation callers")
        c.sub(VHE_TLB, "exit_vmid_context", VHE_HCR + "\tisb();\n", "", anchor=True)
        for caller in callers:
            if caller != left:
                c.sub(VHE_TLB, caller, "\texit_vmid_context(&cxt);\n",
                      "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);\n\tisb();\n"
                      "\texit_vmid_context(&cxt);\n", anchor=False)
        c.effect(VHE_TLB, left, "\texit_vmid_context(&cxt);")
        c.message = para("""Some callers will want to batch several invalidations
            before giving the host its HCR_EL2 back. Move the write out of
            exit_vmid_context() into the callers.""")
        yield c


# -- neighbours of c ------------------------------------------------------------


@generator("c", False, "restore-into-helper", """The host write moved into a helper
that is called at exactly the same place on every path (and for the MDCR
split, every caller updated in the same order): each path still restores the
same value at the same point.""")
def _restore_helper(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, line, helper in (
            (VHE_SWITCH, "__deactivate_traps", VHE_HCR, "__restore_host_hcr"),
            (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR, "__restore_host_hcr"),
            (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE, "__restore_host_mdcr"),
            (VHE_TLB, "exit_vmid_context", VHE_HCR, "__tlb_restore_host_hcr")):
        c = Change(k, function=func,
                   subject="KVM: arm64: Factor out the host %s restore" % (
                       "MDCR_EL2" if "mdcr" in helper else "HCR_EL2"))
        c.sub(path, func, line, "\t%s();\n" % helper)
        c.insert_before(path, None, {VHE_SWITCH: "static void __deactivate_traps(",
                                     NVHE_SWITCH: "static void __deactivate_traps(",
                                     HYP_SWITCH_H: "static inline void __deactivate_traps_common(",
                                     VHE_TLB: "static void exit_vmid_context("}[path],
                        "static __always_inline void %s(void)\n{\n%s}\n\n" % (helper, line))
        c.message = hedged(rng, """Give the restore of the host value a name, so
            that the exit path reads as a list of steps.""")
        yield c
    c = Change(k, function="__deactivate_traps_common",
               subject="KVM: arm64: Split the MDCR_EL2 restore out of __deactivate_traps_common()")
    c.delete_line(HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE)
    c.insert_before(HYP_SWITCH_H, None, "static inline void __deactivate_traps_common(",
                    "static inline void __deactivate_traps_mdcr(struct kvm_vcpu *vcpu)\n{\n"
                    + MDCR_RESTORE + "}\n\n")
    for path, func in ((NVHE_SWITCH, "__deactivate_traps"),
                       (VHE_SWITCH, "__vcpu_put_deactivate_traps")):
        c.sub(path, func, "\t__deactivate_traps_common(vcpu);\n",
              "\t__deactivate_traps_mdcr(vcpu);\n\t__deactivate_traps_common(vcpu);\n")
    c.message = hedged(rng, """Split the MDCR_EL2 restore into its own helper and
        call it from both callers, right before the rest of the teardown.""",
                       always=True)
    yield c


# -- d: the value restored to the host changes -------------------------------

_SAVE_SOURCES = (
    ("\t*host_data_ptr(host_debug_state.mdcr_el2) = vcpu->arch.mdcr_el2;\n",
     "KVM: arm64: Don't read MDCR_EL2 back on guest entry",
     """Reading MDCR_EL2 on every entry is not free. We already have the value
     we are about to install; remember that one instead."""),
    ("\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2) &\n"
     "\t\t\t\t\t\t     MDCR_EL2_HPMN_MASK;\n",
     "KVM: arm64: Only preserve HPMN across the world switch",
     """The only part of the host MDCR_EL2 that is not a constant is HPMN, as
     set up by firmware. Only keep that."""),
    ("\t*host_data_ptr(host_debug_state.mdcr_el2) = __vcpu_sys_reg(vcpu, MDCR_EL2);\n",
     "KVM: arm64: nv: Use the vcpu's MDCR_EL2 copy when saving",
     """The vcpu carries a copy of MDCR_EL2 already; use it instead of reading
     the register."""),
    ("\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2) | MDCR_EL2_TDE;\n",
     "KVM: arm64: Route host debug exceptions to EL2 across the world switch",
     """Make sure that a debug exception taken between the world switch and
     the host restore is routed to EL2."""),
)


@generator("d", True, "saved-host-source-changed", """__activate_traps_common()
saves something other than the live host MDCR_EL2 (the guest value, a masked
or modified copy): the restore in __deactivate_traps_common(), unchanged and
outside the hunk, then gives the host that value.""")
def _save_source(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for new, subject, why in _SAVE_SOURCES:
        c = Change(k, function="__activate_traps_common", subject=subject)
        c.sub(HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE, new)
        c.effect(HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE.strip())
        c.message = para(why)
        yield c
    c = Change(k, function="__activate_traps_common",
               subject="KVM: arm64: Install the guest MDCR_EL2 before saving host state")
    c.move_line(HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE,
                "\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n")
    c.effect(HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE.strip())
    c.message = hedged(rng, """Group the register writes of the entry path; the
        bookkeeping can follow them.""", always=True)
    yield c


_RESTORE_VALUES = (
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(read_sysreg(mdcr_el2) & MDCR_EL2_HPMN_MASK, mdcr_el2);\n",
     "KVM: arm64: Restore the host MDCR_EL2 the way we used to",
     "Go back to deriving the host value from the register, keeping HPMN."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) & ~MDCR_EL2_TDA, mdcr_el2);\n",
     "KVM: arm64: Don't trap host debug register accesses",
     "The host never wants its own debug register accesses trapped."),
    (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR,
     "\twrite_sysreg(HCR_HOST_NVHE_FLAGS, hcr_el2);\n",
     "KVM: arm64: nVHE: Use a constant host HCR_EL2 on exit",
     "Loading the host HCR_EL2 from the per-CPU init parameters on every exit is "
     "an avoidable memory access: the host value is a constant."),
    (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR,
     "\twrite_sysreg(is_protected_kvm_enabled() ? HCR_HOST_NVHE_PROTECTED_FLAGS :\n"
     "\t\t\t\t\t\t  HCR_HOST_NVHE_FLAGS, hcr_el2);\n",
     "KVM: arm64: nVHE: Don't load the host HCR_EL2 from memory",
     "The host value is one of two constants; pick it directly."),
    (AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(hcr, hcr_el2);\n",
     "\t\twrite_sysreg(val | HCR_TGE, hcr_el2);\n",
     "KVM: arm64: nv: Avoid keeping two copies of HCR_EL2 in __kvm_at_s1e2()",
     "Setting TGE back is all that is needed to return to the host regime."),
    (NVHE_SWITCH, "__deactivate_traps", NVHE_HCR,
     "\twrite_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2 & ~HCR_TSC, hcr_el2);\n",
     "KVM: arm64: nVHE: Don't trap host SMCs right after a guest exit",
     "The host's PSCI calls right after an exit should not bounce through EL2."),
    (HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) & MDCR_EL2_HPMN_MASK,\n"
     "\t\t     mdcr_el2);\n",
     "KVM: arm64: Give the host a clean MDCR_EL2 on exit",
     "Only the counter partition is worth preserving for the host."),
    (HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE,
     "\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2) &\n"
     "\t\t\t\t\t\t     ~(MDCR_EL2_TPM | MDCR_EL2_TPMCR);\n",
     "KVM: arm64: Never leave the host's PMU accesses trapped",
     "A PMU trap left over from the boot code should not survive a guest run."),
    (NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\tparams->hcr_el2 |= HCR_VM;\n",
     "\tparams->hcr_el2 = HCR_RW | HCR_VM;\n",
     "KVM: arm64: pkvm: Start the deprivileged host from a known HCR_EL2",
     "Don't inherit whatever the early init code left in the parameters."),
)


@generator("d", True, "restored-value-changed", """The value written back to the
host is now derived differently: the live register masked to HPMN, the saved
copy with a bit dropped, a constant instead of the per-CPU host value (which
carries E2H under hVHE, TSC and VM under pKVM), or the temporary AT value
with TGE set.""")
def _restore_value(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _RESTORE_VALUES:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = hedged(rng, why)
        yield c


_INIT_SOURCES = (
    (ARM_C, "cpu_prepare_hyp_mode",
     "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n\t\tparams->hcr_el2 |= HCR_E2H;\n", "",
     "KVM: arm64: Drop the E2H special case from cpu_prepare_hyp_mode()",
     "__kvm_hyp_init sets E2H for hVHE on its own."),
    (ARM_C, "cpu_prepare_hyp_mode",
     "\tif (is_protected_kvm_enabled())\n"
             "\t\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS;\n"
     "\telse\n\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n",
     "\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n",
     "KVM: arm64: Simplify the host HCR_EL2 selection",
     "pKVM traps what it needs at stage 2; one host flag set is enough."),
    (ARM_C, "cpu_prepare_hyp_mode", "\t\tparams->hcr_el2 |= HCR_E2H;\n",
     "\t\tparams->hcr_el2 = HCR_E2H;\n",
     "KVM: arm64: hVHE: Tidy up the host HCR_EL2 setup",
     "Make the hVHE case explicit."),
    (NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "\tparams->hcr_el2 |= HCR_VM;\n",
     "\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS | HCR_VM;\n",
     "KVM: arm64: pkvm: Spell out the protected host HCR_EL2",
     "Make it obvious which host configuration is in force once pKVM is finalised."),
)


@generator("d", True, "host-value-source-changed", """The per-CPU host HCR_EL2 the
nVHE exit path restores (kvm_init_params.hcr_el2) is now built differently at
init: E2H dropped under hVHE, TSC dropped under pKVM, RW/API/APK/ATA lost, or
hVHE's E2H lost when pKVM finalises. The write in __deactivate_traps(),
another file, is unchanged.""")
def _host_source(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject, why in _INIT_SOURCES:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        if path == NVHE_MEM_PROTECT:
            c.effect(path, func, "\twrite_sysreg(params->hcr_el2, hcr_el2);")
        c.message = para(why)
        yield c


@generator("d", True, "at-restore-source-changed", """In the AT emulation the
value saved for the restore (25 lines below, unchanged) now comes from the
vcpu's shadow HCR_EL2 or loses TGE, so the host regime is not what comes
back.""", extra=("shadow-vs-live",))
def _at_source(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="__kvm_at_s1e2",
               subject="KVM: arm64: nv: Base the AT S1E2 HCR_EL2 on the vcpu's value")
    c.sub(AT_C, "__kvm_at_s1e2", "\t\tval = hcr = read_sysreg(hcr_el2);\n",
          "\t\thcr = vcpu->arch.hcr_el2;\n\t\tval = read_sysreg(hcr_el2);\n")
    c.effect(AT_C, "__kvm_at_s1e2", "\t\twrite_sysreg(hcr, hcr_el2);")
    c.message = para("""The vcpu's HCR_EL2 is what the translation should be
        performed against; keep it around.""")
    yield c
    c = Change(k, function="__mmu_config_save",
               subject="KVM: arm64: nv: Save HCR_EL2 without TGE for the AT emulation")
    c.sub(AT_C, "__mmu_config_save", "\tconfig->hcr\t= read_sysreg(hcr_el2);\n",
          "\tconfig->hcr\t= read_sysreg(hcr_el2) & ~HCR_TGE;\n")
    c.effect(AT_C, "__mmu_config_restore", "\twrite_sysreg(config->hcr,\thcr_el2);")
    c.message = para("""The saved value is used to build the AT context; it must
        not have TGE set.""")
    yield c


# -- neighbours of d -------------------------------------------------------------


@generator("d", False, "same-host-value-another-way", """The host value reaches the
same write another way: through a new local, the same storage through another
accessor (host_data_ptr(host_debug_state)->mdcr_el2), a statement split over
lines, or a macro the patch defines with the same expansion.""")
def _same_value(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="__activate_traps_common",
               subject="KVM: arm64: Use a local for the host MDCR_EL2 on entry")
    c.sub(HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE,
          "\tu64 host_mdcr = read_sysreg(mdcr_el2);\n\n"
          "\t*host_data_ptr(host_debug_state.mdcr_el2) = host_mdcr;\n")
    c.message = hedged(rng, "Name the value being saved.", always=True)
    yield c
    c = Change(k, function="__deactivate_traps_common",
               subject="KVM: arm64: Access host_debug_state through one pointer")
    c.sub(HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
          "\twrite_sysreg(host_data_ptr(host_debug_state)->mdcr_el2, mdcr_el2);\n")
    c.sub(HYP_SWITCH_H, "__activate_traps_common", MDCR_SAVE,
          "\thost_data_ptr(host_debug_state)->mdcr_el2 = read_sysreg(mdcr_el2);\n")
    c.message = hedged(rng, "Same storage, fewer parentheses.")
    yield c
    c = Change(k, function="__deactivate_traps",
               subject="KVM: arm64: nVHE: Use a local for the init parameters on exit")
    c.sub(NVHE_SWITCH, "__deactivate_traps", NVHE_HCR,
          "\twrite_sysreg(params->hcr_el2, hcr_el2);\n")
    c.sub(NVHE_SWITCH, "__deactivate_traps", "\textern char __kvm_hyp_host_vector[];\n",
          "\tstruct kvm_nvhe_init_params *params = this_cpu_ptr(&kvm_init_params);\n"
          "\textern char __kvm_hyp_host_vector[];\n")
    c.message = hedged(rng, "Look the per-CPU parameters up once, at the top.")
    yield c
    c = Change(k, function="__deactivate_traps",
               subject="KVM: arm64: nVHE: Name the host HCR_EL2 value")
    c.insert_before(NVHE_SWITCH, None, "static void __deactivate_traps(",
                    "#define host_hcr_el2()\t(this_cpu_ptr(&kvm_init_params)->hcr_el2)\n\n")
    c.sub(NVHE_SWITCH, "__deactivate_traps", NVHE_HCR, "\twrite_sysreg(host_hcr_el2(), hcr_el2);\n")
    c.message = hedged(rng, "Give the host value a name.")
    yield c
    c = Change(k, function="__deactivate_traps_common",
               subject="KVM: arm64: Wrap the host MDCR_EL2 restore")
    c.sub(HYP_SWITCH_H, "__deactivate_traps_common", MDCR_RESTORE,
          "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2),\n\t\t     mdcr_el2);\n")
    c.message = hedged(rng, "Split the long line.", always=True)
    yield c
    c = Change(k, function="cpu_prepare_hyp_mode",
               subject="KVM: arm64: Build the host HCR_EL2 in a local")
    c.sub(ARM_C, "cpu_prepare_hyp_mode",
          "\tif (is_protected_kvm_enabled())\n"
             "\t\tparams->hcr_el2 = HCR_HOST_NVHE_PROTECTED_FLAGS;\n"
          "\telse\n\t\tparams->hcr_el2 = HCR_HOST_NVHE_FLAGS;\n"
          "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n\t\tparams->hcr_el2 |= HCR_E2H;\n",
          "\thcr = is_protected_kvm_enabled() ? HCR_HOST_NVHE_PROTECTED_FLAGS :\n"
          "\t\t\t\t\t   HCR_HOST_NVHE_FLAGS;\n"
          "\tif (cpus_have_final_cap(ARM64_KVM_HVHE))\n\t\thcr |= HCR_E2H;\n"
          "\tparams->hcr_el2 = hcr;\n")
    c.sub(ARM_C, "cpu_prepare_hyp_mode", "\tunsigned long tcr, ips;\n",
          "\tunsigned long tcr, ips, hcr;\n")
    c.message = hedged(rng, "Compute the host value first, then store it.")
    yield c
    c = Change(k, function="__kvm_at_s1e2",
               subject="KVM: arm64: nv: One assignment per line in __kvm_at_s1e2()")
    c.sub(AT_C, "__kvm_at_s1e2", "\t\tval = hcr = read_sysreg(hcr_el2);\n",
          "\t\thcr = read_sysreg(hcr_el2);\n\t\tval = hcr;\n")
    c.message = hedged(rng, "Chained assignments are easy to misread.", always=True)
    yield c
