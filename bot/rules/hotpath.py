"""Rule family 5, hot-path-load: constants stay constants on the hot path.

Every guest exit restores the host's HCR_EL2; a host value that was a
compile-time constant becoming a load from per-CPU or vcpu data costs on
every exit and needs a host configuration that really varies. Loads a
world-switch function gains (a WARN, a cheap test replaced by loads of
other state) cost on every entry and exit too. Compares the traces of
bot.rules.semantic before and after the patch; the commit message may
name the varying configuration, never silence the finding. Pure.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.regmodel import Role
from bot.regmodel.facts import Ctx
from bot.rules import featurecost
from bot.rules.analysis import Emit, PatchView, view
from bot.rules.bits import Bits, SourceKind, source_kind
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import (
    RESTORE_ROLES,
    SWITCH_ROLES,
    WATCHED,
    always_written,
    changed_event,
    changed_line,
    contexts_of,
    has_memory,
    modes,
    pair_line,
    semantics,
    source_words,
)
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Event, Trace

_VARIES = re.compile(r"(?i)\bvar(y|ies)\b|depends? on|chosen at|at init|protected mode|"
                     r"per[- ]cpu|differ")


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
        featurecost.check(emit, pv, sem.pairs(), sem.model)
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
        fv, ln = pair_line(pv, pair, reg, "new")
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
