"""What tracing a KVM function yields: events, path states and outcomes.

The interpreter (bot.rules.interp) follows a function with one `PathState`
per path (or per set of contexts when paths are joined); what comes out is
a `Trace`: the ordered `Event`s (register writes with their values, isb,
TLB maintenance, interrupt masking, stores, loads, calls) and one `Outcome`
per context partition or path, the value each register holds when the
function returns. The joins here decide what two paths agree on.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bot.regmodel.facts import Ctx
from bot.rules.assume import Assumed
from bot.rules.bits import Bits
from bot.rules.cstmt import Function

WATCHED = ("HCR_EL2", "MDCR_EL2")
MAX_STATES = 16
MAX_PATHS = 64   # memory mode: paths of one set of contexts kept apart
TYPE_WIDTH = {"u8": 8, "u16": 16, "u32": 32, "s32": 32, "int": 32, "unsigned int": 32,
              "unsigned": 32, "__u32": 32, "uint32_t": 32, "u64": 64, "unsigned long": 64,
              "long": 64, "unsigned long long": 64, "__u64": 64, "uint64_t": 64, "s64": 64}


class Ev(enum.StrEnum):
    WRITE = "write"
    READ = "read"
    ISB = "isb"
    ISB_ERRATA = "isb-errata"   # an isb only an errata alternative provides
    DSB = "dsb"
    TLBI = "tlbi"
    AT = "at"
    ERET = "eret"
    IRQ_OFF = "irq-off"
    IRQ_ON = "irq-on"
    PREEMPT_OFF = "preempt-off"
    PREEMPT_ON = "preempt-on"
    CALL = "call"
    STORE = "store"
    LOAD = "load"
    WARN = "warn"
    DECL = "decl"               # a local declared with a type narrower than 64 bits
    RETURN = "return"           # a value returned
    GUARD = "guard"             # a configuration test (kvm.toml guard) in a condition
    UNSEEN = "unseen"           # lines of the function between two hunks (cstmt.UNSEEN)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing a traced function does (a register write, a barrier, a call...), and where."""

    kind: Ev
    line: int
    function: str
    path: str
    contexts: frozenset[Ctx]
    always: bool                # on every path of `contexts` through the function
    # Inside a data-dependent condition or loop that can be skipped while the
    # function goes on (an early return alone does not make it conditional).
    cond: bool = False
    depth: int = 0              # 0: the function itself; n: n calls down
    register: str | None = None
    value: Bits | None = None
    storage: str | None = None
    name: str = ""
    irq_off: bool | None = None       # interrupts masked at this point (None: it depends)
    preempt_off: bool | None = None
    # Every function on the way here was seen from its start: what the state
    # says (interrupts, values) is not missing lines the text did not show.
    seen: bool = True
    # Configuration tests in force here (kvm.toml guards), "!name" when negated.
    guards: tuple[str, ...] = ()
    # The last line of the statement the event comes from (a call may sit on
    # any line of a statement continued over several).
    end: int = 0
    # A call not followed into its body: the values of its arguments.
    args: tuple[Bits, ...] = ()
    # Memory mode: the path (Trace.path_events) the event happened on.
    pid: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """The value a path last wrote to a register, and where."""

    value: Bits
    always: bool
    line: int
    function: str


@dataclass(slots=True)
class PathState:
    """The interpreter's state along one path: locals, register writes, masking."""

    contexts: frozenset[Ctx]
    env: dict[str, Bits] = field(default_factory=dict)
    regs: dict[str, Written] = field(default_factory=dict)
    irq_off: bool | None = False      # None: differs between paths
    preempt_off: bool | None = False
    always: bool = True
    returned: bool = False
    ret: Bits | None = None
    guards: tuple[str, ...] = ()
    cond: bool = False
    # Memory mode: what this path's data conditions said (bot.rules.assume).
    assumed: Assumed = field(default_factory=Assumed)
    pid: int = 0

    def copy(self, contexts: frozenset[Ctx] | None = None) -> PathState:
        return PathState(contexts=self.contexts if contexts is None else contexts,
                      env=dict(self.env), regs=dict(self.regs), irq_off=self.irq_off,
                      preempt_off=self.preempt_off, always=self.always,
                      returned=self.returned, ret=self.ret, guards=self.guards,
                      cond=self.cond, assumed=self.assumed, pid=self.pid)

    def same_path_state(self, other: PathState) -> bool:
        """Two paths that left everything the same, what they assumed too."""
        return self.contexts == other.contexts and self.returned == other.returned and \
            self.irq_off == other.irq_off and self.preempt_off == other.preempt_off and \
            self.regs == other.regs and self.env == other.env and self.ret == other.ret and \
            self.assumed == other.assumed


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One context partition's result of running a function."""

    contexts: frozenset[Ctx]
    regs: Mapping[str, Written]
    ret: Bits | None
    irq_off: bool | None
    preempt_off: bool | None
    # What the [[storage]] places (host copies, per-CPU values, the vcpu's
    # copies) hold when the function returns, where it stored them.
    stored: Mapping[str, Bits] = field(default_factory=dict)
    # Memory mode: what the data conditions along this path said, and the
    # path's id (Trace.path_events).
    assumed: Assumed = field(default_factory=Assumed)
    pid: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """What running a function symbolically found: its events and outcomes."""

    function: Function
    events: tuple[Event, ...]
    outcomes: tuple[Outcome, ...]
    unresolved: tuple[str, ...]      # calls followed nowhere
    complete: bool                   # the whole text, every call that matters followed
    # Memory mode (paths kept apart): each path's id -> the path it forked from.
    forks: Mapping[int, int] = field(default_factory=dict)

    @property
    def apart(self) -> bool:
        """The paths were followed apart: an outcome is one concrete path."""
        return bool(self.forks)

    def path_events(self, outcome: Outcome) -> list[Event]:
        """The events on the way to `outcome` (every event unless apart)."""
        if not self.forks:
            return list(self.events)
        chain = {outcome.pid}
        pid = outcome.pid
        while pid in self.forks:
            pid = self.forks[pid]
            chain.add(pid)
        return [e for e in self.events if e.pid in chain]

    def written(self, ctx: Ctx, register: str) -> Written | None:
        for out in self.outcomes:
            if ctx in out.contexts:
                return out.regs.get(register)
        return None


