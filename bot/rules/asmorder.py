"""Rule family 6 in assembly and the EL2 setup macros: a TGE/E2H write
needs a synchronisation before what depends on it.

Assembly is not traced by the interpreter statement by statement; its
lines are read in order: an `msr hcr_el2` whose value names TGE or E2H
(directly or through a flag set) with no isb or eret after it, an isb
taken out of a macro or a function after such a write, a register read
right after a dsb (it may be performed before the dsb completes, so an
isb must sit between them). Pure.
"""

from __future__ import annotations

import re

from bot.parse.csource import line_facts
from bot.regmodel import RegisterModel
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, FunctionText, Line, PatchView, SeriesView
from bot.rules.core import Severity

_REGIME = re.compile(r"HCR_(?:EL2_)?(TGE|E2H)\b")
_SYNC = re.compile(r"\b(isb|eret)\b")


def _regime_names(mdl: RegisterModel | None, text: str) -> list[str]:
    """TGE/E2H named in an expression, directly or through a flag set."""
    names = _REGIME.findall(text)
    for name in M.macros(text):
        fs = M.flag_set_fields(mdl, name)
        if fs:
            names += [f.name for f in fs if f.name in ("TGE", "E2H")]
    return names


def _regime_write(ln: Line, fn_lines: list[Line],
                  mdl: RegisterModel | None = None) -> tuple[str, ...]:
    """TGE/E2H when this added line writes HCR_EL2 with a value that names them."""
    out: list[str] = []
    for acc in ln.facts.writes("HCR_EL2"):
        text = " ".join((acc.value, acc.clear, acc.set))
        names = _regime_names(mdl, text)
        if not names and acc.value and re.fullmatch(r"[a-z_]\w*", acc.value):
            var = acc.value
            for x in fn_lines:
                if (x.new_no or 0) <= (ln.new_no or 0) and re.search(
                        r"\b%s\b\s*(\||&|)=" % re.escape(var), x.code):
                    names += _REGIME.findall(x.code)
        out += names
    return tuple(dict.fromkeys(out))


def _after(fn: FunctionText, no: int) -> list[str]:
    return [t for n, t in fn.lines if n > no]


def check(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView,
                 mdl: RegisterModel | None) -> None:
    """Assembly (head.S, hyp-init.S, el2_setup.h): line facts, as before."""
    _read_after_dsb(emit, pv, fv, mdl)
    for ln in fv.changed:
        if ln.removed and ln.facts.isb:
            _removed_isb(emit, sv, pv, fv, ln, mdl)
        if not ln.added or not ln.facts.accesses:
            continue
        role = M.role(mdl, ln.function, fv.path)
        if role in ("entry", "exit", "early-exit"):
            continue
        fn_lines = fv.in_function(ln.function)
        names = _regime_write(ln, fn_lines, mdl)
        if not names:
            continue
        fn = sv.function(pv, fv, ln.function or "")
        later = _after(fn, ln.new_no or 0)
        if not any(_SYNC.search(t) for t in later):
            decided_ = fn.complete
            emit(Severity.WARNING if decided_ else Severity.QUESTION, pv, fv, ln,
                 register="HCR_EL2", fields=names,
                 message="this write changes HCR_EL2.%s but no isb() follows it in %s()"
                 "%s: the new regime is not guaranteed to be in effect for what comes "
                 "next." % ("/".join(names), ln.function,
                            "" if decided_ else " as far as the patch shows"))


_MRS = re.compile(r"^\s*mrs\s+x\d+\s*,\s*(\w+)", re.I)
_DSB_ISB = re.compile(r"^\s*(dsb|isb)\b", re.I)


