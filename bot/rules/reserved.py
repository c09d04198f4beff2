"""Rule family 2: reserved bits.

A constant written to HCR_EL2/MDCR_EL2 must not set bits the register
model says are RES0 at the patch's base (or clear RES1 ones); a
hand-written RES0 mask that disagrees with what the base kernel's
architecture knew is drift, unless the patch did not introduce it. The
model decides, so a mismatch may be an `error`.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.parse.csource import defines, strip_comment
from bot.regmodel import RegisterModel
from bot.regmodel.evaluate import Evaluator
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, view
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.fieldtext import (
    DEFINE_NAME,
    FIELD_DEF,
    MOV_Q,
    NOT_FIELD,
    ORR_IMM,
    define_runs,
    evaluator,
    fields_at,
    known_mask,
    series_fields,
)
from bot.rules.flow import line_at, semantics
from bot.rules.trace import Ev, Event


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
        ev = evaluator(sv, pv, ctx)
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
    for first, run in define_runs(fv):
        for d in defines([(ln.new_no or 0, ln.text) for ln in run]):
            if not FIELD_DEF.match(d.name) or NOT_FIELD.search(d.name) or d.params \
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
        m = MOV_Q.match(ln.code)
        if m:
            loads[m.group(1)] = m.group(2)
            ors.pop(m.group(1), None)
        m = ORR_IMM.match(ln.code)
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
    for first, run in define_runs(fv):
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
        known = known_mask(mdl, reg, version, series_fields(sv, mdl, reg))
        drift = real & known
        before = _old_value(sv, pv, fv, name, ev)
        _res0_dropped(emit, pv, fv, first, name, reg, table, value, before, text)
        if not drift:
            continue
        new, old = drift & ~before, drift & before
        where = "what %s knew" % version if version else "the register table"
        evidence = (" ".join(text.split()),)
        if new:
            names = [f.name for f in fields_at(info, new)]
            emit(Severity.WARNING, pv, fv, first, register=reg, fields=names,
                 message="%s now calls %s reserved, but %s defines %s there: the patch "
                 "makes the mask drift from the architecture." % (
                     name, M.bits_text(new), where, ", ".join(names) or "fields"),
                 evidence=evidence)
        if old:
            names = [f.name for f in fields_at(info, old)]
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
    for first, run in define_runs(fv):
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
        m = DEFINE_NAME.match(lines[head]) if head < len(lines) else None
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
        m = DEFINE_NAME.match(line)
        if m is None or m.group(1) != name:
            continue
        run = [line]
        while run[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            run.append(lines[i])
        return "\n".join(run)
    return None
