"""Rule families 1 and 2: field definitions and reserved bits.

Both compare what a patch writes down (a `#define`, a `tools/sysreg` line,
a constant written to the register) with the register model, so both may
say `error`: a mismatch with the model is provable.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.parse.csource import defines, strip_comment
from bot.regmodel import Field, Register, RegisterModel
from bot.regmodel.evaluate import Evaluator
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, view
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import line_at, semantics
from bot.rules.trace import Ev, Event

# Field macros: HCR_TGE, HCR_EL2_TGE, MDCR_EL2_E2PB_MASK, and the
# architecture's mixed-case names (HCR_TWEDEn, HCR_EnSCXT).
_FIELD_DEF = re.compile(r"^(?:HCR|MDCR)_[A-Za-z0-9_]+$")
_NOT_FIELD = re.compile(r"_(FLAGS|RES0|RES1|MASK_ALL|VIRT_EXCP_MASK)$|_GUEST_|_HOST_")
_SYSREG_LINE = re.compile(r"^\s*(Field|Res0|Res1|Enum|UnsignedEnum|SignedEnum|Unkn|Raz)\s+"
                          r"(\d+)(?::(\d+))?\s*(\w+)?")
_SYSREG_BLOCK = re.compile(r"^\s*Sysreg\s+(\w+)")
_DEFINE_NAME = re.compile(r"^\s*#\s*define\s+((?:HCR|MDCR)_[A-Za-z0-9_]+)")
_SYSREG_FIELD = re.compile(r"^\s*(?:Field|Enum|UnsignedEnum|SignedEnum)\s+\d+(?::\d+)?\s+(\w+)")
_ORR_IMM = re.compile(r"^\s*orr\s+(x\d+)\s*,\s*(x\d+)\s*,\s*#\s*(.+?)\s*$")
_MOV_Q = re.compile(r"^\s*(?:mov_q|ldr|mov)\s+(x\d+)\s*,\s*=?\s*#?(.+?)\s*$")


def _define_runs(fv: FileView) -> list[tuple[Line, list[Line]]]:
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


def _fields_at(info: Register, mask: int) -> list[Field]:
    return [f for f in info.fields if f.mask & mask]


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
                _macro_lines(emit, pv, fv, mdl, _evaluator(sv, pv, ctx))
    return emit.out


def _evaluator(sv: SeriesView, pv: PatchView, ctx: Context) -> Evaluator:
    """The model's evaluator with the patch's new #defines."""
    sem = semantics(sv, pv, ctx)
    assert sem is not None
    return sem.evaluator("new")


def _macro_lines(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None,
                 ev: Evaluator) -> None:
    for first, run in _define_runs(fv):
        for d in defines([(ln.new_no or 0, ln.text) for ln in run]):
            if not _FIELD_DEF.match(d.name) or _NOT_FIELD.search(d.name) or d.params:
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
            others = _fields_at(info, value)
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
                m = _SYSREG_BLOCK.match(_section(pv, fv, hunk))
                block = m.group(1) if m else None
        if not ln.new_side:
            continue
        m = _SYSREG_BLOCK.match(ln.text)
        if m:
            block = m.group(1)
            continue
        if ln.text.strip().startswith(("EndSysreg", "EndSysregFields")):
            block = None
            continue
        if block not in M.WATCHED or not ln.added or mdl is None:
            continue
        lm = _SYSREG_LINE.match(ln.text)
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
                clash = _fields_at(info, span_mask)
                if clash:
                    emit(Severity.WARNING, pv, fv, ln, register=block,
                         fields=tuple(f.name for f in clash),
                         message="bits %s of %s hold %s in the architecture, not %s." % (
                             _span(msb, lsb), block, ", ".join(f.name for f in clash), name))
        elif kind == "Res0":
            # A field the base did not know yet is no clash (unless the series defines it).
            known = _known_mask(mdl, block, sv.base_version, _series_fields(sv, mdl, block))
            clash = _fields_at(info, span_mask & known)
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


@rule(id="reserved-bit", category=Category.RESERVED_BIT, severity=Severity.ERROR,
      summary="a constant written to HCR_EL2/MDCR_EL2 sets RES0 bits, or a RES0 mask drifts",
      files=("arch/arm64/**",))
