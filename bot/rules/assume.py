"""What a path's data conditions say about the values they tested.

Save/restore pairs test the same value twice: enter_vmid_context() sets
SCTLR_EL1.M only `if (!(val & SCTLR_ELx_M))` and exit_vmid_context() puts
the saved value back only `if (!(cxt->sctlr & SCTLR_ELx_M))`; both switch
on whether a vcpu is running. Followed path by path (the interpreter's
memory mode), the second test is decided by what the first one's branch
assumed, so that a path the code cannot take (M set by the first half and
put back by the second) is not counted. `Assumed` holds, per source (the
register read, the memory load, the parameter), the bits a path's
conditions fixed and whether the whole value was found non-zero. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.rules.bits import MASK64, Bits
from bot.rules.cexpr import Binary, Call, Expr, Name, Num, Unary


@dataclass(frozen=True, slots=True)
class Assumed:
    """Per source: (bits known 0, bits known 1); sources known non-zero."""

    bits: tuple[tuple[str, int, int], ...] = ()
    nonzero: frozenset[str] = frozenset()

    def _get(self, name: str) -> tuple[int, int]:
        for n, zeros, ones in self.bits:
            if n == name:
                return zeros, ones
        return 0, 0

    def with_bits(self, name: str, zeros: int, ones: int) -> Assumed:
        z, o = self._get(name)
        rest = tuple(b for b in self.bits if b[0] != name)
        return Assumed(bits=tuple(sorted(rest + ((name, z | zeros, o | ones),))),
                       nonzero=self.nonzero)

    def with_nonzero(self, name: str) -> Assumed:
        return Assumed(bits=self.bits, nonzero=self.nonzero | {name})

    def apply(self, v: Bits) -> Bits:
        """`v` with the bits the assumptions fix made known."""
        if not self.bits or not v.srcs:
            return v
        ones, zeros = v.ones, v.zeros
        srcs: list[tuple[str, int]] = []
        for name, m in v.srcs:
            z, o = self._get(name)
            ones |= m & o
            zeros |= m & z
            left = m & ~(z | o)
            if left:
                srcs.append((name, left))
        return Bits(ones=ones, zeros=zeros, srcs=tuple(srcs))

    def truth(self, v: Bits) -> bool | None:
        """Whether a condition of value `v` holds, if the path decides it."""
        v = self.apply(v)
        if v.ones:
            return True
        if v.known == MASK64:
            return False
        if len(v.srcs) == 1 and v.srcs[0][0] in self.nonzero and \
                v.srcs[0][1] == MASK64 & ~v.known:
            return True
        return None

    def compatible(self, other: Assumed) -> bool:
        """No source is assumed one way here and the other way there."""
        for name, z, o in self.bits:
            z2, o2 = other._get(name)
            if z & o2 or o & z2 or (z == MASK64 and name in other.nonzero):
                return False
        return all(other._get(name)[0] != MASK64 for name in self.nonzero)

    def meet(self, other: Assumed) -> Assumed:
        """What both paths assumed (for two paths joined into one)."""
        if self == other:
            return self
        bits = []
        for name, z, o in self.bits:
            z2, o2 = other._get(name)
            if z & z2 or o & o2:
                bits.append((name, z & z2, o & o2))
        return Assumed(bits=tuple(bits), nonzero=self.nonzero & other.nonzero)


def split(cond: Expr, value: Callable[[Expr], Bits], known: Assumed
          ) -> tuple[bool | None, Assumed, Assumed]:
    """(whether `cond` holds on this path, if decided; what the branch where
    it holds may assume; what the other branch may assume). `value`
    evaluates a sub-expression (with its events, once per call)."""
    if isinstance(cond, Unary) and cond.op == "!":
        truth, yes, no = split(cond.operand, value, known)
        return (None if truth is None else not truth), no, yes
    if isinstance(cond, Call) and isinstance(cond.func, Name) and cond.func.id in (
            "likely", "unlikely") and len(cond.args) == 1:
        return split(cond.args[0], value, known)
    if isinstance(cond, Binary) and cond.op in ("&&", "||"):
        left, lyes, lno = split(cond.left, value, known)
        if cond.op == "&&":
            if left is False:
                return False, known, known
            right, ryes, rno = split(cond.right, value, lyes)
            truth = right if left is True else (False if right is False else None)
            return truth, ryes, known if left is None or right is None else rno
        if left is True:
            return True, known, known
        right, ryes, rno = split(cond.right, value, lno)
        truth = right if left is False else (True if right is True else None)
        return truth, known if left is None or right is None else ryes, rno
    if isinstance(cond, Binary) and cond.op in ("==", "!=") and isinstance(cond.right, Num):
        v = known.apply(value(cond.left))
        c = cond.right.value & MASK64
        if v.is_const:
            eq = v.value == c
            return (eq if cond.op == "==" else not eq), known, known
        if (v.ones & ~c) or (v.zeros & c):
            return (cond.op == "!="), known, known
        eq_side = _fix(known, v, c)
        ne_side = known.with_nonzero(v.srcs[0][0]) if c == 0 and _whole(v) else known
        if cond.op == "==":
            return None, eq_side, ne_side
        return None, ne_side, eq_side
    v = value(cond)
    truth = known.truth(v)
    if truth is not None:
        return truth, known, known
    v = known.apply(v)
    if len(v.srcs) != 1 or v.ones:
        return None, known, known
    name, m = v.srcs[0]
    # False: every bit still unknown is 0 (the known ones already are).
    if v.unknown_mask:
        no = known
    else:
        no = known.with_bits(name, m, 0)
    if m == MASK64 & ~v.known and v.known == 0:
        yes = known.with_nonzero(name)
    elif m & (m - 1) == 0 and not v.unknown_mask:
        yes = known.with_bits(name, 0, m)   # a single bit: it is the one set
    else:
        yes = known
    return None, yes, no


def _whole(v: Bits) -> bool:
    return len(v.srcs) == 1 and v.known == 0 and v.srcs[0][1] == MASK64


def _fix(known: Assumed, v: Bits, c: int) -> Assumed:
    """`v == c` for a value copied from one source where it is not known."""
    if len(v.srcs) != 1 or v.unknown_mask:
        return known
    name, m = v.srcs[0]
    return known.with_bits(name, m & ~c, m & c)


__all__ = ["Assumed", "split"]
