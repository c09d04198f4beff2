"""What a generated case is, the bug kinds, and the generator registry.

A generator is a function registered with `@generator(kind, buggy, name,
justification)`: given the 6.12 `Kernel` and a seeded `random.Random` it
yields finished `Change`s. Kinds are the rows a..p of REVIEW-GUIDE section
6; `KIND_CATEGORIES` says which finding categories (bot/data.py
`Category`) count as catching each kind (invariants of section 5). A
generator may widen that set for a case that is two kinds at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mutate.source import Change, Kernel

KINDS = "abcdefghijklmnop"

KIND_TITLES = {
    "a": "field macro at the wrong bit/width, or renamed to another field's name",
    "b": "RES0 bit written, or a RES0 mask that disagrees with the base",
    "c": "a path back to the host no longer restores the host value",
    "d": "the host value restored changes (its source, a mask, a forced value)",
    "e": "a compile-time host constant or a switch-path helper gains loads",
    "f": "regime/stage-2 change or buffer handover without synchronisation",
    "g": "TLB switch-to-guest change that switch-to-host does not undo",
    "h": "set versus clear against the intent (trap vs allow bits)",
    "i": "host loses HPMN or E2PB/E2TB ownership; blind feature bits",
    "j": "one configuration's save/restore changes alone; is_kernel_in_hyp_mode()",
    "k": "vcpu or per-CPU value used before it is computed",
    "l": "EL2 register accessed from code running at EL1 on an nVHE host",
    "m": "per-CPU host copy read with preemption enabled",
    "n": "storage or a consumer narrower than 64 bits",
    "o": "a runtime host HCR value gains a bit another host configuration lacks",
    "p": "live register where the shadow is meant, or the reverse",
}

KIND_CATEGORIES: dict[str, frozenset[str]] = {
    "a": frozenset({"field-definition"}),
    "b": frozenset({"reserved-bit"}),
    "c": frozenset({"host-restore"}),
    "d": frozenset({"same-value", "host-restore"}),
    "e": frozenset({"hot-path-load"}),
    "f": frozenset({"barrier"}),
    "g": frozenset({"tlb-symmetry"}),
    "h": frozenset({"polarity"}),
    "i": frozenset({"pmu-ownership"}),
    "j": frozenset({"vhe-nvhe"}),
    "k": frozenset({"init-order"}),
    "l": frozenset({"el2-access"}),
    "m": frozenset({"preemption"}),
    "n": frozenset({"register-width"}),
    "o": frozenset({"host-flags"}),
    "p": frozenset({"shadow-vs-live"}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    id: str
    kind: str                 # a..p; for a neutral case, the kind it neighbours or ""
    buggy: bool
    generator: str
    justification: str
    function: str             # the 6.12 function (or file) it comes from
    subject: str
    message: str
    files: tuple[tuple[str, str], ...]      # (path, text after the patch)
    anchors: tuple[tuple[str, int], ...]    # (path, new-file line)
    categories: frozenset[str]


GenFunc = Callable[[Kernel, random.Random], Iterator[Change]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Generator:
    kind: str
    buggy: bool
    name: str
    justification: str
    func: GenFunc
    extra: frozenset[str] = frozenset()


REGISTRY: list[Generator] = []


def generator(kind: str, buggy: bool, name: str, justification: str,
              extra: tuple[str, ...] = ()) -> Callable[[GenFunc], GenFunc]:
    """Register a generator; `kind` "" marks a general neutral transform."""
    assert kind == "" or kind in KINDS, kind
    assert buggy or not extra

    def wrap(func: GenFunc) -> GenFunc:
        if any(g.name == name for g in REGISTRY):
            raise ValueError("generator %s registered twice" % name)
        REGISTRY.append(Generator(kind=kind, buggy=buggy, name=name,
                                  justification=" ".join(justification.split()),
                                  func=func, extra=frozenset(extra)))
        return func

    return wrap
