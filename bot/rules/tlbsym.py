"""Rule family 7, tlb-symmetry: what the switch-to-guest TLB helper changes,
the switch-to-host helper undoes.

The TLB switch helpers clear TGE (VHE), mask interrupts, and under the
speculative-AT erratum set TCR_EL1.EPDx and SCTLR_EL1.M, so that TLB
maintenance hits the guest's regime; whatever one side changes the other
restores, and nothing else. Read from the two helpers' texts (the hunks,
or the tree); the value comparison of the pair is bot.rules.roundtrip's.
Pure.
"""

from __future__ import annotations

from bot.data import Series
from bot.parse.csource import line_facts
from bot.regmodel import RegisterModel, Role
from bot.rules import model as M
from bot.rules import roundtrip
from bot.rules.analysis import (
    Emit,
    FileView,
    FunctionText,
    Line,
    PatchView,
    SeriesView,
    normalize,
    view,
)
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import semantics

# What the switch helpers change and must undo (REVIEW-GUIDE 5.7); VTTBR is
# loaded through helpers on both sides and is not compared.
_SWITCHED = ("HCR_EL2", "MDCR_EL2", "TCR_EL1", "SCTLR_EL1", "TCR", "SCTLR")
_PAIRS = {"local_irq_save": "local_irq_restore", "local_irq_disable": "local_irq_enable",
          "local_irq_restore": "local_irq_save", "local_irq_enable": "local_irq_disable"}


def _side_facts(fn: FunctionText) -> tuple[set[str], set[str]]:
    regs: set[str] = set()
    irq: set[str] = set()
    for _, text in fn.lines:
        facts = line_facts(text)
        regs.update(a.register for a in facts.accesses
                    if a.kind != "read" and a.register in _SWITCHED)
        irq.update(facts.irq)
    return regs, irq


@rule(id="tlb-symmetry", category=Category.TLB_SYMMETRY, severity=Severity.WARNING,
      summary="the switch-to-host TLB helper does not undo what switch-to-guest changed")
def tlb_symmetry(series: Series, ctx: Context) -> list[Finding]:
    """__tlb_switch_to_guest (enter_vmid_context) changes TGE, the interrupt
    mask and, for the speculative-AT erratum, TCR/SCTLR so that TLB
    maintenance hits the guest's regime; __tlb_switch_to_host must undo each
    of these and nothing else, or the host keeps running with part of the
    guest's configuration."""
    sv = view(series, ctx)
    emit = Emit(rule="tlb-symmetry", category=Category.TLB_SYMMETRY, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        for fv in pv.files:
            names: dict[str, Role] = {}
            for fname in fv.functions():
                role = M.role(mdl, fname, fv.path)
                if role in (Role.TLB_TO_GUEST, Role.TLB_TO_HOST):
                    names[fname] = role
            if not names or fv.deleted:
                continue
            for fname, role in names.items():
                _tlb_function(emit, sv, pv, fv, fname, role, mdl)
        if isinstance(mdl, RegisterModel) and not any(f.patch == pv.index for f in emit.out):
            sem = semantics(sv, pv, ctx)
            if sem is not None:
                # A comparison of the pair's end states: a line moved into
                # a condition is new behaviour, not moved code.
                pairwise = Emit(rule="tlb-symmetry", category=Category.TLB_SYMMETRY, sv=sv,
                                compared=True)
                roundtrip.check(pairwise, pv, sem, tlb=True)
                emit.out.extend(pairwise.out)
    return emit.out


def _net(pv: PatchView, fv: FileView, fname: str) -> dict[str, tuple[set[str], Line | None]]:
    """Registers written and IRQ calls the patch adds to / removes from a function."""
    acc: dict[str, set[str]] = {"+regs": set(), "-regs": set(), "+irq": set(), "-irq": set()}
    first: dict[str, Line] = {}
    for ln in fv.changed:
        if ln.function != fname or normalize(ln.text) in pv.moved:
            continue
        sign = "+" if ln.added else "-"
        regs = {a.register for a in ln.facts.accesses
                if a.kind != "read" and a.register in _SWITCHED}
        acc[sign + "regs"] |= regs
        acc[sign + "irq"] |= set(ln.facts.irq)
        for item in regs | set(ln.facts.irq):
            first.setdefault(sign + item, ln)
    out: dict[str, tuple[set[str], Line | None]] = {}
    for kind in ("regs", "irq"):
        for sign, other in (("+", "-"), ("-", "+")):
            items = acc[sign + kind] - acc[other + kind]
            out[sign + kind] = (items, next((first[sign + i] for i in sorted(items)), None))
    return out


def _tlb_function(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, fname: str,
                  role: str, mdl: RegisterModel | None) -> None:
    net = _net(pv, fv, fname)
    other_role = "tlb-to-host" if role == "tlb-to-guest" else "tlb-to-guest"
    for sign in ("+", "-"):
        regs, ln_r = net[sign + "regs"]
        irq, ln_i = net[sign + "irq"]
        ln = ln_r or ln_i
        if ln is None:
            continue
        other = _counterpart(sv, pv, fv, fname, mdl)
        if other is None or not other.lines:
            emit(Severity.QUESTION, pv, fv, ln, register=_first(regs),
                 message="%s() %s %s; the patch does not show its %s counterpart: does it "
                 "still undo exactly what this side changes?" % (
                     fname, "now changes" if sign == "+" else "no longer changes",
                     ", ".join(sorted(regs) + [i + "()" for i in sorted(irq)]),
                     other_role.replace("tlb-", "")))
            continue
        o_regs, o_irq = _side_facts(other)
        want = {_PAIRS[i] for i in irq if i in _PAIRS}
        if sign == "+":
            missing, missing_irq = sorted(regs - o_regs), sorted(want - o_irq)
        else:
            missing, missing_irq = sorted(regs & o_regs), sorted(want & o_irq)
        if not missing and not missing_irq:
            continue
        what = ", ".join(missing + [i + "()" for i in missing_irq])
        sev = Severity.WARNING if other.complete else Severity.QUESTION
        if sign == "+":
            msg = "%s() now changes %s, but %s() does not undo it." % (fname, what, other.name)
        else:
            msg = ("%s() no longer does %s, but %s() still does its counterpart: the two "
                   "sides are no longer symmetric." % (fname, ", ".join(
                       sorted(regs) + [i + "()" for i in sorted(irq)]), other.name))
        emit(sev, pv, fv, ln, register=_first(set(missing) or regs), message=msg)


def _first(regs: set[str]) -> str | None:
    for reg in M.WATCHED:
        if reg in regs:
            return reg
    return sorted(regs)[0] if regs else None


def _counterpart(sv: SeriesView, pv: PatchView, fv: FileView, name: str,
                 mdl: RegisterModel | None) -> FunctionText | None:
    """The other half of the kvm.toml [[round_trips]] pair `name` belongs to
    (a suffix kept: __tlb_switch_to_guest_vhe -> __tlb_switch_to_host_vhe)."""
    for save, restore in mdl.facts.round_trips if mdl is not None else ():
        for mine, theirs in ((save, restore), (restore, save)):
            if name.startswith(mine):
                return sv.function(pv, fv, theirs + name[len(mine):])
    return None
