"""What the rules ask of the register model, in one place.

The model (`bot.regmodel`) is data: fields, RES0/RES1, polarity, flag sets
and the roles of the functions that switch these registers. This module
names fields in C expressions of the kernel's macros; values are only ever
evaluated by the model's one evaluator (bot.regmodel.evaluate). Roles come
from the model's save/restore map alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.regmodel import Register, RegisterModel, Role

WATCHED = ("HCR_EL2", "MDCR_EL2")

_MACRO = re.compile(r"(?<![A-Za-z0-9_])((?:HCR|MDCR)_[A-Z0-9_]+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRef:
    """A field named in an expression, as the rules need it."""

    register: str
    name: str
    msb: int | None
    lsb: int | None
    polarity: str          # trap | allow | neutral | "" when unknown

    @property
    def mask(self) -> int | None:
        if self.msb is None or self.lsb is None:
            return None
        return ((1 << (self.msb - self.lsb + 1)) - 1) << self.lsb


def macros(expr: str) -> list[str]:
    return _MACRO.findall(expr)


def register_of_macro(name: str) -> str | None:
    if name.startswith("MDCR_"):
        return "MDCR_EL2"
    if name.startswith("HCR_"):
        return "HCR_EL2"
    return None


def lookup(model: RegisterModel | None, name: str,
           register: str | None = None) -> FieldRef | None:
    """The field a macro names (HCR_TGE, MDCR_EL2_E2PB_MASK, ...); None
    without a model, or for a name the model does not know."""
    if model is None:
        return None
    reg = register or register_of_macro(name)
    fld = model.lookup(name, register=reg) if reg else model.lookup(name)
    if fld is None:
        return None
    return FieldRef(register=fld.register or reg or "", name=fld.name, msb=fld.msb,
                    lsb=fld.lsb, polarity=str(fld.polarity or ""))


def flag_set_fields(model: RegisterModel | None, name: str) -> list[FieldRef] | None:
    """The fields of a named flag set (HCR_HOST_VHE_FLAGS, ...), if it is one."""
    fs = model.flag_set(name) if model is not None else None
    if fs is None:
        return None
    out: list[FieldRef] = []
    for f in fs.fields:
        ref = lookup(model, f, fs.register)
        if ref is not None:
            out.append(ref)
    return out


def fields_in(model: RegisterModel | None, expr: str) -> list[FieldRef]:
    """Every field an expression names, flag sets expanded."""
    out: list[FieldRef] = []
    for name in macros(expr):
        fs = flag_set_fields(model, name)
        if fs is not None:
            out.extend(fs)
            continue
        ref = lookup(model, name)
        if ref is not None:
            out.append(ref)
    return out


def field_names(model: RegisterModel | None, expr: str) -> list[str]:
    return list(dict.fromkeys(f.name for f in fields_in(model, expr)))


def polarity(model: RegisterModel | None, register: str, name: str) -> str:
    if model is None or model.register(register) is None:
        return ""
    return str(model.polarity(register, name) or "")


def role(model: RegisterModel | None, function: str | None, path: str = "") -> Role | None:
    """The role (entry, exit, tlb-to-guest, ...) of a function, if it has one."""
    if not function or model is None:
        return None
    fr = (model.role(function, path) if path else None) or model.role(function)
    return fr.role if fr is not None else None


def res0_violations(model: RegisterModel | None, register: str, value: int) -> int:
    """The RES0 bits `value` sets, as a mask."""
    if model is None or model.register(register) is None:
        return 0
    mask = 0
    for hi, lo in model.res0_violations(register, value):
        mask |= ((1 << (hi - lo + 1)) - 1) << lo
    return mask


def register_info(model: RegisterModel | None, register: str) -> Register | None:
    return model.register(register) if model is not None else None


def bits_text(mask: int) -> str:
    """"bits 31:30, 25" for a mask."""
    parts: list[str] = []
    bit = 63
    while bit >= 0:
        if mask >> bit & 1:
            lo = bit
            while lo > 0 and mask >> (lo - 1) & 1:
                lo -= 1
            parts.append("%d:%d" % (bit, lo) if lo != bit else str(bit))
            bit = lo - 1
        else:
            bit -= 1
    return ("bits " if len(parts) > 1 or ":" in "".join(parts) else "bit ") + ", ".join(parts)
