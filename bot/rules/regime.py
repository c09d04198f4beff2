"""Rule families 6 and 7: regime changes and the TLB-switch helpers.

A write to HCR_EL2 that flips TGE or E2H changes which translation regime
EL0/EL2 accesses use; it takes effect only after a context synchronisation
event, and with TGE clear an interrupt would be taken with the guest's
regime live. The TLB switch helpers exist to do exactly that dance, so
whatever the switch-to-guest side changes the switch-to-host side undoes.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.parse.csource import line_facts
from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules import model as M
from bot.rules import roundtrip, syncorder, tgewindow
from bot.rules.analysis import (
    Emit,
    FileView,
    FunctionText,
    Line,
    PatchView,
    SeriesView,
    normalize,
    view,
)
from bot.rules.bits import Bits
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import contexts_of, decided, line_at, semantics
from bot.rules.semantic import FnKey, Pair, PatchSemantics
from bot.rules.trace import Ev, Event, Trace

_REGIME = re.compile(r"HCR_(?:EL2_)?(TGE|E2H)\b")
_CLEAR_TGE = re.compile(r"~\s*\(?\s*HCR_(?:EL2_)?TGE|&=\s*~\s*HCR_(?:EL2_)?TGE")
_IRQ_OFF = ("local_irq_save", "local_irq_disable", "local_daif_mask")
_SYNC = re.compile(r"\b(isb|eret)\b")
# What the switch helpers change and must undo (REVIEW-GUIDE 5.7); VTTBR is
# loaded through helpers on both sides and is not compared.
_SWITCHED = ("HCR_EL2", "MDCR_EL2", "TCR_EL1", "SCTLR_EL1", "TCR", "SCTLR")
_PAIRS = {"local_irq_save": "local_irq_restore", "local_irq_disable": "local_irq_enable",
          "local_irq_restore": "local_irq_save", "local_irq_enable": "local_irq_disable"}


def _regime_names(mdl: RegisterModel | None, text: str) -> list[str]:
    """TGE/E2H named in an expression, directly or through a flag set."""
    names = _REGIME.findall(text)
    for name in M.macros(text):
        fs = M.flag_set_fields(mdl, name)
        if fs:
            names += [f.name for f in fs if f.name in ("TGE", "E2H")]
    return names


def _regime_write(ln: Line, fn_lines: list[Line],
                  mdl: RegisterModel | None = None) -> tuple[str, ...]:
    """TGE/E2H when this added line writes HCR_EL2 with a value that names them."""
    out: list[str] = []
    for acc in ln.facts.writes("HCR_EL2"):
        text = " ".join((acc.value, acc.clear, acc.set))
        names = _regime_names(mdl, text)
        if not names and acc.value and re.fullmatch(r"[a-z_]\w*", acc.value):
            var = acc.value
            for x in fn_lines:
                if (x.new_no or 0) <= (ln.new_no or 0) and re.search(
                        r"\b%s\b\s*(\||&|)=" % re.escape(var), x.code):
                    names += _REGIME.findall(x.code)
        out += names
    return tuple(dict.fromkeys(out))


def _after(fn: FunctionText, no: int) -> list[str]:
    return [t for n, t in fn.lines if n > no]


def _before(fn: FunctionText, no: int) -> list[str]:
    return [t for n, t in fn.lines if n < no]


@rule(id="barrier", category=Category.BARRIER, severity=Severity.WARNING,
      summary="a TGE/E2H change without isb(), or TGE cleared with interrupts unmasked")
def barrier(series: Series, ctx: Context) -> list[Finding]:
    """Changing HCR_EL2.TGE or E2H (or stage-2 state: VM, FWB) changes the
    translation regime, and the change is only guaranteed to be seen after
    a context synchronisation event: the TLBI or AT that relies on it needs
    an unconditional isb() first (an ERET also does; an isb that only an
    errata alternative provides is not one). While TGE is clear the host's
    own EL0 regime is not in force, so an interrupt taken then runs host
    code with the guest's configuration: TGE is cleared only with
    interrupts masked."""
    sv = view(series, ctx)
    emit = Emit(rule="barrier", category=Category.BARRIER, sv=sv, compared=True)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx) if isinstance(mdl, RegisterModel) else None
        if sem is not None and isinstance(mdl, RegisterModel):
            for pair in sem.pairs():
                if pair.after is not None and pair.role not in _ERET_ROLES:
                    _regime_sync(emit, pv, pair, mdl)
            for pair in sem.pairs():
                syncorder.check(emit, pv, pair)
            _tge_windows(emit, pv, sem, mdl)
        for fv in pv.files:
            if fv.asm or fv.path.endswith("el2_setup.h"):
                _asm_barrier(emit, sv, pv, fv, mdl)
    return emit.out


def _tge_windows(emit: Emit, pv: PatchView, sem: PatchSemantics, mdl: RegisterModel) -> None:
    """TGE clear with interrupts unmasked, in each changed function and
    across each save/restore pair of kvm.toml [[round_trips]]."""
    f = mdl.lookup("TGE", "HCR_EL2")
    if f is None:
        return
    for pair in sem.pairs():
        if pair.before is not None and pair.after is not None and pair.changed and \
                tgewindow.check(emit, pv, pair.before, pair.after, f.mask,
                                (pair.key.path, pair.anchor) if pair.anchor else None,
                                "%s()" % pair.key.name):
            return
    keys = {p.key: p for p in sem.pairs() if p.changed}
    for save, restore in sem.facts.round_trips:
        for key, pair in keys.items():
            if key.name not in (save, restore):
                continue
            first = FnKey(path=key.path, name=save)
            before = sem.round_trip("old", first, restore)
            after = sem.round_trip("new", first, restore)
            if before is not None and after is not None and tgewindow.check(
                    emit, pv, before, after, f.mask,
                    (key.path, pair.anchor) if pair.anchor else None,
                    "%s() then %s()" % (save, restore)):
                return


# Roles that end in an exception return (to the guest, or to the host's
# EL0/EL1): the return synchronises what they wrote.
_ERET_ROLES = (Role.ENTRY, Role.EXIT, Role.EARLY_EXIT)
_TLB_ROLES = (Role.TLB_TO_GUEST, Role.TLB_TO_HOST)


def _regime_masks(mdl: RegisterModel) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in mdl.facts.ops.get("regime", frozenset()):
        reg, _, name = item.partition(".")
        f = mdl.lookup(name, reg)
        if reg == "HCR_EL2" and f is not None:
            out[f.name] = f.mask
    # The facts are a frozenset: without an order the fields named in a
    # message would change with the hash seed. Highest bit first.
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _regime_writes(trace: Trace, c: Ctx, masks: dict[str, int]
                   ) -> list[tuple[int, Event, tuple[str, ...], bool]]:
    """HCR_EL2 writes that may change a regime field on the paths of `c`:
    (index, event, fields, TGE known cleared)."""
    out = []
    prev: Bits | None = None
    for i, e in enumerate(trace.events):
        if c not in e.contexts or e.kind is not Ev.WRITE or e.register != "HCR_EL2" \
                or e.value is None:
            continue
        names = []
        for name, mask in masks.items():
            new = e.value
            if new.src_mask & mask and all(s.startswith("live:")
                                           for s in new.sources(mask)) and prev is None:
                continue  # kept as it was
            if prev is not None and not prev.differs(new, mask):
                continue
            if not (new.known & mask) and prev is None:
                continue  # not known to change anything
            names.append(name)
        tge = masks.get("TGE", 0)
        out.append((i, e, tuple(names), bool(e.value.zeros & tge)))
        prev = e.value
    return [w for w in out if w[2]]


def _synced(trace: Trace, index: int, c: Ctx, to_end: bool) -> Event | None:
    """The unconditional isb (or ERET) after event `index`, before the next
    TLBI/AT (and, with `to_end`, before the function returns)."""
    alternatives: set[str] = set()
    for e in trace.events[index + 1:]:
        if c not in e.contexts:
            continue
        if e.kind in (Ev.ISB, Ev.ERET) and e.always:
            return e
        if e.kind is Ev.ISB_ERRATA and e.always and e.name.startswith("isb:"):
            # isb with the capability and isb without it: always an isb.
            cap = e.name[4:]
            if (cap[1:] if cap.startswith("!") else "!" + cap) in alternatives:
                return e
            alternatives.add(cap)
        if e.kind in (Ev.TLBI, Ev.AT):
            return None
    return None if to_end else trace.events[-1]


def _isb_taken(emit: Emit, pv: PatchView, pair: Pair, reported: set[tuple[str, int]]) -> None:
    """An isb right after an HCR_EL2 write, removed or moved away from it by
    the patch, whatever the value written (the hunks may not show it)."""
    after, before = pair.after, pair.before
    if before is None or after is None:
        return
    for c in contexts_of(pair):
        old = [i for i, e in enumerate(before.events) if e.kind is Ev.WRITE
               and e.register == "HCR_EL2" and c in e.contexts]
        new = [i for i, e in enumerate(after.events) if e.kind is Ev.WRITE
               and e.register == "HCR_EL2" and c in e.contexts]
        for n, i in enumerate(old):
            if n >= len(new) or not _isb_next(before, i, c) or _isb_next(after, new[n], c):
                continue
            e = after.events[new[n]]
            if ("sync", e.line) in reported:
                continue
            removed = _removed(pv, before, i, c)
            where = removed or line_at(pv, e.path, e.line, "new") or pair.anchor
            if where is None:
                continue
            reported.add(("sync", e.line))
            emit(Severity.WARNING if decided(pair) else Severity.QUESTION, pv,
                 pv.file(removed_path(pv, removed)) if removed is not None else pv.file(e.path),
                 where, register="HCR_EL2",
                 message="this %s the isb() that followed the HCR_EL2 write in %s(): what "
                 "makes the new configuration take effect before what comes next now?" % (
                     "removes" if removed is not None else "moves away", e.function))


_STEPS = (Ev.WRITE, Ev.READ, Ev.TLBI, Ev.AT, Ev.CALL, Ev.ISB, Ev.ISB_ERRATA, Ev.ERET, Ev.DSB)


def _isb_next(trace: Trace, index: int, c: Ctx) -> bool:
    """The next step after event `index` on the paths of `c` is an
    unconditional isb."""
    for e in trace.events[index + 1:]:
        if c not in e.contexts or e.kind not in _STEPS:
            continue
        return e.kind is Ev.ISB and e.always
    return False


def _needs_sync(trace: Trace, index: int, c: Ctx, role: Role | None) -> bool:
    """Something relies on the new regime: a TLBI/AT later in the trace, or
    the TLB helper's caller."""
    if role in _TLB_ROLES:
        return True
    return any(e.kind in (Ev.TLBI, Ev.AT) and c in e.contexts
               for e in trace.events[index + 1:])


