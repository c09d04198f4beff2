"""Reading register layouts out of kernel macros, and writing them back.

`macro_layout` turns the hand-written `HCR_*`/`MDCR_EL2_*` macros of
kvm_arm.h into fields and RES0 masks, naming each after the model's field
(through aliases: HCR_TPC is TPCP). `generated_macros` produces what
gen-sysreg.awk would generate from a tools/sysreg table, so macros written in
terms of generated names can be evaluated without building a kernel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.regmodel.model import (
    FIELD_SUFFIXES,
    Field,
    Macro,
    Register,
    RegisterModel,
    contiguous_range,
)

_IDENT = re.compile(r"[A-Za-z_]\w*")
# `HCR_EL2_TGE`, `(HCR_EL2_TGE)` or `__HCR(TGE)`: a name for a generated macro.
_ALIAS = re.compile(r"^\(?\s*[A-Za-z_]\w*\s*(\(\s*[A-Za-z_]\w*\s*\))?\s*\)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class MacroField:
    """One field (or Enum value) as the kernel's macros define it."""

    register: str
    name: str                 # the kernel's name without the prefix: TPC, BSU_IS
    field: Field | None       # the reference field it names; None when unknown
    value_name: str | None    # for an Enum value macro: "IS"
    msb: int | None           # None when only a _SHIFT says where it starts
    lsb: int
    value: int | None         # an Enum value macro's (shifted) value
    macros: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MacroLayout:
    """A register's fields and RES0/RES1 masks as kvm_arm.h's macros define them."""

    register: str
    fields: tuple[MacroField, ...]
    res0: tuple[Macro, ...]
    res1: tuple[Macro, ...]
    skipped: tuple[str, ...]  # combinations, aliases and macros without a value

    @property
    def defined(self) -> bool:
        return bool(self.fields or self.res0 or self.res1)


def _prefix(name: str, prefixes: tuple[str, ...]) -> str | None:
    for p in prefixes:
        if name.startswith(p):
            return p
    return None


def _split_suffix(rest: str) -> tuple[str, str]:
    for suffix in FIELD_SUFFIXES:
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return rest[:-len(suffix)], suffix
    return rest, ""


def _enum_value(reference: Register, base: str) -> tuple[Field, str] | None:
    up = base.upper()
    for f in reference.fields:
        for n in (f.name, *f.aliases):
            head = n.upper() + "_"
            if up.startswith(head) and f.value(up[len(head):]) is not None:
                return f, up[len(head):]
    return None


def macro_layout(macros: Mapping[str, Macro], reference: Register, *,
                 skip_aliases: bool = False) -> MacroLayout:
    """The fields and RES0/RES1 masks `macros` define for `reference`'s register.

    With `skip_aliases`, macros that merely rename a generated one
    (`#define HCR_TGE __HCR(TGE)`) are left out: the tools/sysreg table they
    point to is compared on its own.
    """
    prefixes = tuple(sorted(reference.prefixes or (reference.name + "_",), key=len,
                            reverse=True))
    ours = {n: m for n, m in macros.items() if _prefix(n, prefixes)}
    res0: list[Macro] = []
    res1: list[Macro] = []
    skipped: list[str] = []
    groups: dict[str, dict[str, Macro]] = {}
    for name, m in sorted(ours.items(), key=lambda kv: kv[1].line):
        rest = name[len(_prefix(name, prefixes) or ""):]
        if name in reference.res0_macros or rest == "RES0":
            (res0.append(m) if m.value is not None else skipped.append(name))
            continue
        if rest == "RES1":
            (res1.append(m) if m.value is not None else skipped.append(name))
            continue
        if m.params is not None or m.value is None:
            skipped.append(name)
            continue
        if skip_aliases and _ALIAS.match(m.expr):
            skipped.append(name)
            continue
        base, suffix = _split_suffix(rest)
        own = {name, *(p + base + s for p in prefixes for s in ("",) + FIELD_SUFFIXES)}
        refs = {i for i in _IDENT.findall(m.expr) if i in ours and i not in own}
        if refs:
            # Built from other fields: a flag set or a combination mask.
            skipped.append(name)
            continue
        groups.setdefault(base, {})[suffix] = m
    fields: list[MacroField] = []
    for base, parts in groups.items():
        mf = _field_from_parts(reference, base, parts)
        if mf is None:
            skipped.extend(m.name for m in parts.values())
        else:
            fields.append(mf)
    fields.sort(key=lambda f: (-(f.msb if f.msb is not None else f.lsb), f.name))
    return MacroLayout(register=reference.name, fields=tuple(fields), res0=tuple(res0),
                       res1=tuple(res1), skipped=tuple(skipped))


