"""Rule families 3 and 4: what the host gets back on the way out.

Each is a comparison of the traces of bot.rules.semantic: the value the
functions of the save/restore map leave in HCR_EL2/MDCR_EL2, bit by bit and
per configuration, before and after the patch. A path that no longer
restores the host's value (host-restore); a restored value whose bits now
come from somewhere else, or are forced where they were kept (same-value).
Families 5 and 9 are bot.rules.hotpath and bot.rules.ownership. What the
commit message says never decides a finding.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.parse.csource import split_args
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules import model as M
from bot.rules import putback, roundtrip
from bot.rules.analysis import Emit, FileView, PatchView, SeriesView, view
from bot.rules.bits import Bits
from bot.rules.core import Category, Context, Finding, Severity, Status, rule
from bot.rules.flow import (
    RESTORE_ROLES,
    WATCHED,
    always_written,
    contexts_of,
    decided,
    field_names,
    has_memory,
    line_at,
    modes,
    pair_line,
    semantics,
    source_words,
    value_words,
)
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

_PATH_ROLES = ("entry", "exit", "panic", "early-exit", "tlb-to-guest", "tlb-to-host")


@rule(id="host-restore", category=Category.HOST_RESTORE, severity=Severity.WARNING,
      summary="a path back to the host no longer restores the host's HCR_EL2/MDCR_EL2")
def host_restore(series: Series, ctx: Context) -> list[Finding]:
    """Every way back to the host, including hyp_panic and the early-exit
    fixups, has to put the host's HCR_EL2 and MDCR_EL2 back: the host runs
    with the guest's traps otherwise, and the next fault it takes lands in
    a hypervisor that does not expect it. Removing the restore from one
    path is only right if the path now goes through another that does it."""
    sv = view(series, ctx)
    emit = Emit(rule="host-restore", category=Category.HOST_RESTORE, sv=sv, compared=True)
    for pv in sv.relevant():
        _stale_callers(emit, sv, pv, ctx)
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        pairs = sem.pairs()
        roundtrip.check(emit, pv, sem, tlb=False)
        for pair in pairs:
            if pair.role not in RESTORE_ROLES:
                putback.check(emit, pv, pair)
            if pair.before is not None and pair.after is not None and (
                    pair.role in RESTORE_ROLES or pair.role is Role.RUN):
                _restore_calls(emit, pv, pair, ctx)
            if pair.role not in RESTORE_ROLES or pair.before is None or pair.after is None:
                continue
            for reg in WATCHED:
                lost = [c for c in contexts_of(pair)
                        if always_written(pair.before, c, reg) is not None
                        and always_written(pair.after, c, reg) is None]
                if not lost or _callers_restore(pairs, pair, reg, lost):
                    continue
                fv, ln = pair_line(pv, pair, reg, "old")
                if ln is None:
                    continue
                partly = any(pair.after.written(c, reg) is not None for c in lost)
                emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv, fv, ln,
                     register=reg,
                     message="%s() no longer writes the host's %s on %s way back to the "
                     "host (%s)%s: which path restores it now?" % (
                         pair.key.name, reg, "every" if not partly else "each",
                         modes(lost), "" if not partly else ", only on some paths"))
    return emit.out


def _callers_restore(pairs: list[Pair], pair: Pair, reg: str, lost: list[Ctx]) -> bool:
    """The restore left a helper for its callers: every traced function of
    the map that reaches it and restored `reg` on every path before (through
    the helper) still does, in each context where the helper stopped.
    Callers that never restored it (a panic path handing over to the host's
    panic code) have nothing to lose."""
    callers = [p for p in pairs if p is not pair and pair.key in p.reaches
               and p.role in RESTORE_ROLES and p.after is not None]
    covered: set[Ctx] = set()
    for p in callers:
        assert p.after is not None
        for c in lost:
            if not any(c in out.contexts for out in p.after.outcomes):
                continue
            if p.before is not None and always_written(p.before, c, reg) is None:
                continue
            if always_written(p.after, c, reg) is None:
                return False
            covered.add(c)
    return bool(callers) and covered >= set(lost)


def _restorers(trace: Trace, c: Ctx, mdl: RegisterModel) -> dict[str, bool]:
    """Calls to the map's exit functions (which give the host its registers
    back) on the paths of `c`: name -> made on every path."""
    out: dict[str, bool] = {}
    for e in trace.events:
        if e.kind is not Ev.CALL or c not in e.contexts or e.depth:
            continue
        fr = mdl.role(e.name)
        if fr is None or fr.role is not Role.EXIT:
            continue
        out[e.name] = out.get(e.name, False) or e.always
    return out


def _restore_calls(emit: Emit, pv: PatchView, pair: Pair, ctx: Context) -> None:
    """A path back to the host that no longer goes through the function that
    restores the host's registers, or only on some paths (an early return)."""
    mdl = ctx.regmodel
    if not isinstance(mdl, RegisterModel):
        return
    assert pair.before is not None and pair.after is not None
    for name in dict.fromkeys(n for c in contexts_of(pair)
                              for n in _restorers(pair.before, c, mdl)):
        gone: list[Ctx] = []
        partly: list[Ctx] = []
        fr = mdl.role(name)
        restored = fr.registers if fr is not None and fr.registers else ()
        for c in contexts_of(pair):
            old = _restorers(pair.before, c, mdl)
            new = _restorers(pair.after, c, mdl)
            if name not in old:
                continue
            if restored and all(always_written(pair.after, c, reg) is not None
                                for reg in restored):
                continue  # the function restores them itself now (inlined)
            if name not in new:
                gone.append(c)
            elif old[name] and not new[name]:
                partly.append(c)
        if not gone and not partly:
            continue
        regs = "/".join(fr.registers) if fr is not None and fr.registers else "registers"
        if gone:
            hit = next((e for e in pair.before.events if e.kind is Ev.CALL and e.name == name
                        and line_at(pv, e.path, e.line, "old") is not None
                        and line_at(pv, e.path, e.line, "old").removed), None)  # type: ignore[union-attr]
            ln = line_at(pv, hit.path, hit.line, "old") if hit is not None else pair.anchor
            fv = pv.file(hit.path) if hit is not None else pv.file(pair.key.path)
            message = ("%s() no longer calls %s(), which gives the host its %s back (%s): "
                       "which path restores them now?" % (pair.key.name, name, regs, modes(gone)))
        else:
            ln, fv = pair.anchor, pv.file(pair.key.path)
            message = ("%s() now reaches %s(), which gives the host its %s back, only on some "
                       "paths (%s): what restores them on the others?" % (
                           pair.key.name, name, regs, modes(partly)))
        if ln is None:
            continue
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv, fv, ln,
             register=fr.registers[0] if fr is not None and fr.registers else None,
             message=message)


