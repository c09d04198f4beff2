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

from collections.abc import Mapping

from bot.regmodel.facts import Ctx
from bot.rules.assume import split
from bot.rules.bits import Bits
from bot.rules.calls import Calls
from bot.rules.cexpr import Assign, Call, Expr, Name, Ternary, Unknown, call_name, expr_text
from bot.rules.cstmt import (
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
from bot.rules.guards import cap_test, guard_names, guard_split
from bot.rules.trace import (
    Ev,
    Outcome,
    PathState,
    Trace,
    join_bits,
    join_states,
    merge_paths,
    merge_states,
    type_width,
)


class Interpreter(Calls):
    """Runs functions against one set of facts, one evaluator and the
    functions at hand (by name) for following calls."""

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
        start = PathState(contexts=ctxs, irq_off=irq_off)
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
        start = PathState(contexts=contexts)
        self._params = {p.name: i for i, p in enumerate(first.params)}
        for p in first.params:
            start.env[p.name] = Bits.source("param:" + p.name)
        states = self._call_body(first, [start], depth=1)
        for st in states:
            for p in second.params:
                st.env[p.name] = Bits.source("param:" + handed.get(p.name, p.name))
        states = self._call_body(second, states, depth=1)
        return self._trace(both, states)

    def _trace(self, fn: Function, states: list[PathState]) -> Trace:
        outcomes = tuple(Outcome(contexts=s.contexts, regs=dict(s.regs), ret=s.ret,
                                 irq_off=s.irq_off, preempt_off=s.preempt_off,
                                 stored={k[1:]: v for k, v in s.env.items()
                                         if k.startswith("@")}, assumed=s.assumed,
                                 pid=s.pid)
                         for s in states)
        return Trace(function=fn, events=tuple(self.events), outcomes=outcomes,
                     unresolved=tuple(dict.fromkeys(self.unresolved)),
                     complete=fn.complete and not self.unresolved, forks=dict(self._forks))

    def _call_body(self, fn: Function, states: list[PathState], depth: int) -> list[PathState]:
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

    def _block(self, stmts: tuple[Stmt, ...], states: list[PathState], fn: Function,
               depth: int) -> list[PathState]:
        pp: list[tuple[frozenset[Ctx] | None, bool]] = []
        merge = merge_paths if self.memory else merge_states
        for stmt in stmts:
            if isinstance(stmt, Preproc):
                states = self._preproc(stmt, states, pp)
                continue
            nxt: list[PathState] = []
            for st in states:
                if st.returned:
                    nxt.append(st)
                    continue
                nxt.extend(self._stmt(stmt, st, fn, depth))
            states = merge(nxt)
        return states

    def _preproc(self, stmt: Preproc, states: list[PathState],
                 stack: list[tuple[frozenset[Ctx] | None, bool]]) -> list[PathState]:
        """#ifdef of a configuration macro restricts the contexts; any other
        #if makes what follows conditional, until its #endif."""
        text = stmt.text.lstrip("#").strip()
        word = text.split(None, 1)[0] if text else ""
        if word in ("if", "ifdef", "ifndef", "elif", "else", "endif"):
            for st in states:
                if word in ("if", "ifdef", "ifndef", "elif", "else"):
                    st.always = False
        return states

    def _stmt(self, stmt: Stmt, st: PathState, fn: Function, depth: int) -> list[PathState]:
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
            return [join_states(st, a, st) for a in after if a.contexts == st.contexts] or [st]
        if isinstance(stmt, Return):
            if stmt.value is not None:
                value = self._eval(stmt.value, st, fn, depth, stmt.line)
                self._emit(Ev.RETURN, st, fn, depth, stmt.line, value=value)
                st.ret = join_bits(st.ret, value)
            st.returned = True
            return [st]
        if isinstance(stmt, Asm):
            self._asm(stmt.text, st, fn, depth, stmt.line)
        return [st]  # Jump, Label, Preproc

    def _guarded_ternary(self, stmt: Stmt, st: PathState) -> If | None:
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
        split = guard_split(self.facts, tern.cond, st.contexts)
        if split is None or not split[2]:
            return None
        end = getattr(stmt, "end", 0) or stmt.line

        def arm(value: Expr) -> ExprStmt:
            return ExprStmt(expr=Assign(op=op, target=target, value=value), line=stmt.line,
                            end=end)

        return If(cond=tern.cond, then=arm(tern.then), other=arm(tern.other), line=stmt.line,
                  cond_end=end)

    def _scoped_guard(self, stmt: Loop, st: PathState, fn: Function, depth: int) -> list[PathState]:
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

    def _if(self, stmt: If, st: PathState, fn: Function, depth: int) -> list[PathState]:
        split = guard_split(self.facts, stmt.cond, st.contexts)
        if split is None and self.memory:
            return self._data_if(stmt, st, fn, depth)
        if split is None:
            self._eval(stmt.cond, st, fn, depth, stmt.line)
            then_st, else_st = st.copy(), st.copy()
            then_st.always = else_st.always = False
            then_st.cond = else_st.cond = True
            outs_then = self._stmt(stmt.then, then_st, fn, depth)
            outs_else = self._stmt(stmt.other, else_st, fn, depth) if stmt.other else [else_st]
            joined: list[PathState] = []
            for a in outs_then:
                b = next((x for x in outs_else if x.contexts == a.contexts), None)
                joined.append(join_states(a, b, st) if b is not None else a)
            for b in outs_else:
                if not any(b.contexts == a.contexts for a in outs_then):
                    joined.append(b)
            return joined
        true_ctx, false_ctx, pure = split
        if not pure:
            self._eval(stmt.cond, st, fn, depth, stmt.line)  # its other operands' events
        names = guard_names(self.facts, stmt.cond)
        for n in names:
            self._emit(Ev.GUARD, st, fn, depth, stmt.line, name=n.lstrip("!"))
        def branch_of(ctxs: frozenset[Ctx], branch: Stmt | None, tag: str,
                      decided: bool) -> list[PathState]:
            sub = st.copy(ctxs)
            sub.guards = st.guards + tuple(n[1:] if tag and n.startswith("!") else tag + n
                                           for n in names)
            if not decided:
                sub.always = False
                sub.cond = True
            return self._stmt(branch, sub, fn, depth) if branch is not None else [sub]

        # Contexts only one side can take (a capability only nVHE CPUs have
        # is false on VHE) take it as surely as they run the test.
        out = branch_of(true_ctx - false_ctx, stmt.then, "", True) if true_ctx - false_ctx \
            else []
        if false_ctx - true_ctx:
            out.extend(branch_of(false_ctx - true_ctx, stmt.other, "!", True))
        both = true_ctx & false_ctx
        if not both:
            return out
        # Those that can take either side take each on some paths, and what
        # follows runs on every path again, as after a data-dependent test.
        outs_then = branch_of(both, stmt.then, "", False)
        outs_else = branch_of(both, stmt.other, "!", False)
        if self.memory:
            return out + outs_then + outs_else
        pre = st.copy(both)
        for x in outs_then:
            y = next((z for z in outs_else if z.contexts == x.contexts), None)
            out.append(join_states(x, y, pre) if y is not None else x)
        out.extend(y for y in outs_else if not any(y.contexts == x.contexts for x in outs_then))
        return out

    def _data_if(self, stmt: If, st: PathState, fn: Function, depth: int) -> list[PathState]:
        """Memory mode: a data-dependent branch followed path by path. A
        condition this path's earlier tests decide takes one side only; the
        two sides are kept apart, each with what its condition says
        (bot.rules.assume), for a later test of the same value."""
        def value(e: Expr) -> Bits:
            # A capability the kernel patches in at boot is one value for
            # the whole run: each test of it takes the same side.
            cap = cap_test(self.facts, e)
            if cap is not None and not cap[1]:
                return Bits.source("cap:" + cap[0])
            return self._eval(e, st, fn, depth, stmt.line)

        truth, yes, no = split(stmt.cond, value, st.assumed)
        out: list[PathState] = []
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

