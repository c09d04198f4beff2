"""Semantics-preserving patches that are no bug kind's neighbour in
particular: renamed locals, statements split over lines, macros with the
same value, reordered independent statements, a helper moved into a
header, accessors for the same storage, comment and whitespace edits.

Their commit messages hedge ("No functional change intended.") most of the
time and now and then mention configuration, as real refactors do; neither
may make a finding loud.
"""

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


# -- comments -----------------------------------------------------------------------

_COMMENTS = (
    "Order matters here, see the comment at the top of the file.",
    "The host's HCR_EL2 and MDCR_EL2 are restored further down.",
    "Nothing below may depend on the guest's view of HCR_EL2.TGE.",
    "write_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2) must stay the first write on exit.",
    "MDCR_EL2.{E2PB,E2TB} are left as the host configured them.",
    "Keep this in sync with the nVHE version.",
    "Keep this in sync with the VHE version.",
    "This runs with interrupts masked.",
    "No isb() needed: the next exception return synchronises the context.",
    "HPMN comes from the boot value captured in kvm_arm_init_debug().",
    "The vcpu's shadow copy of HCR_EL2 is authoritative here.",
    "See ARM DDI 0487, D1.14.3 for the VSE semantics.",
    "TODO: revisit once FEAT_NV2 is the common case.",
    "This is the only place the host value is loaded from memory.",
    "Reading the live HCR_EL2 is fine here, the guest value is installed.",
    "Preemption is disabled by the caller.",
)


