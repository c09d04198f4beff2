"""Rule family 16 (shadow versus live) for the guest's exit state before
the state save.

When the guest exits, its PC and PSTATE are in ELR_EL2 and SPSR_EL2. The
vcpu's copies (`*vcpu_pc(vcpu)`, `*vcpu_cpsr(vcpu)`) still hold what the
previous entry restored until the state save after the early-exit loop
copies the live registers in (__sysreg_save_el2_return_state()). Code that
runs in between (the early-exit function, role early-exit in kvm.toml, and
the exit handlers it calls, [exit_window] handlers) and that reads or
adjusts a copy works on the previous entry's value, and the save overwrites
what it writes, unless it first copies the live register in (as
__kvm_skip_instr() does) and writes the result back; after a helper that
takes the register over (6.12's synchronize_vcpu_pstate()), the copy is the
value. Which registers, how their copies and live reads are spelt, and
which helpers copy them in or take them over are kvm.toml data
([[late_saved]]).

The walk is in program order over the function after the patch (whole from
a kernel tree, or as far as the hunks show it), without branches: a copy-in
anywhere before a use counts. A use is reported where the patch added it, or
anywhere when the patch removed the function's copy-in. It is a warning when
the whole function was seen, a question when the hunks showed only part of it.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import LateSaved
from bot.rules.analysis import Emit, FileView, PatchView, SeriesView
from bot.rules.core import Severity

_COMPOUND = re.compile(r"\s*(?:[-+|&^*/%]|<<|>>)=|\s*(?:\+\+|--)")
_ASSIGN = re.compile(r"\s*=(?!=)")
_PRE_STEP = re.compile(r"(?:\+\+|--)\s*$")
_WRITE_CALL = re.compile(r"\bwrite_sysreg\w*\s*\(")
_COMMENT = re.compile(r"/\*.*?\*/|//.*$")


class Use(enum.Enum):
    READ = "reads"
    ADJUST = "adjusts"
    WRITE = "writes"
    COPY_IN = "copies in"
    TAKE_OVER = "takes over"
    PUBLISH = "writes back"


@dataclass(frozen=True, slots=True)
class _Step:
    line: int
    use: Use
    code: str


@functools.lru_cache(maxsize=64)
def _call(names: tuple[str, ...]) -> re.Pattern[str] | None:
    if not names:
        return None
    return re.compile(r"\b(%s)\s*\(" % "|".join(map(re.escape, names)))


def _steps(reg: LateSaved, lines: tuple[tuple[int, str], ...]) -> list[_Step]:
    """What each line does with the vcpu's copy of `reg`, in order."""
    synced, users, owned = _call(reg.synced_by), _call(reg.users), _call(reg.owned_by)
    out: list[_Step] = []
    for no, text in lines:
        code = _COMMENT.sub("", text)
        if owned is not None and owned.search(code):
            out.append(_Step(no, Use.TAKE_OVER, code))
            continue
        if synced is not None and synced.search(code):
            out.append(_Step(no, Use.COPY_IN, code))
            continue
        uses: list[Use] = []
        for m in reg.copy.finditer(code):
            before, after = code[:m.start()], code[m.end():]
            if _COMPOUND.match(after) or _PRE_STEP.search(before):
                uses.append(Use.ADJUST)
            elif _ASSIGN.match(after):
                uses.append(Use.COPY_IN if reg.live.search(after) else Use.WRITE)
            elif _WRITE_CALL.search(before):
                uses.append(Use.PUBLISH)
            else:
                uses.append(Use.READ)
        if users is not None and users.search(code):
            uses.append(Use.ADJUST)
        # A line that writes the copy from itself (`pc = pc - 4`) adjusts it.
        if Use.WRITE in uses and Use.READ in uses:
            uses = [Use.ADJUST]
        out.extend(_Step(no, u, code) for u in dict.fromkeys(uses))
    return out


