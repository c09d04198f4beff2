"""Rule families 3, 4, 5 and 9: what the host gets back on the way out.

Each is a comparison of the traces of bot.rules.semantic: the value the
functions of the save/restore map leave in HCR_EL2/MDCR_EL2, bit by bit and
per configuration, before and after the patch. A path that no longer
restores the host's value (host-restore); a restored value whose bits now
come from somewhere else, or are forced where they were kept (same-value);
a host value that was a compile-time constant becoming a load on every
exit (hot-path-load); the host's HPMN or SPE/trace-buffer ownership lost on
exit, or feature bits set blindly at init (pmu-ownership). What the commit
message says never decides a finding.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.parse.csource import split_args
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules import featureguard, ownership, putback, roundtrip
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, view
from bot.rules.bits import Bits, SourceKind, source_kind
from bot.rules.core import Category, Context, Finding, Severity, Status, rule
from bot.rules.flow import (
    RESTORE_ROLES,
    SWITCH_ROLES,
    WATCHED,
    always_written,
    changed_event,
    changed_line,
    contexts_of,
    decided,
    field_mask,
    field_names,
    has_memory,
    line_at,
    modes,
    semantics,
    source_words,
    value_words,
)
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

_PATH_ROLES = ("entry", "exit", "panic", "early-exit", "tlb-to-guest", "tlb-to-host")
_OWNED = ("HPMN", "E2PB", "E2TB")
_VARIES = re.compile(r"(?i)\bvar(y|ies)\b|depends? on|chosen at|at init|protected mode|"
                     r"per[- ]cpu|differ")
_FEATURE_BITS = re.compile(r"MDCR_EL2_(E2PB|E2TB|TPMS|TTRF|HPMD|HCCD|PMSSE|EnSPM|HPMFZ\w*|"
                           r"PMEE|EBWE|TDCC|MTPME|HLP)")
_PROBE = re.compile(r"(?i)id_aa64dfr\d|pmsver|pmuver|tracebuf|tracever|\bcbz\b|\bcbnz\b|"
                    r"\b(b\.(lt|eq|ne|ge))\b|\btbz\b|cpus_have|has_\w+\(|system_supports|"
                    r"kvm_has_feat|_feature\(")


def _roles(ctx: Context, fv: FileView, name: str | None) -> str | None:
    return M.role(ctx.regmodel, name, fv.path)


def _where(pv: PatchView, pair: Pair, register: str, side: str) -> tuple[FileView | None,
                                                                        Line | None]:
    """The diff line a finding about `register` in this pair is quoted at:
    the changed write of it, else the changed line that feeds it."""
    trace = pair.after if side == "new" else pair.before
    if trace is not None:
        hit = changed_event(pv, trace.events, side, (Ev.WRITE,), register)
        if hit is not None:
            return pv.file(hit[0].path), hit[1]
    ln = pair.anchor
    for fv in pv.files:
        if ln is not None and ln in fv.lines:
            return fv, ln
    return pv.file(pair.key.path), ln


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
                fv, ln = _where(pv, pair, reg, "old")
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
            if sig is None or _roles(ctx, fv, sig[0]) not in _PATH_ROLES:
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
                    fv, ln = _where(pv, pair, reg, "new")
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


@rule(id="hot-path-load", category=Category.HOT_PATH_LOAD, severity=Severity.QUESTION,
      summary="a constant host value on the exit path becomes a memory load")
def hot_path_load(series: Series, ctx: Context) -> list[Finding]:
    """Every guest exit restores the host's HCR_EL2. When that value is a
    compile-time constant the restore is an immediate; turning it into a
    load from per-CPU or vcpu data costs on every exit and needs a host
    configuration that really varies. Flags that are harmless when their
    feature is absent (API/APK) are no such reason. A WARN or new state
    loads on the world-switch path cost on every entry and exit too."""
    sv = view(series, ctx)
    emit = Emit(rule="hot-path-load", category=Category.HOT_PATH_LOAD, sv=sv, compared=True)
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        stored = _stored_values(sem.pairs())
        patched = sem.facts.ops.get("patched", frozenset())
        for pair in sem.pairs():
            if pair.before is None or pair.after is None:
                continue
            if pair.role in RESTORE_ROLES:
                _constant_to_load(emit, pv, pair, stored)
            if pair.role in SWITCH_ROLES and not _new_warn(emit, pv, pair):
                _new_loads(emit, pv, pair, patched)
    return emit.out


def _stored_values(pairs: list[Pair]) -> dict[str, list[Bits]]:
    """What the patch's functions store into each storage, after it."""
    out: dict[str, list[Bits]] = {}
    for pair in pairs:
        if pair.after is None:
            continue
        for e in pair.after.events:
            if e.kind is Ev.STORE and e.storage and e.value is not None:
                values = out.setdefault(e.storage, [])
                if e.value not in values:
                    values.append(e.value)
    return out


