"""Following a KVM function to what it does to the EL2 registers.

The interpreter walks a function's statements (bot.rules.cstmt) with an
abstract state: the value of each local as `Bits`, the value last written
to each register, whether interrupts are masked and preemption disabled,
and the execution contexts the path runs in (bot.regmodel.facts.Ctx). A
test of the configuration (`has_vhe()`, `is_protected_kvm_enabled()`,
`#ifdef __KVM_NVHE_HYPERVISOR__`, per kvm.toml's [[guards]]) splits the
state by context; any other condition runs both branches and joins what
they agree on. Calls to functions whose text is at hand are followed (their
parameters bound to the arguments), others are recorded. What comes out is
an ordered list of events (register writes with their values, isb, TLB
maintenance, interrupt masking, stores to the vcpu's or the host's copies,
memory loads, calls) and, per context, the value each register holds when
the function returns. Pure: the functions are handed in.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import Ctx, KvmFacts
from bot.rules.assume import Assumed, split
from bot.rules.bits import MASK64, Bits, is_memory, source_kind
from bot.rules.cexpr import (
    Assign,
    Binary,
    Call,
    Cast,
    Expr,
    Index,
    Member,
    Name,
    Num,
    Str,
    Ternary,
    Unary,
    Unknown,
    call_name,
    expr_from_text,
    expr_text,
)
from bot.rules.cstmt import (
    UNSEEN,
    Asm,
    Block,
    Decl,
    ExprStmt,
    Function,
    If,
    Loop,
    Preproc,
    Return,
    Stmt,
    Switch,
)

WATCHED = ("HCR_EL2", "MDCR_EL2")
_MAX_DEPTH = 5
_MAX_STATES = 16
_MAX_PATHS = 64   # memory mode: paths of one set of contexts kept apart
TYPE_WIDTH = {"u8": 8, "u16": 16, "u32": 32, "s32": 32, "int": 32, "unsigned int": 32,
          "unsigned": 32, "__u32": 32, "uint32_t": 32, "u64": 64, "unsigned long": 64,
          "long": 64, "unsigned long long": 64, "__u64": 64, "uint64_t": 64, "s64": 64}
# The fields of an object that may hold a register value, for a whole
# object handed to a consumer ([ops] consume).
_STORED_FIELDS = ("hcr_el2", "mdcr_el2")
_ASM_WORD = re.compile(r"\b(msr|mrs|isb|eret|tlbi|dsb|at|psb|tsb)\b\s*([\w.]*)", re.I)


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
class _State:
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

    def copy(self, contexts: frozenset[Ctx] | None = None) -> _State:
        return _State(contexts=self.contexts if contexts is None else contexts,
                      env=dict(self.env), regs=dict(self.regs), irq_off=self.irq_off,
                      preempt_off=self.preempt_off, always=self.always,
                      returned=self.returned, ret=self.ret, guards=self.guards,
                      cond=self.cond, assumed=self.assumed, pid=self.pid)

    def same_path_state(self, other: _State) -> bool:
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


def _join_bits(a: Bits | None, b: Bits | None) -> Bits | None:
    if a is None or b is None:
        return a if b is None else b
    return a.join(b)


def _join(a: _State, b: _State, pre: _State | None = None) -> _State:
    """Two states of the same contexts after the two sides of a data-dependent
    branch that started from `pre` (None: two unrelated paths). What comes
    after runs on every path again, unless one side returned."""
    outer = pre.always if pre is not None else (a.always and b.always)
    if a.returned != b.returned:
        out = (b if a.returned else a).copy()
        out.always = False
        out.ret = _join_bits(a.ret, b.ret)
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
    return _State(contexts=a.contexts, env=env, regs=regs,
                  irq_off=a.irq_off if a.irq_off == b.irq_off else None,
                  preempt_off=a.preempt_off if a.preempt_off == b.preempt_off else None,
                  always=outer, returned=a.returned and b.returned,
                  ret=_join_bits(a.ret, b.ret),
                  cond=pre.cond if pre is not None else (a.cond or b.cond),
                  assumed=a.assumed.meet(b.assumed))


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


class Interpreter:
    """Runs functions against one set of facts, one evaluator and the
    functions at hand (by name) for following calls."""

    def __init__(self, facts: KvmFacts, evaluator: Evaluator,
                 functions: Mapping[str, list[Function]], *, memory: bool = False) -> None:
        # memory: also remember what is stored in other memory (struct
        # fields by their text, as `cxt->tcr`), for following a value saved
        # in one function and put back in another.
        self.memory = memory
        self.facts = facts
        self.ev = evaluator
        self.functions = functions
        self.events: list[Event] = []
        self.unresolved: list[str] = []
        self._stack: list[str] = []
        self._unseen = 0
        self._end = 0
        self._locals: set[str] = set()
        # Locals of a type narrower than 64 bits: (width, how they were declared).
        self._narrow: dict[str, tuple[int, str]] = {}
        self._expanding: set[str] = set()
        self._params: dict[str, int] = {}    # the traced function's, by position
        self._forks: dict[int, int] = {}     # memory mode: path id -> the one it forked from

    # -- entry point -------------------------------------------------------------

    def run(self, fn: Function, contexts: frozenset[Ctx] | None = None,
            irq_off: bool | None = False) -> Trace:
        """Trace `fn` in `contexts` (default: where its file runs), starting
        with interrupts masked, unmasked or unknown (None) as its callers
        leave them."""
        self.events = []
        self.unresolved = []
        self._locals = set()
        self._narrow = {}
        self._forks = {}
        ctxs = contexts if contexts is not None else self.facts.contexts_of(fn.path)
        start = _State(contexts=ctxs, irq_off=irq_off)
        self._params = {p.name: i for i, p in enumerate(fn.params)}
        for p in fn.params:
            start.env[p.name] = Bits.source("param:" + p.name)
        states = self._call_body(fn, [start], depth=0)
        return self._trace(fn, states)

    def run_pair(self, both: Function, first: Function, second: Function,
                 contexts: frozenset[Ctx], handed: Mapping[str, str]) -> Trace:
        """`first` then `second` as a caller runs them in turn (memory mode:
        every path of the first goes on into the second, an early return
        included); `handed`: the second's parameters by the first's
        parameter each is given. The trace is `both`'s."""
        self.events = []
        self.unresolved = []
        self._locals = set()
        self._narrow = {}
        self._forks = {}
        start = _State(contexts=contexts)
        self._params = {p.name: i for i, p in enumerate(first.params)}
        for p in first.params:
            start.env[p.name] = Bits.source("param:" + p.name)
        states = self._call_body(first, [start], depth=1)
        for st in states:
            for p in second.params:
                st.env[p.name] = Bits.source("param:" + handed.get(p.name, p.name))
        states = self._call_body(second, states, depth=1)
        return self._trace(both, states)

    def _trace(self, fn: Function, states: list[_State]) -> Trace:
        outcomes = tuple(Outcome(contexts=s.contexts, regs=dict(s.regs), ret=s.ret,
                                 irq_off=s.irq_off, preempt_off=s.preempt_off,
                                 stored={k[1:]: v for k, v in s.env.items()
                                         if k.startswith("@")}, assumed=s.assumed,
                                 pid=s.pid)
                         for s in states)
        return Trace(function=fn, events=tuple(self.events), outcomes=outcomes,
                     unresolved=tuple(dict.fromkeys(self.unresolved)),
                     complete=fn.complete and not self.unresolved, forks=dict(self._forks))

    def _call_body(self, fn: Function, states: list[_State], depth: int) -> list[_State]:
        self._stack.append(fn.name)
        unseen = not fn.seen_from_start
        self._unseen += unseen
        narrow, self._narrow = self._narrow, {}   # each function's own locals
        try:
            out = self._block(fn.body, states, fn, depth)
        finally:
            self._stack.pop()
            self._unseen -= unseen
            self._narrow = narrow
        for s in out:
            s.returned = False
        return out

    # -- statements --------------------------------------------------------------

    def _block(self, stmts: tuple[Stmt, ...], states: list[_State], fn: Function,
               depth: int) -> list[_State]:
        pp: list[tuple[frozenset[Ctx] | None, bool]] = []
        merge = _merge_paths if self.memory else _merge
        for stmt in stmts:
            if isinstance(stmt, Preproc):
                states = self._preproc(stmt, states, pp)
                continue
            nxt: list[_State] = []
            for st in states:
                if st.returned:
                    nxt.append(st)
                    continue
                nxt.extend(self._stmt(stmt, st, fn, depth))
            states = merge(nxt)
        return states

    def _preproc(self, stmt: Preproc, states: list[_State],
                 stack: list[tuple[frozenset[Ctx] | None, bool]]) -> list[_State]:
        """#ifdef of a configuration macro restricts the contexts; any other
        #if makes what follows conditional, until its #endif."""
        text = stmt.text.lstrip("#").strip()
        word = text.split(None, 1)[0] if text else ""
        if word in ("if", "ifdef", "ifndef", "elif", "else", "endif"):
            for st in states:
                if word in ("if", "ifdef", "ifndef", "elif", "else"):
                    st.always = False
        return states

    def _stmt(self, stmt: Stmt, st: _State, fn: Function, depth: int) -> list[_State]:
        if isinstance(stmt, Block):
            return self._block(stmt.stmts, [st], fn, depth)
        self._end = getattr(stmt, "end", 0) or getattr(stmt, "cond_end", 0)
        lowered = self._guarded_ternary(stmt, st)
        if lowered is not None:
            return self._if(lowered, st, fn, depth)
        if isinstance(stmt, ExprStmt):
            self._eval(stmt.expr, st, fn, depth, stmt.line)
            name = call_name(stmt.expr)
            if name is not None and self._callee(name, fn) is None \
                    and not self._known_op(name) and not name.isupper():
                # A call made for its effects, whose body is not at hand: it
                # may write what the rules look for.
                self.unresolved.append(name)
            return [st]
        if isinstance(stmt, Decl):
            for d in stmt.names:
                self._locals.add(d.name)
                width = type_width(stmt.type)
                if width is not None and width < 64 and not d.pointer:
                    self._narrow[d.name] = (width, "%s %s" % (stmt.type, d.name))
                else:
                    self._narrow.pop(d.name, None)
                if d.init is None:
                    st.env.pop(d.name, None)
                    continue
                value = self._eval(d.init, st, fn, depth, stmt.line)
                width = type_width(stmt.type)
                if width is not None and width < 64 and not d.pointer:
                    self._narrow[d.name] = (width, "%s %s" % (stmt.type, d.name))
                    self._emit(Ev.DECL, st, fn, depth, stmt.line, value=value,
                               name="%s %s" % (stmt.type, d.name))
                    value = value & Bits.const((1 << width) - 1)
                st.env[d.name] = value
            return [st]
        if isinstance(stmt, If):
            return self._if(stmt, st, fn, depth)
        if isinstance(stmt, Loop) and stmt.kind == "scoped_guard":
            return self._scoped_guard(stmt, st, fn, depth)
        if isinstance(stmt, (Loop, Switch)):
            body = stmt.body
            if isinstance(stmt, Loop) and not isinstance(stmt.cond, Unknown):
                self._eval(stmt.cond, st, fn, depth, stmt.line)
            inner = st.copy()
            inner.always = False
            inner.cond = True
            after = self._stmt(body, inner, fn, depth)
            return [_join(st, a, st) for a in after if a.contexts == st.contexts] or [st]
        if isinstance(stmt, Return):
            if stmt.value is not None:
                value = self._eval(stmt.value, st, fn, depth, stmt.line)
                self._emit(Ev.RETURN, st, fn, depth, stmt.line, value=value)
                st.ret = _join_bits(st.ret, value)
            st.returned = True
            return [st]
        if isinstance(stmt, Asm):
            self._asm(stmt.text, st, fn, depth, stmt.line)
        return [st]  # Jump, Label, Preproc

    def _guarded_ternary(self, stmt: Stmt, st: _State) -> If | None:
        """`x = has_vhe() ? A : B;` (or a 64-bit local declared so) as the
        `if (has_vhe()) x = A; else x = B;` it means, so that the test of the
        configuration splits the state as an if does."""
        if isinstance(stmt, ExprStmt) and isinstance(stmt.expr, Assign) \
                and isinstance(stmt.expr.value, Ternary):
            target, op, tern = stmt.expr.target, stmt.expr.op, stmt.expr.value
        elif isinstance(stmt, Decl) and len(stmt.names) == 1 \
                and isinstance(stmt.names[0].init, Ternary) and not stmt.names[0].pointer \
                and (type_width(stmt.type) or 64) == 64:
            target, op, tern = Name(stmt.names[0].name), "=", stmt.names[0].init
            self._locals.add(stmt.names[0].name)
        else:
            return None
        split = self._guard(tern.cond, st.contexts)
        if split is None or not split[2]:
            return None
        end = getattr(stmt, "end", 0) or stmt.line

        def arm(value: Expr) -> ExprStmt:
            return ExprStmt(expr=Assign(op=op, target=target, value=value), line=stmt.line,
                            end=end)

        return If(cond=tern.cond, then=arm(tern.then), other=arm(tern.other), line=stmt.line,
                  cond_end=end)

    def _scoped_guard(self, stmt: Loop, st: _State, fn: Function, depth: int) -> list[_State]:
        """scoped_guard(lock_irqsave, ...) { body }: the body runs with
        interrupts (or preemption) off, and they come back after it."""
        kind = ""
        if isinstance(stmt.cond, Call) and stmt.cond.args:
            kind = expr_text(stmt.cond.args[0])
        irq = "irq" in kind
        preempt = "preempt" in kind or "irq" in kind or "spinlock" in kind
        saved = (st.irq_off, st.preempt_off)
        if irq:
            st.irq_off = True
            self._emit(Ev.IRQ_OFF, st, fn, depth, stmt.line, name=kind)
        if preempt:
            st.preempt_off = True
        out = self._stmt(stmt.body, st, fn, depth)
        for s in out:
            if irq:
                self._emit(Ev.IRQ_ON, s, fn, depth, stmt.line, name=kind)
            s.irq_off, s.preempt_off = saved
        return out

    def _cap_test(self, cond: Expr) -> tuple[str, bool] | None:
        """A test of a capability the kernel patches in at boot (`[!]
        cpus_have_final_cap(X)`) that no guard decides: its text and
        whether it is negated."""
        neg = False
        while isinstance(cond, Unary) and cond.op == "!":
            cond, neg = cond.operand, not neg
        name = call_name(cond) if isinstance(cond, Call) else None
        if name is None or not self.facts.op("patched", name):
            return None
        return expr_text(cond).replace(" ", ""), neg

    def _if(self, stmt: If, st: _State, fn: Function, depth: int) -> list[_State]:
        split = self._guard(stmt.cond, st.contexts)
        if split is None and self.memory:
            return self._data_if(stmt, st, fn, depth)
        if split is None:
            self._eval(stmt.cond, st, fn, depth, stmt.line)
            then_st, else_st = st.copy(), st.copy()
            then_st.always = else_st.always = False
            then_st.cond = else_st.cond = True
            outs_then = self._stmt(stmt.then, then_st, fn, depth)
            outs_else = self._stmt(stmt.other, else_st, fn, depth) if stmt.other else [else_st]
            joined: list[_State] = []
            for a in outs_then:
                b = next((x for x in outs_else if x.contexts == a.contexts), None)
                joined.append(_join(a, b, st) if b is not None else a)
            for b in outs_else:
                if not any(b.contexts == a.contexts for a in outs_then):
                    joined.append(b)
            return joined
        true_ctx, false_ctx, pure = split
        if not pure:
            self._eval(stmt.cond, st, fn, depth, stmt.line)  # its other operands' events
        names = self._guard_names(stmt.cond)
        for n in names:
            self._emit(Ev.GUARD, st, fn, depth, stmt.line, name=n.lstrip("!"))
        out: list[_State] = []
        for ctxs, branch, tag in ((true_ctx, stmt.then, ""), (false_ctx, stmt.other, "!")):
            if not ctxs:
                continue
            sub = st.copy(ctxs)
            sub.guards = st.guards + tuple(n[1:] if tag and n.startswith("!") else tag + n
                                           for n in names)
            if not pure:
                sub.always = False
                sub.cond = True
            out.extend(self._stmt(branch, sub, fn, depth) if branch is not None else [sub])
        return out

    def _data_if(self, stmt: If, st: _State, fn: Function, depth: int) -> list[_State]:
        """Memory mode: a data-dependent branch followed path by path. A
        condition this path's earlier tests decide takes one side only; the
        two sides are kept apart, each with what its condition says
        (bot.rules.assume), for a later test of the same value."""
        def value(e: Expr) -> Bits:
            # A capability the kernel patches in at boot is one value for
            # the whole run: each test of it takes the same side.
            cap = self._cap_test(e)
            if cap is not None and not cap[1]:
                return Bits.source("cap:" + cap[0])
            return self._eval(e, st, fn, depth, stmt.line)

        truth, yes, no = split(stmt.cond, value, st.assumed)
        out: list[_State] = []
        for holds, branch, assumed in ((True, stmt.then, yes), (False, stmt.other, no)):
            if truth is not None and truth != holds:
                continue
            sub = st.copy()
            if truth is None:
                sub.always = False
                sub.cond = True
                sub.assumed = assumed
                sub.pid = len(self._forks) + 1
                self._forks[sub.pid] = st.pid
            out.extend(self._stmt(branch, sub, fn, depth) if branch is not None else [sub])
        return out

    def _guard_names(self, cond: Expr) -> list[str]:
        """The kvm.toml guards a condition tests ("!" in front when negated)."""
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
                if self.facts.guard(node.func.id, arg) is not None:
                    out.append(("!" if neg else "") + node.func.id)
            elif isinstance(node, Name) and self.facts.guard(node.id) is not None:
                out.append(("!" if neg else "") + node.id)
        return out

    def _guard(self, cond: Expr, contexts: frozenset[Ctx]
               ) -> tuple[frozenset[Ctx], frozenset[Ctx], bool] | None:
        """(contexts where the condition can hold, where it can fail, whether
        it is a configuration test only) for a condition that tests the
        configuration; None for a data-dependent one."""
        if isinstance(cond, Unary) and cond.op == "!":
            inner = self._guard(cond.operand, contexts)
            return (inner[1], inner[0], inner[2]) if inner is not None else None
        if isinstance(cond, Call) and isinstance(cond.func, Name) and cond.func.id in (
                "likely", "unlikely") and cond.args:
            return self._guard(cond.args[0], contexts)
        if isinstance(cond, Binary) and cond.op in ("&&", "||"):
            left = self._guard(cond.left, contexts)
            right = self._guard(cond.right, contexts)
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
        guard = self.facts.guard(name, arg)
        if guard is None:
            return None
        can_true, can_false = guard.split(contexts)
        return can_true, can_false, not guard.maybe_in

    # -- expressions ---------------------------------------------------------------

    def _emit(self, kind: Ev, st: _State, fn: Function, depth: int, line: int,
              **kw: object) -> None:
        self.events.append(Event(kind=kind, line=line, function=fn.name, path=fn.path,
                                 contexts=st.contexts, always=st.always, depth=depth,
                                 cond=st.cond,
                                 irq_off=st.irq_off, preempt_off=st.preempt_off,
                                 seen=self._unseen == 0, guards=st.guards,
                                 end=max(line, self._end), pid=st.pid,
                                 **kw))  # type: ignore[arg-type]

    def _eval(self, expr: Expr, st: _State, fn: Function, depth: int, line: int) -> Bits:
        if isinstance(expr, Num):
            return Bits.const(expr.value)
        if isinstance(expr, Name):
            if expr.id in st.env:
                return st.env[expr.id]
            if expr.id in _C_CONSTANTS:
                return Bits.const(_C_CONSTANTS[expr.id])
            value = self.ev.value(expr.id)
            if value is not None:
                return Bits.const(value)
            expanded = self._expand(expr)
            if expanded is not None:
                return self._eval_expanded(expr.id, expanded, st, fn, depth, line)
            if expr.id.isupper() or expr.id in self._locals:
                return Bits.unknown()  # a macro the model does not know, or an unset local
            if fn.seen_from_start and expr.id not in (p.name for p in fn.params):
                # A global variable (the function's locals and parameters are
                # all in view): memory read where the code runs.
                self._emit(Ev.LOAD, st, fn, depth, line, name="load:" + expr.id)
            return Bits.source("load:" + expr.id)
        if isinstance(expr, Str | Unknown):
            return Bits.unknown()
        if isinstance(expr, Assign):
            return self._assign(expr, st, fn, depth, line)
        if isinstance(expr, Call):
            return self._call(expr, st, fn, depth, line)
        if isinstance(expr, Unary):
            if expr.op == "~":
                return ~self._eval(expr.operand, st, fn, depth, line)
            if expr.op == "*":
                return self._load(expr, st, fn, depth, line)
            if expr.op == "&":
                # Memory mode: a pointer names the object it points to, so
                # that loads through two locals holding it are one load.
                return Bits.source("addr:" + expr_text(expr.operand).replace(" ", "")) \
                    if self.memory else Bits.unknown()
            if expr.op.startswith("post") or expr.op in ("++", "--"):
                self._eval(expr.operand, st, fn, depth, line)
                return Bits.unknown()
            inner = self._eval(expr.operand, st, fn, depth, line)
            if expr.op == "-" and inner.value is not None:
                return Bits.const(-inner.value)
            return Bits.unknown()
        if isinstance(expr, Cast):
            inner = self._eval(expr.operand, st, fn, depth, line)
            width = type_width(expr.type)
            if width is not None and width < 64:
                self._emit(Ev.DECL, st, fn, depth, line, value=inner,
                           name="(%s) cast" % expr.type)
                return inner & Bits.const((1 << width) - 1)
            return inner
        if isinstance(expr, Member | Index):
            return self._load(expr, st, fn, depth, line)
        if isinstance(expr, Ternary):
            split = self._guard(expr.cond, st.contexts)
            if split is None:
                self._eval(expr.cond, st, fn, depth, line)
            return self._eval(expr.then, st, fn, depth, line).join(
                self._eval(expr.other, st, fn, depth, line))
        return self._binary(expr, st, fn, depth, line)

    def _binary(self, expr: Binary, st: _State, fn: Function, depth: int, line: int) -> Bits:
        const = self.ev.value(expr_text(expr)) if _constant_shape(expr) else None
        if const is not None:
            return Bits.const(const)
        left = self._eval(expr.left, st, fn, depth, line)
        right = self._eval(expr.right, st, fn, depth, line)
        op = expr.op
        if op == "|":
            return left | right
        if op == "&":
            return left & right
        if op == "^":
            return left ^ right
        if op in ("<<", ">>") and right.value is not None:
            return left.shl(right.value) if op == "<<" else left.shr(right.value)
        if left.value is not None and right.value is not None:
            value = self.ev.value("%d %s %d" % (left.value, op, right.value))
            if value is not None:
                return Bits.const(value)
        if op == ",":
            return right
        return Bits.unknown()

    def _storage(self, expr: Expr) -> tuple[str, str] | None:
        """(source name, storage name) of an expression naming a register
        value's storage (kvm.toml [[storage]])."""
        compact = expr_text(expr).replace(" ", "")
        st = self.facts.storage_of(compact)
        if st is None:
            return None
        return "%s:%s" % (st.kind, st.name), st.name

    def _expand(self, expr: Name | Call) -> Expr | None:
        """The expansion of a macro that is no constant (the patch's own
        `#define host_hcr() (this_cpu_ptr(&kvm_init_params)->hcr_el2)`),
        arguments put in for its parameters; None when `expr` is no such
        macro."""
        name = expr.id if isinstance(expr, Name) else call_name(expr)
        if name is None or name in self._expanding or name in self._locals:
            return None
        macro = self.ev.macro(name)
        if macro is None or macro.value is not None or not macro.expr:
            return None
        if isinstance(expr, Name) != (macro.params is None):
            return None
        body = macro.expr
        if isinstance(expr, Call) and macro.params:
            # An argument in parentheses, unless it is a plain name (a
            # field name cannot be: host_data_ptr(f) is &...->f).
            texts = {p: expr_text(a) if isinstance(a, Name) else "(%s)" % expr_text(a)
                     for p, a in zip(macro.params, expr.args, strict=False)}
            body = re.sub(r"\b(%s)\b" % "|".join(map(re.escape, texts)),
                          lambda m: texts[m.group(1)], body)
        parsed = expr_from_text(body)
        return None if isinstance(parsed, Unknown) else parsed

    def _eval_expanded(self, name: str, expanded: Expr, st: _State, fn: Function, depth: int,
                       line: int) -> Bits:
        self._expanding.add(name)
        try:
            return self._eval(expanded, st, fn, depth, line)
        finally:
            self._expanding.discard(name)

    def _load(self, expr: Expr, st: _State, fn: Function, depth: int, line: int) -> Bits:
        known = self._storage(expr)
        if known is not None:
            source, name = known
            if "@" + name in st.env:
                return st.env["@" + name]
            self._emit(Ev.LOAD, st, fn, depth, line, storage=name, name=source)
            return Bits.source(source)
        text = expr_text(expr).replace(" ", "")
        if self.memory:
            if _mem_key(text, st) in st.env:
                return st.env[_mem_key(text, st)]
            text = _through_address(text, st)
        self._emit(Ev.LOAD, st, fn, depth, line, name="load:" + text)
        return Bits.source("load:" + text)

    def _assign(self, expr: Assign, st: _State, fn: Function, depth: int, line: int) -> Bits:
        value = self._eval(expr.value, st, fn, depth, line)
        target = expr.target
        if isinstance(target, Name) and target.id not in st.env:
            target = self._expand(target) or target  # a macro naming storage
        op = expr.op
        known = self._storage(target) if not isinstance(target, Name) else None
        key: str | None = None
        if isinstance(target, Name):
            key = target.id
        elif known is not None:
            key = "@" + known[1]
        elif self.memory:
            key = _mem_key(expr_text(target).replace(" ", ""), st)
        if op != "=":
            old = st.env.get(key) if key is not None else None
            if old is None:
                old = self._eval(target, st, fn, depth, line)
            if op == "|=":
                value = old | value
            elif op == "&=":
                value = old & value
            elif op == "^=":
                value = old ^ value
            elif op in ("<<=", ">>=") and value.value is not None:
                value = old.shl(value.value) if op == "<<=" else old.shr(value.value)
            else:
                value = Bits.unknown()
        if isinstance(target, Name) and target.id in self._narrow:
            width, what = self._narrow[target.id]
            self._emit(Ev.DECL, st, fn, depth, line, value=value, name=what)
            value = value & Bits.const((1 << width) - 1)
        if key is not None:
            st.env[key] = value
        if known is not None:
            self._emit(Ev.STORE, st, fn, depth, line, storage=known[1], value=value, name=op)
        elif not isinstance(target, Name):
            self._emit(Ev.STORE, st, fn, depth, line,
                       storage=expr_text(target).replace(" ", ""), value=value, name=op)
        return value

    def _call(self, expr: Call, st: _State, fn: Function, depth: int, line: int) -> Bits:
        name = call_name(expr)
        facts = self.facts
        if name is None:
            if isinstance(expr.func, Call) and call_name(expr.func) == "guard" \
                    and expr.func.args:
                # guard(spinlock_irqsave)(&lock): to the end of the scope.
                lock = expr_text(expr.func.args[0])
                if "irq" in lock:
                    st.irq_off = True
                    self._emit(Ev.IRQ_OFF, st, fn, depth, line, name=lock)
                if "irq" in lock or "preempt" in lock or "spinlock" in lock:
                    st.preempt_off = True
            for a in expr.args:
                self._eval(a, st, fn, depth, line)
            return Bits.unknown()
        args = expr.args
        if name == UNSEEN:
            self._emit(Ev.UNSEEN, st, fn, depth, line, name=name)
            return Bits.unknown()
        kind = facts.op_kind(name)
        if kind is None:
            return self._plain_call(expr, name, st, fn, depth, line)
        if kind == "read" and args:
            reg = register_name(expr_text(args[0]), name)
            written = st.regs.get(reg)
            got = written.value if written is not None and written.always \
                else Bits.source("live:" + reg)
            # The event's value: what the read returns on this path.
            self._emit(Ev.READ, st, fn, depth, line, register=reg, value=got, name=name)
            return got
        if kind == "write" and len(args) >= 2:
            value = self._eval(args[0], st, fn, depth, line)
            reg = register_name(expr_text(args[-1]), name)
            self._write(reg, value, st, fn, depth, line, accessor=name)
            return Bits.unknown()
        if kind == "clear_set" and len(args) >= 3:
            reg = register_name(expr_text(args[0]), name)
            clear = self._eval(args[1], st, fn, depth, line)
            setv = self._eval(args[2], st, fn, depth, line)
            self._emit(Ev.READ, st, fn, depth, line, register=reg)
            before = st.regs[reg].value if reg in st.regs and st.regs[reg].always \
                else Bits.source("live:" + reg)
            self._write(reg, (before & ~clear) | setv, st, fn, depth, line)
            return Bits.unknown()
        if kind == "percpu" and self.memory and not self._storage(expr):
            # Memory mode: an accessor kvm.toml spells out names the object
            # as its expansion does (host_data_ptr(f) is &...->f).
            expanded = self._expand(expr)
            if expanded is not None:
                return self._eval_expanded(name, expanded, st, fn, depth, line)
        if kind == "percpu" and args and not self._storage(expr):
            # A per-CPU variable read: a load, named so that a write of the
            # same variable (percpu_write) is its store.
            target = expr_text(args[0]).replace(" ", "").lstrip("&")
            name = "load:percpu-var:" + target
            self._emit(Ev.LOAD, st, fn, depth, line, storage="percpu-var:" + target, name=name)
            return Bits.source(name)
        if kind == "percpu_write" and len(args) >= 2:
            target = expr_text(args[0]).replace(" ", "").lstrip("&")
            value = self._eval(args[1], st, fn, depth, line)
            # The store of a per-CPU variable its reads name as storage
            # (__this_cpu_write(mdcr_el2, ...) for __this_cpu_read(mdcr_el2)).
            known = self.facts.storage_of("__this_cpu_read(%s)" % target)
            storage = known.name if known is not None else "percpu-var:" + target
            if known is not None:
                st.env["@" + storage] = value
            self._emit(Ev.STORE, st, fn, depth, line, storage=storage, value=value, name="=")
            return Bits.unknown()
        if kind == "consume":
            self._consume(name, args, st, fn, depth, line)
            return self._plain_call(expr, name, st, fn, depth, line)
        if kind == "loads":
            for a in args:
                self._eval(a, st, fn, depth, line)
            self._emit(Ev.LOAD, st, fn, depth, line, name="call:" + name)
            return Bits.source("call:" + name)
        ev = _OP_EVENTS.get(kind)
        if ev is not None:
            for a in args:
                self._eval(a, st, fn, depth, line)
            self._emit(ev, st, fn, depth, line, name=name)
            if ev in (Ev.IRQ_OFF, Ev.IRQ_ON):
                st.irq_off = ev is Ev.IRQ_OFF
            elif ev in (Ev.PREEMPT_OFF, Ev.PREEMPT_ON):
                st.preempt_off = ev is Ev.PREEMPT_OFF
            return Bits.unknown()
        return self._plain_call(expr, name, st, fn, depth, line)

    def _plain_call(self, expr: Call, name: str, st: _State, fn: Function, depth: int,
                    line: int) -> Bits:
        """A call that is no register access or event of [ops]."""
        args = expr.args
        known = self._storage(expr)
        if known is not None:
            return self._load(expr, st, fn, depth, line)
        const = self.ev.value(expr_text(expr))
        if const is not None:
            return Bits.const(const)
        if name in ("READ_ONCE", "__READ_ONCE", "smp_load_acquire") and len(args) == 1:
            return self._eval(args[0], st, fn, depth, line)   # a plain read of its argument
        if name == "lower_32_bits" and len(args) == 1:
            inner = self._eval(args[0], st, fn, depth, line)
            self._emit(Ev.DECL, st, fn, depth, line, value=inner, name="lower_32_bits()")
            return inner & Bits.const(0xFFFFFFFF)
        if name in ("FIELD_GET", "FIELD_PREP") and len(args) == 2:
            field = self._field_op(name, args, st, fn, depth, line)
            if field is not None:
                return field
        if name == "asm" and args and isinstance(args[0], Call) \
                and call_name(args[0]) == "ALTERNATIVE":
            args, name = args[0].args, "ALTERNATIVE"
        if name == "ALTERNATIVE" and len(args) >= 3:
            self._alternative(args, st, fn, depth, line)
            return Bits.unknown()
        if name in ("asm", "ALTERNATIVE"):
            self._asm(" ".join(expr_text(a) for a in args), st, fn, depth, line)
            return Bits.unknown()
        expanded = self._expand(expr)
        if expanded is not None:
            return self._eval_expanded(name, expanded, st, fn, depth, line)
        values = [self._eval(a, st, fn, depth, line) for a in args]
        loader = self.facts.loaders.get(name)
        if loader is not None:
            # What is loaded, named by what the argument holds.
            what = self._identity(values[loader.arg]) if loader.arg is not None and \
                loader.arg < len(values) else ""
            self._emit(Ev.CALL, st, fn, depth, line, name=name, args=tuple(values))
            for reg in loader.registers:
                self._write(reg, Bits.source("call:%s(%s)" % (name, what)), st, fn, depth, line)
            return Bits.unknown()
        callee = self._callee(name, fn)
        if callee is not None and depth < _MAX_DEPTH and name not in self._stack:
            return self._inline(callee, values, st, fn, depth, line)
        self._emit(Ev.CALL, st, fn, depth, line, name=name, args=tuple(values))
        return Bits.source("call:" + name)

    def _consume(self, name: str, args: tuple[Expr, ...] | list[Expr], st: _State,
                 fn: Function, depth: int, line: int) -> None:
        """A call that reads the whole object an argument points to ([ops]
        consume: a cache flush for a reader with the MMU off, a hypercall
        handed its address): a use of every stored register value in it,
        with the value it holds at this point (None: what it held when the
        function was called)."""
        address_of = self.facts.ops.get("address_of", frozenset())
        for arg in args:
            while isinstance(arg, Call) and call_name(arg) in address_of and arg.args:
                arg = arg.args[0]
            base = expr_text(arg).replace(" ", "").lstrip("&")
            if not re.fullmatch(r"[\w.>-]+", base):
                continue
            for fld in _STORED_FIELDS:
                known = self.facts.storage_of("%s->%s" % (base, fld))
                if known is None:
                    continue
                self._emit(Ev.LOAD, st, fn, depth, line, storage=known.name,
                           name="consume:" + name, value=st.env.get("@" + known.name))

    def _field_op(self, name: str, args: tuple[Expr, ...] | list[Expr], st: _State,
                  fn: Function, depth: int, line: int) -> Bits | None:
        """FIELD_GET(mask, x) and FIELD_PREP(mask, x) with a constant mask, on
        any value: the field moved down to bit 0, or up into place."""
        mask = self._eval(args[0], st, fn, depth, line).value
        if not mask:
            return None
        shift = (mask & -mask).bit_length() - 1
        value = self._eval(args[1], st, fn, depth, line)
        if name == "FIELD_GET":
            return (value & Bits.const(mask)).shr(shift)
        return value.shl(shift) & Bits.const(mask)

    def _identity(self, v: Bits) -> str:
        """A value as a name for what it points to, as a rename cannot change
        it: a parameter by its position, memory as memory, a call's result
        by the call, a constant; "?" otherwise."""
        if v.value is not None:
            return "%#x" % v.value
        if len(v.srcs) != 1 or v.known:
            return "?"
        name = v.srcs[0][0]
        kind, _, rest = name.partition(":")
        if kind == "param":
            return "param#%d" % self._params[rest] if rest in self._params else "?"
        if is_memory(source_kind(name)):
            return "memory"
        return name

    def _known_op(self, name: str) -> bool:
        return self.facts.op_kind(name) is not None

    def _callee(self, name: str, caller: Function) -> Function | None:
        options = self.functions.get(name, [])
        same = [f for f in options if f.path == caller.path]
        if same:
            return same[0]
        # Another file's function is callable only if it is not static to
        # that file (or lives in a header the caller includes).
        visible = [f for f in options if f.path.endswith(".h") or not f.static]
        return visible[0] if visible else None

    def _inline(self, callee: Function, values: list[Bits], st: _State, fn: Function,
                depth: int, line: int) -> Bits:
        self._emit(Ev.CALL, st, fn, depth, line, name=callee.name)
        # The callee runs only where its own file is built: the caller's
        # contexts narrowed to those.
        where = st.contexts & self.facts.contexts_of(callee.path)
        if not where:
            return Bits.source("call:" + callee.name)
        inner = _State(contexts=where, regs=dict(st.regs), irq_off=st.irq_off,
                       preempt_off=st.preempt_off, always=st.always, guards=st.guards,
                       cond=st.cond)
        for k, v in st.env.items():
            if k.startswith("@"):  # memory: the callee sees and changes it
                inner.env[k] = v
        for i, p in enumerate(callee.params):
            inner.env[p.name] = values[i] if i < len(values) else Bits.source("param:" + p.name)
        outs = self._call_body(callee, [inner], depth + 1)
        mine = [replace(o, contexts=st.contexts) for o in outs]
        ret: Bits | None = None
        for o in mine:
            ret = _join_bits(ret, o.ret)
        merged = mine[0]
        for o in mine[1:]:
            merged = _join(merged, replace(o, contexts=merged.contexts))
        st.regs = merged.regs
        st.irq_off, st.preempt_off = merged.irq_off, merged.preempt_off
        for k in [k for k in st.env if k.startswith("@")]:
            del st.env[k]
        st.env.update((k, v) for k, v in merged.env.items() if k.startswith("@"))
        if not callee.complete:
            self.unresolved.append(callee.name)
        return ret if ret is not None else Bits.unknown()

    def _write(self, reg: str, value: Bits, st: _State, fn: Function, depth: int,
               line: int, accessor: str = "") -> None:
        self._emit(Ev.WRITE, st, fn, depth, line, register=reg, value=value, name=accessor)
        st.regs[reg] = Written(value=value, always=st.always, line=line, function=fn.name)

    def _alternative(self, args: tuple[Expr, ...] | list[Expr], st: _State, fn: Function,
                     depth: int, line: int) -> None:
        """ALTERNATIVE(old, new, cap): `old` runs without the capability,
        `new` with it. An isb in only one of them is an ISB_ERRATA named
        "isb:cap" or "isb:!cap", so that two complementary ones on a path
        (as __load_stage2() and __pkvm_prot_finalize() pair them) count as
        one unconditional isb."""
        old, new, cap = (expr_text(a) for a in args[:3])
        in_old, in_new = bool(_ISB.search(old)), bool(_ISB.search(new))
        if in_old and in_new:
            self._emit(Ev.ISB, st, fn, depth, line, name="isb")
        elif in_old or in_new:
            self._emit(Ev.ISB_ERRATA, st, fn, depth, line,
                       name="isb:%s%s" % ("" if in_new else "!", cap.strip()))
        self._asm(_ISB.sub(" ", old + " " + new), st, fn, depth, line, errata=True)

    def _asm(self, text: str, st: _State, fn: Function, depth: int, line: int,
             errata: bool = False) -> None:
        """Inline assembly: msr/mrs, isb (an errata ALTERNATIVE's isb is not
        unconditional), eret, TLBI, AT, dsb."""
        errata = errata or "ALTERNATIVE" in text
        for m in _ASM_WORD.finditer(text):
            word = m.group(1).lower()
            if word == "isb":
                self._emit(Ev.ISB_ERRATA if errata else Ev.ISB, st, fn, depth, line, name="isb")
            elif word == "eret":
                self._emit(Ev.ERET, st, fn, depth, line)
            elif word == "tlbi":
                self._emit(Ev.TLBI, st, fn, depth, line, name="tlbi")
            elif word == "at":
                self._emit(Ev.AT, st, fn, depth, line, name="at")
            elif word in ("dsb", "psb", "tsb"):
                self._emit(Ev.DSB, st, fn, depth, line, name=word)
            elif word == "msr":
                reg = register_name(m.group(2))
                if reg:
                    self._write(reg, Bits.unknown(), st, fn, depth, line)
            elif word == "mrs":
                self._emit(Ev.READ, st, fn, depth, line, register=register_name(m.group(2)))