def reserved_bit(series: Series, ctx: Context) -> list[Finding]:
    """Software must write RES0 bits as zero: a future architecture revision
    gives them a meaning, and the value written today turns a feature on
    tomorrow. A hand-written RES0 mask that disagrees with the register
    table is drift: code sanitising a value with it clears real fields (the
    old MDCR_EL2_RES0 called E2TB and PMSSE reserved)."""
    sv = view(series, ctx)
    emit = Emit(rule="reserved-bit", category=Category.RESERVED_BIT, sv=sv)
    mdl = ctx.regmodel
    if mdl is None:
        return emit.out
    for pv in sv.relevant():
        ev = _evaluator(sv, pv, ctx)
        for fv in pv.files:
            _constant_writes(emit, pv, fv, mdl, ev)
            if fv.path.endswith(".h"):
                _res0_masks(emit, sv, pv, fv, mdl, ev)
                _res0_macros(emit, pv, fv, mdl, ev)
        if isinstance(mdl, RegisterModel):
            _res0_values(emit, sv, pv, ctx, mdl)
    return emit.out


def _res0_macros(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None,
                 ev: Evaluator) -> None:
    """A field macro the patch adds that names only RES0 bits."""
    for first, run in _define_runs(fv):
        for d in defines([(ln.new_no or 0, ln.text) for ln in run]):
            if not _FIELD_DEF.match(d.name) or _NOT_FIELD.search(d.name) or d.params \
                    or d.name.endswith(("_SHIFT", "_WIDTH")):
                continue
            reg = M.register_of_macro(d.name)
            info = M.register_info(mdl, reg) if reg else None
            value = ev.value(d.expr)
            if info is None or not value:
                continue
            res0 = int(getattr(info, "res0_mask", 0) or 0)
            if value & ~res0 or not value & res0:
                continue
            emit(Severity.ERROR, pv, fv, next((ln for ln in run if ln.added), first),
                 register=reg,
                 message="%s names %s of %s, which the architecture reserves (RES0): a value "
                 "built with it sets a reserved bit." % (d.name, M.bits_text(value), reg),
                 evidence=(d.text,))


def _res0_values(emit: Emit, sv: SeriesView, pv: PatchView, ctx: Context,
                 mdl: RegisterModel) -> None:
    """A value written to the register, or stored for it, that now has a
    RES0 bit set on some path (followed through locals, macros and calls)."""
    sem = semantics(sv, pv, ctx)
    if sem is None:
        return
    seen: set[tuple[str, int]] = set()
    for pair in sem.pairs():
        if pair.after is None:
            continue
        before_bits: dict[str, int] = {}
        for e in pair.before.events if pair.before is not None else ():
            reg = _target(e)
            if reg is not None and e.value is not None:
                before_bits[reg] = before_bits.get(reg, 0) | e.value.ones
        events = list(pair.after.events)
        if any(_target(e) is not None and e.value is not None and e.value.unknown_mask
               & _res0(mdl, _target(e)) for e in events):
            # A value built on several paths (a local that feature tests add
            # bits to): each path's own value, from the trace that keeps
            # paths apart.
            apart = sem.memory_trace("new", pair.key)
            events += apart.events if apart is not None else ()
        for e in events:
            reg = _target(e)
            if reg is None or e.value is None:
                continue
            info = mdl.register(reg)
            if info is None:
                continue
            bad = e.value.ones & info.res0_mask & ~before_bits.get(reg, 0)
            if not bad or (e.path, e.line) in seen:
                continue
            ln = line_at(pv, e.path, e.line, "new")
            if ln is None or ln.kind.value == " ":
                ln = pair.anchor
            if ln is None:
                continue
            seen.add((e.path, e.line))
            emit(Severity.ERROR, pv, pv.file(e.path) if ln is not pair.anchor else
                 pv.file(pair.key.path), ln, register=reg,
                 message="the value %s %s %s sets %s, which the architecture reserves (RES0): "
                 "software must write them as zero." % (
                     "written to" if e.kind is Ev.WRITE else "stored for", reg,
                     "in %s()" % e.function, M.bits_text(bad)))


def _res0(mdl: RegisterModel, reg: str | None) -> int:
    info = mdl.register(reg) if reg is not None else None
    return info.res0_mask if info is not None else 0


def _target(e: Event) -> str | None:
    """HCR_EL2/MDCR_EL2 when the event writes one, or stores a copy of one."""
    if e.kind is Ev.WRITE and e.register in M.WATCHED:
        return e.register
    if e.kind is Ev.STORE and e.storage and e.storage.split(".", 1)[0] in (
            "vcpu", "host-copy", "percpu"):
        return "MDCR_EL2" if "mdcr" in e.storage else "HCR_EL2"
    return None


