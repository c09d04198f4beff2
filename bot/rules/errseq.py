"""Rule family 6, barrier: a sequence an erratum needs back to back, which
an interrupt can split.

kvm.toml [[erratum_sequences]] holds the facts: with a capability, a
barrier must come right before each access of a register (Cortex-A77
erratum 1508412: DMB SY before a PAR_EL1 read, so that no device or
non-cacheable load comes just before it). The patch's hunks are read
statement by statement; a barrier under the capability (an ALTERNATIVE,
an `alternative_insn`, an `alternative_if` block, or a plain barrier)
followed by the access, one of them added by the patch, is such a
sequence. An interrupt taken between the two can do the load the barrier
keeps away, unless the code always runs with interrupts masked (the
contexts the fact names, the world switch, a function that masks them
first) or the exception return carries the barrier too (the fact's
`exception_return` files, in the series or, with the kernel tree, at the
base). Always a question: the callers of a helper, and what the
exception return does in a tree the bot does not have, are not decided.
Pure.
"""

from __future__ import annotations

import re

from bot.data import LineKind
from bot.parse.csource import line_facts
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.regmodel.ordering import ErratumSequence
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView
from bot.rules.core import Severity
from bot.rules.flow import SWITCH_ROLES, modes
from bot.rules.semantic import PatchSemantics
from bot.rules.trace import Ev

# Roles whose callers run them with interrupts masked: the world switch.
_MASKED_ROLES = SWITCH_ROLES | {Role.PANIC}
# Lines that put no instruction between two others.
_SKIP = re.compile(r"^\s*(?:[{}]|/\*|\*|//|#|$|(?:const\s+|static\s+)*(?:u64|u32|unsigned"
                   r"(?:\s+long)*|int)\s+\w+\s*;\s*$)")
_ALT_IF = re.compile(r"^\s*alternative_if\s+(\w+)")
_DEFINE = re.compile(r"^\s*#\s*define\b")
_ALT_END = re.compile(r"^\s*alternative_(?:endif|else)")


def _code(text: str) -> str:
    return re.sub(r"//.*$|/\*.*?\*/", "", text).rstrip().rstrip("\\").rstrip()


def _barrier(fact: ErratumSequence, text: str, block: str | None) -> bool:
    """The line puts the fact's barrier in place with its capability, or
    always: an ALTERNATIVE/alternative_insn naming it, the plain
    instruction (inside an `alternative_if` of that capability, or none)."""
    low = " ".join(text.lower().replace('"', " ").replace("(", " ").replace(")", " ").split())
    if fact.barrier not in low:
        return False
    if "alternative" in low:
        return fact.capability.lower() in low
    return block is None or block == fact.capability


def _access(fact: ErratumSequence, text: str, asm: bool) -> bool:
    lf = line_facts(text, asm_file=asm)
    return bool(lf.reads(fact.register) if fact.access == "read" else lf.writes(fact.register))


def sequences(fact: ErratumSequence, fv: FileView) -> list[tuple[Line, Line]]:
    """(barrier, access) pairs with nothing between them on the new side
    of each hunk, one of the two added by the patch."""
    out: list[tuple[Line, Line]] = []
    for h in sorted({x.hunk for x in fv.lines}):
        block: str | None = None
        last: Line | None = None
        for ln in (x for x in fv.lines if x.hunk == h and x.new_side):
            text = _code(ln.code if not fv.asm else ln.text)
            m = _ALT_IF.match(text)
            if m is not None:
                block = m.group(1)
                continue
            if _ALT_END.match(text):
                block = None
                continue
            if _barrier(fact, text, block):
                last = ln
                continue
            if _SKIP.match(text):
                continue
            if last is not None and _access(fact, text, fv.asm) and (last.added or ln.added):
                out.append((last, ln))
            last = None
    return out


def _scope(fv: FileView, barrier: Line) -> list[Line]:
    """The lines of the function, or of the macro the hunk shows, up to
    the barrier."""
    if barrier.function:
        lines = fv.in_function(barrier.function)
    else:
        lines = [x for x in fv.lines if x.hunk == barrier.hunk and x.new_side]
    lines = lines[:next((i for i, x in enumerate(lines) if x is barrier), len(lines))]
    if not barrier.function:
        start = max((i for i, x in enumerate(lines) if _DEFINE.match(x.text)), default=0)
        lines = lines[start:]
    return lines


def _masked_before(fv: FileView, mdl: RegisterModel, barrier: Line) -> bool:
    """The function (or macro) masks interrupts before the barrier and has
    not unmasked them since ([ops] irq_off/irq_on, an irqsave guard)."""
    ops = mdl.facts.ops
    off, on = ops.get("irq_off", frozenset()), ops.get("irq_on", frozenset())
    state = False
    for ln in _scope(fv, barrier):
        words = set(re.findall(r"\w+", _code(ln.code)))
        if words & off or ("guard" in words and any("irq" in w for w in words)):
            state = True
        elif words & on:
            state = False
    return state