def join_bits(a: Bits | None, b: Bits | None) -> Bits | None:
    if a is None or b is None:
        return a if b is None else b
    return a.join(b)


def join_states(a: PathState, b: PathState, pre: PathState | None = None) -> PathState:
    """Two states of the same contexts after the two sides of a data-dependent
    branch that started from `pre` (None: two unrelated paths). What comes
    after runs on every path again, unless one side returned."""
    outer = pre.always if pre is not None else (a.always and b.always)
    if a.returned != b.returned:
        out = (b if a.returned else a).copy()
        out.always = False
        out.ret = join_bits(a.ret, b.ret)
        if pre is not None:
            out.cond = pre.cond
        return out
    env = {k: a.env[k].join(b.env[k]) for k in a.env.keys() & b.env.keys()}
    regs: dict[str, Written] = {}
    before = pre.regs if pre is not None else {}
    for reg in a.regs.keys() | b.regs.keys():
        wa, wb = a.regs.get(reg), b.regs.get(reg)
        if wa is not None and wb is not None:
            # Written on both sides (or before the branch): on every path
            # when each side wrote it or it was written on every path before.
            fresh = wa is not before.get(reg) and wb is not before.get(reg)
            always = (wa.always and wb.always) or (fresh and outer)
            regs[reg] = Written(value=wa.value.join(wb.value), always=always,
                                line=max(wa.line, wb.line), function=wa.function)
        else:
            w = wa or wb
            assert w is not None
            regs[reg] = replace(w, always=False)
    return PathState(contexts=a.contexts, env=env, regs=regs,
                  irq_off=a.irq_off if a.irq_off == b.irq_off else None,
                  preempt_off=a.preempt_off if a.preempt_off == b.preempt_off else None,
                  always=outer, returned=a.returned and b.returned,
                  ret=join_bits(a.ret, b.ret),
                  cond=pre.cond if pre is not None else (a.cond or b.cond),
                  assumed=a.assumed.meet(b.assumed),
                  # The path both sides came from (memory mode's path ids).
                  pid=pre.pid if pre is not None else (a.pid if a.pid == b.pid else 0),
                  guards=pre.guards if pre is not None else (
                      a.guards if a.guards == b.guards else ()))


def merge_paths(states: list[PathState]) -> list[PathState]:
    """Memory mode: paths kept apart, but two that left everything the same
    (what they assumed too) are one; past MAX_PATHS of one set of
    contexts, joined as merge_states does."""
    if len(states) <= 1:
        return states
    out: list[PathState] = []
    for s in states:
        twin = next((o for o in out if o.same_path_state(s)), None)
        if twin is None:
            out.append(s)
        else:
            twin.always = twin.always or s.always
    groups: dict[frozenset[Ctx], int] = {}
    for s in out:
        groups[s.contexts] = groups.get(s.contexts, 0) + 1
    if max(groups.values()) > MAX_PATHS:
        return merge_states(out)
    return out


def merge_states(states: list[PathState]) -> list[PathState]:
    """Keep the number of states bounded: join states of equal contexts."""
    if len(states) <= 1:
        return states
    by_ctx: dict[frozenset[Ctx], PathState] = {}
    order: list[frozenset[Ctx]] = []
    for s in states:
        if s.contexts in by_ctx:
            by_ctx[s.contexts] = join_states(by_ctx[s.contexts], s)
        else:
            by_ctx[s.contexts] = s
            order.append(s.contexts)
    out = [by_ctx[c] for c in order]
    if len(out) > MAX_STATES:
        merged = out[0]
        for s in out[1:]:
            merged = join_states(replace(merged, contexts=merged.contexts | s.contexts),
                           replace(s, contexts=merged.contexts | s.contexts))
        out = [merged]
    return out


def type_width(text: str) -> int | None:
    """The width in bits of a C integer type ("static const u32"), None for
    one this table does not know (pointers, structs, 64-bit types alike)."""
    return TYPE_WIDTH.get(text.replace("static ", "").replace("const ", "").strip())


def register_name(operand: str, accessor: str = "") -> str:
    """`hcr_el2`, `SYS_HCR_EL2`, (`write_sysreg_el1`, `SYS_TCR`) -> canonical."""
    name = operand.strip().upper()
    if name.startswith("SYS_"):
        name = name[4:]
    m = re.search(r"_(el[012]2?)$", accessor)
    if m and not re.search(r"_EL[0-3]2?$", name):
        name += "_" + m.group(1).upper().rstrip("2") if m.group(1) != "el12" else "_EL1"
    return name
