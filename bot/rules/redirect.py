"""Rule family 10, vhe-nvhe: an EL1 register reached through its plain
encoding in hyp code that also runs under VHE.

At EL2 with HCR_EL2.E2H set, the encodings of many EL1 registers
(SCTLR_EL1, TCR_EL1, TFSR_EL1, ... kvm.toml [ops] e2h_redirected) reach the
EL2 register instead; hyp code that saves or restores the guest's EL1
register goes through the _EL12 encoding (read_sysreg_el1() and friends,
[ops] el1_accessors). A read or write the patch adds with the plain
encoding, in hyp code that runs under VHE (and nVHE, where it works), that
saves into or restores from the guest's context, reaches the host's EL2
register under VHE. Pure.
"""

from __future__ import annotations

import re

from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, PatchView, normalize
from bot.rules.core import Severity
from bot.rules.flow import changed_line
from bot.rules.semantic import PatchSemantics
from bot.rules.trace import Ev

# The access saves into or restores from the guest's context (its copy of
# the register): hyp code that means its own EL2 register under VHE
# (`write_sysreg(reg, cpacr_el1)` for CPTR_EL2) is left alone.
_GUEST = re.compile(r"\b(?:ctxt|sys_regs?|ctxt_sys_reg|__vcpu_sys_reg|vcpu)\b")


def check(emit: Emit, pv: PatchView, sem: PatchSemantics) -> None:
    facts = sem.facts
    redirected = facts.ops.get("e2h_redirected", frozenset())
    el1 = facts.ops.get("el1_accessors", frozenset())
    for pair in sem.pairs():
        if pair.after is None or "/hyp/" not in pair.key.path:
            continue
        for e in pair.after.events:
            if e.kind not in (Ev.READ, Ev.WRITE) or e.depth or e.register not in redirected \
                    or Ctx.VHE not in e.contexts or not e.name or e.name in el1:
                continue
            ln = changed_line(pv, e, "new")
            if ln is None or not ln.added or normalize(ln.text) in pv.moved \
                    or not _GUEST.search(ln.code):
                continue
            name = (e.register or "").removesuffix("_EL1")
            emit(Severity.WARNING if pair.from_tree else Severity.QUESTION, pv,
                 pv.file(e.path), ln, register=None,
                 message="%s() also runs under VHE, at EL2 with HCR_EL2.E2H set, where "
                 "%s() of %s reaches %s_EL2: the guest's register needs the _EL12 "
                 "encoding (%s(SYS_%s))." % (
                     e.function, e.name, e.register, name,
                     "read_sysreg_el1" if e.kind is Ev.READ else "write_sysreg_el1", name))
            break   # one per function
