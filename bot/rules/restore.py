"""Rule families 3, 4, 5 and 9: what the host gets back on the way out.

Host restore on every path, the same value after a "no functional change"
refactor, constants kept constant on the exit path, and the PMU/SPE/trace
ownership the host expects in MDCR_EL2.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.parse.csource import split_args
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView, normalize, view
from bot.rules.core import Category, Context, Finding, Severity, Status, rule

_EXIT_ROLES = ("exit", "panic", "early-exit")
_PATH_ROLES = ("entry", "exit", "panic", "early-exit", "tlb-to-guest", "tlb-to-host")
_RESTORE_CALL = re.compile(r"\b(_*deactivate_traps\w*|__load_host_stage2|"
                           r"__debug_switch_to_host\w*|sysreg_restore_host\w*)\s*\(")
_CALL = re.compile(r"\b([a-z_]\w*)\s*\(")
_NOT_CALLS = {"if", "for", "while", "switch", "return", "sizeof", "write_sysreg",
              "read_sysreg", "isb", "likely", "unlikely", "has_vhe", "BUG_ON", "WARN_ON"}
_REASON = re.compile(r"(?i)\bvar(y|ies)\b|depend|protected|hvhe|configur|"
                     r"differ|chosen at|decided at|at init time")
_PTRAUTH_ONLY = re.compile(r"(?i)\b(api|apk|ptrauth|pointer auth)")
_OWNERSHIP = re.compile(r"MDCR_EL2_(HPMN|E2PB|E2TB)")
_FEATURE_BITS = re.compile(r"MDCR_EL2_(E2PB|E2TB|TPMS|TTRF|HPMD|HCCD|PMSSE|EnSPM|HPMFZ\w*|"
                           r"PMEE|EBWE|TDCC|MTPME|HLP)")
_PROBE = re.compile(r"(?i)id_aa64dfr\d|pmsver|pmuver|tracebuf|tracever|\bcbz\b|\bcbnz\b|"
                    r"\bb\.(lt|eq|ne|ge)\b|\btbz\b|cpus_have|has_\w+\(|system_supports|"
                    r"kvm_has_feat|_feature\(")


def _roles(ctx: Context, fv: FileView, name: str | None) -> str | None:
    return M.role(ctx.regmodel, name, fv.path)


def _writes_reg(ln: Line, reg: str) -> bool:
    return bool(ln.facts.writes(reg))


@rule(id="host-restore", category=Category.HOST_RESTORE, severity=Severity.WARNING,
      summary="a path back to the host no longer restores the host's HCR_EL2/MDCR_EL2")
def host_restore(series: Series, ctx: Context) -> list[Finding]:
    """Every way back to the host, including hyp_panic and the early-exit
    fixups, has to put the host's HCR_EL2 and MDCR_EL2 back: the host runs
    with the guest's traps otherwise, and the next fault it takes lands in
    a hypervisor that does not expect it. Removing the restore from one
    path is only right if the path now goes through another that does it."""
    sv = view(series, ctx)
    emit = Emit(rule="host-restore", category=Category.HOST_RESTORE, sv=sv)
    for pv in sv.relevant():
        _stale_callers(emit, sv, pv, ctx)
        added_writes = {(reg, ln.function) for f in pv.files for ln in f.changed
                        if ln.added for reg in M.WATCHED if _writes_reg(ln, reg)}
        added_regs = {reg for reg, _ in added_writes}
        for fv in pv.files:
            if not fv.hyp or fv.deleted:
                continue
            for ln in fv.changed:
                if not ln.removed or _roles(ctx, fv, ln.function) not in _EXIT_ROLES:
                    continue
                for reg in M.WATCHED:
                    if not _writes_reg(ln, reg) or (reg, ln.function) in added_writes:
                        continue
                    if _restored_elsewhere(sv, pv, fv, ln, reg, added_regs):
                        continue
                    fn = sv.function(pv, fv, ln.function or "")
                    if not fn.lines:
                        continue  # the function itself went away: not a path any more
                    texts = [t for _, t in fn.lines]
                    # A restore helper still called may write it (its body is not here).
                    helper = any(_RESTORE_CALL.search(t) for t in texts)
                    new_calls = {m.group(1) for x in fv.changed if x.added
                                 and x.function == ln.function
                                 for m in _CALL.finditer(x.code)} - _NOT_CALLS
                    sev = Severity.WARNING if fn.complete and not new_calls and not helper \
                        else Severity.QUESTION
                    emit(sev, pv, fv, ln, register=reg,
                         message="%s() no longer writes the host's %s on its way back to the "
                         "host: which path restores it now?" % (ln.function, reg))
    return emit.out


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


def _restored_elsewhere(sv: SeriesView, pv: PatchView, fv: FileView, ln: Line, reg: str,
                        added_regs: set[str]) -> bool:
    """The same write, moved to a helper or another file within the patch."""
    return normalize(ln.text) in pv.moved


def _value_ops(pv: PatchView, removed: bool) -> dict[tuple[str, str, tuple[str, ...]], Line]:
    out: dict[tuple[str, str, tuple[str, ...]], Line] = {}
    for fv in pv.files:
        for ln in fv.changed:
            if ln.removed != removed:
                continue
            for a in ln.facts.assigns:
                key = (a.register, a.op, tuple(sorted(M.macros(a.value))))
                if key[2]:
                    out.setdefault(key, ln)
            for acc in ln.facts.accesses:
                if acc.register in M.WATCHED and acc.kind != "read":
                    names = tuple(sorted(M.macros(acc.value + " " + acc.clear + " " + acc.set)))
                    if names:
                        out.setdefault((acc.register, "write", names), ln)
    return out


@rule(id="same-value", category=Category.SAME_VALUE, severity=Severity.WARNING,
      summary='a "no functional change" patch changes the host value')
def same_value(series: Series, ctx: Context) -> list[Finding]:
    """A refactor that says it changes nothing must hand the host exactly
    the value it had before. Dropping a mask or an OR while moving the
    restore code changes a trap bit for every host, and nobody looks for
    it because the commit message promised nothing changed."""
    sv = view(series, ctx)
    emit = Emit(rule="same-value", category=Category.SAME_VALUE, sv=sv)
    for pv in sv.relevant():
        if not pv.claims_no_change:
            continue
        before = _value_ops(pv, removed=True)
        after = _value_ops(pv, removed=False)
        after_names = {n for key in after for n in key[2]}
        for key, ln in before.items():
            if key in after:
                continue
            lost = [n for n in key[2] if n not in after_names]
            if not lost:
                continue
            fv = next(f for f in pv.files if ln in f.lines)
            emit(Severity.WARNING, pv, fv, ln, register=key[0],
                 fields=M.field_names(ctx.regmodel, " ".join(lost)),
                 message="the commit message says no functional change, but %s no longer "
                 "appears in the %s value: the host gets a different %s." % (
                     ", ".join(lost), key[0], key[0]))
    return emit.out


def _constant(expr: str) -> bool:
    expr = expr.strip()
    return bool(expr) and re.fullmatch(r"[A-Z0-9_|&~()<>\s]+|0x[0-9a-fA-F]+|\d+", expr) is not None


@rule(id="hot-path-load", category=Category.HOT_PATH_LOAD, severity=Severity.QUESTION,
      summary="a constant host value on the exit path becomes a memory load")
def hot_path_load(series: Series, ctx: Context) -> list[Finding]:
    """Every guest exit restores the host's HCR_EL2. When that value is a
    compile-time constant the restore is an immediate; turning it into a
    load from per-CPU or global data costs on every exit and needs a host
    configuration that really varies. Flags that are harmless when their
    feature is absent (API/APK) are no such reason."""
    sv = view(series, ctx)
    emit = Emit(rule="hot-path-load", category=Category.HOT_PATH_LOAD, sv=sv)
    for pv in sv.relevant():
        for fv in pv.files:
            gone = {(ln.function, acc.register) for ln in fv.changed if ln.removed
                    for acc in ln.facts.accesses
                    if acc.register in M.WATCHED and acc.kind == "write" and _constant(acc.value)}
            if not gone:
                continue
            for ln in fv.changed:
                if not ln.added or _roles(ctx, fv, ln.function) not in _EXIT_ROLES:
                    continue
                for acc in ln.facts.accesses:
                    key = (ln.function, acc.register)
                    if key not in gone or acc.kind != "write" or _constant(acc.value):
                        continue
                    if _REASON.search(pv.message):
                        continue
                    sev = Severity.WARNING if _PTRAUTH_ONLY.search(pv.message) else \
                        Severity.QUESTION
                    emit(sev, pv, fv, ln, register=acc.register,
                         message="the host %s restored in %s() was a constant and is now "
                         "loaded from memory on every exit: which host configuration makes it "
                         "vary?" % (acc.register, ln.function))
    return emit.out


@rule(id="pmu-ownership", category=Category.PMU_OWNERSHIP, severity=Severity.WARNING,
      summary="the host loses HPMN or its SPE/trace-buffer ownership in MDCR_EL2")
def pmu_ownership(series: Series, ctx: Context) -> list[Finding]:
    """On exit the host must get its own MDCR_EL2.HPMN back, and E2PB/E2TB
    set the way the host expects (EL1&0 ownership under nVHE): otherwise
    host perf loses counters or SPE/TRBE traps. Bits for features that may
    be absent (SPE, TRBE) belong to feature-probing init code, never to a
    blind OR."""
    sv = view(series, ctx)
    emit = Emit(rule="pmu-ownership", category=Category.PMU_OWNERSHIP, sv=sv)
    for pv in sv.relevant():
        added_text = " ".join(ln.code for f in pv.files for ln in f.changed if ln.added)
        for fv in pv.files:
            for ln in fv.changed:
                role = _roles(ctx, fv, ln.function)
                if ln.removed and role in _EXIT_ROLES and not fv.deleted:
                    for m in _OWNERSHIP.finditer(ln.code):
                        if m.group(0) in added_text:
                            continue
                        emit(Severity.WARNING, pv, fv, ln, register="MDCR_EL2",
                             fields=(m.group(1),),
                             message="the host's MDCR_EL2.%s is no longer restored in %s(): "
                             "host perf/SPE/trace expect it back on exit." % (
                                 m.group(1), ln.function))
                        break
                elif ln.added and role == "init" and _FEATURE_BITS.search(ln.code) and (
                        "|=" in ln.code or "orr" in ln.code):
                    if _probed_before(fv, ln):
                        continue
                    fld = _FEATURE_BITS.search(ln.code).group(1)  # type: ignore[union-attr]
                    emit(Severity.QUESTION, pv, fv, ln, register="MDCR_EL2", fields=(fld,),
                         message="MDCR_EL2.%s is set here without a visible feature check: is "
                         "the feature probed first?" % fld)
    return emit.out


def _probed_before(fv: FileView, ln: Line) -> bool:
    seen = [x for x in fv.lines if x.new_side and x.function == ln.function]
    before = [x for x in seen if (x.new_no or 0) < (ln.new_no or 0)][-20:]
    return any(_PROBE.search(x.code) for x in before)
