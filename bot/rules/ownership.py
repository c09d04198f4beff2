"""Rule family 9, pmu-ownership: the host's MDCR_EL2 ownership, on the
values that carry it on and off the exit path.

The host's HPMN (how many counters it keeps) and its E2PB/E2TB buffer
ownership travel through more than the restore on exit: __kvm_get_mdcr_el2()
returns the live value the host captures at init, kvm_arm_setup_mdcr_el2()
derives the vcpu's value from that capture (HPMN kept, E2PB/E2TB cleared on
purpose), the entry paths write the vcpu's value. For every function a
patch changes, per configuration, the owned fields of each such value -
what it writes to MDCR_EL2, what it leaves in a stored MDCR_EL2 value,
what it returns - are compared before and after; a change of how they are
made (taken from the host's value, forced, cleared) is reported; and
feature bits (SPE, trace) set at init must come from code that probes the
feature, not a blind OR. Pure.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules import featureguard
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, view
from bot.rules.bits import Bits
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import (
    RESTORE_ROLES,
    always_written,
    changed_line,
    contexts_of,
    decided,
    field_mask,
    modes,
    pair_line,
    returned,
    semantics,
    source_words,
    value_words,
)
from bot.rules.semantic import Pair
from bot.rules.trace import Ev, Trace

OWNED = ("HPMN", "E2PB", "E2TB")
_REG = "MDCR_EL2"


def _carriers(sem_storage: list[str], trace: Trace, ctx: Ctx) -> dict[str, Bits]:
    """What carries an MDCR_EL2 value out of the function on `ctx`'s paths."""
    out: dict[str, Bits] = {}
    w = always_written(trace, ctx, _REG)
    if w is not None:
        out["what it writes to MDCR_EL2"] = w
    for o in trace.outcomes:
        if ctx in o.contexts:
            for st in sem_storage:
                v = o.stored.get(st)
                if v is not None:
                    out["what it leaves in %s" % source_words("x:" + st)] = v
    ret = returned(trace, ctx)
    if ret is not None and _REG in trace.function.name.upper():
        out["what it returns"] = ret
    return out


def _forced_or_lost(old: Bits, new: Bits, mask: int) -> bool:
    """The field is now forced (known bits where it came from a value) or no
    longer known at all, or its forced value changed; a value that only
    comes from another source is other rules' business (same-value)."""
    if not old.differs(new, mask):
        return False
    forced = new.known & mask & ~old.known
    lost = new.unknown_mask & mask & ~old.unknown_mask
    changed = (old.ones ^ new.ones) & old.known & new.known & mask
    return bool(forced or lost or changed)


def check(emit: Emit, pv: PatchView, pair: Pair, model: RegisterModel) -> None:
    if pair.before is None or pair.after is None or not pair.changed:
        return
    storage = [st.name for st in model.facts.storage if st.register == _REG]
    for name in OWNED:
        mask = field_mask(model, _REG, name)
        if not mask:
            continue
        hits: list[Ctx] = []
        pick: tuple[str, Bits, Bits] | None = None
        for c in contexts_of(pair):
            old = _carriers(storage, pair.before, c)
            new = _carriers(storage, pair.after, c)
            for what in sorted(old.keys() & new.keys()):
                if _forced_or_lost(old[what], new[what], mask):
                    hits.append(c)
                    pick = pick or (what, old[what], new[what])
                    break
        if pick is None:
            continue
        line = _line(pv, pair)
        if line is None:
            continue
        what, was, now = pick
        emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
             pv.file(pair.key.path), line, register=_REG, fields=(name,),
             message="in %s of %s(), MDCR_EL2.%s was %s and is now %s (%s): the host's "
             "counters and buffers depend on it." % (
                 what, pair.key.name, name, value_words(was, mask), value_words(now, mask),
                 modes(hits)))
        return


def _line(pv: PatchView, pair: Pair) -> Line | None:
    """The changed write or store of MDCR_EL2, else the pair's own change."""
    assert pair.after is not None
    for e in pair.after.events:
        if (e.kind is Ev.WRITE and e.register == _REG) or (
                e.kind in (Ev.STORE, Ev.RETURN) and "mdcr" in (e.storage or e.function).lower()):
            ln = changed_line(pv, e, "new")
            if ln is not None:
                return ln
    return pair.anchor


# -- the rule ------------------------------------------------------------------

_FEATURE_BITS = re.compile(r"MDCR_EL2_(E2PB|E2TB|TPMS|TTRF|HPMD|HCCD|PMSSE|EnSPM|HPMFZ\w*|"
                           r"PMEE|EBWE|TDCC|MTPME|HLP)")
_PROBE = re.compile(r"(?i)id_aa64dfr\d|pmsver|pmuver|tracebuf|tracever|\bcbz\b|\bcbnz\b|"
                    r"\b(b\.(lt|eq|ne|ge))\b|\btbz\b|cpus_have|has_\w+\(|system_supports|"
                    r"kvm_has_feat|_feature\(")


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
                    check(emit, pv, pair, model)
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
    for name in OWNED:
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
        fv, ln = pair_line(pv, pair, reg, "new")
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
            if not ln.added or M.role(ctx.regmodel, ln.function, fv.path) != "init":
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