_DEF = re.compile(r"^[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\((.*)\)\s*\{?\s*$")


def _signature(text: str) -> tuple[str, int] | None:
    """(name, parameter count) of a function definition line."""
    m = _DEF.match(text)
    if m is None or text[:1].isspace() or text.rstrip().endswith(";"):
        return None
    params = m.group(2).strip()
    count = 0 if params in ("", "void") else len(split_args(params + ")", 0)[0])
    return m.group(1), count


def _stale_callers(emit: Emit, sv: SeriesView, pv: PatchView, ctx: Context) -> None:
    """A path helper whose parameters change, with a caller left unchanged."""
    # Keyed by file: the VHE and nVHE helpers share names and are static.
    old: dict[tuple[str, str], int] = {}
    new: dict[tuple[str, str], tuple[int, FileView]] = {}
    for fv in pv.files:
        for ln in fv.changed:
            sig = _signature(ln.text)
            if sig is None or M.role(ctx.regmodel, sig[0], fv.path) not in _PATH_ROLES:
                continue
            if ln.removed:
                old[(fv.path, sig[0])] = sig[1]
            else:
                new[(fv.path, sig[0])] = (sig[1], fv)
    for (path, name), (count, fv) in new.items():
        if old.get((path, name), count) == count:
            continue
        call = re.compile(r"\b%s\s*\(" % re.escape(name))
        written = [r for r in M.WATCHED if any(x.facts.writes(r) for x in fv.in_function(name))]
        register = written[0] if written else None
        texts = _post_texts(sv, pv, fv)
        for no, text in texts:
            m = call.search(text)
            if m is None or _signature(text) is not None:
                continue
            args, end = split_args(text, m.end())
            if end >= len(text) and ")" not in text[m.end():]:
                continue  # the call goes on over the next line: not counted
            got = 0 if args == [""] else len(args)
            if got != count:
                emit(Severity.WARNING, pv, fv, no, register=register,
                     message="%s() now takes %d argument(s), but this caller still "
                     "passes %d: every path back to the host must use the new "
                     "signature." % (name, count, got), evidence=(text.rstrip(),),
                     status=(Status.RESOLVED_IN_SERIES if sv.resolved_later(pv, fv.path, text)
                             else Status.OPEN))


def _post_texts(sv: SeriesView, pv: PatchView, fv: FileView) -> list[tuple[int, str]]:
    text = sv.file_after(pv, fv.path)
    if text is not None:
        return list(enumerate(text.split("\n"), start=1))
    return [(ln.new_no or 0, ln.text) for ln in fv.lines if ln.new_side]




_FLAGS_DEFINE = re.compile(r"^\s*#\s*define\s+(HCR|MDCR)_\w*(FLAGS|MASK)\w*")


def _flags_changed(pv: PatchView) -> bool:
    """The patch defines or redefines a flag set: a constant restored value
    that changes with it is the deliberate change the flag rules judge."""
    return any(_FLAGS_DEFINE.match(ln.text) for fv in pv.files for ln in fv.changed)


