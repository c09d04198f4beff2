"""Which patches the rules read closely: a cheap test on the raw mail text.

Most patches on the list never touch HCR_EL2 or MDCR_EL2, the functions of
the save/restore map, or the other registers the rules follow. They are
recognised here from the mail body and never parsed further
(bot.rules.analysis), so the common patch costs microseconds; the same test
says which series are worth handing to the rules worker (bot.rulepool).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bot.data import LineKind, Patch, Series
from bot.regmodel import RegisterModel
from bot.rules.core import Context

# Code that can save, restore or define these registers lives here; QEMU's
# target/arm and kvm-unit-tests' lib/arm64 name HCR_EL2 too, but are not KVM.
KERNEL_PREFIXES = ("arch/arm64/", "virt/kvm/arm/", "include/kvm/")
_TLB_TOUCH = re.compile(r"local_irq|sysreg|isb\(")
_IDENT = re.compile(r"[A-Za-z_]\w{3,}")


def relevant(patch: Patch, mapped: frozenset[str] = frozenset(),
              hyp: frozenset[str] = frozenset(),
              copy_use: CopyUse | None = None) -> bool:
    """The patch can matter to these registers: it names them, changes the
    TLB switch helpers, or its changed lines name a function of the model's
    save/restore map (a call to a vcpu-init function removed from an
    unrelated-looking file), or it makes host code use the memory copy of
    a register VHE keeps loaded."""
    body = patch.mail.body
    low = body.lower()   # str.lower + `in` is several times faster than an (?i) regex
    if "hcr" not in low and "mdcr" not in low and (
            "tlb.c" not in body or not _TLB_TOUCH.search(body)) and not (
            mapped and _names_mapped(patch, mapped)) and not (
            "/hyp/" in body and hyp and _hyp_names(patch, hyp)) and not (
            copy_use is not None and copy_use.search(body) and _copy_used(patch, copy_use)):
        return False
    return any(p.startswith(KERNEL_PREFIXES) for p in patch.paths)


def _hyp_names(patch: Patch, mapped: frozenset[str]) -> bool:
    """A changed line of hyp code names a register of `mapped` that the
    hyp code reaches differently under VHE or reads after a dsb ([ops]
    e2h_redirected, dsb_observers; spelt `SYS_TFSR_EL1` or `tfsr_el1`)."""
    for fd in patch.files:
        if "/hyp/" not in fd.path or not fd.path.startswith(KERNEL_PREFIXES):
            continue
        for hunk in fd.hunks:
            for ln in hunk.lines:
                if ln.kind is not LineKind.CONTEXT and not mapped.isdisjoint(
                        _IDENT.findall(ln.text)):
                    return True
                if ln.kind is LineKind.REMOVED and _ISB_LINE.match(ln.text):
                    return True   # a barrier taken out of hyp code
    return False


_ISB_LINE = re.compile(r"\s*isb\b")


def _names_mapped(patch: Patch, mapped: frozenset[str]) -> bool:
    for fd in patch.files:
        if not fd.path.startswith(KERNEL_PREFIXES):
            continue
        for hunk in fd.hunks:
            # The function the hunk is in, as its header names it: a barrier
            # removed from a helper of the map names nothing else.
            if any(ln.kind is not LineKind.CONTEXT for ln in hunk.lines) and not \
                    mapped.isdisjoint(_IDENT.findall(hunk.section.split("(", 1)[0])):
                return True
            # The function a change is in, as a definition the hunk shows
            # above it (the header names the one before).
            inside = False
            for ln in hunk.lines:
                if ln.kind is LineKind.CONTEXT:
                    if ln.text[:1].isalpha() and "(" in ln.text:
                        inside = not mapped.isdisjoint(_IDENT.findall(ln.text.split("(", 1)[0]))
                    continue
                if inside or not mapped.isdisjoint(_IDENT.findall(ln.text)):
                    return True
    return False


@functools.lru_cache(maxsize=4)
def mapped_names(model: RegisterModel | None) -> frozenset[str]:
    """The names of the save/restore map's functions, of the functions the
    stored values' lifecycle goes through (kvm.toml [lifecycle]), of the
    save/restore pairs ([[round_trips]]), of the register loaders
    ([[loaders]])."""
    if model is None:
        return frozenset()
    names = {fr.name for fr in model.functions}
    facts = model.facts
    names.update(facts.lifecycle.stage_of)
    names.update(facts.lifecycle.defines)
    for save, restore in facts.round_trips:
        names.update((save, restore))
    names.update(facts.loaders)
    return frozenset(names)


@functools.lru_cache(maxsize=4)
def hyp_register_names(model: RegisterModel | None) -> frozenset[str]:
    """Names that make a changed line of hyp code matter: how it spells the
    registers it reaches differently under VHE or reads after a dsb ([ops]
    e2h_redirected, dsb_observers: `SYS_TFSR_EL1`, `tfsr_el1`), the
    registers of features only some VMs use and the tests of the VM that
    gate them (per_vm_registers, per_vm_tests), the vcpu's copies of the
    exit state and the helpers that use them ([[late_saved]]), and the
    configuration tests of [[guards]] (`has_vhe`, or the capability a
    `cpus_have_final_cap()` guard tests), which decide what each
    configuration's save/restore runs."""
    if model is None:
        return frozenset()
    ops = model.facts.ops
    regs = ops.get("e2h_redirected", frozenset()) | ops.get("dsb_observers", frozenset())
    names = {x for r in regs for x in ("SYS_" + r, r.lower())}
    names.update(ops.get("per_vm_registers", frozenset()))
    names.update(ops.get("per_vm_tests", frozenset()))
    names.update(g.arg or g.name for g in model.facts.guards)
    for reg in model.facts.late_saved:
        names.update(reg.names + reg.users + reg.synced_by)
    names.update(model.facts.config_work.e2h_names())
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class CopyUse:
    """The pattern of a use of a loaded register's memory copy, with the
    accessor names it starts with: text naming none of them (nearly every
    mail body) is passed over without running the pattern."""

    pattern: re.Pattern[str]
    accessors: tuple[str, ...]

    def search(self, text: str) -> re.Match[str] | None:
        if not any(a in text for a in self.accessors):
            return None
        return self.pattern.search(text)