@generator("", False, "comment-added", """A comment line (one or two) added at a
statement boundary of a save/restore function; comments are not code, even
when they quote code or talk about HCR_EL2/MDCR_EL2.""")
def _comment_added(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func in FUNCS:
        spots = _statements(k, path, func)
        spots = [s for s in spots if _unique(k, path, func, s[1])]
        for _prev, line in rng.sample(spots, min(3, len(spots))):
            indent = line[:len(line) - len(line.lstrip("\t"))]
            text = rng.choice(_COMMENTS)
            c = Change(k, function=func, subject="KVM: arm64: Comment %s()" % func)
            c.insert_before(path, func, line, "%s/* %s */\n" % (indent, text))
            c.message = hedged(rng, "Document an assumption of %s()." % func, always=True)
            yield c


_TYPOS = (
    (VHE_SWITCH, "__activate_traps", "We're entrering the guest.", "We're entering the guest."),
    (EL2_SETUP_H, ".macro init_el2_hcr", "Initalize HCR_EL2.E2H", "Initialize HCR_EL2.E2H"),
    (VHE_TLB, None, "perform the following transformtions:",
     "perform the following transformations:"),
    (ARM_C, "cpu_prepare_hyp_mode", "\t * Flush the init params from the data cache because the "
     "struct will\n", "\t * Flush the init params from the data cache, because the struct "
     "will\n"),
    (NVHE_SWITCH, "__kvm_vcpu_run", "the translation regime(EL1&0) is going",
     "the translation regime (EL1&0) is going"),
)


@generator("", False, "comment-typo", """A spelling fix in a comment.""")
def _typo(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new in _TYPOS:
        c = Change(k, function=(func or path).split()[-1], subject="KVM: arm64: Fix a typo")
        c.sub(path, func, old, new)
        c.message = hedged(rng, "Fix a typo in a comment.")
        yield c


# -- split statements ----------------------------------------------------------------------


def _col(s: str) -> int:
    col = 0
    for ch in s:
        col = (col // 8 + 1) * 8 if ch == "\t" else col + 1
    return col


def _indent_to(col: int) -> str:
    return "\t" * (col // 8) + " " * (col % 8)


def _split_points(line: str) -> list[tuple[int, int]]:
    """(cut position, continuation column) candidates: after a top-level
    comma of the first call, or after ` = ` / a binary operator at depth 0."""
    out = []
    depth = 0
    first_open = -1
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
            if depth == 1 and first_open < 0:
                first_open = i
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 1 and line[i + 1:i + 2] == " ":
            out.append((i + 2, _col(line[:first_open + 1])))
        elif depth == 0 and line[i:i + 3] in (" = ", " | ", " & ") and i > 0:
            out.append((i + 3, _col(line[:len(line) - len(line.lstrip("\t"))]) + 8))
    return out


@generator("", False, "statement-split", """A statement split over two lines at a
comma or after an operator, continuation indented (no parentheses added): the
tokens and their order are unchanged.""")
def _split(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func in FUNCS:
        spots = [s for s in _statements(k, path, func) if len(s[1]) > 28
                 and _split_points(s[1]) and _unique(k, path, func, s[1])]
        for _prev, line in rng.sample(spots, min(3, len(spots))):
            cut, col = rng.choice(_split_points(line))
            new = line[:cut].rstrip() + "\n" + _indent_to(col) + line[cut:].lstrip()
            c = Change(k, function=func, subject="KVM: arm64: Wrap a long line in %s()" % func)
            c.sub(path, func, line + "\n", new + "\n")
            c.message = hedged(rng, "Wrap a line to keep it readable.", always=True)
            yield c


# -- rename a local ---------------------------------------------------------------------

_RENAMES = (
    (HYP_SWITCH_H, "___activate_traps", "hcr", "guest_hcr"),
    (HYP_SWITCH_H, "__activate_traps_common", "hctxt", "hctx"),
    (HYP_SWITCH_H, "__activate_traps_common", "hcrx", "hcrx_val"),
    (HYP_SWITCH_H, "__deactivate_traps_common", "hctxt", "hctx"),
    (VHE_SWITCH, "__compute_hcr", "hcr", "val"),
    (VHE_SWITCH, "__activate_traps", "val", "cval"),
    (VHE_SWITCH, "__deactivate_traps", "host_vectors", "hvec"),
    (VHE_SWITCH, "__deactivate_traps", "offset", "cntpoff"),
    (VHE_SWITCH, "__vcpu_load_activate_traps", "flags", "irqflags"),
    (VHE_SWITCH, "__vcpu_put_deactivate_traps", "flags", "irqflags"),
    (VHE_SWITCH, "__kvm_vcpu_run_vhe", "exit_code", "code"),
    (VHE_SWITCH, "__kvm_vcpu_run", "ret", "rc"),
    (VHE_SWITCH, "fixup_guest_exit", "mode", "psr_mode"),
    (NVHE_SWITCH, "__kvm_vcpu_run", "pmu_switch_needed", "pmu_switched"),
    (NVHE_SWITCH, "__kvm_vcpu_run", "mmu", "s2_mmu"),
    (NVHE_SWITCH, "__deactivate_traps", "val", "reg"),
    (NVHE_SWITCH, "__activate_traps", "ctxt", "guest_ctxt"),
    (NVHE_SWITCH, "hyp_panic", "par", "par_el1"),
    (VHE_SWITCH, "hyp_panic", "spsr", "spsr_el2"),
    (VHE_TLB, "enter_vmid_context", "val", "reg"),
    (VHE_TLB, "enter_vmid_context", "vcpu", "running"),
    (NVHE_TLB, "enter_vmid_context", "host_s2_mmu", "hs2_mmu"),
    (NVHE_TLB, "enter_vmid_context", "vcpu", "running"),
    (NVHE_TLB, "exit_vmid_context", "mmu", "s2_mmu"),
    (NVHE_TLB, "exit_vmid_context", "host_ctxt", "hctx"),
    (DEBUG_C, "kvm_arm_setup_debug", "mdscr", "mdscr_el1"),
    (DEBUG_C, "kvm_arm_setup_debug", "orig_mdcr_el2", "old_mdcr"),
    (ARM_C, "cpu_prepare_hyp_mode", "ips", "pa_range"),
    (ARM_C, "kvm_arch_vcpu_load", "last_ran", "last"),
    (ARM_C, "vcpu_set_pauth_traps", "val", "pauth_bits"),
    (ARM_C, "vcpu_set_pauth_traps", "ctxt", "hyp_ctxt"),
    (AT_C, "__kvm_at_s1e2", "val", "at_hcr"),
    (AT_C, "__kvm_at_s1e2", "hcr", "host_hcr"),
    (AT_C, "__mmu_config_save", "config", "cfg"),
    (AT_C, "__mmu_config_restore", "config", "cfg"),
    (NVHE_PKVM, "pvm_init_traps_aa64pfr0", "hcr_clear", "clear"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "mdcr_set", "set_bits"),
    (NVHE_PKVM, "pvm_init_traps_aa64dfr0", "feature_ids", "dfr0"),
    (NVHE_MEM_PROTECT, "__pkvm_prot_finalize", "params", "init_params"),
    (NVHE_SWITCH, "fixup_guest_exit", "handlers", "exit_handlers"),
    (NVHE_DEBUG_SR, "__debug_save_spe", "reg", "limitr"),
)


@generator("", False, "local-renamed", """A local variable or parameter renamed
inside one function (struct members and macro arguments that name members are
left alone); the new name is not used elsewhere in the function.""")
def _rename(k: Kernel, rng: random.Random) -> Iterator[Change]:
    for path, func, old, new in _RENAMES:
        text = k.text(path)
        lo, hi = func_span(text, func)
        body = text[lo:hi]
        if re.search(r"\b%s\b" % new, body) or re.search(r"host_data_ptr\(%s\b" % old, body):
            raise GeneratorError("%s: cannot rename %s to %s" % (func, old, new))
        c = Change(k, function=func, subject="KVM: arm64: Rename %s in %s()" % (old, func))
        c.sub_word(path, func, old, new)
        c.message = hedged(rng, "%s says better what the variable holds." % new)
        yield c


# -- whitespace ---------------------------------------------------------------------------------


@generator("", False, "whitespace-only", """Alignment and blank-line changes:
tabs between a macro name and its value, a blank line added or removed
between statements.""")
def _whitespace(k: Kernel, rng: random.Random) -> Iterator[Change]:
    text = k.text(KVM_ARM_H)
    defines = re.findall(r"^#define (?:HCR|MDCR_EL2)_\w+\t+\(UL\(1\) << \d+\)$", text, re.M)
    for line in rng.sample(defines, 8):
        name, value = line.split("\t", 1)
        c = Change(k, function=KVM_ARM_H, subject="KVM: arm64: Realign %s" % name.split()[1])
        c.sub(KVM_ARM_H, None, line + "\n", name + " " + value.lstrip("\t") + "\n")
        c.message = hedged(rng, "Use a space, as the newer definitions do.", always=True)
        yield c
    c = Change(k, function="HCR_GUEST_FLAGS", subject="KVM: arm64: Reflow HCR_GUEST_FLAGS")
    c.sub(KVM_ARM_H, None, "#define HCR_GUEST_FLAGS (HCR_TSC | HCR_TSW | HCR_TWE | HCR_TWI | "
          "HCR_VM | \\\n\t\t\t HCR_BSU_IS | HCR_FB | HCR_TACR | \\\n",
          "#define HCR_GUEST_FLAGS (HCR_TSC | HCR_TSW | HCR_TWE | HCR_TWI | \\\n"
          "\t\t\t HCR_VM | HCR_BSU_IS | HCR_FB | HCR_TACR | \\\n")
    c.message = hedged(rng, "Keep the lines under 80 columns.", always=True)
    yield c
    for path, func in rng.sample(FUNCS, 10):
        spots = [s for s in _statements(k, path, func)
                 if s[0].strip() and _unique(k, path, func, s[1])]
        if not spots:
            continue
        _prev, line = rng.choice(spots)
        c = Change(k, function=func, subject="KVM: arm64: Add some air to %s()" % func)
        c.insert_before(path, func, line, "\n")
        c.message = hedged(rng, "Separate the steps with a blank line.", always=True)
        yield c
