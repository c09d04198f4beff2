"""Rule family 6, barrier, the other way round: an isb that nothing needs.

A write of HCR_EL2 or MDCR_EL2 that changes only fields seen by code at
EL1/EL0 (kvm.toml [[sync_scope]]: traps of what EL1/EL0 execute, EL1's
execution state) is synchronised by the exception return that takes the
CPU there, itself a context synchronisation event; nothing EL2 executes
in between observes those fields, unless it translates or invalidates for
the EL1&0 regime (AT, TLBI). An isb the patch adds right after such a
write asks a question: what needs it?

Assembly is read line by line along its paths: backwards from the isb to
the previous context synchronisation (isb, eret, the function's start),
every write on the way must be such a write, its value built from
constants the model evaluates (`mov_q x1, HCR_HOST_NVHE_PROTECTED_FLAGS`)
and compared with the host values of [[values]] for the file's
configurations (what the register holds outside a guest); forwards, along
the fall-through and forward local branches, to the next isb or eret,
nothing may translate, invalidate or call out. Always a question: the bot
decides neither what the callers left pending nor what comes after the
lines it is shown. Pure.
"""

from __future__ import annotations

import re

from bot.regmodel import RegisterModel
from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView
from bot.rules.core import Severity
from bot.rules.trace import register_name

_Seq = list[tuple[int, str]]

_SYNC = re.compile(r"^\s*(?:\w+:\s*)?(isb|eret|eretaa|eretab)\b", re.I)
_ISB = re.compile(r"^\s*(?:\w+:\s*)?isb\b", re.I)
_OBSERVE = re.compile(r"^\s*(?:\w+:\s*)?(tlbi|at)\s", re.I)
_CALL = re.compile(r"^\s*(?:\w+:\s*)?(bl|blr|br|b|ret)\b(?!\.)\s*(\w*)", re.I)
_COND = re.compile(r"^\s*(?:\w+:\s*)?(?:b\.\w+|cbn?z\s+\w+\s*,|tbn?z\s+\w+\s*,\s*#?\w+\s*,)"
                   r"\s*(\d+)f\b", re.I)
_LABEL = re.compile(r"^\s*(\w+):")
_START = re.compile(r"^\s*(SYM_(?:CODE|FUNC|INNER_LABEL)\w*_START\w*|SYM_TYPED_FUNC_START"
                    r"|ENTRY)\s*\(", re.I)
_END = re.compile(r"^\s*(SYM_(?:CODE|FUNC)_END\w*|ENDPROC|\.endm)\b", re.I)
_MSR = re.compile(r"^\s*(?:\w+:\s*)?msr(?:_s)?\s+(\w+)\s*,\s*(x\d+|xzr)\b", re.I)
_SET = re.compile(r"^\s*(?:\w+:\s*)?(mov_q|mov|ldr|orr|bic|and)\s+(x\d+)\s*,\s*"
                  r"(?:(x\d+)\s*,\s*)?(.+?)\s*$", re.I)
_CB_END = re.compile(r"^\s*alternative_cb_end\b", re.I)
_ELSE = re.compile(r"^\s*alternative_else\b(?!_nop)", re.I)
_ENDIF = re.compile(r"^\s*alternative_endif\b", re.I)
_QUIET_WORD = re.compile(r"^\s*(?:[.#]|alternative_|/\*|\*|$)")


def _code(text: str) -> str:
    return re.sub(r"//.*$|/\*.*?\*/", "", text).rstrip()


def _operand(seq: _Seq, at: int, reg: str) -> str | None:
    """The constant expression `reg` holds at line `at`, built by mov_q/mov/
    ldr =/orr #/bic # back to the move that loaded it; None when any of it
    is not a constant (a load from memory, another register)."""
    parts: list[str] = []
    for i in range(at - 1, -1, -1):
        text = _code(seq[i][1])
        if _LABEL.match(text) or _START.match(text) or _CALL.match(text):
            return None
        m = _SET.match(text)
        if m is None or m.group(2).lower() != reg:
            continue
        op, src, expr = m.group(1).lower(), (m.group(3) or "").lower(), m.group(4).strip()
        if expr.startswith("[") or any(_CB_END.match(t) for _, t in seq[i + 1:at]):
            return None   # a load, or an immediate a callback patches at boot
        expr = expr.lstrip("=#")
        if op in ("orr", "bic", "and"):
            if src != reg:
                return None
            parts.append({"orr": "| (%s)", "bic": "& ~(%s)", "and": "& (%s)"}[op] % expr)
            continue
        return " ".join(["(%s)" % expr, *reversed(parts)])
    return None


def _pending(seq: _Seq, k: int) -> list[tuple[int, str, str]] | None:
    """The writes between the previous synchronisation (or the start of the
    function) and the isb at `k`: (index, register, source register); None
    when something else may be pending or the lines do not show it."""
    out: list[tuple[int, str, str]] = []
    for i in range(k - 1, -1, -1):
        text = _code(seq[i][1])
        if _SYNC.match(text):
            return out
        if _START.match(text):
            return out
        if _LABEL.match(text) or _CALL.match(text):
            return None    # another path joins here, or a callee left writes pending
        m = _MSR.match(text)
        if m is not None:
            out.append((i, register_name(m.group(1)), m.group(2).lower()))
        elif re.match(r"^\s*(?:\w+:\s*)?(msr|tlbi|at)\b", text, re.I):
            return None
    return None   # the lines before are not shown