def _regime_sync(emit: Emit, pv: PatchView, pair: Pair, mdl: RegisterModel) -> None:
    masks = _regime_masks(mdl)
    after, before = pair.after, pair.before
    assert after is not None
    reported: set[tuple[str, int]] = set()
    for c in contexts_of(pair):
        new_writes = _regime_writes(after, c, masks)
        old_writes = _regime_writes(before, c, masks) if before is not None else []
        for n, (i, e, names, tge_clear) in enumerate(new_writes):
            needs = _needs_sync(after, i, c, pair.role)
            synced = _synced(after, i, c, to_end=pair.role in _TLB_ROLES)
            old = old_writes[n] if n < len(old_writes) else None
            was_synced = old is not None and before is not None and _synced(
                before, old[0], c, to_end=pair.role in _TLB_ROLES) is not None
            ln = line_at(pv, e.path, e.line, "new")
            # An isb right after a regime write is there for what follows,
            # even where the hunks do not show what: taking it away (or
            # putting something between) is a change to explain.
            lost_isb = old is not None and before is not None and _isb_next(
                before, old[0], c) and not _isb_next(after, i, c)
            if lost_isb:
                was_synced = True
            if old is not None and not was_synced and set(names) <= set(old[2]):
                continue  # as unsynchronised before the patch: not this patch's doing
            if ((needs and synced is None) or lost_isb) and ("sync", e.line) not in reported:
                removed = _removed(pv, before, old[0] if old else None, c)
                where = removed if removed is not None else ln
                if where is None or (ln is not None and ln.kind.value == " " and removed is None
                                     and not was_synced and not _changed_near(pair, e)):
                    continue
                if was_synced and removed is None and where is ln and ln is not None \
                        and ln.kind.value == " ":
                    where = pair.anchor or ln
                reported.add(("sync", e.line))
                sure = decided(pair) or (pair.after is not None and was_synced)
                emit(Severity.WARNING if sure else Severity.QUESTION, pv,
                     pv.file(e.path) if removed is None else pv.file(removed_path(pv, removed)),
                     where, register="HCR_EL2", fields=names,
                     message=("this %s the isb() that made the HCR_EL2.%s change in %s() take "
                              "effect before %s: what synchronises it now?" if was_synced else
                              "this write changes HCR_EL2.%s but no unconditional isb() follows "
                              "it in %s() before %s: the new regime is not guaranteed to be in "
                              "effect.")
                     % ((("removes" if removed is not None else "loses"), "/".join(names),
                         e.function, _what(pair.role)) if was_synced else
                        ("/".join(names), e.function, _what(pair.role))))
            if tge_clear and c is Ctx.VHE and ("irq", e.line) not in reported:
                old_masked = old is not None and old[1].irq_off is True
                if e.irq_off is True or (e.irq_off is None and not old_masked):
                    continue
                if e.irq_off is False and not (pair.from_tree or e.seen or old_masked):
                    continue
                where = ln if ln is not None and ln.kind.value != " " else pair.anchor
                if where is None:
                    continue
                reported.add(("irq", e.line))
                emit(Severity.WARNING if e.irq_off is False else Severity.QUESTION, pv,
                     pv.file(e.path), where, register="HCR_EL2", fields=("TGE",),
                     message="HCR_EL2.TGE is cleared in %s() %s: an interrupt taken now runs "
                     "the host with the guest's regime." % (
                         e.function, "with interrupts unmasked" if e.irq_off is False
                         else "without interrupts masked on every path"))
    _isb_taken(emit, pv, pair, reported)