def _traced_masked(sem: PatchSemantics | None, fv: FileView, fact: ErratumSequence,
                   access: Line) -> bool:
    """The functions the patch's semantic model traces reach the access
    only with interrupts masked (the world switch calling a helper)."""
    if sem is None or access.new_no is None:
        return False
    seen = [e for pair in sem.pairs() if pair.after is not None for e in pair.after.events
            if e.kind is Ev.READ and e.register == fact.register and e.path == fv.path
            and e.line <= access.new_no <= max(e.end, e.line)]
    return bool(seen) and all(e.irq_off is True for e in seen)


def _is_return_barrier(fact: ErratumSequence, text: str) -> bool:
    return "alternative" in text.lower() and _barrier(fact, _code(text), None)


def _return_carries(sv: SeriesView, pv: PatchView, fact: ErratumSequence) -> bool:
    """Every exception return of the fact carries the barrier: a patch of
    the series adds it to the file, or the file has it after this patch
    (the kernel tree)."""
    for path in fact.exception_return:
        added = any(_is_return_barrier(fact, t)
                    for p in sv.series.patches for fd in p.files if fd.path == path
                    for hunk in fd.hunks for t in " ".join(
                        _code(x.text) for x in hunk.lines if x.kind is LineKind.ADDED
                    ).split(";"))
        text = sv.file_after(pv, path) if not added else None
        if not added and (text is None or not any(_is_return_barrier(fact, t)
                                                  for t in text.split("\n"))):
            return False
    return True


def check(emit: Emit, sv: SeriesView, pv: PatchView, mdl: RegisterModel | None,
          sem: PatchSemantics | None = None) -> None:
    """Each [[erratum_sequences]] fact on each file of the patch."""
    if mdl is None:
        return
    for fact in mdl.facts.order.sequences:
        if not any(fact.capability in x.text for f in pv.files for x in f.changed):
            continue
        for fv in pv.files:
            if fv.path in fact.exception_return:
                _dropped(emit, pv, fv, fact)
            for barrier, access in sequences(fact, fv):
                if not _traced_masked(sem, fv, fact, access):
                    _one(emit, sv, pv, fv, mdl, fact, barrier, access)


def _statements(lines: list[Line]) -> list[tuple[Line, str]]:
    """The statements of these lines, each with its first line (a call
    split over lines read as one)."""
    out: list[tuple[Line, str]] = []
    first: Line | None = None
    text = ""
    for ln in lines:
        first = first or ln
        text += " " + _code(ln.code if ln.code else ln.text)
        if text.count("(") <= text.count(")"):
            out.append((first, text.strip()))
            first, text = None, ""
    if first is not None:
        out.append((first, text.strip()))
    return out


def _dropped(emit: Emit, pv: PatchView, fv: FileView, fact: ErratumSequence) -> None:
    """The patch takes the barrier off an exception return and puts none back."""
    if any(_is_return_barrier(fact, t) for _, t in _statements([x for x in fv.changed
                                                                 if x.added])):
        return
    for ln, text in _statements([x for x in fv.changed if x.removed]):
        if _is_return_barrier(fact, text):
            where = "%s()" % ln.function if ln.function else "this exception return"
            emit(Severity.QUESTION, pv, fv, ln, register=fact.register,
                 message="This takes the %s with %s off %s: an exception taken between "
                 "the %s and a %s %s can do what the %s keeps apart, and nothing orders it "
                 "before the %s when the interrupted code resumes. What keeps them apart "
                 "now?" % (fact.barrier, fact.capability, where, fact.barrier,
                           fact.register, fact.access, fact.barrier, fact.register),
                 evidence=(ln.text.strip(),))
            return


def _one(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, mdl: RegisterModel,
         fact: ErratumSequence, barrier: Line, access: Line) -> None:
    open_ctxs = mdl.facts.contexts_of(fv.path) - {Ctx(c) for c in fact.masked}
    if not open_ctxs or M.role(mdl, access.function, fv.path) in _MASKED_ROLES:
        return
    if _masked_before(fv, mdl, barrier):
        return
    if _return_carries(sv, pv, fact):
        return
    where = ("%s() can run" % access.function) if access.function else \
        "a caller of this helper can run it"
    emit(Severity.QUESTION, pv, fv, access, register=fact.register,
         message="With %s, the %s before this %s %s must have nothing between them, but %s "
         "with interrupts unmasked (%s): an interrupt taken between the two can do what the "
         "%s keeps apart, and nothing the bot sees puts the %s on the exception return "
         "(%s). Should the exception return carry it, or the sequence run with interrupts "
         "masked?" % (
             fact.capability, fact.barrier, fact.register, fact.access, where,
             modes(open_ctxs), fact.barrier, fact.barrier, ", ".join(fact.exception_return)),
         evidence=(barrier.text.strip(), access.text.strip()))