def _constant_writes(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None,
                     ev: Evaluator) -> None:
    loads: dict[str, str] = {}
    # asm: immediates ORed into a register since it was last loaded, and
    # the added line that did it (`orr x2, x2, #(1 << 18)` before `msr`).
    ors: dict[str, list[tuple[str, Line]]] = {}
    for ln in fv.lines:
        if not ln.new_side:
            continue
        # (asm files, and the asm macros of headers such as el2_setup.h:
        # the patterns only match arm64 instructions)
        m = _MOV_Q.match(ln.code)
        if m:
            loads[m.group(1)] = m.group(2)
            ors.pop(m.group(1), None)
        m = _ORR_IMM.match(ln.code)
        if m and m.group(1) == m.group(2):
            ors.setdefault(m.group(1), []).append((m.group(3), ln))
        for acc in ln.facts.accesses:
            if acc.register not in M.WATCHED:
                continue
            for imm, orr_ln in ors.get(acc.value.lower(), []) if acc.asm else ():
                if orr_ln.added or ln.added:
                    _check_value(emit, pv, fv, orr_ln if orr_ln.added else ln, mdl, ev,
                                 acc.register, imm)
            if not ln.added:
                continue
            expr = acc.value if not acc.asm else loads.get(acc.value.lower(), "")
            if acc.kind == "clear-set":
                expr = acc.set
            if not expr or expr in ("xzr", "0"):
                continue
            _check_value(emit, pv, fv, ln, mdl, ev, acc.register, expr)
    for first, run in _define_runs(fv):
        for d in defines([(ln.new_no or 0, ln.text) for ln in run]):
            if d.name.endswith("_FLAGS") and d.name.startswith(("HCR_", "MDCR_")):
                _check_value(emit, pv, fv, first, mdl, ev, M.register_of_macro(d.name) or "",
                             d.expr, name=d.name)


def _check_value(emit: Emit, pv: PatchView, fv: FileView, ln: Line, mdl: RegisterModel | None,
                 ev: Evaluator, reg: str, expr: str, name: str = "") -> None:
    value = ev.value(strip_comment(expr))
    if value is None:
        return
    bad = M.res0_violations(mdl, reg, value)
    if not bad:
        return
    what = name or "the value written to %s" % reg
    emit(Severity.ERROR, pv, fv, ln, register=reg,
         message="%s sets %s of %s, which the architecture reserves (RES0): software must "
         "write them as zero." % (what, M.bits_text(bad), reg))


_RES0_MACROS = ("HCR_RES0", "MDCR_EL2_RES0", "HCR_EL2_RES0")


def _res0_masks(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, mdl: RegisterModel | None,
                ev: Evaluator) -> None:
    version = sv.base_version
    for first, name, text in _res0_defines(sv, pv, fv):
        reg = M.register_of_macro(name) or ""
        value = _define_value(text, name, ev)
        info = M.register_info(mdl, reg)
        if value is None or info is None:
            continue
        table = int(getattr(info, "res0_mask", 0) or 0)
        real = value & ~table
        # Only what the base knew is drift: a field a later kernel added was
        # reserved as far as the base could tell. A field the series itself
        # defines is checked against today's table.
        known = _known_mask(mdl, reg, version, _series_fields(sv, mdl, reg))
        drift = real & known
        before = _old_value(sv, pv, fv, name, ev)
        _res0_dropped(emit, pv, fv, first, name, reg, table, value, before, text)
        if not drift:
            continue
        new, old = drift & ~before, drift & before
        where = "what %s knew" % version if version else "the register table"
        evidence = (" ".join(text.split()),)
        if new:
            names = [f.name for f in _fields_at(info, new)]
            emit(Severity.WARNING, pv, fv, first, register=reg, fields=names,
                 message="%s now calls %s reserved, but %s defines %s there: the patch "
                 "makes the mask drift from the architecture." % (
                     name, M.bits_text(new), where, ", ".join(names) or "fields"),
                 evidence=evidence)
        if old:
            names = [f.name for f in _fields_at(info, old)]
            emit(Severity.INFO, pv, fv, first, register=reg, fields=names, existed=True,
                 message="%s already called %s reserved before this patch, though %s "
                 "defines %s there." % (name, M.bits_text(old), where,
                                         ", ".join(names) or "fields"),
                 evidence=evidence)