def removed_path(pv: PatchView, ln: Line) -> str:
    for fv in pv.files:
        if ln in fv.lines:
            return fv.path
    return ""


def _removed(pv: PatchView, before: Trace | None, index: int | None, c: Ctx) -> Line | None:
    """The removed isb line that synchronised write `index` before the patch."""
    if before is None or index is None:
        return None
    for e in before.events[index + 1:]:
        if c in e.contexts and e.kind is Ev.ISB:
            ln = line_at(pv, e.path, e.line, "old")
            if ln is not None and ln.removed:
                return ln
            return None
    return None


def _changed_near(pair: Pair, e: Event) -> bool:
    return any(ln.new_no is not None and abs(ln.new_no - e.line) <= 3 for ln in pair.changed)


def _what(role: Role | None) -> str:
    if role in _TLB_ROLES:
        return "it returns to the TLB maintenance that relies on it"
    return "the TLB maintenance that relies on it"


def _asm_barrier(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView,
                 mdl: RegisterModel | None) -> None:
    """Assembly (head.S, hyp-init.S, el2_setup.h): line facts, as before."""
    _read_after_dsb(emit, pv, fv, mdl)
    for ln in fv.changed:
        if ln.removed and ln.facts.isb:
            _removed_isb(emit, sv, pv, fv, ln, mdl)
        if not ln.added or not ln.facts.accesses:
            continue
        role = M.role(mdl, ln.function, fv.path)
        if role in ("entry", "exit", "early-exit"):
            continue
        fn_lines = fv.in_function(ln.function)
        names = _regime_write(ln, fn_lines, mdl)
        if not names:
            continue
        fn = sv.function(pv, fv, ln.function or "")
        later = _after(fn, ln.new_no or 0)
        if not any(_SYNC.search(t) for t in later):
            decided_ = fn.complete
            emit(Severity.WARNING if decided_ else Severity.QUESTION, pv, fv, ln,
                 register="HCR_EL2", fields=names,
                 message="this write changes HCR_EL2.%s but no isb() follows it in %s()"
                 "%s: the new regime is not guaranteed to be in effect for what comes "
                 "next." % ("/".join(names), ln.function,
                            "" if decided_ else " as far as the patch shows"))


