"""Kind h (polarity: set versus clear against the intent), and its
neighbours."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    ARM_C,
    HYP_SWITCH_H,
    KVM_EMULATE_H,
    NVHE_PKVM,
    Change,
    Kernel,
)

VGIC_SR = "arch/arm64/kvm/hyp/vgic-v3-sr.c"
SYS_REGS = "arch/arm64/kvm/sys_regs.c"
HYP_INIT = "arch/arm64/kvm/hyp/nvhe/hyp-init.S"
ALT_ISB = "\tasm(ALTERNATIVE(\"isb\", \"nop\", ARM64_WORKAROUND_SPECULATIVE_AT));\n"
# -- h: polarity ----------------------------------------------------------------------

_POLARITY = (
    (KVM_EMULATE_H, "vcpu_reset_hcr", "\t\tvcpu->arch.hcr_el2 |= HCR_TVM;\n",
     "\t\tvcpu->arch.hcr_el2 &= ~HCR_TVM;\n",
     "KVM: arm64: Fix the TVM handling for non-FWB CPUs"),
    (KVM_EMULATE_H, "vcpu_set_wfx_traps", "\tvcpu->arch.hcr_el2 |= HCR_TWE;\n",
     "\tvcpu->arch.hcr_el2 &= ~HCR_TWE;\n", "KVM: arm64: Simplify vcpu_set_wfx_traps()"),
    (KVM_EMULATE_H, "vcpu_clear_wfx_traps", "\tvcpu->arch.hcr_el2 &= ~HCR_TWE;\n",
     "\tvcpu->arch.hcr_el2 |= HCR_TWE;\n", "KVM: arm64: Make vcpu_clear_wfx_traps() consistent"),
    (HYP_SWITCH_H, "___activate_traps", "\t\thcr |= HCR_TVM;\n", "\t\thcr &= ~HCR_TVM;\n",
     "KVM: arm64: Rework the TX2 219 TVM workaround"),
    (SYS_REGS, "vcpu_set_hcr", "\t\tvcpu->arch.hcr_el2 |= HCR_TERR;\n",
     "\t\tvcpu->arch.hcr_el2 &= ~HCR_TERR;\n", "KVM: arm64: Tidy up the RAS trap setup"),
    (SYS_REGS, "vcpu_set_hcr", "\t\tvcpu->arch.hcr_el2 |= HCR_TEA;\n",
     "\t\tvcpu->arch.hcr_el2 &= ~HCR_TEA;\n", "KVM: arm64: Tidy up the RAS routing setup"),
    (SYS_REGS, "vcpu_set_hcr", "\t\tvcpu->arch.hcr_el2 |= HCR_TTLBOS;\n",
     "\t\tvcpu->arch.hcr_el2 &= ~HCR_TTLBOS;\n",
     "KVM: arm64: Handle TLBI OS without FEAT_TLBIOS"),
    (NVHE_PKVM, "pvm_init_traps_aa64pfr1", "\t\thcr_set |= HCR_TID5;\n",
     "\t\thcr_clear |= HCR_TID5;\n", "KVM: arm64: pkvm: Rework the MTE traps"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "\t\tmdcr_set |= MDCR_EL2_TPM | MDCR_EL2_TPMCR;\n",
     "\t\tmdcr_clear |= MDCR_EL2_TPM | MDCR_EL2_TPMCR;\n", "KVM: arm64: pkvm: Fix the PMU traps"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "\t\tmdcr_set |= MDCR_EL2_TDOSA;\n",
     "\t\tmdcr_clear |= MDCR_EL2_TDOSA;\n", "KVM: arm64: pkvm: Fix the OS Double Lock trap"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "\t\tmdcr_set |= MDCR_EL2_TTRF;\n",
     "\t\tmdcr_clear |= MDCR_EL2_TTRF;\n", "KVM: arm64: pkvm: Fix the trace filter trap"),
    (NVHE_PKVM, "pvm_init_traps_aa64mmfr1", "\t\thcr_set |= HCR_TLOR;\n",
     "\t\tvcpu->arch.hcr_el2 &= ~HCR_TLOR;\n", "KVM: arm64: pkvm: Fix the LORegion trap"),
    (ARM_C, "vcpu_set_pauth_traps", "\t\t\tvcpu->arch.hcr_el2 |= (HCR_API | HCR_APK);\n",
     "\t\t\tvcpu->arch.hcr_el2 &= ~(HCR_API | HCR_APK);\n",
     "KVM: arm64: Simplify the pointer authentication trap setup"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0",
     "\t\tmdcr_set |= MDCR_EL2_TDRA | MDCR_EL2_TDA | MDCR_EL2_TDE;\n",
     "\t\tmdcr_clear |= MDCR_EL2_TDRA | MDCR_EL2_TDA | MDCR_EL2_TDE;\n",
     "KVM: arm64: pkvm: Fix the debug traps"),
)


@generator("h", True, "clear-under-trap-intent", """A trap bit cleared where the
comment, the function name or the erratum says it must trap (TVM for non-FWB
CPUs, WFE in set_wfx_traps, RAS, TID5, PMU, OS lock, trace filter, LOR
traps for protected guests), or set where the function clears it.""")
def _polarity(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new, subject in _POLARITY:
        c = Change(k, function=func, subject=subject)
        c.sub(path, func, old, new)
        c.message = para("Make the trap handling match what the code around it "
                         "expects.")
        yield c


_ALLOW_AS_TRAP = (
    ("\t\thcr_clear |= HCR_FIEN;\n", "\t\thcr_set |= HCR_FIEN;\n", "pvm_init_traps_aa64pfr0",
     "error record fault injection"),
    ("\t\thcr_clear |= HCR_AMVOFFEN;\n", "\t\thcr_set |= HCR_AMVOFFEN;\n",
     "pvm_init_traps_aa64pfr0", "AMU virtual offsets"),
    ("\t\thcr_clear |= HCR_DCT | HCR_ATA;\n",
     "\t\thcr_clear |= HCR_DCT;\n\t\thcr_set |= HCR_ATA;\n",
     "pvm_init_traps_aa64pfr1", "allocation tag accesses"),
    ("\t\tmdcr_clear |= MDCR_EL2_HPME | MDCR_EL2_MTPME |\n",
     "\t\tmdcr_set |= MDCR_EL2_MTPME;\n\t\tmdcr_clear |= MDCR_EL2_HPME |\n",
     "pvm_init_traps_aa64dfr0", "multi-threaded PMU events"),
)


@generator("h", True, "allow-bit-or-merged", """An "allow" bit (FIEN, AMVOFFEN,
ATA, MTPME: 1 enables the access) OR-merged with the traps as if setting it
trapped: the protected guest gets the access the code meant to take away.""")
def _allow_or(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for old, new, func, what in _ALLOW_AS_TRAP:
        c = Change(k, function=func, subject="KVM: arm64: pkvm: Trap %s" % what)
        c.sub(NVHE_PKVM, func, old, new)
        c.message = para("""Protected guests must not get at %s when the feature
            is hidden from them: trap them along with the rest.""" % what)
        yield c


@generator("h", True, "clear-of-unset-bit", """A clear of an HCR_EL2 bit that no
path sets in the guest's value (TGE, E2H under nVHE, NV): a no-op that hides
the intent, while the bit the author meant stays as it was.""")
def _clear_noop(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_arch_vcpu_load",
               subject="KVM: arm64: Don't trap WFI when the vcpu is alone")
    c.sub(ARM_C, "kvm_arch_vcpu_load", "\t\tvcpu->arch.hcr_el2 &= ~HCR_TWI;\n",
          "\t\tvcpu->arch.hcr_el2 &= ~HCR_TGE;\n")
    c.message = para("""When the vcpu is the only task on the CPU there is no
        point in trapping WFI.""")
    yield c
    c = Change(k, function="vcpu_reset_hcr", subject="KVM: arm64: Never trap cache maintenance "
               "to the PoC on FWB CPUs")
    c.sub(KVM_EMULATE_H, "vcpu_reset_hcr", "\tif (!cpus_have_final_cap(ARM64_HAS_STAGE2_FWB))\n"
          "\t\tvcpu->arch.hcr_el2 |= HCR_TVM;\n",
          "\tif (!cpus_have_final_cap(ARM64_HAS_STAGE2_FWB))\n\t\tvcpu->arch.hcr_el2 |= HCR_TVM;\n"
          "\telse\n\t\tvcpu->arch.hcr_el2 &= ~HCR_NV;\n")
    c.message = para("""With FWB the guest's cache maintenance to the PoC is not
        needed for coherency: stop trapping it.""")
    yield c


@generator("h", False, "polarity-same-effect", """The trap bits set and cleared
the same way, written differently (clear both then set what is wanted;
clears of bits some path sets, done directly on the vcpu).""")
def _polarity_same(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="kvm_arch_vcpu_load",
               subject="KVM: arm64: Simplify the WFx trap setup at load")
    c.sub(ARM_C, "kvm_arch_vcpu_load",
          "\tif (kvm_vcpu_should_clear_twe(vcpu))\n\t\tvcpu->arch.hcr_el2 &= ~HCR_TWE;\n"
          "\telse\n\t\tvcpu->arch.hcr_el2 |= HCR_TWE;\n\n"
          "\tif (kvm_vcpu_should_clear_twi(vcpu))\n\t\tvcpu->arch.hcr_el2 &= ~HCR_TWI;\n"
          "\telse\n\t\tvcpu->arch.hcr_el2 |= HCR_TWI;\n",
          "\tvcpu->arch.hcr_el2 &= ~(HCR_TWE | HCR_TWI);\n"
          "\tif (!kvm_vcpu_should_clear_twe(vcpu))\n\t\tvcpu->arch.hcr_el2 |= HCR_TWE;\n"
          "\tif (!kvm_vcpu_should_clear_twi(vcpu))\n\t\tvcpu->arch.hcr_el2 |= HCR_TWI;\n")
    c.message = hedged(rng, "Clear both, then set what we want.", always=True)
    yield c
    c = Change(k, function="pvm_init_traps_aa64pfr0",
               subject="KVM: arm64: pkvm: Clear FIEN directly")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64pfr0", "\t\thcr_clear |= HCR_FIEN;\n", "")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64pfr0", "\tvcpu->arch.hcr_el2 &= ~hcr_clear;\n",
          "\tvcpu->arch.hcr_el2 &= ~hcr_clear;\n\n"
          "\t/* No RASv1p1: no fault injection either */\n"
          "\tif (FIELD_GET(ARM64_FEATURE_MASK(ID_AA64PFR0_EL1_RAS), feature_ids) <\n"
          "\t    ID_AA64PFR0_EL1_RAS_V1P1)\n\t\tvcpu->arch.hcr_el2 &= ~HCR_FIEN;\n")
    c.message = hedged(rng, "Keep the FIEN handling next to the RAS check it depends on.")
    yield c
    c = Change(k, function="vcpu_set_wfx_traps",
               subject="KVM: arm64: Set both WFx traps at once")
    c.sub(KVM_EMULATE_H, "vcpu_set_wfx_traps",
          "\tvcpu->arch.hcr_el2 |= HCR_TWE;\n\tvcpu->arch.hcr_el2 |= HCR_TWI;\n",
          "\tvcpu->arch.hcr_el2 |= HCR_TWE | HCR_TWI;\n")
    c.message = hedged(rng, "One statement is enough.", always=True)
    yield c
