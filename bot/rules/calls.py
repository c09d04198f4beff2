"""Calls on a traced path: register accessors, [ops] events, functions followed.

What a call does comes from kvm.toml: an [ops] kind (a register read or
write, `sysreg_clear_set()`, per-CPU reads and writes, isb/dsb/TLBI/AT,
interrupt masking, a consumer of a whole object), a [[loaders]] entry, a
macro to expand, or a function whose text is at hand, followed with its
parameters bound to the arguments' values. Inline assembly and errata
ALTERNATIVEs give their barriers and system-register accesses.
"""

from __future__ import annotations

import abc
import re
from dataclasses import replace

from bot.rules.bits import Bits, is_memory, source_kind
from bot.rules.cexpr import Call, Expr, call_name, expr_text
from bot.rules.cstmt import UNSEEN, Function
from bot.rules.trace import Ev, PathState, join_bits, join_states, register_name
from bot.rules.values import Values

_MAX_DEPTH = 5
# The fields of an object that may hold a register value, for a whole
# object handed to a consumer ([ops] consume).
_STORED_FIELDS = ("hcr_el2", "mdcr_el2")
_ASM_WORD = re.compile(r"\b(msr|mrs|isb|eret|tlbi|dsb|at|psb|tsb)\b\s*([\w.]*)", re.I)
_ISB = re.compile(r"\bisb\b", re.I)
_OP_EVENTS = {"isb": Ev.ISB, "dsb": Ev.DSB, "tlbi": Ev.TLBI, "at": Ev.AT,
              "irq_off": Ev.IRQ_OFF, "irq_on": Ev.IRQ_ON, "preempt_off": Ev.PREEMPT_OFF,
              "preempt_on": Ev.PREEMPT_ON, "warn": Ev.WARN}


class Calls(Values):
    """Calls and what they do to the path's state; statements are the
    subclass's (bot.rules.interp)."""

    @abc.abstractmethod
    def _call_body(self, fn: Function, states: list[PathState], depth: int) -> list[PathState]:
        """Run `fn`'s body from `states` (one call deeper)."""

    def _call(self, expr: Call, st: PathState, fn: Function, depth: int, line: int) -> Bits:
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

    def _plain_call(self, expr: Call, name: str, st: PathState, fn: Function, depth: int,
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

    def _consume(self, name: str, args: tuple[Expr, ...] | list[Expr], st: PathState,
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

    def _field_op(self, name: str, args: tuple[Expr, ...] | list[Expr], st: PathState,
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

    def _inline(self, callee: Function, values: list[Bits], st: PathState, fn: Function,
                depth: int, line: int) -> Bits:
        self._emit(Ev.CALL, st, fn, depth, line, name=callee.name)
        # The callee runs only where its own file is built: the caller's
        # contexts narrowed to those.
        where = st.contexts & self.facts.contexts_of(callee.path)
        if not where:
            return Bits.source("call:" + callee.name)
        inner = PathState(contexts=where, regs=dict(st.regs), irq_off=st.irq_off,
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
            ret = join_bits(ret, o.ret)
        merged = mine[0]
        for o in mine[1:]:
            merged = join_states(merged, replace(o, contexts=merged.contexts))
        st.regs = merged.regs
        st.irq_off, st.preempt_off = merged.irq_off, merged.preempt_off
        for k in [k for k in st.env if k.startswith("@")]:
            del st.env[k]
        st.env.update((k, v) for k, v in merged.env.items() if k.startswith("@"))
        if not callee.complete:
            self.unresolved.append(callee.name)
        return ret if ret is not None else Bits.unknown()

    def _alternative(self, args: tuple[Expr, ...] | list[Expr], st: PathState, fn: Function,
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

    def _asm(self, text: str, st: PathState, fn: Function, depth: int, line: int,
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