def _follows(seq: _Seq, k: int) -> str | None:
    """What decides the isb after `k`: "sync" when every path reaches the
    next isb/eret with nothing that uses the EL1&0 regime, "unseen" when
    the lines end first, None when an AT, TLBI or a call comes first."""
    todo, seen, end = [k + 1], set(), "sync"
    while todo:
        i = todo.pop()
        while i < len(seq) and i not in seen:
            seen.add(i)
            text = _code(seq[i][1])
            if _SYNC.match(text):
                break
            if _OBSERVE.match(text) or _CALL.match(text):
                return None
            if _ELSE.match(text):   # the other alternative: not this path
                while i < len(seq) and not _ENDIF.match(_code(seq[i][1])):
                    i += 1
            m = _COND.match(text)
            if m is not None:
                label = _label_after(seq, i, m.group(1))
                if label is None:
                    return None
                todo.append(label)
            if _END.match(text):
                return None    # falls out of the function without a synchronisation
            i += 1
        else:
            if i >= len(seq):
                end = "unseen"
    return end


def _label_after(seq: _Seq, i: int, name: str) -> int | None:
    """The index of the first `name:` label after line `i`."""
    for j in range(i + 1, len(seq)):
        m = _LABEL.match(_code(seq[j][1]))
        if m is not None and m.group(1) == name:
            return j
    return None


def _lines(sv: SeriesView, pv: PatchView, fv: FileView, ln: Line) -> tuple[_Seq, bool]:
    """The function around the isb after the patch (whole from the tree),
    the whole file from the tree when no function is known, else the new
    side of the isb's hunk."""
    if ln.function:
        fn = sv.function(pv, fv, ln.function)
        if fn.lines and any(n == ln.new_no for n, _ in fn.lines):
            return list(fn.lines), fn.from_tree
    text = sv.file_after(pv, fv.path)
    if text is not None:   # no function around it: the file, to its labels and ends
        return list(enumerate(text.split("\n"), start=1)), True
    return [(x.new_no or 0, x.text) for x in fv.lines if x.hunk == ln.hunk and x.new_side], False


def _host_values(mdl: RegisterModel, ev: Evaluator, register: str,
                 contexts: frozenset[Ctx]) -> list[int]:
    """The constant host values of `register` in these configurations."""
    modes = {"vhe" if c.mode == "vhe" else "nvhe" for c in contexts}
    out = []
    for v in mdl.values:
        if v.register == register and v.side == "host" and v.mode in modes | {"both"}:
            value = ev.value(v.expr)
            if value is not None:
                out.append(value)
    return out


def check(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView,
          mdl: RegisterModel | None) -> None:
    """Each isb the patch adds to assembly, after writes only EL1/EL0 see."""
    if mdl is None or not mdl.facts.order.sync_scopes:
        return
    added = [ln for ln in fv.changed if ln.added and _ISB.match(_code(ln.code))]
    if not added:
        return
    ev = Evaluator.of(mdl, sv.base_version).with_defines("\n".join(
        x.text for f in pv.files if f.path.endswith(".h") for x in f.lines if x.new_side))
    contexts = mdl.facts.contexts_of(fv.path)
    for ln in added:
        seq, whole = _lines(sv, pv, fv, ln)
        k = next((i for i, (n, _) in enumerate(seq) if n == ln.new_no), None)
        if k is None:
            continue
        changed = _changes(mdl, ev, seq, k, contexts)
        if changed is None:
            continue
        after = _follows(seq, k)
        if after is None:
            continue
        _emit(emit, pv, fv, ln, mdl, changed, after, whole)


def _changes(mdl: RegisterModel, ev: Evaluator, seq: _Seq, k: int,
             contexts: frozenset[Ctx]) -> list[tuple[str, int, str, str]] | None:
    """(register, the bits the write may change from a host value, the
    value's expression, the write's line) for each write pending at the isb, when every one
    changes only fields of the register's [[sync_scope]]; None otherwise."""
    pending = _pending(seq, k)
    if not pending:
        return None
    out = []
    for i, reg, src in pending:
        scope = mdl.facts.order.scope(reg)
        expr = _operand(seq, i, src) if src != "xzr" else "0"
        value = ev.value(expr) if expr is not None else None
        hosts = _host_values(mdl, ev, reg, contexts) if scope is not None else []
        if scope is None or value is None or not hosts:
            return None
        lower = 0
        for name in scope.lower:
            f = mdl.lookup(name, reg)
            lower |= f.mask if f is not None else 0
        diff = 0
        for h in hosts:
            diff |= value ^ h
        if diff & ~lower:
            return None
        out.append((reg, diff, expr or "", seq[i][1].strip()))
    return out


def _emit(emit: Emit, pv: PatchView, fv: FileView, ln: Line, mdl: RegisterModel,
          changed: list[tuple[str, int, str, str]], after: str, whole: bool) -> None:
    regs = list(dict.fromkeys(reg for reg, _, _, _ in changed))
    names = [f.name for reg, diff, _, _ in changed for f in mdl.decode(reg, diff)[0]]
    what = "; ".join("%s = %s" % (reg, " ".join(expr.split()).strip("()")) for reg, _, expr, _
                     in changed)
    change = ("agrees with the host's values on every field but %s, which only code at "
              "EL1/EL0 sees" % ", ".join(dict.fromkeys(names))) if names else \
        "agrees with the host's values on every field code at EL2 sees"
    emit(Severity.QUESTION, pv, fv, ln, register=regs[0], fields=names,
         message="What needs this isb? The write before it (%s) %s, and the exception "
         "return that gets to EL1 is itself a context synchronisation event; %sno AT, TLBI "
         "or call comes before the next isb or eret." % (
             what, change, "" if after == "sync" and whole else "as far as the patch shows, "),
         evidence=(*(w for _, _, _, w in changed), ln.text.strip()))