def _varies(values: list[Bits], register: str) -> bool:
    """The stores give the host different values in different places: two
    constants, or something other than the live register read back (which
    is the constant itself, read again)."""
    consts = {v.value for v in values if v.is_const}
    if len(consts) > 1:
        return True
    live = "live:" + register
    return any(not v.is_const and any(s != live for s in v.sources()) for v in values)


def _constant_to_load(emit: Emit, pv: PatchView, pair: Pair,
                      stored: dict[str, list[Bits]]) -> None:
    assert pair.before is not None and pair.after is not None
    for reg in WATCHED:
        hit: list[Ctx] = []
        source = ""
        for c in contexts_of(pair):
            old = always_written(pair.before, c, reg)
            new = always_written(pair.after, c, reg)
            if old is None or new is None or not old.is_const or not has_memory(new):
                continue
            mem = [n for n in new.sources() if source_kind(n) is not SourceKind.LIVE]
            if not mem:
                continue
            storage = mem[0].partition(":")[2]
            if _varies(stored.get(storage, []), reg):
                continue  # the patch makes it vary by configuration: the reason is there
            hit.append(c)
            source = mem[0]
        if not hit:
            continue
        fv, ln = _where(pv, pair, reg, "new")
        if ln is None:
            continue
        # The commit message may give the reason; the patch must show it.
        claim = _VARIES.search(pv.message)
        ask = ("the commit message says it varies, but the patch does not show where %s is "
               "chosen: which host configuration sets it differently?" % source_words(source)
               if claim else "which host configuration makes it vary?")
        emit(Severity.QUESTION, pv, fv, ln, register=reg,
             message="the host %s restored in %s() was a compile-time constant (%s) and is "
             "now loaded from %s on every exit: %s" % (
                 reg, pair.key.name, modes(hit), source_words(source), ask))


def _new_loads(emit: Emit, pv: PatchView, pair: Pair, patched: frozenset[str]) -> None:
    """A world-switch function whose changed lines replace a cheap test (a
    patched capability branch, a bit of the vcpu's HCR_EL2 copy) by loads
    of other state (a per-CPU capability, the VM's features): paid on every
    entry or exit."""
    assert pair.before is not None and pair.after is not None

    def changed(trace: Trace, side: str) -> list[Event]:
        return [e for e in trace.events if changed_line(pv, e, side) is not None]

    old, new = changed(pair.before, "old"), changed(pair.after, "new")
    # Inside a callee the old side could not follow (its text is not in
    # the hunks), the new side's loads are not new.
    unseen = set(pair.before.unresolved)
    new = [e for e in new if e.function not in unseen]
    cheap = [e for e in old if (e.kind in (Ev.CALL, Ev.GUARD) and e.name in patched)
             or (e.kind is Ev.LOAD and (e.storage or "").startswith("vcpu."))]
    dear = [e for e in new if e.kind is Ev.LOAD and not e.name.startswith("live:")
            and not (e.storage or "").startswith("vcpu.")]
    if not cheap or len(dear) <= len([e for e in old if e.kind is Ev.LOAD
                                      and not (e.storage or "").startswith("vcpu.")]):
        return
    known = {e.name for e in old}
    e = next((x for x in dear if x.name not in known), None)
    if e is None:
        return  # the same loads, on more paths (code moved or a test split)
    what = e.name.partition(":")[2] or e.name
    emit(Severity.QUESTION, pv, pv.file(e.path), changed_line(pv, e, "new"), register=None,
         message="%s() runs on every guest %s and now loads %s there: is that load needed on "
         "every world switch?" % (pair.key.name, "entry" if pair.role is Role.ENTRY else "exit",
                                  what.replace("call:", "") + ("()" if e.name.startswith(
                                      "call:") else "")))


def _new_warn(emit: Emit, pv: PatchView, pair: Pair) -> bool:
    assert pair.before is not None and pair.after is not None
    before = sum(1 for e in pair.before.events if e.kind is Ev.WARN)
    hit = changed_event(pv, pair.after.events, "new", (Ev.WARN,))
    after = sum(1 for e in pair.after.events if e.kind is Ev.WARN)
    if hit is None or after <= before:
        return False
    e, ln = hit
    emit(Severity.QUESTION, pv, pv.file(e.path), ln, register=None,
         message="%s() runs on every guest %s: does the %s() it gains need to be evaluated "
         "there, on the world-switch path?" % (
             pair.key.name, "entry" if pair.role is Role.ENTRY else "exit", e.name))
    return True