def _res0_dropped(emit: Emit, pv: PatchView, fv: FileView, first: Line, name: str, reg: str,
                  table: int, value: int, before: int, text: str) -> None:
    """The patch takes bits the architecture reserves out of the mask: a
    value sanitised with it now keeps them."""
    dropped = table & before & ~value
    if not dropped:
        return
    emit(Severity.WARNING, pv, fv, first, register=reg,
         message="%s no longer calls %s reserved, though the architecture reserves it (RES0): "
         "a value sanitised with the mask now keeps it." % (name, M.bits_text(dropped)),
         evidence=(" ".join(text.split()),))


def _res0_defines(sv: SeriesView, pv: PatchView, fv: FileView) -> list[tuple[Line, str, str]]:
    """(line to anchor on, name, whole #define text after the patch) of each
    hand-written RES0 mask the patch changes. A definition the hunk shows
    only in part is read whole from the kernel repository when there is one."""
    after = sv.file_after(pv, fv.path)
    lines = after.split("\n") if after is not None else None
    out: dict[str, tuple[Line, str, str]] = {}
    for first, run in _define_runs(fv):
        for d in defines([(ln.new_no or 0, ln.text) for ln in run]):
            if d.name in _RES0_MACROS:
                whole = _collect_define(lines, d.name) if lines is not None else None
                anchor = next((ln for ln in run if ln.added), first)
                out.setdefault(d.name, (anchor, d.name, whole or "\n".join(r.text for r in run)))
    if lines is None:
        return list(out.values())
    for ln in fv.changed:
        # An added line, or a removed one (a term taken out of the mask),
        # by where it is or was in the file after the patch.
        no = ln.new_no if ln.added else ln.anchor if ln.removed else None
        if not no:
            continue
        head = no - 1
        while head > 0 and lines[head - 1].rstrip().endswith("\\"):
            head -= 1
        m = _DEFINE_NAME.match(lines[head]) if head < len(lines) else None
        if m is not None and m.group(1) in _RES0_MACROS and m.group(1) not in out:
            whole = _collect_define(lines, m.group(1))
            if whole is not None:
                out[m.group(1)] = (ln, m.group(1), whole)
    return list(out.values())


def _define_value(text: str, name: str, ev: Evaluator) -> int | None:
    """The value of `name`'s definition in `text`. A definition the hunk cuts
    off (its last line still continued) is read as far as it goes: the bits
    it shows, the same way before and after the patch."""
    for d in defines([(0, t) for t in text.split("\n")]):
        if d.name != name:
            continue
        value = ev.value(d.expr)
        if value is None and text.rstrip().endswith("\\"):
            shown = re.sub(r"[\s|&+]+$", "", d.expr)
            value = ev.value(shown + ")" * max(0, shown.count("(") - shown.count(")")))
        return value
    return None


def _known_mask(mdl: RegisterModel | None, reg: str, version: str | None, extra: set[str]) -> int:
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


def _series_fields(sv: SeriesView, mdl: RegisterModel | None, reg: str) -> set[str]:
    """Fields of `reg` the series itself defines (a macro or a tools/sysreg line)."""
    out: set[str] = set()
    for pv in sv.relevant():
        for fv in pv.files:
            for ln in fv.changed:
                if not ln.added:
                    continue
                m = _DEFINE_NAME.match(ln.text) or _SYSREG_FIELD.match(ln.text)
                if m is None:
                    continue
                ref = M.lookup(mdl, m.group(1), reg)
                if ref is not None and ref.register == reg:
                    out.add(ref.name)
    return out


def _old_value(sv: SeriesView, pv: PatchView, fv: FileView, name: str, ev: Evaluator) -> int:
    """The value `name` had before the patch: in the repository's file before
    it, else in the lines the hunk removes or keeps; 0 when it had none."""
    tree = sv.tree
    before_file = None
    if tree is not None and getattr(tree, "applied", False):
        before_file = tree.file_after(pv.index - 1, fv.old_path or fv.path)  # type: ignore[attr-defined]
    if before_file is not None:
        text = _collect_define(before_file.split("\n"), name)
    else:
        text = _collect_define([ln.text for ln in fv.lines if ln.old_side], name)
    return (_define_value(text, name, ev) or 0) if text is not None else 0


def _collect_define(lines: list[str], name: str) -> str | None:
    for i, line in enumerate(lines):
        m = _DEFINE_NAME.match(line)
        if m is None or m.group(1) != name:
            continue
        run = [line]
        while run[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            run.append(lines[i])
        return "\n".join(run)
    return None