_ISB = re.compile(r"\bisb\b", re.I)
# The language's own constants (a pointer set to NULL tests false later).
_C_CONSTANTS = {"NULL": 0, "false": 0, "true": 1}

_OP_EVENTS = {"isb": Ev.ISB, "dsb": Ev.DSB, "tlbi": Ev.TLBI, "at": Ev.AT,
              "irq_off": Ev.IRQ_OFF, "irq_on": Ev.IRQ_ON, "preempt_off": Ev.PREEMPT_OFF,
              "preempt_on": Ev.PREEMPT_ON, "warn": Ev.WARN}


def _constant_shape(expr: Expr) -> bool:
    """Only numbers and upper-case names (macros): worth one evaluator call."""
    if isinstance(expr, Num):
        return True
    if isinstance(expr, Name):
        return expr.id.isupper() or expr.id.startswith("_")
    if isinstance(expr, Binary):
        return _constant_shape(expr.left) and _constant_shape(expr.right)
    if isinstance(expr, Unary):
        return expr.op in ("~", "-") and _constant_shape(expr.operand)
    if isinstance(expr, Cast):
        return _constant_shape(expr.operand)
    if isinstance(expr, Call) and isinstance(expr.func, Name):
        return expr.func.id.isupper() and all(_constant_shape(a) for a in expr.args)
    return False


