"""Rule family 1: field definitions match the model.

A `#define HCR_X (UL(1) << n)`, `_SHIFT`/`_MASK`, `GENMASK`, or a
`tools/sysreg` line must agree with the field's position and width, and
names must match the architecture's. The model decides, so a mismatch may
be an `error`. Family 2 (reserved bits) is bot.rules.reserved; what both
read of the patch is bot.rules.fieldtext.
"""

from __future__ import annotations

from bot.data import Series
from bot.parse.csource import defines
from bot.regmodel import RegisterModel
from bot.regmodel.evaluate import Evaluator
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, PatchView, SeriesView, view
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.fieldtext import (
    FIELD_DEF,
    NOT_FIELD,
    SYSREG_BLOCK,
    SYSREG_LINE,
    define_runs,
    evaluator,
    fields_at,
    known_mask,
    series_fields,
)


@rule(id="field-definition", category=Category.FIELD_DEFINITION, severity=Severity.ERROR,
      summary="a field macro or tools/sysreg line disagrees with the register model",
      files=("arch/arm64/include/asm/*.h", "arch/arm64/tools/sysreg"))
def field_definition(series: Series, ctx: Context) -> list[Finding]:
    """Every HCR_*/MDCR_EL2_* macro and every tools/sysreg Field line is a
    claim about the architecture: a bit position, a width, a name. KVM
    trusts those macros everywhere it builds a trap configuration, so a
    macro one bit off silently traps (or stops trapping) the wrong thing.
    The Arm ARM is the reference; the model carries it."""
    sv = view(series, ctx)
    emit = Emit(rule="field-definition", category=Category.FIELD_DEFINITION, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        for fv in pv.files:
            if fv.path.endswith("tools/sysreg"):
                _sysreg_lines(emit, sv, pv, fv, mdl)
            elif fv.path.endswith(".h") and mdl is not None:
                _macro_lines(emit, pv, fv, mdl, evaluator(sv, pv, ctx))
    return emit.out


def _macro_lines(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None,
                 ev: Evaluator) -> None:
    for first, run in define_runs(fv):
        for d in defines([(ln.new_no or 0, ln.text) for ln in run]):
            if not FIELD_DEF.match(d.name) or NOT_FIELD.search(d.name) or d.params:
                continue
            if M.flag_set_fields(mdl, d.name) is not None:
                continue
            value = ev.value(d.expr)
            if value is None:
                continue
            reg = M.register_of_macro(d.name)
            ref = M.lookup(mdl, d.name, reg)
            line = first
            if ref is not None and ref.mask is not None:
                width_mask = (1 << (ref.msb - ref.lsb + 1)) - 1  # type: ignore[operator]
                if d.name.endswith("_SHIFT"):
                    bad = value != ref.lsb
                    want = "%d" % ref.lsb  # type: ignore[str-format]
                elif d.name.endswith("_MASK"):
                    bad = value not in (ref.mask, width_mask)
                    want = "%#x" % ref.mask
                elif d.name.endswith("_WIDTH"):
                    bad = value != ref.msb - ref.lsb + 1  # type: ignore[operator]
                    want = "%d" % (ref.msb - ref.lsb + 1)  # type: ignore[operator]
                else:
                    bad = bool(value & ~ref.mask) or value == 0
                    want = "%#x (%s)" % (ref.mask, M.bits_text(ref.mask))
                if bad:
                    emit(Severity.ERROR, pv, fv, line, register=ref.register, fields=(ref.name,),
                         message="%s is %s[%s] in the architecture, so %s should be %s, not "
                         "%#x." % (d.name, ref.register, _span(ref.msb, ref.lsb), d.name, want,
                                   value), evidence=(d.text,))
                continue
            if d.name.endswith(("_SHIFT", "_WIDTH")) or value == 0 or reg is None:
                continue
            if _stem_field(mdl, d.name, reg):
                continue  # a value of a known field (HCR_TWEDEL_MAX), not a definition
            info = M.register_info(mdl, reg)
            if info is None:
                continue
            others = fields_at(info, value)
            union = 0
            for f in others:
                union |= f.mask
            if len(others) > 1 and union == value:
                continue  # a set of whole fields (HCR_INT_OVERRIDES), not a field definition
            if others:
                names = ", ".join(getattr(f, "name", "?") for f in others)
                emit(Severity.WARNING, pv, fv, line, register=reg,
                     fields=tuple(getattr(f, "name", "?") for f in others),
                     message="%s covers %s of %s, which the architecture calls %s: is the name "
                     "or the position wrong?" % (d.name, M.bits_text(value), reg, names),
                     evidence=(d.text,))
            else:
                emit(Severity.WARNING, pv, fv, line, register=reg,
                     message="%s covers %s of %s, where the model has no field: is this bit "
                     "defined by the architecture?" % (d.name, M.bits_text(value), reg),
                     evidence=(d.text,))


def _stem_field(mdl: RegisterModel | None, name: str, reg: str) -> bool:
    parts = name.split("_")
    for cut in range(len(parts) - 1, 1, -1):
        if M.lookup(mdl, "_".join(parts[:cut]), reg) is not None:
            return True
    return False


def _span(msb: int | None, lsb: int | None) -> str:
    return str(msb) if msb == lsb else "%s:%s" % (msb, lsb)


def _sysreg_lines(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView,
                  mdl: RegisterModel | None) -> None:
    block: str | None = None
    hunk = -1
    for ln in fv.lines:
        if ln.hunk != hunk:
            hunk = ln.hunk
            block = None
            if fv.lines:
                m = SYSREG_BLOCK.match(_section(pv, fv, hunk))
                block = m.group(1) if m else None
        if not ln.new_side:
            continue
        m = SYSREG_BLOCK.match(ln.text)
        if m:
            block = m.group(1)
            continue
        if ln.text.strip().startswith(("EndSysreg", "EndSysregFields")):
            block = None
            continue
        if block not in M.WATCHED or not ln.added or mdl is None:
            continue
        lm = SYSREG_LINE.match(ln.text)
        if lm is None:
            continue
        kind, msb = lm.group(1), int(lm.group(2))
        lsb = int(lm.group(3)) if lm.group(3) is not None else msb
        name = lm.group(4) or ""
        info = M.register_info(mdl, block)
        if info is None:
            continue
        span_mask = ((1 << (msb - lsb + 1)) - 1) << lsb
        if kind in ("Field", "Enum", "UnsignedEnum", "SignedEnum"):
            same = [f for f in info.fields if f.name == name]
            if same and (same[0].msb, same[0].lsb) != (msb, lsb):
                emit(Severity.ERROR, pv, fv, ln, register=block, fields=(name,),
                     message="%s.%s is bits %s in the architecture, not %s." % (
                         block, name, _span(same[0].msb, same[0].lsb), _span(msb, lsb)))
            elif not same:
                clash = fields_at(info, span_mask)
                if clash:
                    emit(Severity.WARNING, pv, fv, ln, register=block,
                         fields=tuple(f.name for f in clash),
                         message="bits %s of %s hold %s in the architecture, not %s." % (
                             _span(msb, lsb), block, ", ".join(f.name for f in clash), name))
        elif kind == "Res0":
            # A field the base did not know yet is no clash (unless the series defines it).
            known = known_mask(mdl, block, sv.base_version, series_fields(sv, mdl, block))
            clash = fields_at(info, span_mask & known)
            if clash:
                emit(Severity.WARNING, pv, fv, ln, register=block,
                     fields=tuple(f.name for f in clash),
                     message="%s marks bits %s of %s reserved, but they hold %s: the generated "
                     "%s_RES0 mask changes with no C change." % (
                         kind, _span(msb, lsb), block, ", ".join(f.name for f in clash), block))


def _section(pv: PatchView, fv: FileView, hunk: int) -> str:
    for fd in pv.patch.files:
        if fd.path == fv.path and hunk < len(fd.hunks):
            return fd.hunks[hunk].section
    return ""