@rule(id="same-value", category=Category.SAME_VALUE, severity=Severity.WARNING,
      summary="the value restored to the host changes where it comes from")
def same_value(series: Series, ctx: Context) -> list[Finding]:
    """The host's HCR_EL2/MDCR_EL2 on the way out is a contract: bits the
    host owns are kept (read back or saved at entry), bits KVM owns are
    forced. A change that takes the kept bits from elsewhere (the vcpu's
    copy, a constant), forces what was kept or keeps what was forced, or
    adds a mask that drops host bits, changes every host, however small
    the diff, and the write that shows it may be twenty lines away."""
    sv = view(series, ctx)
    emit = Emit(rule="same-value", category=Category.SAME_VALUE, sv=sv, compared=True)
    model = ctx.regmodel
    if not isinstance(model, RegisterModel):
        return emit.out
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        for pair in sem.pairs():
            if pair.before is not None and pair.after is not None:
                _saved_copy(emit, pv, pair, model)
            if pair.role not in RESTORE_ROLES or pair.before is None or pair.after is None:
                continue
            flags = _flags_changed(pv)
            for reg in WATCHED:
                changed: dict[int, list[Ctx]] = {}
                worst = ""
                for c in contexts_of(pair):
                    old = always_written(pair.before, c, reg)
                    new = always_written(pair.after, c, reg)
                    if old is None or new is None:
                        continue
                    diff = old.differs(new)
                    # A constant becoming a load is hot-path-load's question.
                    if not diff or (old.is_const and has_memory(new)):
                        continue
                    kept = diff & old.src_mask
                    if kept:
                        worst = "kept"
                    elif diff & old.known & new.src_mask:
                        worst = worst or "forced"
                    elif flags:
                        continue  # constant bits the patch's new flag set changes
                    else:
                        worst = worst or "const"
                    changed.setdefault(diff, []).append(c)
                for diff, ctxs in changed.items():
                    old = always_written(pair.before, ctxs[0], reg)
                    new = always_written(pair.after, ctxs[0], reg)
                    assert old is not None and new is not None
                    fv, ln = pair_line(pv, pair, reg, "new")
                    if ln is None:
                        continue
                    names = field_names(model, reg, diff)
                    sure = decided(pair) and not (old.unknown_mask | new.unknown_mask) & diff
                    emit(Severity.WARNING if sure and worst != "const" else Severity.QUESTION,
                         pv, fv, ln, register=reg, fields=names,
                         message="the host's %s written by %s() changes (%s): %s %s %s and "
                         "%s now %s%s" % (
                             reg, pair.key.name, modes(ctxs),
                             "/".join(names) or M.bits_text(diff),
                             "was" if len(names) == 1 else "were", value_words(old, diff),
                             "is" if len(names) == 1 else "are", value_words(new, diff),
                             "." if worst != "const" else ": is that meant for every host?"))
    return emit.out


def _stores(trace: Trace, c: Ctx) -> dict[str, tuple[Bits, Event]]:
    """What each host-copy/per-CPU storage holds when the function returns
    in `c` (however the code got there), with the last store into it."""
    final: dict[str, Bits] = {}
    for out in trace.outcomes:
        if c in out.contexts:
            final = dict(out.stored)
            break
    last: dict[str, Event] = {}
    for e in trace.events:
        if e.kind is Ev.STORE and e.storage and c in e.contexts \
                and e.storage.startswith(("host-copy.", "percpu.")):
            last[e.storage] = e
    return {name: (final[name], e) for name, e in last.items() if name in final}


def _saved_copy(emit: Emit, pv: PatchView, pair: Pair, model: RegisterModel) -> None:
    """The host's value saved for the restore on exit (host_debug_state,
    kvm_init_params) now comes from somewhere else: the restore, unchanged
    and perhaps far away, hands the host that value."""
    assert pair.before is not None and pair.after is not None
    done: set[str] = set()
    for c in contexts_of(pair):
        old = _stores(pair.before, c)
        new = _stores(pair.after, c)
        for storage, (value, e) in new.items():
            if storage in done or storage not in old:
                continue
            before = old[storage][0]
            diff = before.differs(value)
            if not diff:
                continue
            ln = line_at(pv, e.path, e.line, "new")
            if ln is None or ln.kind.value == " ":
                continue
            done.add(storage)
            reg = "MDCR_EL2" if "mdcr" in storage else "HCR_EL2"
            emit(Severity.WARNING if decided(pair) or e.seen else Severity.QUESTION, pv,
                 pv.file(e.path), ln, register=reg, fields=field_names(model, reg, diff),
                 message="%s saves into %s a value whose %s %s %s, not %s as before: what "
                 "the host gets back on exit changes with it." % (
                     e.function + "()", source_words("x:" + storage),
                     "bits" if bin(diff).count("1") > 1 else "bit",
                     "are" if bin(diff).count("1") > 1 else "is",
                     value_words(value, diff), value_words(before, diff)))