_MRS = re.compile(r"^\s*mrs\s+x\d+\s*,\s*(\w+)", re.I)
_DSB_ISB = re.compile(r"^\s*(dsb|isb)\b", re.I)


def _read_after_dsb(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None) -> None:
    """An added read of a register that shows what a dsb completed (ISR_EL1:
    a pending SError), with a dsb before it and no isb between: the read has
    no side effect, so it may be performed before the dsb completes."""
    observers = mdl.facts.ops.get("dsb_observers", frozenset()) if mdl is not None else ()
    if not observers:
        return
    lines = fv.lines
    for i, ln in enumerate(lines):
        m = _MRS.match(ln.code) if ln.new_side else None
        if m is None or m.group(1).upper() not in observers:
            continue
        removed_isb = None
        for x in reversed(lines[max(0, i - 12):i]):
            sync = _DSB_ISB.match(x.code)
            if sync is None:
                continue
            if not x.new_side:   # an isb or dsb the patch takes away
                if sync.group(1).lower() == "isb":
                    removed_isb = removed_isb or x
                continue
            if sync.group(1).lower() == "dsb" and (ln.added or removed_isb is not None):
                emit(Severity.QUESTION, pv, fv, ln if ln.added else removed_isb,
                     register=None,
                     message="%s is read right after the dsb with no isb between: a read "
                     "without side effects may be performed before the dsb completes, and "
                     "miss what it was meant to see. Is an isb needed after the dsb?"
                     % m.group(1).lower())
            break