def _field_from_parts(reference: Register, base: str, parts: dict[str, Macro]
                      ) -> MacroField | None:
    whole, mask = parts.get(""), parts.get("_MASK")
    shift, width = parts.get("_SHIFT"), parts.get("_WIDTH")
    msb: int | None
    if whole is not None and whole.msb is not None and whole.lsb is not None:
        msb, lsb = whole.msb, whole.lsb
    elif mask is not None and mask.msb is not None and mask.lsb is not None:
        msb, lsb = mask.msb, mask.lsb
    elif shift is not None and shift.value is not None and shift.value < 64:
        lsb = shift.value
        msb = lsb + width.value - 1 if width is not None and width.value else None
    else:
        return None
    used = tuple(m.name for m in parts.values())
    line = min(m.line for m in parts.values())
    fld = reference.field(base)
    if fld is not None:
        return MacroField(register=reference.name, name=base, field=fld, value_name=None,
                          msb=msb, lsb=lsb, value=None, macros=used, line=line)
    enum = _enum_value(reference, base)
    if enum is not None and whole is not None:
        return MacroField(register=reference.name, name=base, field=enum[0],
                          value_name=enum[1], msb=msb, lsb=lsb, value=whole.value,
                          macros=used, line=line)
    return MacroField(register=reference.name, name=base, field=None, value_name=None,
                      msb=msb, lsb=lsb, value=None, macros=used, line=line)


def _mk(name: str, value: int, expr: str | None = None) -> Macro:
    rng = None if name.endswith(("_SHIFT", "_WIDTH", "_SIGNED")) else contiguous_range(value)
    return Macro(name=name, expr=expr if expr is not None else hex(value), value=value,
                 msb=rng[0] if rng else None, lsb=rng[1] if rng else None, line=0)


def generated_macros(registers: Iterable[Register]) -> dict[str, Macro]:
    """The macros gen-sysreg.awk generates for `registers`.

    As in the kernel's script (6.12), Enum value macros are unshifted:
    HCR_EL2_BSU_IS is 1, not 1 << 10.
    """
    out: dict[str, Macro] = {}
    for reg in registers:
        n = reg.name
        if reg.encoding is not None and len(reg.encoding) == 5:
            op0, op1, crn, crm, op2 = reg.encoding
            out["SYS_" + n] = _mk("SYS_" + n, op0 << 19 | op1 << 16 | crn << 12
                                  | crm << 8 | op2 << 5)
        for f in reg.fields:
            out["%s_%s" % (n, f.name)] = _mk("%s_%s" % (n, f.name), f.mask)
            out["%s_%s_MASK" % (n, f.name)] = _mk("%s_%s_MASK" % (n, f.name), f.mask)
            out["%s_%s_SHIFT" % (n, f.name)] = _mk("%s_%s_SHIFT" % (n, f.name), f.lsb)
            out["%s_%s_WIDTH" % (n, f.name)] = _mk("%s_%s_WIDTH" % (n, f.name), f.width)
            for vname, val in f.values:
                name = "%s_%s_%s" % (n, f.name, vname)
                out[name] = _mk(name, val)
        out[n + "_RES0"] = _mk(n + "_RES0", reg.res0_mask)
        out[n + "_RES1"] = _mk(n + "_RES1", reg.res1_mask)
    return out


def legacy_macros(registers: Iterable[Register]) -> dict[str, Macro]:
    """kvm_arm.h-style names (HCR_TGE, HCR_TPC, HCR_BSU_IS, HCR_ATA_SHIFT) for
    the registers' non-generated prefixes. Enum values here are shifted, as the
    hand-written HCR_BSU_IS always was."""
    out: dict[str, Macro] = {}
    for reg in registers:
        for prefix in reg.prefixes:
            if prefix == reg.name + "_":
                continue
            for f in reg.fields:
                for fname in (f.name, *f.aliases):
                    out[prefix + fname] = _mk(prefix + fname, f.mask)
                    out[prefix + fname + "_SHIFT"] = _mk(prefix + fname + "_SHIFT", f.lsb)
                    for vname, val in f.values:
                        name = "%s%s_%s" % (prefix, fname, vname)
                        out[name] = _mk(name, val << f.lsb)
    return out


def kernel_macros(model: RegisterModel, generated_first: bool = True) -> dict[str, Macro]:
    """Kernel macro names for the model's fields, as a `known` table for
    `evaluate_defines`: what gen-sysreg.awk generates (HCR_EL2_TGE,
    HCR_EL2_BSU_IS == 1) and the hand-written style (HCR_TGE, HCR_TPC,
    HCR_BSU_IS == 1 << 10).

    A few names exist in both styles with different meanings: kvm_arm.h's
    MDCR_EL2_E2PB_MASK is the unshifted field mask (used as MASK << SHIFT),
    the generated one is shifted. `generated_first` says which wins: the
    generated one for kernels whose tools/sysreg has the register (6.13 and
    later for MDCR_EL2), the hand-written one before."""
    legacy = legacy_macros(model.registers.values())
    generated = generated_macros(model.registers.values())
    if generated_first:
        return {**legacy, **generated}
    return {**generated, **legacy, **_handwritten_masks(model.registers.values())}


def _handwritten_masks(registers: Iterable[Register]) -> dict[str, Macro]:
    """kvm_arm.h's MDCR_EL2_<FIELD>_MASK for multi-bit fields: unshifted
    (UL(0x3) for E2PB, used as MASK << SHIFT), unlike the generated ones."""
    out: dict[str, Macro] = {}
    for reg in registers:
        if reg.name + "_" not in reg.prefixes:
            continue
        for f in reg.fields:
            if f.width > 1:
                name = "%s_%s_MASK" % (reg.name, f.name)
                out[name] = _mk(name, (1 << f.width) - 1)
    return out