@functools.lru_cache(maxsize=4)
def loaded_copy_use(model: RegisterModel | None) -> CopyUse | None:
    """A use of the memory copy of a register VHE keeps loaded while the
    vcpu runs (`__vcpu_sys_reg(vcpu, TCR_EL1)`, an assignment to it
    included): [ops] memory_copy of a register of [ops] vhe_loaded."""
    ops = model.facts.ops if model is not None else {}
    copy, loaded = ops.get("memory_copy", frozenset()), ops.get("vhe_loaded", frozenset())
    if not copy or not loaded:
        return None
    return CopyUse(re.compile(r"\b(%s)\s*\(\s*\w+\s*,\s*(%s)\s*\)(\s*[|&^+-]?=(?!=))?" % (
        alternatives(copy), alternatives(loaded))), tuple(sorted(copy)))


def alternatives(words: frozenset[str]) -> str:
    """Words as one regular-expression alternation, longest first."""
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


def _copy_used(patch: Patch, use: CopyUse) -> bool:
    """An added line uses the memory copy of a loaded register."""
    return any(ln.kind is LineKind.ADDED and use.search(ln.text)
               for fd in patch.files for hunk in fd.hunks for ln in hunk.lines)


def read_closely(series: Series, ctx: Context) -> bool:
    """Whether some patch of `series` passes the relevance test that sends
    it through the semantic model: where the rules' time goes (worth a
    worker process; bot.rulepool)."""
    model = ctx.regmodel
    mapped, hyp, copy_use = mapped_names(model), hyp_register_names(model), loaded_copy_use(model)
    return any(relevant(p, mapped, hyp, copy_use) for p in series.patches)