_XREG = re.compile(r"x\d+")
_ASM_SET = re.compile(r"^\s*(mov_q|mov|ldr|orr)\s+(x\d+)\s*,\s*(?:(x\d+)\s*,\s*)?=?#?(.+?)\s*"
                      r"(?://.*)?$")


def _asm_operands(lines: list[str], reg: str) -> str:
    """What an assembly register written to HCR_EL2 was built from: the
    immediates ORed into it, back to the move that loaded it."""
    out: list[str] = []
    for t in reversed(lines):
        m = _ASM_SET.match(t)
        if m is None or m.group(2) != reg:
            continue
        out.append(m.group(4))
        if m.group(1) != "orr":
            break
    return " | ".join(reversed(out)) or reg


def _removed_isb(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, ln: Line,
                 mdl: RegisterModel | None) -> None:
    """An isb() the patch removes that synchronised a TGE/E2H change."""
    if M.role(mdl, ln.function, fv.path) in ("entry", "exit", "early-exit"):
        return
    fn = sv.function(pv, fv, ln.function or "")
    before = [(n, t) for n, t in fn.lines if n < ln.anchor]
    rest = [t for n, t in fn.lines if n >= ln.anchor]
    if not fn.lines:
        # No function around it (an assembler macro in a header): the
        # hunk's own lines, as the new side has them.
        hunk = [x for x in fv.lines if (x.hunk == ln.hunk and x.new_side) or x is ln]
        at = next(i for i, x in enumerate(hunk) if x is ln)
        before = [(x.new_no or 0, x.text) for x in hunk[:at]]
        rest = [x.text for x in hunk[at + 1:]]
    write_at, names = None, []  # type: tuple[int, str] | None, list[str]
    for i in range(len(before) - 1, -1, -1):
        n, t = before[i]
        if _SYNC.search(t):
            return  # something after the last regime write still synchronises it
        for acc in line_facts(t).writes("HCR_EL2"):
            value = acc.value
            if acc.asm and _XREG.fullmatch(value.strip().lower()):
                value = _asm_operands([x for _, x in before[:i]], value.strip().lower())
            names = _regime_names(mdl, " ".join((value, acc.clear, acc.set)))
            if names:
                write_at = (n, t)
                break
        if write_at:
            break
    if write_at is None:
        return
    if any(_SYNC.search(t) for t in rest):
        return
    decided = fn.complete
    emit(Severity.WARNING if decided else Severity.QUESTION, pv, fv, ln, register="HCR_EL2",
         fields=tuple(dict.fromkeys(names)),
         message="this removes the isb() that made the HCR_EL2.%s change %s take "
         "effect%s: what synchronises it now?" % (
             "/".join(dict.fromkeys(names)),
             "in %s()" % ln.function if ln.function else "just before it",
             "" if decided else " (as far as the patch shows, nothing)"),
         evidence=(write_at[1].rstrip(), ln.text.rstrip()))


def _side_facts(fn: FunctionText) -> tuple[set[str], set[str]]:
    regs: set[str] = set()
    irq: set[str] = set()
    for _, text in fn.lines:
        facts = line_facts(text)
        regs.update(a.register for a in facts.accesses
                    if a.kind != "read" and a.register in _SWITCHED)
        irq.update(facts.irq)
    return regs, irq


@rule(id="tlb-symmetry", category=Category.TLB_SYMMETRY, severity=Severity.WARNING,
      summary="the switch-to-host TLB helper does not undo what switch-to-guest changed")
