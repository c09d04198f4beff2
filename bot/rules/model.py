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
from typing import Any

WATCHED = ("HCR_EL2", "MDCR_EL2")

_MACRO = re.compile(r"(?<![A-Za-z0-9_])((?:HCR|MDCR)_[A-Z0-9_]+)")
_GENERIC = ("_MASK", "_SHIFT", "_WIDTH")


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


def _field_name_guess(name: str) -> str:
    for prefix in ("HCR_EL2_", "HCR_", "MDCR_EL2_", "MDCR_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    for suffix in _GENERIC:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default) if obj is not None else default


def lookup(model: Any, name: str, register: str | None = None) -> FieldRef | None:
    """The field a macro names (HCR_TGE, MDCR_EL2_E2PB_MASK, ...)."""
    reg = register or register_of_macro(name)
    if model is not None:
        try:
            fld = model.lookup(name, register=reg) if reg else model.lookup(name)
        except (KeyError, ValueError, TypeError):
            fld = None
        if fld is not None:
            freg = str(_attr(fld, "register", reg) or reg)
            pol = str(_attr(fld, "polarity", "") or "")
            return FieldRef(register=freg, name=str(fld.name), msb=fld.msb, lsb=fld.lsb,
                            polarity=pol)
        return None
    if reg is None or re.search(r"_(FLAGS|RES0|RES1)$|_HOST_|_GUEST_", name):
        return None
    return FieldRef(register=reg, name=_field_name_guess(name), msb=None, lsb=None, polarity="")


def flag_set_fields(model: Any, name: str) -> list[FieldRef] | None:
    """The fields of a named flag set (HCR_HOST_VHE_FLAGS, ...), if it is one."""
    if model is None:
        return None
    try:
        fs = model.flag_set(name)
    except (KeyError, ValueError, TypeError):
        fs = None
    if fs is None:
        return None
    reg = str(_attr(fs, "register", "") or register_of_macro(name) or "")
    out: list[FieldRef] = []
    for f in _attr(fs, "fields", ()) or ():
        ref = lookup(model, f if isinstance(f, str) else f.name, reg) if (
            isinstance(f, str) or not hasattr(f, "msb")) else FieldRef(
            register=reg, name=f.name, msb=f.msb, lsb=f.lsb,
            polarity=str(_attr(f, "polarity", "") or ""))
        if ref is not None:
            out.append(ref)
    return out


def fields_in(model: Any, expr: str) -> list[FieldRef]:
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


def field_names(model: Any, expr: str) -> list[str]:
    return list(dict.fromkeys(f.name for f in fields_in(model, expr)))


def polarity(model: Any, register: str, name: str) -> str:
    if model is None:
        return ""
    try:
        return str(model.polarity(register, name) or "")
    except (KeyError, ValueError, TypeError, AttributeError):
        return ""


def role(model: Any, function: str | None, path: str = "") -> str | None:
    """The role (entry, exit, tlb-to-guest, ...) of a function, if it has one."""
    if not function:
        return None
    if model is not None:
        try:
            fr = (model.role(function, path) if path else None) or model.role(function)
        except (KeyError, ValueError, TypeError, AttributeError):
            fr = None
        if fr is not None:
            return str(_attr(fr, "role", "") or "") or None
    return None


def res0_violations(model: Any, register: str, value: int) -> int:
    if model is None:
        return 0
    try:
        bad = model.res0_violations(register, value)
    except (KeyError, ValueError, TypeError):
        return 0
    if isinstance(bad, int):
        return bad
    mask = 0
    for item in bad or ():
        if isinstance(item, int):
            mask |= 1 << item
        elif isinstance(item, tuple) and len(item) == 2:
            hi, lo = item
            mask |= ((1 << (hi - lo + 1)) - 1) << lo
    return mask


def register_info(model: Any, register: str) -> Any:
    if model is None:
        return None
    try:
        return model.register(register)
    except (KeyError, ValueError, TypeError):
        return None


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
