"""Rule family 5, polarity, by values: a clear of a bit the stored value
never holds.

`vcpu->arch.hcr_el2 &= ~HCR_TGE` changes nothing: no code puts TGE in the
vcpu's HCR_EL2. A clear the patch adds, of bits that no store into the
same storage (kvm.toml [[storage]]) anywhere in the code at hand can set,
is most likely the wrong bit: the one the author meant (the line's old
text says which, when it had one) stays as it was. With the kernel tree
every store into the storage is seen; without it, only the hunks', so
this is asked only with the tree. Pure.
"""

from __future__ import annotations

from bot.rules.analysis import Emit, PatchView
from bot.rules.bits import MASK64, Bits
from bot.rules.cexpr import Assign, expr_text
from bot.rules.core import Severity
from bot.rules.cstmt import ExprStmt, Function, walk
from bot.rules.flow import changed_line
from bot.rules.interp import Interpreter
from bot.rules.semantic import PatchSemantics
from bot.rules.trace import Ev


def check(emit: Emit, pv: PatchView, sem: PatchSemantics) -> None:
    if not sem.from_tree:
        return
    may: dict[str, int] | None = None
    for pair in sem.pairs():
        if pair.after is None:
            continue
        # Clears the function made before the patch (moved, respelt) are
        # not new: the code already cleared those bits.
        had: dict[str, int] = {}
        for e in pair.before.events if pair.before is not None else ():
            if e.kind is Ev.STORE and e.name == "&=" and e.value is not None and e.storage:
                had[e.storage] = had.get(e.storage, 0) | _maybe_cleared(e.value, e.storage)
        for e in pair.after.events:
            if e.kind is not Ev.STORE or e.name != "&=" or e.value is None or not e.storage \
                    or e.depth:
                continue
            cleared = _cleared(e.value, e.storage) & ~had.get(e.storage, 0)
            ln = changed_line(pv, e, "new")
            if not cleared or ln is None or not ln.added:
                continue
            if may is None:
                may = _may_set(sem)
            if e.storage not in may or cleared & may[e.storage]:
                continue
            reg = "MDCR_EL2" if "mdcr" in e.storage else "HCR_EL2"
            fields, rest = sem.model.decode(reg, cleared)
            names = [f.name for f in fields]
            what = "/".join(names) if names and not rest else "bits %#x" % cleared
            emit(Severity.QUESTION, pv, pv.file(e.path), ln, register=reg, fields=tuple(names),
                 message="this clears %s.%s in %s, which no store into it sets: the clear "
                 "changes nothing. Is another bit meant?" % (reg, what, e.storage))
            return


def _cleared(value: Bits, storage: str) -> int:
    """The bits `x &= ~MASK` forces to 0 (the rest still the storage's own)."""
    own = [n for n, _ in value.srcs]
    if not own or not all(n.endswith(storage) for n in own):
        return 0
    return value.zeros & MASK64


def _maybe_cleared(value: Bits, storage: str) -> int:
    """The bits a clear may have cleared (`x &= ~mask` with a mask built on
    several paths): those no longer the storage's own nor known set."""
    own = 0
    for name, m in value.srcs:
        if name.endswith(storage):
            own |= m
    return MASK64 & ~own & ~value.ones


def _may_set(sem: PatchSemantics) -> dict[str, int]:
    """Per storage, the bits some store into it (=, |=) can leave set, over
    every function before the patch that assigns to it (a store of an
    unknown value can set any bit)."""
    out: dict[str, int] = {}
    side = sem.before
    if side.evaluator is None:
        return out
    interp = Interpreter(sem.facts, side.evaluator, side.functions)
    for fns in side.functions.values():
        for fn in fns:
            if not _assigns_storage(fn, sem):
                continue
            trace = interp.run(fn)
            for e in trace.events:
                if e.kind is not Ev.STORE or not e.storage or e.value is None \
                        or e.name not in ("=", "|="):
                    continue
                v = e.value
                foreign = 0
                for name, m in v.srcs:
                    if not name.endswith(e.storage):
                        foreign |= m
                out[e.storage] = out.get(e.storage, 0) | v.ones | foreign | v.unknown_mask
    return out


def _assigns_storage(fn: Function, sem: PatchSemantics) -> bool:
    for stmt in walk(fn.body):
        if isinstance(stmt, ExprStmt) and isinstance(stmt.expr, Assign) and \
                stmt.expr.op in ("=", "|=") and sem.facts.storage_of(
                    expr_text(stmt.expr.target).replace(" ", "")) is not None:
            return True
    return False
