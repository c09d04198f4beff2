"""Kinds a (field definitions) and b (reserved bits), and their neighbours.

Everything here edits the definitions in 6.12's kvm_arm.h (or adds the
MDCR_EL2 block to tools/sysreg, as v6.13 did) and, for b, the code that
writes a constant made from them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from mutate.cases import generator
from mutate.prose import hedged, para
from mutate.source import (
    DEBUG_C,
    EL2_SETUP_H,
    HYP_SWITCH_H,
    KVM_ARM_H,
    NVHE_PKVM,
    SYSREG,
    Change,
    Kernel,
)

_HCR_LINE = re.compile(r"^#define (HCR_\w+)\t+\(UL\(1\) << (\d+)\)", re.M)
_MDCR_LINE = re.compile(r"^#define (MDCR_EL2_\w+)\t+\(UL\(1\) << (\d+)\)", re.M)


def _bit_lines(k: Kernel, pat: re.Pattern[str]) -> list[tuple[str, int, str]]:
    return [(m.group(1), int(m.group(2)), m.group(0)) for m in pat.finditer(k.text(KVM_ARM_H))]


def _convert(c: Change, lines: list[tuple[str, int, str]], style: str, typo: str = "",
             wrong: int = 0) -> None:
    for name, bit, whole in lines:
        new = whole.replace("(UL(1) << %d)" % bit, "%s(%d)" % (style, wrong if name == typo
                                                               else bit))
        c.sub(KVM_ARM_H, None, whole, new, anchor=name == typo)


@generator("a", True, "bit-conversion-typo", """Converting the (UL(1) << n) field
macros to BIT(n) with one position mistyped: that macro now names another
field's bit (or a reserved one), which a reviewer catches by comparing
with the Arm ARM.""")
def _bit_conversion_typo(k: Kernel, rng: random.Random) -> Iterator[Change]:
    hcr, mdcr = _bit_lines(k, _HCR_LINE), _bit_lines(k, _MDCR_LINE)
    for reg, lines, count in (("HCR_EL2", hcr, 6), ("MDCR_EL2", mdcr, 4)):
        for name, bit, _ in rng.sample(lines, count):
            wrong = bit + rng.choice((1, -1)) if 0 < bit < 63 else (1 if bit == 0 else 62)
            c = Change(k, function=KVM_ARM_H)
            _convert(c, lines, rng.choice(("BIT", "BIT_ULL")), name, wrong)
            c.subject = "KVM: arm64: Use BIT() for the %s field definitions" % reg
            c.message = hedged(rng, """The %s field macros open-code (UL(1) << n).
                Use BIT() like the rest of kvm_arm.h's newer definitions, which is
                shorter and easier to compare with the Arm ARM.""" % reg)
            yield c


# Fields 6.12's kvm_arm.h lacks: (macro lines, the wrong one, subject, why).
_NEW_FIELDS = (
    ("#define HCR_TWEDEL\tGENMASK(63, 60)\n#define HCR_TWEDEn\t(UL(1) << 58)\n",
     "HCR_TWEDEn", KVM_ARM_H, "#define HCR_TID5\t(UL(1) << 58)\n",
     "HCR_EL2.{TWEDEn,TWEDEL}", "FEAT_TWED lets the hypervisor delay WFE traps."),
    ("#define HCR_TWEDEL\tGENMASK(62, 59)\n#define HCR_TWEDEn\t(UL(1) << 59)\n",
     "HCR_TWEDEL", KVM_ARM_H, "#define HCR_TID5\t(UL(1) << 58)\n",
     "HCR_EL2.{TWEDEn,TWEDEL}", "FEAT_TWED lets the hypervisor delay WFE traps."),
    ("#define HCR_GPF\t\t(UL(1) << 49)\n", "HCR_GPF", KVM_ARM_H,
     "#define HCR_TID4\t(UL(1) << 49)\n", "HCR_EL2.GPF",
     "FEAT_RME routes granule protection faults to EL2 with this bit."),
    ("#define HCR_TME\t\t(UL(1) << 38)\n", "HCR_TME", KVM_ARM_H,
     "#define HCR_TEA\t\t(UL(1) << 37)\n", "HCR_EL2.TME",
     "FEAT_TME lets EL1 and EL0 use transactional memory when HCR_EL2.TME is set."),
    ("#define MDCR_EL2_EBWE\t\t(UL(1) << 42)\n", "MDCR_EL2_EBWE", KVM_ARM_H,
     "#define MDCR_EL2_HPMFZS\t\t(UL(1) << 36)\n", "MDCR_EL2.EBWE",
     "FEAT_Debugv8p9 extends the breakpoints and watchpoints behind MDCR_EL2.EBWE."),
    ("#define MDCR_EL2_EnSTEPOP\t(UL(1) << 51)\n", "MDCR_EL2_EnSTEPOP", KVM_ARM_H,
     "#define MDCR_EL2_HPMFZS\t\t(UL(1) << 36)\n", "MDCR_EL2.EnSTEPOP",
     "FEAT_STEP2 adds MDSTEPOP_EL1, enabled by MDCR_EL2.EnSTEPOP."),
    ("#define MDCR_EL2_PMSSE_SHIFT\t29\n#define MDCR_EL2_PMSSE_MASK\t(UL(0x3) << 29)\n",
     "MDCR_EL2_PMSSE_SHIFT", KVM_ARM_H, "#define MDCR_EL2_HPMFZO\t\t(UL(1) << 29)\n",
     "MDCR_EL2.PMSSE", "FEAT_PMUv3_SS adds the PMU snapshot controls."),
    ("#define MDCR_EL2_PMEE_SHIFT\t40\n#define MDCR_EL2_PMEE_MASK\t(UL(0x7) << 40)\n",
     "MDCR_EL2_PMEE_MASK", KVM_ARM_H, "#define MDCR_EL2_HPMFZS\t\t(UL(1) << 36)\n",
     "MDCR_EL2.PMEE", "FEAT_EBEP adds the PMU exception controls."),
)


@generator("a", True, "new-field-wrong-position", """A definition added for a field
6.12 lacks, at the wrong bit or width: the architecture puts TWEDEn at 59,
TWEDEL at 63:60, GPF at 48, EBWE at 43, EnSTEPOP at 50, PMSSE at 31:30 and
PMEE at 41:40.""")
def _new_field_wrong(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for lines, wrong, path, after, field, why in _NEW_FIELDS:
        c = Change(k, function=KVM_ARM_H)
        split = lines.split("\n")
        first = next(i for i, x in enumerate(split) if wrong in x)
        if first:
            c.insert_before(path, None, after, "\n".join(split[:first]) + "\n", anchor=False)
        c.insert_before(path, None, after, "\n".join(split[first:]))
        c.subject = "KVM: arm64: Add %s definition%s" % (field, "s" if "{" in field else "")
        c.message = para(why, """Add the definition so that the following patches
            can use it. Nothing uses it yet.""")
        yield c


# Existing macros renamed to a name the architecture gives another field.
_RENAMES = (
    ("HCR_FIEN", "HCR_GPF", "bit 47"),
    ("HCR_AMVOFFEN", "HCR_TWEDEN", "bit 51"),
    ("MDCR_EL2_TDCC", "MDCR_EL2_EBWE", "bit 27"),
    ("MDCR_EL2_HPMFZS", "MDCR_EL2_PMSSE", "bit 36"),
)


@generator("a", True, "rename-to-other-field", """An existing macro renamed (with
its users) to the architectural name of a different field: the value stays,
but the name now says another feature, and the real field of that name is
elsewhere.""")
def _rename_other(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for old, new, where in _RENAMES:
        c = Change(k, function=KVM_ARM_H)
        c.sub(KVM_ARM_H, None, "#define %s\t" % old, "#define %s\t" % new)
        for rel in k.files():
            if rel != KVM_ARM_H and rel.endswith((".c", ".h")) and \
                    re.search(r"\b%s\b" % old, k.text(rel)):
                c.sub_all(rel, None, old, new)
        c.subject = "KVM: arm64: Use the architectural name for %s of %s" % (
            where, old.split("_")[0] + "_EL2" if old.startswith("HCR") else "MDCR_EL2")
        c.message = hedged(rng, """The Arm ARM calls this field %s. Rename the macro
            and its users so that grepping for the architectural name finds it."""
                           % new.split("_")[-1], always=True)
        yield c


_MASK_EDITS = (
    ("#define MDCR_EL2_HPMN_MASK\t(UL(0x1F))", "#define MDCR_EL2_HPMN_MASK\t(UL(0xF))",
     "MDCR_EL2.HPMN", "Spell the HPMN mask the same way as the other masks."),
    ("#define MDCR_EL2_E2PB_SHIFT\t(UL(12))", "#define MDCR_EL2_E2PB_SHIFT\t(UL(11))",
     "MDCR_EL2.E2PB", "Tidy up the E2PB definitions next to TDRA."),
    ("#define MDCR_EL2_E2TB_SHIFT\t(UL(24))", "#define MDCR_EL2_E2TB_SHIFT\t(UL(26))",
     "MDCR_EL2.E2TB", "Keep the E2TB shift next to HLP, where the field lives."),
    ("#define MDCR_EL2_E2TB_MASK\t(UL(0x3))", "#define MDCR_EL2_E2TB_MASK\t(UL(0x7))",
     "MDCR_EL2.E2TB", "Describe the whole E2TB field."),
    ("#define HCR_BSU\t\t(3 << 10)", "#define HCR_BSU\t\t(UL(3) << 11)",
     "HCR_EL2.BSU", "HCR_BSU is the only HCR_EL2 mask built from an int; use UL()."),
)


@generator("a", True, "mask-or-shift-wrong", """A cleanup of a multi-bit field's
mask or shift that changes its position or width: HPMN is 4:0, E2PB 13:12,
E2TB 25:24 and BSU 11:10.""")
def _mask_wrong(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for old, new, field, why in _MASK_EDITS:
        c = Change(k, function=KVM_ARM_H)
        c.sub(KVM_ARM_H, None, old + "\n", new + "\n")
        c.subject = "KVM: arm64: Clean up the %s definition" % field
        c.message = hedged(rng, why, always=True)
        yield c


def _sysreg_block(k: Kernel, wrong: str, right: str) -> str:
    from pathlib import Path
    shipped = (Path(__file__).resolve().parents[2] / "bot" / "regmodel"
               / "hcr_mdcr.sysreg").read_text()
    start = shipped.index("Sysreg\tMDCR_EL2")
    block = shipped[start:shipped.index("EndSysreg\n", start) + len("EndSysreg\n")]
    assert right in block, right
    return block.replace(right, wrong) + "\n"


@generator("a", True, "sysreg-table-wrong-field", """The MDCR_EL2 block added to
tools/sysreg (as v6.13 did) with one Field line at the wrong position or
width; the generated macros then disagree with the architecture.""")
def _sysreg_wrong(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for wrong, right in (("Field\t14:13\tE2PB\n", "Field\t13:12\tE2PB\n"),
                         ("Field\t5:0\tHPMN\n", "Field\t4:0\tHPMN\n"),
                         ("Field\t26:25\tE2TB\n", "Field\t25:24\tE2TB\n")):
        c = Change(k, function=SYSREG)
        block = _sysreg_block(k, wrong, right)
        c.insert_before(SYSREG, None, "Sysreg HFGRTR_EL2\t3\t4\t1\t1\t4\n", block,
                        anchor=False)
        c.effect(SYSREG, None, wrong)
        c.subject = "arm64: sysreg: Add a table definition of MDCR_EL2"
        c.message = para("""Describe MDCR_EL2 in the sysreg table, from the
            2024-09 release of the architecture, so that its fields can be
            generated rather than hand-written.""")
        yield c


# -- neighbours of a --------------------------------------------------------


@generator("a", False, "bit-conversion-exact", """The same BIT() conversion with
every position kept: each macro's value is unchanged.""")
def _bit_conversion_exact(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for reg, pat in (("HCR_EL2", _HCR_LINE), ("MDCR_EL2", _MDCR_LINE)):
        for style in ("BIT", "_BITUL"):
            c = Change(k, function=KVM_ARM_H)
            _convert(c, _bit_lines(k, pat), style)
            c.subject = "KVM: arm64: Use %s() for the %s field definitions" % (style, reg)
            c.message = hedged(rng, """Open-coding (UL(1) << n) is noisy; use %s()
                instead.""" % style)
            yield c


_ALIASES = (
    ("HCR_TPCP", "HCR_TPC", "#define HCR_TPC\t\t(UL(1) << 23) /* HCR_TPCP if FEAT_DPB */\n",
     "The sysreg table calls bit 23 TPCP (it also traps PoP maintenance with FEAT_DPB)."),
    ("HCR_EnSCXT", "HCR_ENSCXT", "#define HCR_ENSCXT\t(UL(1) << 53)\n",
     "The Arm ARM spells the field EnSCXT."),
    ("HCR_TAC", "HCR_TACR", "#define HCR_TACR\t(UL(1) << 21)\n",
     "Out-of-tree code still uses the pre-5.14 name of the ACTLR trap."),
    ("HCR_VA", "HCR_VSE", "#define HCR_VSE\t\t(UL(1) << 8)\n",
     "Code shared with the arm32 days knows the virtual SError bit as VA."),
)


@generator("a", False, "field-alias", """A second name for the same field (TPCP
for TPC, EnSCXT for ENSCXT, the older TAC and VA): an alias of an existing
macro, with the same value.""")
def _alias(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for alias, name, line, why in _ALIASES:
        c = Change(k, function=KVM_ARM_H)
        c.insert_after(KVM_ARM_H, None, line, "#define %s\t%s\n" % (alias, name))
        c.subject = "KVM: arm64: Add %s as an alias of %s" % (alias, name)
        c.message = hedged(rng, why, "Add the other name as an alias.")
        yield c


@generator("a", False, "new-field-exact", """Definitions for fields 6.12 lacks, at
the architecture's positions; nothing uses them yet.""")
def _new_field_exact(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for lines, after, field in (
            ("#define HCR_TWEDEL\tGENMASK(63, 60)\n#define HCR_TWEDEn\t(UL(1) << 59)\n",
             "#define HCR_TID5\t(UL(1) << 58)\n", "HCR_EL2.{TWEDEn,TWEDEL}"),
            ("#define MDCR_EL2_EBWE\t\t(UL(1) << 43)\n",
             "#define MDCR_EL2_HPMFZS\t\t(UL(1) << 36)\n", "MDCR_EL2.EBWE"),
            ("#define MDCR_EL2_PMSSE_SHIFT\t30\n#define MDCR_EL2_PMSSE_MASK\t(UL(0x3) << 30)\n",
             "#define MDCR_EL2_HPMFZO\t\t(UL(1) << 29)\n", "MDCR_EL2.PMSSE")):
        c = Change(k, function=KVM_ARM_H)
        c.insert_before(KVM_ARM_H, None, after, lines)
        c.subject = "KVM: arm64: Add %s definitions" % field
        c.message = para("Add the field definitions; the users follow.")
        yield c


# -- b: reserved bits ---------------------------------------------------------

_RES0_EDITS = (
    ("\t\t\t\t GENMASK(22, 20) |\t\\\n", "\t\t\t\t GENMASK(23, 20) |\t\\\n",
     "bit 23 is HCCD"),
    ("\t\t\t\t BIT(18) |\t\t\\\n", "\t\t\t\t GENMASK(19, 18) |\t\\\n", "bit 19 is TTRF"),
    ("\t\t\t\t GENMASK(16, 15))\n", "\t\t\t\t GENMASK(17, 15))\n", "bit 17 is HPMD"),
    ("(GENMASK(63, 37) |\t\\\n", "(GENMASK(63, 36) |\t\\\n", "bit 36 is HPMFZS"),
    ("\t\t\t\t GENMASK(35, 30) |\t\\\n", "\t\t\t\t GENMASK(35, 29) |\t\\\n",
     "bit 29 is HPMFZO"),
    ("\t\t\t\t BIT(18) |\t\t\\\n", "", "bit 18 is reserved"),
    ("\t\t\t\t GENMASK(22, 20) |\t\\\n", "\t\t\t\t GENMASK(22, 21) |\t\\\n",
     "bit 20 is reserved"),
)


@generator("b", True, "res0-mask-drift", """MDCR_EL2_RES0 edited so that it claims a
field 6.12 itself defines (HCCD, TTRF, HPMD, HPMFZS, HPMFZO) or stops covering
a reserved bit: the mask now disagrees with what the base knew, and pKVM
clears it from the guest's MDCR_EL2.""")
def _res0_mask(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for old, new, _why in _RES0_EDITS:
        c = Change(k, function=KVM_ARM_H)
        c.sub(KVM_ARM_H, None, old, new)
        c.subject = "KVM: arm64: Update MDCR_EL2_RES0"
        c.message = para("""Bring MDCR_EL2_RES0 in line with the fields KVM knows
            about, so that pKVM clears every bit it does not handle.""")
        yield c
    for extra, why in (("(UL(1) << 47)", "FIEN"), ("(UL(1) << 51)", "AMVOFFEN")):
        c = Change(k, function=KVM_ARM_H)
        c.sub(KVM_ARM_H, None, "#define HCR_RES0\t((UL(1) << 48) | (UL(1) << 39))",
              "#define HCR_RES0\t((UL(1) << 48) | %s | (UL(1) << 39))" % extra)
        c.subject = "KVM: arm64: Treat HCR_EL2.%s as reserved for protected guests" % why
        c.message = para("""pKVM clears HCR_RES0 from the guest's HCR_EL2. Add the
            bit so that protected guests never see it set.""")
        yield c


# A new macro at a reserved position, then set in a value written to
# MDCR_EL2: (macro, bit, path, function, old line, new line).
_RES0_SETS = (
    ("MDCR_EL2_HPMD_EL2", 18, NVHE_PKVM, "pvm_init_traps_aa64dfr0",
     "\t\tmdcr_set |= MDCR_EL2_TPM | MDCR_EL2_TPMCR;\n",
     "\t\tmdcr_set |= MDCR_EL2_TPM | MDCR_EL2_TPMCR | MDCR_EL2_HPMD_EL2;\n"),
    ("MDCR_EL2_TTRF_EL1", 20, NVHE_PKVM, "pvm_init_traps_aa64dfr0",
     "\t\tmdcr_set |= MDCR_EL2_TTRF;\n", "\t\tmdcr_set |= MDCR_EL2_TTRF | MDCR_EL2_TTRF_EL1;\n"),
    ("MDCR_EL2_TDCC_EXT", 22, NVHE_PKVM, "pvm_init_traps_aa64mmfr0",
     "\t\tmdcr_set |= MDCR_EL2_TDCC;\n", "\t\tmdcr_set |= MDCR_EL2_TDCC | MDCR_EL2_TDCC_EXT;\n"),
    ("MDCR_EL2_TPMS_EL1", 16, DEBUG_C, "kvm_arm_setup_mdcr_el2",
     "\t\t\t\tMDCR_EL2_TPMS |\n", "\t\t\t\tMDCR_EL2_TPMS |\n\t\t\t\tMDCR_EL2_TPMS_EL1 |\n"),
    ("MDCR_EL2_TDOSA_EXT", 21, DEBUG_C, "kvm_arm_setup_mdcr_el2",
     "\t\t\t\tMDCR_EL2_TDOSA);\n", "\t\t\t\tMDCR_EL2_TDOSA |\n\t\t\t\tMDCR_EL2_TDOSA_EXT);\n"),
    ("MDCR_EL2_TDE_EXT", 33, DEBUG_C, "kvm_arm_setup_mdcr_el2",
     "\t\tvcpu->arch.mdcr_el2 |= MDCR_EL2_TDE;\n",
     "\t\tvcpu->arch.mdcr_el2 |= MDCR_EL2_TDE | MDCR_EL2_TDE_EXT;\n"),
)


@generator("b", True, "res0-bit-set", """A new MDCR_EL2 macro at a position the
architecture reserves (16, 18, 20-22, 32-35), OR-ed into a value that reaches
MDCR_EL2: software must write reserved bits as zero.""", extra=("field-definition",))
def _res0_set(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for macro, bit, path, func, old, new in _RES0_SETS:
        c = Change(k, function=func)
        c.insert_after(KVM_ARM_H, None, "#define MDCR_EL2_TPMCR\t\t(UL(1) << 5)\n",
                       "#define %s\t(UL(1) << %d)\n" % (macro, bit))
        c.sub(path, func, old, new)
        c.subject = "KVM: arm64: Trap %s for guests" % macro.split("_", 2)[2]
        c.message = para("""Guests have no business with this control; trap it
            along with the related bits.""")
        yield c


# Literal constants with a reserved bit, written to MDCR_EL2.
_RES0_LITERALS = (
    (HYP_SWITCH_H, "__activate_traps_common", "\twrite_sysreg(vcpu->arch.mdcr_el2, mdcr_el2);\n",
     "\twrite_sysreg(vcpu->arch.mdcr_el2 | BIT(18), mdcr_el2);\n"),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2", "\t\tvcpu->arch.mdcr_el2 |= MDCR_EL2_TDA;\n",
     "\t\tvcpu->arch.mdcr_el2 |= MDCR_EL2_TDA | GENMASK(22, 20);\n"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "\t\tmdcr_set |= MDCR_EL2_TDOSA;\n",
     "\t\tmdcr_set |= MDCR_EL2_TDOSA | BIT(16);\n"),
    (HYP_SWITCH_H, "__deactivate_traps_common",
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2), mdcr_el2);\n",
     "\twrite_sysreg(*host_data_ptr(host_debug_state.mdcr_el2) | BIT_ULL(32), mdcr_el2);\n"),
    (EL2_SETUP_H, ".macro __init_el2_debug", "\tmsr\tmdcr_el2, x2\t\t\t// Configure debug traps\n",
     "\torr\tx2, x2, #(1 << 18)\t\t// Keep EL2 counters out of reach\n"
     "\tmsr\tmdcr_el2, x2\t\t\t// Configure debug traps\n"),
    (DEBUG_C, "kvm_arm_setup_mdcr_el2", "\t\t\t\tMDCR_EL2_TTRF |\n",
     "\t\t\t\tMDCR_EL2_TTRF | (MDCR_EL2_TTRF << 1) |\n"),
)


@generator("b", True, "res0-literal-set", """A literal or derived constant with a
reserved MDCR_EL2 bit (16, 18, 20-22, 32) in a value written to the
register.""")
def _res0_literal(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new in _RES0_LITERALS:
        c = Change(k, function=func.split()[-1])
        c.sub(path, func, old, new)
        c.subject = "KVM: arm64: Tighten the MDCR_EL2 value in %s" % func.split()[-1]
        c.message = para("""Set the additional control so that neither the guest
            nor a stray host access gets at the counters reserved for EL2.""")
        yield c


# -- neighbours of b ----------------------------------------------------------


@generator("b", False, "res0-mask-reformat", """MDCR_EL2_RES0 and HCR_RES0
rewritten with the same value (terms reordered, BIT()/GENMASK spelled
differently): the stale bits 6.12 carries stay, but the patch does not
introduce them and the value is unchanged.""")
def _res0_reformat(k: Kernel, rng: random.Random) -> Iterator[Change]:
    old = ("#define MDCR_EL2_RES0\t\t(GENMASK(63, 37) |\t\\\n"
           "\t\t\t\t GENMASK(35, 30) |\t\\\n"
           "\t\t\t\t GENMASK(25, 24) |\t\\\n"
           "\t\t\t\t GENMASK(22, 20) |\t\\\n"
           "\t\t\t\t BIT(18) |\t\t\\\n"
           "\t\t\t\t GENMASK(16, 15))\n")
    variants = (
        "#define MDCR_EL2_RES0\t\t(GENMASK(16, 15) |\t\\\n\t\t\t\t BIT(18) |\t\t\\\n"
        "\t\t\t\t GENMASK(22, 20) |\t\\\n\t\t\t\t GENMASK(25, 24) |\t\\\n"
        "\t\t\t\t GENMASK(35, 30) |\t\\\n\t\t\t\t GENMASK(63, 37))\n",
        "#define MDCR_EL2_RES0\t\t(GENMASK(63, 37) | GENMASK(35, 30) |\t\\\n"
        "\t\t\t\t GENMASK(25, 24) | GENMASK(22, 20) |\t\\\n"
        "\t\t\t\t BIT(18) | BIT(16) | BIT(15))\n",
        "#define MDCR_EL2_RES0\t\t(GENMASK_ULL(63, 37) |\t\\\n"
        "\t\t\t\t GENMASK_ULL(35, 30) |\t\\\n\t\t\t\t GENMASK_ULL(25, 24) |\t\\\n"
        "\t\t\t\t GENMASK_ULL(22, 20) |\t\\\n\t\t\t\t BIT_ULL(18) |\t\t\\\n"
        "\t\t\t\t GENMASK_ULL(16, 15))\n",
    )
    for new in variants:
        c = Change(k, function=KVM_ARM_H)
        c.sub(KVM_ARM_H, None, old, new)
        c.subject = "KVM: arm64: Reformat MDCR_EL2_RES0"
        c.message = hedged(rng, "Make the mask easier to compare with the table.",
                           always=True)
        yield c
    c = Change(k, function=KVM_ARM_H)
    c.sub(KVM_ARM_H, None, "#define HCR_RES0\t((UL(1) << 48) | (UL(1) << 39))",
          "#define HCR_RES0\t(BIT(48) | BIT(39))")
    c.subject = "KVM: arm64: Use BIT() in HCR_RES0"
    c.message = hedged(rng, "Shorter, and the same value.", always=True)
    yield c


@generator("b", False, "defined-bits-set", """Fields the architecture defines, set
through their macros in a different order or grouping: no reserved bit is
written.""")
def _defined_set(k: Kernel, rng: random.Random) -> Iterator[Change]:
    c = Change(k, function="pvm_init_traps_aa64dfr0")
    c.sub(NVHE_PKVM, "pvm_init_traps_aa64dfr0",
          "\t\tmdcr_set |= MDCR_EL2_TDRA | MDCR_EL2_TDA | MDCR_EL2_TDE;\n",
          "\t\tmdcr_set |= MDCR_EL2_TDE | MDCR_EL2_TDA | MDCR_EL2_TDRA;\n")
    c.subject = "KVM: arm64: pkvm: Sort the debug trap bits"
    c.message = hedged(rng, "List the debug traps in bit order.")
    yield c
    c = Change(k, function="kvm_arm_setup_mdcr_el2")
    c.sub(DEBUG_C, "kvm_arm_setup_mdcr_el2",
          "\tvcpu->arch.mdcr_el2 |= (MDCR_EL2_TPM |\n\t\t\t\tMDCR_EL2_TPMS |\n"
          "\t\t\t\tMDCR_EL2_TTRF |\n\t\t\t\tMDCR_EL2_TPMCR |\n\t\t\t\tMDCR_EL2_TDRA |\n"
          "\t\t\t\tMDCR_EL2_TDOSA);\n",
          "\tvcpu->arch.mdcr_el2 |= (MDCR_EL2_TPMCR | MDCR_EL2_TPM |\n"
          "\t\t\t\tMDCR_EL2_TDOSA | MDCR_EL2_TDRA |\n"
          "\t\t\t\tMDCR_EL2_TPMS | MDCR_EL2_TTRF);\n")
    c.subject = "KVM: arm64: Group the MDCR_EL2 trap bits by bit position"
    c.message = hedged(rng, "Two per line, in bit order.")
    yield c
