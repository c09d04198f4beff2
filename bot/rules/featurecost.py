"""Rule family 5 (the hot path) for state only some VMs use.

The world switch saves and restores the registers of optional features
(MTE's tag registers, TCR2_EL1, the permission indirection and overlay
registers) only for a vcpu whose VM uses the feature: KVM tests the VM
(`ctxt_has_mte()`, `kvm_has_mte()`), not only the system. Hyp code a patch
adds that saves or restores such a register under no test of the VM pays
for it on every entry and exit of every VM, including the ones that never
enable the feature. The registers and the VM tests are kvm.toml data
([ops] per_vm_registers, per_vm_tests). Pure.
"""

from __future__ import annotations

import re

from bot.regmodel import RegisterModel
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.cexpr import expr_text
from bot.rules.core import Severity
from bot.rules.cstmt import Block, If, Loop, Stmt, Switch
from bot.rules.flow import changed_line, line_at
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

_IDENT = re.compile(r"[A-Za-z_]\w*")
_PARTICIPLE = {"save and restore": "saved and restored", "save": "saved", "restore": "restored"}


def _words(text: str) -> set[str]:
    """The identifiers of a condition's text."""
    return set(_IDENT.findall(text))


def _tests_by_line(stmts: tuple[Stmt, ...], outer: tuple[frozenset[str], tuple[int, ...]],
                   out: dict[int, tuple[frozenset[str], tuple[int, ...]]]) -> None:
    """Each statement line -> (the names the conditions around it use, the
    lines of those conditions)."""
    for stmt in stmts:
        line = getattr(stmt, "line", 0)
        if line:
            out.setdefault(line, outer)
        if isinstance(stmt, Block):
            _tests_by_line(stmt.stmts, outer, out)
        elif isinstance(stmt, If):
            ends = range(stmt.line, max(stmt.line, stmt.cond_end) + 1)
            inner = (outer[0] | frozenset(_words(expr_text(stmt.cond))), outer[1] + tuple(ends))
            _tests_by_line((stmt.then,), inner, out)
            if stmt.other is not None:
                _tests_by_line((stmt.other,), inner, out)
        elif isinstance(stmt, (Loop, Switch)):
            _tests_by_line((stmt.body,), outer, out)


def _around(trace: Trace) -> dict[int, tuple[frozenset[str], tuple[int, ...]]]:
    out: dict[int, tuple[frozenset[str], tuple[int, ...]]] = {}
    _tests_by_line(trace.function.body, (frozenset(), ()), out)
    return out


def check(emit: Emit, pv: PatchView, pairs: list[Pair], mdl: RegisterModel) -> None:
    """Added saves/restores of a per-VM feature's registers in code that
    runs only at EL2, with no test of the VM around them: one question per
    patch, at the first."""
    ops = mdl.facts.ops
    regs, tests = ops.get("per_vm_registers", frozenset()), ops.get("per_vm_tests", frozenset())
    if not regs:
        return
    found: list[tuple[Pair, Event, frozenset[str], Line]] = []
    for pair in pairs:
        after = pair.after
        if after is None or not all(c.el == 2 for c in mdl.facts.contexts_of(pair.key.path)):
            continue
        conds = _around(after)
        gated_before: set[str] = set()
        if pair.before is not None:
            old = _around(pair.before)
            gated_before = {e.register or "" for e in pair.before.events
                            if e.kind in (Ev.READ, Ev.WRITE) and e.register in regs
                            and old.get(e.line, (frozenset(), ()))[0] & tests}
        for e in after.events:
            if e.kind not in (Ev.READ, Ev.WRITE) or e.depth or e.register not in regs:
                continue
            used, lines = conds.get(e.line, (frozenset(), ()))
            if used & tests:
                continue
            tests_changed = [ln for no in lines
                             if (ln := line_at(pv, e.path, no, "new")) is not None and ln.added]
            at = changed_line(pv, e, "new")
            if at is None and tests_changed and e.register in gated_before:
                at = tests_changed[-1]
            if at is not None:
                found.append((pair, e, used, at))
    if not found:
        return
    found.sort(key=lambda t: (t[1].path, t[1].line))
    pair, first, around, ln = found[0]
    names = sorted({e.register for _, e, _, _ in found if e.register})
    where = list(dict.fromkeys(p.key.name + "()" for p, _, _, _ in found))
    system = sorted(around & ops.get("patched", frozenset()))
    example = next(iter(sorted(t for t in tests if t.startswith("ctxt_has"))), "")
    kinds = {e.kind for _, e, _, _ in found}
    verb = "save and restore" if len(kinds) > 1 else (
        "save" if Ev.READ in kinds else "restore")
    regs_words = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    fns = ", ".join(where[:-1]) + " and " + where[-1] if len(where) > 1 else where[0]
    emit(Severity.QUESTION, pv, pv.file(first.path), ln, register=None,
         message="%s %s now %s in %s on every pass, for every VM, %s: hyp code pays for it "
         "on each entry and exit even for VMs that never enable the feature. Should a test "
         "of the VM's own use of it%s gate it?" % (
             regs_words, "is" if len(names) == 1 else "are", _PARTICIPLE[verb], fns,
             "under a test of the system only (%s())" % "(), ".join(system) if system
             else "under no test of the VM",
             " (a per-VM predicate such as %s())" % example if example else ""))
