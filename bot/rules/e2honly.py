"""Rule family 10 (VHE and nVHE): state that exists at EL2 only with
HCR_EL2.E2H set, written by code only the nVHE hyp runs.

PSTATE.PAN restricts privileged accesses only in a translation regime
with an EL0 (EL1&0, or EL2&0 when E2H is 1), and PSTATE.UAO acts at EL2
only when E2H and TGE are both 1 (kvm.toml [[e2h_state]]). The nVHE hyp
runs at EL2 with E2H clear (except under hVHE; kvm.toml [config_work]
e2h_contexts), so a write to them there does nothing: it hides an intent
(code copied from the VHE path, a protection that is not there). Code VHE
runs too (the hyp entry shared by both) needs it for VHE and is left alone,
as is code an hVHE test or alternative restricts to E2H=1. Where code runs
is kvm.toml [[places]], narrowed by configuration #ifs, assembler
alternatives on a capability a [[guards]] entry decides, and the
configuration tests around a C statement. Pure.
"""

from __future__ import annotations

import re

from bot.regmodel.facts import Ctx, KvmFacts
from bot.regmodel.reach import E2hState
from bot.rules.analysis import Emit, FileView, Line, PatchView
from bot.rules.cexpr import Call, Expr, Name, expr_text, tokenize
from bot.rules.configsites import sites
from bot.rules.core import Severity
from bot.rules.flow import modes as mode_words
from bot.rules.semantic import hunk_functions, open_conditions, restrict
from bot.rules.stmtparse import parse_statements

_MSR = re.compile(r"(?i)\bmsr\s+(\w+)\s*,")
_ALT_BLOCK = re.compile(r"^\s*(alternative_if_not|alternative_if|alternative_else_nop_endif|"
                        r"alternative_else|alternative_endif)\b\s*(\w*)")


def check(emit: Emit, pv: PatchView, facts: KvmFacts) -> None:
    work = facts.config_work
    if not work.e2h_state:
        return
    for fv in pv.files:
        base = facts.contexts_of(fv.path)
        if not base or any(c.el == 1 for c in base):
            continue   # host code
        for ln in fv.changed:
            if not ln.added:
                continue
            state = _written(ln.code, work.e2h_state, facts)
            if state is None:
                continue
            ctxs = _where(fv, ln, base, facts, state)
            e2h = frozenset(Ctx(n) for n in work.e2h_contexts)
            clear = ctxs - e2h
            if Ctx.VHE in ctxs or not clear:
                continue
            set_too = ctxs & e2h
            emit(Severity.QUESTION, pv, fv, ln, register=None,
                 message="%s exists at EL2 only when HCR_EL2.E2H is 1, and only the nVHE "
                 "hypervisor runs this: under %s E2H is 0 here%s, so the write does nothing. "
                 "What is it meant to protect?" % (
                     state.name, mode_words(clear),
                     " (only %s sets it)" % mode_words(set_too) if set_too else ""))
            return


def _written(code: str, states: tuple[E2hState, ...], facts: KvmFacts) -> E2hState | None:
    """The E2H-only state a line writes (a read of it is not a write)."""
    ids = {t.text for t in tokenize(code) if t.kind == "id"}
    if ids & facts.ops.get("read", frozenset()):
        return None
    m = _MSR.search(code)
    operand = m.group(1).lower() if m else None
    for st in states:
        if ids & st.spellings or (operand is not None and operand in st.msr):
            return st
    return None


def _where(fv: FileView, ln: Line, base: frozenset[Ctx], facts: KvmFacts,
           state: E2hState) -> frozenset[Ctx]:
    """Where the line runs: its file's place, narrowed by the #ifs and the
    assembler alternatives around it, an ALTERNATIVE() on the line, and
    (in C) the configuration tests around its statement."""
    before = [x for x in fv.lines if x.new_side and (x.new_no or 0) < (ln.new_no or 0)]
    ctxs = restrict(base, open_conditions([x.text for x in before]), facts)
    if fv.asm:
        ctxs = _alt_blocks(ctxs, [x.code for x in before], facts)
    ctxs = _alt_call(ctxs, ln.code, state, facts)
    if not fv.asm:
        for fn in hunk_functions(fv, "new"):
            for st in sites(fn, facts):
                if ln.new_no is not None and st.line <= ln.new_no <= st.end:
                    ctxs &= st.contexts
    return ctxs


def _cap(facts: KvmFacts, cap: str) -> tuple[frozenset[Ctx], frozenset[Ctx]] | None:
    """(contexts where a capability can be set, where it surely is), when a
    [[guards]] entry decides it."""
    for g in facts.guards:
        if g.arg == cap:
            return g.true_in | g.maybe_in, g.true_in
    return None


def _alt_blocks(ctxs: frozenset[Ctx], lines: list[str], facts: KvmFacts) -> frozenset[Ctx]:
    """alternative_if[_not] CAP ... alternative_else ... alternative_endif
    blocks still open before the line."""
    stack: list[tuple[str, bool]] = []
    for text in lines:
        m = _ALT_BLOCK.match(text)
        if m is None:
            continue
        word, cap = m.group(1), m.group(2)
        if word in ("alternative_if", "alternative_if_not"):
            stack.append((cap, word == "alternative_if"))
        elif word == "alternative_else" and stack:
            stack[-1] = (stack[-1][0], not stack[-1][1])
        elif stack:
            stack.pop()
    for cap, held in stack:
        known = _cap(facts, cap)
        if known is not None:
            ctxs = ctxs & known[0] if held else ctxs - known[1]
    return ctxs


def _alt_call(ctxs: frozenset[Ctx], code: str, state: E2hState,
              facts: KvmFacts) -> frozenset[Ctx]:
    """ALTERNATIVE(old, new, CAP): `new` runs where CAP is set, `old` elsewhere."""
    for stmt in parse_statements(code.strip().rstrip(";") + ";"):
        expr: Expr | None = getattr(stmt, "expr", None)
        if not isinstance(expr, Call) or not isinstance(expr.func, Name) \
                or expr.func.id != "ALTERNATIVE" or len(expr.args) < 3 \
                or not isinstance(expr.args[2], Name):
            continue
        known = _cap(facts, expr.args[2].id)
        if known is None:
            continue
        in_new = any(s in expr_text(expr.args[1]) for s in state.spellings)
        return ctxs & known[0] if in_new else ctxs - known[1]
    return ctxs