def tlb_symmetry(series: Series, ctx: Context) -> list[Finding]:
    """__tlb_switch_to_guest (enter_vmid_context) changes TGE, the interrupt
    mask and, for the speculative-AT erratum, TCR/SCTLR so that TLB
    maintenance hits the guest's regime; __tlb_switch_to_host must undo each
    of these and nothing else, or the host keeps running with part of the
    guest's configuration."""
    sv = view(series, ctx)
    emit = Emit(rule="tlb-symmetry", category=Category.TLB_SYMMETRY, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        for fv in pv.files:
            names: dict[str, Role] = {}
            for fname in fv.functions():
                role = M.role(mdl, fname, fv.path)
                if role in (Role.TLB_TO_GUEST, Role.TLB_TO_HOST):
                    names[fname] = role
            if not names or fv.deleted:
                continue
            for fname, role in names.items():
                _tlb_function(emit, sv, pv, fv, fname, role, mdl)
        if isinstance(mdl, RegisterModel) and not any(f.patch == pv.index for f in emit.out):
            sem = semantics(sv, pv, ctx)
            if sem is not None:
                # A comparison of the pair's end states: a line moved into
                # a condition is new behaviour, not moved code.
                pairwise = Emit(rule="tlb-symmetry", category=Category.TLB_SYMMETRY, sv=sv,
                                compared=True)
                roundtrip.check(pairwise, pv, sem, tlb=True)
                emit.out.extend(pairwise.out)
    return emit.out


def _net(pv: PatchView, fv: FileView, fname: str) -> dict[str, tuple[set[str], Line | None]]:
    """Registers written and IRQ calls the patch adds to / removes from a function."""
    acc: dict[str, set[str]] = {"+regs": set(), "-regs": set(), "+irq": set(), "-irq": set()}
    first: dict[str, Line] = {}
    for ln in fv.changed:
        if ln.function != fname or normalize(ln.text) in pv.moved:
            continue
        sign = "+" if ln.added else "-"
        regs = {a.register for a in ln.facts.accesses
                if a.kind != "read" and a.register in _SWITCHED}
        acc[sign + "regs"] |= regs
        acc[sign + "irq"] |= set(ln.facts.irq)
        for item in regs | set(ln.facts.irq):
            first.setdefault(sign + item, ln)
    out: dict[str, tuple[set[str], Line | None]] = {}
    for kind in ("regs", "irq"):
        for sign, other in (("+", "-"), ("-", "+")):
            items = acc[sign + kind] - acc[other + kind]
            out[sign + kind] = (items, next((first[sign + i] for i in sorted(items)), None))
    return out


def _tlb_function(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, fname: str,
                  role: str, mdl: RegisterModel | None) -> None:
    net = _net(pv, fv, fname)
    other_role = "tlb-to-host" if role == "tlb-to-guest" else "tlb-to-guest"
    for sign in ("+", "-"):
        regs, ln_r = net[sign + "regs"]
        irq, ln_i = net[sign + "irq"]
        ln = ln_r or ln_i
        if ln is None:
            continue
        other = _counterpart(sv, pv, fv, fname, mdl)
        if other is None or not other.lines:
            emit(Severity.QUESTION, pv, fv, ln, register=_first(regs),
                 message="%s() %s %s; the patch does not show its %s counterpart: does it "
                 "still undo exactly what this side changes?" % (
                     fname, "now changes" if sign == "+" else "no longer changes",
                     ", ".join(sorted(regs) + [i + "()" for i in sorted(irq)]),
                     other_role.replace("tlb-", "")))
            continue
        o_regs, o_irq = _side_facts(other)
        want = {_PAIRS[i] for i in irq if i in _PAIRS}
        if sign == "+":
            missing, missing_irq = sorted(regs - o_regs), sorted(want - o_irq)
        else:
            missing, missing_irq = sorted(regs & o_regs), sorted(want & o_irq)
        if not missing and not missing_irq:
            continue
        what = ", ".join(missing + [i + "()" for i in missing_irq])
        sev = Severity.WARNING if other.complete else Severity.QUESTION
        if sign == "+":
            msg = "%s() now changes %s, but %s() does not undo it." % (fname, what, other.name)
        else:
            msg = ("%s() no longer does %s, but %s() still does its counterpart: the two "
                   "sides are no longer symmetric." % (fname, ", ".join(
                       sorted(regs) + [i + "()" for i in sorted(irq)]), other.name))
        emit(sev, pv, fv, ln, register=_first(set(missing) or regs), message=msg)


def _first(regs: set[str]) -> str | None:
    for reg in M.WATCHED:
        if reg in regs:
            return reg
    return sorted(regs)[0] if regs else None


def _counterpart(sv: SeriesView, pv: PatchView, fv: FileView, name: str,
                 mdl: RegisterModel | None) -> FunctionText | None:
    """The other half of the kvm.toml [[round_trips]] pair `name` belongs to
    (a suffix kept: __tlb_switch_to_guest_vhe -> __tlb_switch_to_host_vhe)."""
    for save, restore in mdl.facts.round_trips if mdl is not None else ():
        for mine, theirs in ((save, restore), (restore, save)):
            if name.startswith(mine):
                return sv.function(pv, fv, theirs + name[len(mine):])
    return None