def _read_after_dsb(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None) -> None:
    """An added read of a register that shows what a dsb completed (ISR_EL1:
    a pending SError), with a dsb before it and no isb between: the read has
    no side effect, so it may be performed before the dsb completes."""
    observers = mdl.facts.ops.get("dsb_observers", frozenset()) if mdl is not None else ()
    if not observers:
        return
    lines = fv.lines
    for i, ln in enumerate(lines):
        m = _MRS.match(ln.code) if ln.new_side else None
        if m is None or m.group(1).upper() not in observers:
            continue
        removed_isb = None
        for x in reversed(lines[max(0, i - 12):i]):
            sync = _DSB_ISB.match(x.code)
            if sync is None:
                continue
            if not x.new_side:   # an isb or dsb the patch takes away
                if sync.group(1).lower() == "isb":
                    removed_isb = removed_isb or x
                continue
            if sync.group(1).lower() == "dsb" and (ln.added or removed_isb is not None):
                emit(Severity.QUESTION, pv, fv, ln if ln.added else removed_isb,
                     register=None,
                     message="%s is read right after the dsb with no isb between: a read "
                     "without side effects may be performed before the dsb completes, and "
                     "miss what it was meant to see. Is an isb needed after the dsb?"
                     % m.group(1).lower())
            break


_XREG = re.compile(r"x\d+")
_ASM_SET = re.compile(r"^\s*(mov_q|mov|ldr|orr)\s+(x\d+)\s*,\s*(?:(x\d+)\s*,\s*)?=?#?(.+?)\s*"
                      r"(?://.*)?$")


def _asm_operands(lines: list[str], reg: str) -> str:
    """What an assembly register written to HCR_EL2 was built from: the
    immediates ORed into it, back to the move that loaded it."""
    out: list[str] = []
    for t in reversed(lines):
        m = _ASM_SET.match(t)
        if m is None or m.group(2) != reg:
            continue
        out.append(m.group(4))
        if m.group(1) != "orr":
            break
    return " | ".join(reversed(out)) or reg


def _removed_isb(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, ln: Line,
                 mdl: RegisterModel | None) -> None:
    """An isb() the patch removes that synchronised a TGE/E2H change."""
    if M.role(mdl, ln.function, fv.path) in ("entry", "exit", "early-exit"):
        return
    fn = sv.function(pv, fv, ln.function or "")
    before = [(n, t) for n, t in fn.lines if n < ln.anchor]
    rest = [t for n, t in fn.lines if n >= ln.anchor]
    if not fn.lines:
        # No function around it (an assembler macro in a header): the
        # hunk's own lines, as the new side has them.
        hunk = [x for x in fv.lines if (x.hunk == ln.hunk and x.new_side) or x is ln]
        at = next(i for i, x in enumerate(hunk) if x is ln)
        before = [(x.new_no or 0, x.text) for x in hunk[:at]]
        rest = [x.text for x in hunk[at + 1:]]
    write_at, names = None, []  # type: tuple[int, str] | None, list[str]
    for i in range(len(before) - 1, -1, -1):
        n, t = before[i]
        if _SYNC.search(t):
            return  # something after the last regime write still synchronises it
        for acc in line_facts(t).writes("HCR_EL2"):
            value = acc.value
            if acc.asm and _XREG.fullmatch(value.strip().lower()):
                value = _asm_operands([x for _, x in before[:i]], value.strip().lower())
            names = _regime_names(mdl, " ".join((value, acc.clear, acc.set)))
            if names:
                write_at = (n, t)
                break
        if write_at:
            break
    if write_at is None:
        return
    if any(_SYNC.search(t) for t in rest):
        return
    decided = fn.complete
    emit(Severity.WARNING if decided else Severity.QUESTION, pv, fv, ln, register="HCR_EL2",
         fields=tuple(dict.fromkeys(names)),
         message="this removes the isb() that made the HCR_EL2.%s change %s take "
         "effect%s: what synchronises it now?" % (
             "/".join(dict.fromkeys(names)),
             "in %s()" % ln.function if ln.function else "just before it",
             "" if decided else " (as far as the patch shows, nothing)"),
         evidence=(write_at[1].rstrip(), ln.text.rstrip()))
