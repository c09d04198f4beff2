"""What the rules ask of the register model, in one place.

The model (`bot.regmodel`) is data: fields, RES0/RES1, polarity, flag sets
and the roles of the functions that switch these registers. This module
turns C expressions of the kernel's macros into fields and values with it.
Rules degrade gracefully without a model: a macro name still names its
field (`HCR_TGE` is HCR_EL2.TGE), but nothing is evaluated, so nothing is
decided as an error.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WATCHED = ("HCR_EL2", "MDCR_EL2")

_MACRO = re.compile(r"(?<![A-Za-z0-9_])((?:HCR|MDCR)_[A-Z0-9_]+)")
_TOKEN = re.compile(r"\s*(0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*|[A-Za-z_]\w*|<<|>>|[|&~()^+\-*,])\s*")
_INT_SUFFIX = re.compile(r"(?i)^(0x[0-9a-f]+|\d+)(ull|ul|u|l|ll)?$")
_GENERIC = ("_MASK", "_SHIFT", "_WIDTH")

# Function-name patterns of the switch paths, used only when the model has no
# role data for a function (the model's role table is authoritative).
_ROLE_FALLBACK = (
    ("exit", re.compile(r"^_*deactivate_traps")),
    ("entry", re.compile(r"^_*activate_traps(?!_vhe_load)")),
    ("vcpu-load", re.compile(r"vhe_load$|^kvm_arch_vcpu_load$|load_sysregs")),
    ("vcpu-put", re.compile(r"vhe_put$|^kvm_arch_vcpu_put$|put_sysregs")),
    ("tlb-to-guest", re.compile(r"tlb_switch_to_guest|^enter_vmid_context$")),
    ("tlb-to-host", re.compile(r"tlb_switch_to_host|^exit_vmid_context$")),
    ("panic", re.compile(r"hyp_panic|hyp_call_panic")),
    ("early-exit", re.compile(r"^fixup_guest_exit$")),
    ("init", re.compile(r"^__?init_el2|el2_setup|hyp_init|cpu_prepare_hyp_mode|"
                        r"^__kvm_hyp_init|init_el2_state")),
    ("vcpu-init", re.compile(r"vcpu_reset_hcr|reset_vcpu|^kvm_arm_vcpu_init$|"
                             r"setup_mdcr|kvm_arch_vcpu_create|kvm_vcpu_init")),
)


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


def value_of(model: Any, expr: str, extra: dict[str, int] | None = None) -> int | None:
    """The integer value of a C constant expression of known macros, else None."""
    if model is None:
        return None
    tokens: list[str] = []
    pos = 0
    expr = expr.strip().rstrip(";")
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            return None
        tokens.append(m.group(1))
        pos = m.end()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("UL", "ULL", "_UL", "_ULL", "_AC", "U", "L") and i + 1 < len(tokens) \
                and tokens[i + 1] == "(":
            i += 1
            continue
        if tok in ("BIT", "BIT_ULL", "GENMASK", "GENMASK_ULL") and i + 1 < len(tokens) \
                and tokens[i + 1] == "(":
            close = _matching(tokens, i + 1)
            if close is None:
                return None
            inner = _split_tokens(tokens[i + 2:close])
            maybe = [value_of(model, " ".join(t), extra) for t in inner]
            vals = [v for v in maybe if v is not None]
            if len(vals) != len(maybe):
                return None
            if tok.startswith("BIT") and len(vals) == 1 and 0 <= vals[0] < 64:
                out.append(str(1 << vals[0]))
            elif tok.startswith("GENMASK") and len(vals) == 2 and 0 <= vals[1] <= vals[0] < 64:
                h, lo = vals
                out.append(str(((1 << (h - lo + 1)) - 1) << lo))
            else:
                return None
            i = close + 1
            continue
        if tok == "," and out and out[-1] == "(":
            return None
        num = _INT_SUFFIX.match(tok)
        if num:
            out.append(str(int(num.group(1), 0)))
        elif re.match(r"[A-Za-z_]", tok):
            val = _macro_value(model, tok, extra)
            if val is None:
                return None
            out.append(str(val))
        else:
            out.append(tok)
        i += 1
    try:
        value = _eval(ast.parse(" ".join(out), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return None
    return value & _MASK64


_MASK64 = (1 << 64) - 1
_BINOPS: dict[type[ast.operator], Callable[[int, int], int]] = {
           ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b,
           ast.BitXor: lambda a, b: a ^ b, ast.Add: lambda a, b: a + b,
           ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}


def _eval(node: ast.AST) -> int:
    """Integer C constant arithmetic on 64 bits; anything else is refused.

    The expression comes from mail: shifts are bounded so that no input can
    make Python build a huge integer."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value & _MASK64
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return ~_eval(node.operand) & _MASK64
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand) & _MASK64
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, (ast.LShift, ast.RShift)):
            if right > 64:
                raise ValueError("shift out of range")
            return (left << right if isinstance(node.op, ast.LShift) else left >> right) \
                & _MASK64
        op = _BINOPS.get(type(node.op))
        if op is not None:
            return op(left, right) & _MASK64
    raise ValueError("not a constant expression")


def _matching(tokens: list[str], open_at: int) -> int | None:
    depth = 0
    for k in range(open_at, len(tokens)):
        if tokens[k] == "(":
            depth += 1
        elif tokens[k] == ")":
            depth -= 1
            if depth == 0:
                return k
    return None


def _split_tokens(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if tok == "," and depth == 0:
            parts.append([])
            continue
        parts[-1].append(tok)
    return parts


def _macro_value(model: Any, name: str, extra: dict[str, int] | None) -> int | None:
    if extra and name in extra:
        return extra[name]
    try:
        fs = model.flag_set(name)
    except (KeyError, ValueError, TypeError):
        fs = None
    if fs is not None and _attr(fs, "value") is not None:
        return int(fs.value)
    ref = lookup(model, name)
    if ref is None or ref.mask is None:
        return None
    if name.endswith("_SHIFT"):
        return ref.lsb
    if name.endswith("_MASK") and ref.lsb and ref.msb is not None and _shifted_mask(name):
        # kvm_arm.h's MDCR_EL2_E2PB_MASK is the unshifted field mask (used as
        # MASK << SHIFT); the generated *_MASK macros are shifted.
        return (1 << (ref.msb - ref.lsb + 1)) - 1
    return ref.mask


def _shifted_mask(name: str) -> bool:
    return name in ("MDCR_EL2_E2PB_MASK", "MDCR_EL2_E2TB_MASK")


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
    for name, pat in _ROLE_FALLBACK:
        if pat.search(function):
            return name
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
