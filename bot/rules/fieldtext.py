"""What a patch writes down about HCR_EL2/MDCR_EL2 fields, as the
field-definition and reserved-bit rules read it: field macros and their
`#define` runs, `tools/sysreg` lines, the evaluator with the patch's own
macros, and the fields a kernel version (or the series) knows.
"""

from __future__ import annotations

import re

from bot.regmodel import Field, Register, RegisterModel
from bot.regmodel.evaluate import Evaluator
from bot.rules import model as M
from bot.rules.analysis import FileView, Line, PatchView, SeriesView
from bot.rules.core import Context
from bot.rules.flow import semantics

# Field macros: HCR_TGE, HCR_EL2_TGE, MDCR_EL2_E2PB_MASK, and the
# architecture's mixed-case names (HCR_TWEDEn, HCR_EnSCXT).
FIELD_DEF = re.compile(r"^(?:HCR|MDCR)_[A-Za-z0-9_]+$")
NOT_FIELD = re.compile(r"_(FLAGS|RES0|RES1|MASK_ALL|VIRT_EXCP_MASK)$|_GUEST_|_HOST_")
SYSREG_LINE = re.compile(r"^\s*(Field|Res0|Res1|Enum|UnsignedEnum|SignedEnum|Unkn|Raz)\s+"
                         r"(\d+)(?::(\d+))?\s*(\w+)?")
SYSREG_BLOCK = re.compile(r"^\s*Sysreg\s+(\w+)")
DEFINE_NAME = re.compile(r"^\s*#\s*define\s+((?:HCR|MDCR)_[A-Za-z0-9_]+)")
SYSREG_FIELD = re.compile(r"^\s*(?:Field|Enum|UnsignedEnum|SignedEnum)\s+\d+(?::\d+)?\s+(\w+)")
ORR_IMM = re.compile(r"^\s*orr\s+(x\d+)\s*,\s*(x\d+)\s*,\s*#\s*(.+?)\s*$")
MOV_Q = re.compile(r"^\s*(?:mov_q|ldr|mov)\s+(x\d+)\s*,\s*=?\s*#?(.+?)\s*$")


def define_runs(fv: FileView) -> list[tuple[Line, list[Line]]]:
    """Added `#define`s with the lines of their continuation."""
    out: list[tuple[Line, list[Line]]] = []
    lines = [ln for ln in fv.lines if ln.new_side]
    i = 0
    while i < len(lines):
        ln = lines[i]
        if "define" in ln.text and ln.text.lstrip().startswith("#"):
            run = [ln]
            while run[-1].text.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                run.append(lines[i])
            if any(r.added for r in run):
                out.append((ln, run))
        i += 1
    return out


def evaluator(sv: SeriesView, pv: PatchView, ctx: Context) -> Evaluator:
    """The model's evaluator with the patch's new #defines."""
    sem = semantics(sv, pv, ctx)
    assert sem is not None
    return sem.evaluator("new")


def fields_at(info: Register, mask: int) -> list[Field]:
    return [f for f in info.fields if f.mask & mask]


def known_mask(mdl: RegisterModel | None, reg: str, version: str | None, extra: set[str]) -> int:
    """The bits of fields a kernel of `version` knew (every field without a
    version), plus the fields named in `extra`."""
    known = getattr(mdl, "known_fields", None)
    info = M.register_info(mdl, reg)
    fields = list(getattr(info, "fields", ()) or ())
    if known is not None and version:
        try:
            fields = [f for f in known(reg, version)] + [
                f for f in fields if f.name in extra]
        except (KeyError, ValueError):
            pass
    mask = 0
    for f in fields:
        mask |= f.mask
    return mask


def series_fields(sv: SeriesView, mdl: RegisterModel | None, reg: str) -> set[str]:
    """Fields of `reg` the series itself defines (a macro or a tools/sysreg line)."""
    out: set[str] = set()
    for pv in sv.relevant():
        for fv in pv.files:
            for ln in fv.changed:
                if not ln.added:
                    continue
                m = DEFINE_NAME.match(ln.text) or SYSREG_FIELD.match(ln.text)
                if m is None:
                    continue
                ref = M.lookup(mdl, m.group(1), reg)
                if ref is not None and ref.register == reg:
                    out.add(ref.name)
    return out