@rule(id="pmu-ownership", category=Category.PMU_OWNERSHIP, severity=Severity.WARNING,
      summary="the host loses HPMN or its SPE/trace-buffer ownership in MDCR_EL2")
def pmu_ownership(series: Series, ctx: Context) -> list[Finding]:
    """On exit the host must get its own MDCR_EL2.HPMN back, and E2PB/E2TB
    set the way the host expects (EL1&0 ownership under nVHE): otherwise
    host perf loses counters or SPE/TRBE traps. Bits for features that may
    be absent (SPE, TRBE) belong to feature-probing init code, never to a
    blind OR."""
    sv = view(series, ctx)
    emit = Emit(rule="pmu-ownership", category=Category.PMU_OWNERSHIP, sv=sv, compared=True)
    model = ctx.regmodel
    if not isinstance(model, RegisterModel):
        return emit.out
    setup = frozenset(fr.name for fr in model.functions
                      if fr.role in (Role.INIT, Role.VCPU_INIT))
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is not None:
            for pair in sem.pairs():
                if pair.role in RESTORE_ROLES and pair.before is not None \
                        and pair.after is not None:
                    _ownership(emit, pv, pair, model)
                elif pair.role is not None:
                    ownership.check(emit, pv, pair, model)
        _blind_feature_bits(emit, pv, ctx)
        for fv in pv.files:
            if any(featureguard.FEATURE_BITS.search(ln.code) or _PROBE.search(ln.code)
                   for ln in fv.changed):
                featureguard.check(emit, pv, fv, _side(sv, pv, fv, "old"),
                                   _side(sv, pv, fv, "new"), setup)
    return emit.out


def _side(sv: SeriesView, pv: PatchView, fv: FileView, side: str) -> list[str]:
    """One side of a file: whole from the kernel tree, else what the hunks
    show at their line numbers (blank where they show nothing)."""
    text = sv.file_after_index(pv.index - (side == "old"), fv.path)
    if text is not None:
        return text.split("\n")
    out: list[str] = []
    for ln in fv.lines:
        no = ln.new_no if side == "new" else ln.old_no
        if no is None or not (ln.new_side if side == "new" else ln.old_side):
            continue
        out.extend([""] * (no - len(out)))
        out[no - 1] = ln.text
    return out


def _ownership(emit: Emit, pv: PatchView, pair: Pair, model: RegisterModel) -> None:
    reg = "MDCR_EL2"
    for name in _OWNED:
        mask = field_mask(model, reg, name)
        lost: list[Ctx] = []
        pick = None
        for c in contexts_of(pair):
            old = always_written(pair.before, c, reg)
            new = always_written(pair.after, c, reg)
            if old is None:
                continue
            if new is None:
                if pair.after is not None and pair.after.written(c, reg) is None:
                    continue  # no longer written at all: host-restore says so
                lost.append(c)
                continue
            if old.differs(new, mask):
                lost.append(c)
                pick = (old, new)
        if not lost:
            continue
        fv, ln = _where(pv, pair, reg, "new")
        if ln is None:
            continue
        how = ("were %s and are now %s" % (value_words(pick[0], mask), value_words(pick[1], mask))
               if pick is not None else "are no longer restored on every path")
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv, fv, ln,
             register=reg, fields=(name,),
             message="on exit through %s() the host's MDCR_EL2.%s bits %s (%s): host "
             "perf/SPE/trace expect their own setting back." % (
                 pair.key.name, name, how, modes(lost)))


def _blind_feature_bits(emit: Emit, pv: PatchView, ctx: Context) -> None:
    for fv in pv.files:
        for ln in fv.changed:
            if not ln.added or _roles(ctx, fv, ln.function) != "init":
                continue
            m = _FEATURE_BITS.search(ln.code)
            if m is None or not ("|=" in ln.code or "orr" in ln.code):
                continue
            if _probed_before(fv, ln):
                continue
            emit(Severity.QUESTION, pv, fv, ln, register="MDCR_EL2", fields=(m.group(1),),
                 message="MDCR_EL2.%s is set here without a visible feature check: is the "
                 "feature probed first?" % m.group(1))


def _probed_before(fv: FileView, ln: Line) -> bool:
    seen = [x for x in fv.lines if x.new_side and x.function == ln.function]
    before = [x for x in seen if (x.new_no or 0) < (ln.new_no or 0)][-20:]
    return any(_PROBE.search(x.code) for x in before)