def _problem(steps: list[_Step], reported: frozenset[int]
             ) -> tuple[_Step, str] | None:
    """The first use that works on the previous entry's value, or a write
    the state save overwrites, at a line in `reported`."""
    state = "stale"          # stale -> clean (copied in) -> dirty (changed, not written back)
    dirty: _Step | None = None
    for step in steps:
        if step.use is Use.TAKE_OVER:
            return None      # the vcpu's copy is the value from here on
        if step.use is Use.COPY_IN:
            state, dirty = "clean", None
        elif step.use is Use.PUBLISH:
            if state == "stale" and step.line in reported:
                return step, "stale"
            state, dirty = "clean", None
        elif step.use in (Use.READ, Use.ADJUST):
            if state == "stale":
                if step.line in reported:
                    return step, "stale"
                if step.use is Use.ADJUST:
                    state, dirty = "dirty", step
            elif step.use is Use.ADJUST:
                state, dirty = "dirty", dirty or step
        elif step.use is Use.WRITE:
            state, dirty = "dirty", dirty or step
    if dirty is not None and dirty.line in reported:
        return dirty, "lost"
    return None


def _window(mdl: RegisterModel, name: str) -> str | None:
    """"early-exit" or "handler" when `name` runs between exit and save."""
    if any(fr.name == name and fr.role is Role.EARLY_EXIT for fr in mdl.functions):
        return "early-exit"
    return "handler" if mdl.facts.in_exit_handlers(name) else None


def check(emit: Emit, sv: SeriesView, pv: PatchView, mdl: RegisterModel) -> None:
    regs = mdl.facts.late_saved
    if not regs:
        return
    for fv in pv.files:
        if fv.asm or not fv.hyp:
            continue
        for name in fv.functions():
            where = _window(mdl, name)
            if where is not None:
                _function(emit, sv, pv, fv, name, where,
                          [r for r in regs if not r.only_in or name in r.only_in])


def _function(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, name: str,
              where: str, regs: list[LateSaved]) -> None:
    ft = sv.function(pv, fv, name)
    mine = fv.in_function(name)
    added = frozenset(ln.new_no for ln in mine if ln.added and ln.new_no is not None)
    every = frozenset(no for no, _ in ft.lines)
    for reg in regs:
        removed_copy_in = any(
            st.use is Use.COPY_IN
            for st in _steps(reg, tuple((0, ln.text) for ln in fv.in_function(name, side="old")
                                        if ln.removed)))
        hit = _problem(_steps(reg, ft.lines), every if removed_copy_in else added)
        if hit is None:
            continue
        step, kind = hit
        line = next((ln for ln in mine if ln.new_no == step.line), step.line)
        copy, users = reg.copy.search(step.code), _call(reg.users)
        via = users.search(step.code) if copy is None and users is not None else None
        spelt = (copy.group(0) if copy is not None else "the vcpu's copy of %s%s" % (
            reg.register, " (through %s())" % via.group(1) if via is not None else ""))
        when = ("between the guest's exit and %s()" % reg.saved_by if where == "early-exit"
                else "while it handles an exit, before %s() saves the guest's state"
                % reg.saved_by)
        if kind == "stale":
            what = ("%s() %s %s %s, where the exit's value is still only in %s: the copy "
                    "holds the previous entry's, and %s() overwrites it with %s. Use %s "
                    "itself, or copy it in first." % (
                        name, step.use.value, spelt, when, reg.register, reg.saved_by,
                        reg.register, reg.register))
        else:
            what = ("%s() %s %s %s and never writes it back to %s: %s() overwrites the "
                    "copy with %s, so the change is lost." % (
                        name, step.use.value, spelt, when, reg.register, reg.saved_by,
                        reg.register))
        if not ft.complete:
            what += " Or does the part of %s() the patch does not show copy %s in first?" % (
                name, reg.register)
        emit(Severity.WARNING if ft.complete else Severity.QUESTION, pv, fv, line,
             register=reg.register, message=what)