def _mem_key(text: str, st: _State) -> str:
    """The env key of memory named by `text` (`cxt->tcr`): through a pointer
    a caller handed in, named by what was handed in, so that two functions
    calling their parameter differently reach the same object."""
    m = re.match(r"(\w+)(->|\.)(.+)$", text)
    if m is not None:
        v = st.env.get(m.group(1))
        if v is not None and not v.known and len(v.srcs) == 1 \
                and v.srcs[0][0].startswith("param:"):
            return "@mem:%s%s%s" % (v.srcs[0][0], m.group(2), m.group(3))
    return "@mem:" + text


def _through_address(text: str, st: _State) -> str:
    """`p->f` as the object's field when the local `p` holds an address
    (`host_ctxt = &...->host_ctxt`): the same load whatever the local is
    called."""
    m = re.match(r"(\w+)->(.+)$", text)
    if m is not None:
        v = st.env.get(m.group(1))
        if v is not None and len(v.srcs) == 1 and not v.known \
                and v.srcs[0][0].startswith("addr:"):
            return "%s.%s" % (v.srcs[0][0][5:], m.group(2))
    return text


def _merge_paths(states: list[_State]) -> list[_State]:
    """Memory mode: paths kept apart, but two that left everything the same
    (what they assumed too) are one; past _MAX_PATHS of one set of
    contexts, joined as _merge does."""
    if len(states) <= 1:
        return states
    out: list[_State] = []
    for s in states:
        twin = next((o for o in out if o.same_path_state(s)), None)
        if twin is None:
            out.append(s)
        else:
            twin.always = twin.always or s.always
    groups: dict[frozenset[Ctx], int] = {}
    for s in out:
        groups[s.contexts] = groups.get(s.contexts, 0) + 1
    if max(groups.values()) > _MAX_PATHS:
        return _merge(out)
    return out


def _merge(states: list[_State]) -> list[_State]:
    """Keep the number of states bounded: join states of equal contexts."""
    if len(states) <= 1:
        return states
    by_ctx: dict[frozenset[Ctx], _State] = {}
    order: list[frozenset[Ctx]] = []
    for s in states:
        if s.contexts in by_ctx:
            by_ctx[s.contexts] = _join(by_ctx[s.contexts], s)
        else:
            by_ctx[s.contexts] = s
            order.append(s.contexts)
    out = [by_ctx[c] for c in order]
    if len(out) > _MAX_STATES:
        merged = out[0]
        for s in out[1:]:
            merged = _join(replace(merged, contexts=merged.contexts | s.contexts),
                           replace(s, contexts=merged.contexts | s.contexts))
        out = [merged]
    return out


__all__ = ["MASK64", "WATCHED", "Ev", "Event", "Interpreter", "Outcome", "Trace", "Written",
           "register_name", "type_width"]
