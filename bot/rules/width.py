"""Rule family 14, register-width, by value: an HCR_EL2/MDCR_EL2 value cut
to fewer than 64 bits on its way.

The interpreter (bot.rules.interp) records every narrowing it performs - a
local of a 32-bit type assigned or initialised, a cast to one,
lower_32_bits() - with the value before the cut. A narrowing on a line the
patch changed whose value carries bits above the new width that come from
one of these registers (its live value, a stored copy of it) loses them:
E2H, API/APK, ATA in HCR_EL2; HPMFZS, PMEE, EBWE in MDCR_EL2. So does a
per-CPU variable the register model names as such storage, defined with a
narrower type. Pure.
"""

from __future__ import annotations

import re

from bot.regmodel import RegisterModel
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.bits import MASK64
from bot.rules.core import Severity
from bot.rules.flow import changed_line, decided, source_words
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, type_width

_DEFINE_PER_CPU = re.compile(r"\bDEFINE_PER_CPU\s*\(\s*([\w ]+?)\s*,\s*(\w+)\s*\)")


def _register(name: str) -> str | None:
    low = name.lower()
    return "HCR_EL2" if "hcr" in low else "MDCR_EL2" if "mdcr" in low else None


def check_pair(emit: Emit, pv: PatchView, pair: Pair) -> None:
    if pair.after is None:
        return
    for e in pair.after.events:
        if e.kind is not Ev.DECL or e.value is None:
            continue
        width = _narrowed_to(e.name)
        if width is None:
            continue
        high = MASK64 & ~((1 << width) - 1)
        lost = [s for s in e.value.sources(high) if _register(s)]
        if not lost:
            continue
        ln, path = changed_line(pv, e, "new"), e.path
        if ln is None:
            ln, path = _declared(pair, e.name), pair.key.path
        if ln is None or any(f.line == ln.anchor and f.file == path for f in emit.out):
            continue
        reg = _register(lost[0])
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv, pv.file(path), ln,
             register=reg,
             message="%s keeps %d bits of %s, which holds %s bits %d-63: they are lost here "
             "(%s is a 64-bit register)." % (e.name, width, source_words(lost[0]), reg, width,
                                             reg))
        return


def _narrowed_to(what: str) -> int | None:
    """The width of a narrowing the interpreter recorded: "u32 val",
    "(u32) cast", "lower_32_bits()"."""
    if what == "lower_32_bits()":
        return 32
    kind = what[1:what.index(")")] if what.startswith("(") else what.rsplit(" ", 1)[0]
    return type_width(kind)


def _declared(pair: Pair, what: str) -> Line | None:
    """The added line declaring the narrow local `what` ("u32 val"): the
    patch narrowed a local a later unchanged line assigns."""
    parts = what.rsplit(" ", 1)
    if len(parts) != 2 or not parts[1].isidentifier():
        return None
    decl = re.compile(r"\b%s\b[^;=]*\b%s\b" % (re.escape(parts[0]), re.escape(parts[1])))
    return next((ln for ln in pair.changed if ln.added and decl.search(ln.code)), None)


def check_defines(emit: Emit, pv: PatchView, model: RegisterModel) -> None:
    """A per-CPU variable that holds a register value, defined narrower."""
    for fv in pv.files:
        for ln in fv.changed:
            m = _DEFINE_PER_CPU.search(ln.code) if ln.added else None
            if m is None or (type_width(m.group(1)) or 64) >= 64:
                continue
            st = model.facts.storage_of("__this_cpu_read(%s)" % m.group(2))
            if st is None:
                continue
            emit(Severity.WARNING, pv, fv, ln, register=st.register,
                 message="the per-CPU %s holds %s in a %s: %s is a 64-bit register, use u64."
                 % (m.group(2), st.register, m.group(1).strip(), st.register))
