"""Configuration tests in conditions, as kvm.toml's [[guards]] decide them.

`has_vhe()`, `is_protected_kvm_enabled()`, `#ifdef`-like tests split the
contexts a path runs in (bot.regmodel.facts.Ctx); a capability the kernel
patches in at boot (`cpus_have_final_cap()`) that no guard decides is one
value for the whole run. Pure: the facts are handed in.
"""

from __future__ import annotations

from bot.regmodel.facts import Ctx, KvmFacts
from bot.rules.cexpr import Binary, Call, Expr, Name, Unary, call_name, expr_text


def cap_test(facts: KvmFacts, cond: Expr) -> tuple[str, bool] | None:
    """A test of a capability the kernel patches in at boot (`[!]
    cpus_have_final_cap(X)`) that no guard decides: its text and
    whether it is negated."""
    neg = False
    while isinstance(cond, Unary) and cond.op == "!":
        cond, neg = cond.operand, not neg
    name = call_name(cond) if isinstance(cond, Call) else None
    if name is None or not facts.op("patched", name):
        return None
    return expr_text(cond).replace(" ", ""), neg


def guard_names(facts: KvmFacts, cond: Expr) -> list[str]:
    """The kvm.toml guards a condition tests ("!" in front when negated;
    `name(ARG)` for a guard of one argument, as one_side_only reads it)."""
    out: list[str] = []
    stack: list[tuple[Expr, bool]] = [(cond, False)]
    while stack:
        node, neg = stack.pop()
        if isinstance(node, Unary) and node.op == "!":
            stack.append((node.operand, not neg))
        elif isinstance(node, Binary) and node.op in ("&&", "||"):
            stack.extend([(node.left, neg), (node.right, neg)])
        elif isinstance(node, Call) and isinstance(node.func, Name):
            if node.func.id in ("likely", "unlikely") and node.args:
                stack.append((node.args[0], neg))
                continue
            arg = node.args[0].id if node.args and isinstance(node.args[0], Name) else None
            g = facts.guard(node.func.id, arg)
            if g is not None:
                out.append(("!" if neg else "") + node.func.id
                           + ("(%s)" % g.arg if g.arg else ""))
        elif isinstance(node, Name) and facts.guard(node.id) is not None:
            out.append(("!" if neg else "") + node.id)
    return out


def guard_split(facts: KvmFacts, cond: Expr, contexts: frozenset[Ctx]
           ) -> tuple[frozenset[Ctx], frozenset[Ctx], bool] | None:
    """(contexts where the condition can hold, where it can fail, whether
    it is a configuration test only) for a condition that tests the
    configuration; None for a data-dependent one."""
    if isinstance(cond, Unary) and cond.op == "!":
        inner = guard_split(facts, cond.operand, contexts)
        return (inner[1], inner[0], inner[2]) if inner is not None else None
    if isinstance(cond, Call) and isinstance(cond.func, Name) and cond.func.id in (
            "likely", "unlikely") and cond.args:
        return guard_split(facts, cond.args[0], contexts)
    if isinstance(cond, Binary) and cond.op in ("&&", "||"):
        left = guard_split(facts, cond.left, contexts)
        right = guard_split(facts, cond.right, contexts)
        if left is None and right is None:
            return None
        full = (contexts, contexts, False)
        lt, lf, lp = left if left is not None else full
        rt, rf, rp = right if right is not None else full
        if cond.op == "&&":
            return lt & rt, lf | rf, lp and rp
        return lt | rt, lf & rf, lp and rp
    name: str | None = None
    arg: str | None = None
    if isinstance(cond, Call) and isinstance(cond.func, Name):
        name = cond.func.id
        if cond.args and isinstance(cond.args[0], Name):
            arg = cond.args[0].id
    elif isinstance(cond, Name):
        name = cond.id
    if name is None:
        return None
    guard = facts.guard(name, arg)
    if guard is None:
        return None
    can_true, can_false = guard.split(contexts)
    return can_true, can_false, not guard.maybe_in

# -- expressions ---------------------------------------------------------------


def one_side_only(facts: KvmFacts, guards: tuple[str, ...]) -> bool:
    """Code under a test that only VHE, or only the nVHE family (nVHE,
    protected, hVHE), can pass: `vcpu_has_nv()`, an erratum capability of
    CPUs without VHE. The other side cannot reach it."""
    for name in guards:
        if name.startswith("!"):
            continue
        fn, _, arg = name.partition("(")
        g = facts.guard(fn, arg.rstrip(")") or None)
        if g is not None and len({c.mode == "vhe" for c in g.true_in | g.maybe_in}) == 1:
            return True
    return False
