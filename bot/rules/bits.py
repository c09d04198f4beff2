"""What is known of a 64-bit register value, bit by bit.

Every bit of a `Bits` is one of: known 0, known 1, the same bit of a named
source (the live register through a read-modify-write, the vcpu's copy, a
per-CPU host copy, a parameter...), or unknown. That is exactly what a
reviewer asks of a value written to HCR_EL2 or MDCR_EL2: which bits are
forced, which are kept from where, and which nobody can tell. The C
operators the kernel builds these values with (`|`, `&`, `~`, `^`, shifts by
a constant) map onto it without losing what matters: `hcr & ~HCR_TGE` keeps
every bit of `hcr` but TGE, which is known 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MASK64 = (1 << 64) - 1


class SourceKind(enum.StrEnum):
    """Where a value comes from, as far as the cost and meaning go."""

    LIVE = "live"            # the register itself (read_sysreg)
    VCPU = "vcpu"            # the vcpu's copy (vcpu->arch.hcr_el2, *vcpu_hcr(vcpu), ...)
    GUEST_HYP = "guest-hyp"  # a nested guest hypervisor's virtual register
    HOST_COPY = "host-copy"  # a per-CPU copy of the host's value saved at entry
    PERCPU = "percpu"        # per-CPU data chosen at init (kvm_init_params.hcr_el2)
    PARAM = "param"          # a function parameter
    LOAD = "load"            # some other memory load
    CALL = "call"            # what a function returned
    ADDRESS = "addr"         # the address of an object (&x), no load


def source_kind(name: str) -> SourceKind:
    head = name.split(":", 1)[0]
    try:
        return SourceKind(head)
    except ValueError:
        return SourceKind.LOAD


def is_memory(kind: SourceKind) -> bool:
    """A load from memory on the path that uses it (not the register, not a
    constant, not an argument already in hand)."""
    return kind in (SourceKind.VCPU, SourceKind.GUEST_HYP, SourceKind.HOST_COPY,
                    SourceKind.PERCPU, SourceKind.LOAD)


@dataclass(frozen=True, slots=True)
class Bits:
    """Bits known 1 (`ones`), known 0 (`zeros`), copied from a source at the
    same position (`srcs`: (source, mask) pairs, masks disjoint), and the
    rest unknown."""

    ones: int = 0
    zeros: int = 0
    srcs: tuple[tuple[str, int], ...] = ()

    # -- construction ----------------------------------------------------------

    @staticmethod
    def const(value: int) -> Bits:
        value &= MASK64
        return Bits(ones=value, zeros=~value & MASK64)

    @staticmethod
    def source(name: str, mask: int = MASK64) -> Bits:
        return Bits(srcs=((name, mask & MASK64),)) if mask else Bits()

    @staticmethod
    def unknown() -> Bits:
        return Bits()

    # -- questions ---------------------------------------------------------------

    @property
    def known(self) -> int:
        return self.ones | self.zeros

    @property
    def src_mask(self) -> int:
        mask = 0
        for _, m in self.srcs:
            mask |= m
        return mask

    @property
    def unknown_mask(self) -> int:
        return ~(self.known | self.src_mask) & MASK64

    @property
    def is_const(self) -> bool:
        return self.known == MASK64

    @property
    def value(self) -> int | None:
        return self.ones if self.is_const else None

    def source_at(self, bit: int) -> str | None:
        for name, m in self.srcs:
            if m >> bit & 1:
                return name
        return None

    def sources(self, mask: int = MASK64) -> tuple[str, ...]:
        return tuple(name for name, m in self.srcs if m & mask)

    def describe(self, bit: int) -> str:
        """'0', '1', 'src:NAME' or '?' for one bit."""
        if self.ones >> bit & 1:
            return "1"
        if self.zeros >> bit & 1:
            return "0"
        src = self.source_at(bit)
        return "src:" + src if src is not None else "?"

    def restrict(self, mask: int) -> Bits:
        """Only the bits of `mask` (the others unknown)."""
        return Bits(ones=self.ones & mask, zeros=self.zeros & mask,
                    srcs=_norm(tuple((n, m & mask) for n, m in self.srcs)))

    def differs(self, other: Bits, mask: int = MASK64) -> int:
        """Bits (within `mask`) described differently by the two values."""
        diff = ((self.ones ^ other.ones) | (self.zeros ^ other.zeros)) & mask
        if self.srcs != other.srcs:
            mine = dict(self.srcs)
            theirs = dict(other.srcs)
            for name in mine.keys() | theirs.keys():
                diff |= (mine.get(name, 0) ^ theirs.get(name, 0)) & mask
        return diff

    # -- operators -----------------------------------------------------------------

    def __or__(self, other: Bits) -> Bits:
        ones = self.ones | other.ones
        zeros = self.zeros & other.zeros
        srcs: list[tuple[str, int]] = []
        for name, m in self.srcs:
            # x|0 = x; x|x = x
            keep = m & (other.zeros | _same(other, name, m)) & ~ones
            if keep:
                srcs.append((name, keep))
        for name, m in other.srcs:
            keep = m & self.zeros & ~ones
            if keep:
                srcs.append((name, keep))
        return Bits(ones=ones, zeros=zeros, srcs=_norm(tuple(srcs)))

    def __and__(self, other: Bits) -> Bits:
        zeros = self.zeros | other.zeros
        ones = self.ones & other.ones
        srcs: list[tuple[str, int]] = []
        for name, m in self.srcs:
            keep = m & (other.ones | _same(other, name, m)) & ~zeros
            if keep:
                srcs.append((name, keep))
        for name, m in other.srcs:
            keep = m & self.ones & ~zeros
            if keep:
                srcs.append((name, keep))
        return Bits(ones=ones, zeros=zeros, srcs=_norm(tuple(srcs)))

    def __xor__(self, other: Bits) -> Bits:
        ones = (self.ones & other.zeros) | (self.zeros & other.ones)
        zeros = (self.ones & other.ones) | (self.zeros & other.zeros)
        srcs: list[tuple[str, int]] = []
        for name, m in self.srcs:
            if m & other.zeros:
                srcs.append((name, m & other.zeros))
        for name, m in other.srcs:
            if m & self.zeros:
                srcs.append((name, m & self.zeros))
        return Bits(ones=ones, zeros=zeros, srcs=_norm(tuple(srcs)))

    def __invert__(self) -> Bits:
        return Bits(ones=self.zeros, zeros=self.ones)

    def shl(self, n: int) -> Bits:
        if n == 0:
            return self
        if not 0 <= n < 64:
            return Bits()
        low = (1 << n) - 1
        return Bits(ones=(self.ones << n) & MASK64, zeros=((self.zeros << n) | low) & MASK64)

    def shr(self, n: int) -> Bits:
        if n == 0:
            return self
        if not 0 <= n < 64:
            return Bits()
        high = (MASK64 >> n) ^ MASK64
        return Bits(ones=self.ones >> n, zeros=(self.zeros >> n) | high)

    def join(self, other: Bits) -> Bits:
        """What is known after either of two paths: what they agree on."""
        ones = self.ones & other.ones
        zeros = self.zeros & other.zeros
        srcs = tuple((name, m & _same(other, name, m)) for name, m in self.srcs)
        return Bits(ones=ones, zeros=zeros, srcs=_norm(srcs))


def _same(other: Bits, name: str, mask: int) -> int:
    for n, m in other.srcs:
        if n == name:
            return m & mask
    return 0


def _norm(srcs: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    merged: dict[str, int] = {}
    for name, m in srcs:
        if m:
            merged[name] = merged.get(name, 0) | m
    return tuple(sorted(merged.items()))
