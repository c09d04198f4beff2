"""Rule families 8 and 15: polarity of what is set, and host-flag placement.

Most HCR_EL2 bits trap when set; a few (API, APK, ATA, FIEN, EnSCXT, ...)
allow when set. Reading `|=` as "more traps" is right for the first kind
and exactly wrong for the second. Host flag sets are the two values the
host runs with (VHE and nVHE); a bit in one and not the other needs a
reason the architecture gives.
"""

from __future__ import annotations

import re

from bot.data import Series
from bot.regmodel import Field, Register, RegisterModel
from bot.rules import entrystate, hostvalues, keepmask, neverset
from bot.rules import model as M
from bot.rules.analysis import Emit, FileView, Line, PatchView, view
from bot.rules.core import Category, Context, Finding, Severity, rule
from bot.rules.flow import semantics

_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)")
_STOP = re.compile(r"(?i)\b(stop|disable|don'?t|do not|no longer|avoid|turn off|drop|remove|"
                   r"without)\w*\s+(\w+\s+){0,3}trap|\b(allow|permit|let)\w*\s+(\w+\s+){0,4}"
                   r"(use|access)")
# A sentence that says the bit traps (and does not say the opposite).
_START = re.compile(r"(?i)\b(trap|traps|trapping|trapped|route|routes|routing|intercept\w*)\b")
_GUEST_MERGE = re.compile(r"(vcpu_read_sys_reg|__vcpu_sys_reg|vcpu_sys_reg)\s*\(\s*vcpu\s*,\s*"
                          r"HCR_EL2\s*\)|\b(vhcr|guest_hcr|nested_hcr|hcr_el2_guest)\w*")
_HOST_SETS = ("HCR_HOST_NVHE_FLAGS", "HCR_HOST_VHE_FLAGS")
_EXPLAINED = re.compile(r"(?i)\bE2H\b|\bTGE\b|no effect|RES0 when|ignored when|only (for|on|in) "
                        r"(n?vhe|non-vhe)|not (needed|relevant|applicable) (for|on|with|under)")


def _define_text(fv: FileView, name: str, side: str) -> tuple[str, Line | None]:
    """The whole `#define name ...` on one side of the file's hunks."""
    lines = [ln for ln in fv.lines if (ln.new_side if side == "new" else ln.old_side)]
    for i, ln in enumerate(lines):
        m = _DEFINE.match(ln.text)
        if m and m.group(1) == name:
            parts, j = [ln.text], i
            while parts[-1].rstrip().endswith("\\") and j + 1 < len(lines):
                j += 1
                parts.append(lines[j].text)
            first_changed = next((x for x in lines[i:j + 1] if x.kind != " "), ln)
            return " ".join(p.rstrip("\\") for p in parts), first_changed
    return "", None


def _changed_defines(fv: FileView) -> set[str]:
    names: set[str] = set()
    current = None
    for ln in fv.lines:
        m = _DEFINE.match(ln.text)
        if m:
            current = m.group(1)
        if current and ln.kind != " ":
            names.add(current)
        if not ln.text.rstrip().endswith("\\"):
            current = None
    return names


def _set_fields(mdl: RegisterModel | None, expr: str) -> dict[str, M.FieldRef]:
    body = expr.split(None, 2)[-1] if expr else ""
    return {f.name: f for f in M.fields_in(mdl, body)}


@rule(id="polarity", category=Category.POLARITY, severity=Severity.WARNING,
      summary="a bit set or cleared against its polarity or the stated intent")
def polarity(series: Series, ctx: Context) -> list[Finding]:
    """Set versus clear must match what the comment and the commit message
    say, and what the bit means: most HCR_EL2 bits trap when set, the
    "allow" bits (API, APK, ATA, FIEN, EnSCXT, AMVOFFEN, TWEDEn) remove a
    trap when set. OR-merging a guest hypervisor's HCR_EL2 to "add its
    traps" also ORs its allow bits. Dropping a bit from HCR_GUEST_FLAGS
    changes every guest."""
    sv = view(series, ctx)
    emit = Emit(rule="polarity", category=Category.POLARITY, sv=sv)
    mdl = ctx.regmodel
    for pv in sv.relevant():
        for fv in pv.files:
            if fv.path.endswith("kvm_arm.h") and "HCR_GUEST_FLAGS" in _changed_defines(fv):
                _guest_flags(emit, pv, fv, mdl)
            for ln in fv.changed:
                if ln.added:
                    _intent(emit, pv, fv, ln, mdl)
                    _merge(emit, pv, fv, ln)
        if isinstance(mdl, RegisterModel) and any(
                ln.added and "&=" in ln.code for fv in pv.files for ln in fv.changed):
            sem = semantics(sv, pv, ctx)
            if sem is not None:
                neverset.check(emit, pv, sem)
    # Values of the other registers (PSTATE, SPSR, SCTLR), in patches these
    # checks pick themselves.
    keepmask.check(emit, sv, ctx)
    entrystate.check(emit, sv, ctx)
    return emit.out


def _guest_flags(emit: Emit, pv: PatchView, fv: FileView, mdl: RegisterModel | None) -> None:
    old, _ = _define_text(fv, "HCR_GUEST_FLAGS", "old")
    new, where = _define_text(fv, "HCR_GUEST_FLAGS", "new")
    if not old or not new or where is None:
        return
    before, after = _set_fields(mdl, old), _set_fields(mdl, new)
    for name in sorted(set(before) - set(after)):
        pol = before[name].polarity or M.polarity(mdl, "HCR_EL2", name)
        if pol == "allow":
            continue
        emit(Severity.QUESTION, pv, fv, where, register="HCR_EL2", fields=(name,),
             message="dropping %s from HCR_GUEST_FLAGS changes what every guest runs with: "
             "what makes that safe for all of them?" % name)
    for name in sorted(set(after) - set(before)):
        pol = after[name].polarity or M.polarity(mdl, "HCR_EL2", name)
        if pol == "allow":
            emit(Severity.QUESTION, pv, fv, where, register="HCR_EL2", fields=(name,),
                 message="%s is an allow bit: adding it to HCR_GUEST_FLAGS grants every guest "
                 "the access it controls, whether or not it was configured for it." % name)


def _ops(ln: Line) -> list[tuple[str, str]]:
    """(set|clear, expression) for each change of an HCR/MDCR value on the
    line; accumulators named for what they do (mdcr_clear |= X) count as
    what their name says."""
    out: list[tuple[str, str]] = []
    for a in ln.facts.assigns:
        target = a.target.lower()
        clears = target.endswith(("clear", "clr"))
        if a.op == "|=":
            out.append(("clear" if clears else "set", a.value))
        elif a.op == "&=~":
            out.append(("clear", a.value))
    for acc in ln.facts.accesses:
        if acc.kind == "clear-set" and acc.register in M.WATCHED:
            out.append(("clear", acc.clear))
            out.append(("set", acc.set))
    return out


# A guard that says "the feature is absent" (so trap it) or "an erratum
# needs this" (so trap it): what sits under it is meant to trap more.
_WANTS_TRAP = re.compile(r"!\s*(FIELD_GET|kvm_has_feat|cpus_have\w*|system_supports\w*|"
                         r"kvm_vcpu_has\w*|vcpu_has\w*|has_\w+)\b|<\s*ID_\w+|WORKAROUND")
# A function named for setting or clearing traps.
_FN_TRAPS = re.compile(r"(?i)(set|enable|activate|add)\w*_traps?\b|(clear|disable|remove)\w*"
                       r"_traps?\b")


def _intent(emit: Emit, pv: PatchView, fv: FileView, ln: Line, mdl: RegisterModel | None) -> None:
    """The intent a statement's context gives, against what it does: the
    comment above it, the function's name, the guard it sits under, and
    the statement it replaces."""
    ops = _ops(ln)
    if not ops:
        return
    comment = _comment_above(fv, ln)
    replaced = _replaced_ops(fv, ln)
    guard = _guard_above(fv, ln)
    for action, expr in ops:
        for f in M.fields_in(mdl, expr):
            pol = f.polarity or M.polarity(mdl, f.register, f.name)
            if pol not in ("trap", "allow"):
                continue
            traps_more = (action == "set") == (pol == "trap")
            top = _top_level(ln)
            said, where = _intended(pv, comment, guard, ln.function or "" if top else "",
                                    f.name)
            flipped = any(a != action and f.name in [x.name for x in M.fields_in(mdl, e)]
                          for a, e in replaced)
            if said is not None and (said == "start") != traps_more:
                emit(Severity.WARNING if where != "commit message" else Severity.QUESTION,
                     pv, fv, ln, register=f.register, fields=(f.name,),
                     message="%s.%s is %s bit: %s it %s trapping, but the %s says the "
                     "opposite." % (f.register, f.name,
                                    "an allow" if pol == "allow" else "a trap",
                                    "setting" if action == "set" else "clearing",
                                    "adds" if traps_more else "removes", where))
            elif flipped and said is None:
                emit(Severity.QUESTION, pv, fv, ln, register=f.register, fields=(f.name,),
                     message="this now %s %s.%s where the code %s it: %s trapping for every "
                     "path through here, is that the intent?" % (
                         "sets" if action == "set" else "clears", f.register, f.name,
                         "cleared" if action == "set" else "set",
                         "more" if traps_more else "less"))


def _top_level(ln: Line) -> bool:
    """The statement is at the function body's own level (not under an
    if/else, whose other branch may do the opposite on purpose)."""
    text = ln.text.expandtabs(8)
    return len(text) - len(text.lstrip()) <= 8


def _intended(pv: PatchView, comment: str, guard: str, function: str,
              name: str) -> tuple[str | None, str]:
    """("start"|"stop"|None, where the intent comes from)."""
    said = _said("", comment, name) or _said_near(comment)
    if said is not None:
        return said, "comment"
    m = _FN_TRAPS.search(function)
    if m is not None:
        return ("start" if m.group(1) else "stop"), "function's name"
    if guard and _WANTS_TRAP.search(guard):
        return "start", "condition it is under"
    said = _said(pv.message, "", name)
    return (said, "commit message") if said is not None else (None, "")


def _said_near(comment: str) -> str | None:
    """A short comment right above a statement is about that statement,
    whether or not it names the field ("trap error record accesses")."""
    if not comment or len(comment) > 120:
        return None
    if _STOP.search(comment):
        return "stop"
    if _START.search(comment):
        return "start"
    return None


def _guard_above(fv: FileView, ln: Line) -> str:
    """The `if (...)` (or `else` of one) a statement sits under, when the
    hunk shows it."""
    above = [x for x in fv.lines if x.new_side and x.function == ln.function
             and (x.new_no or 0) < (ln.new_no or 0)]
    indent = len(ln.text) - len(ln.text.lstrip())
    for x in reversed(above[-6:]):
        code = x.code.strip()
        lead = len(x.text) - len(x.text.lstrip())
        if lead < indent and code.startswith(("if", "} else if", "else if")):
            return code
        if lead < indent and code.startswith(("else", "} else")):
            return ""
        if lead < indent and code:
            break
    return ""


def _replaced_ops(fv: FileView, ln: Line) -> list[tuple[str, str]]:
    """The operations of the lines this added line replaces (the removed
    lines just above it in the same hunk)."""
    out: list[tuple[str, str]] = []
    lines = list(fv.lines)
    i = lines.index(ln)
    j = i - 1
    while j >= 0 and lines[j].hunk == ln.hunk and (lines[j].removed or lines[j].added):
        if lines[j].removed:
            out.extend(_ops(lines[j]))
        j -= 1
    return out


_COMMENT_LINE = re.compile(r"^\s*(/\*|\*|//)")


def _comment_above(fv: FileView, ln: Line) -> str:
    """The comment block just above a statement (a guarding `if (...)`
    line between them allowed), on the new side."""
    above = [x for x in fv.lines if x.new_side and x.function == ln.function
             and (x.new_no or 0) < (ln.new_no or 0)]
    out: list[str] = []
    skipped = 0
    for x in reversed(above):
        if _COMMENT_LINE.match(x.text) or x.text.rstrip().endswith("*/"):
            out.append(x.text)
        elif out or skipped >= 2 or not x.text.strip():
            break
        else:
            skipped += 1
    return " ".join(t.strip().lstrip("/*").rstrip("*/").strip() for t in reversed(out))


# Words that turn something off: a text that says the bit traps and also
# says this turns something off is not read as either.
_OFF = re.compile(r"(?i)\b(turn\w*\s+(\w+\s+)?off|disabl\w*|don'?t|do not|stop\w*|no longer|"
                  r"avoid\w*|clear\w*)\b")


def _said(message: str, comment: str, name: str) -> str | None:
    for text in (comment, message):
        said = None
        for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", text):
            if not re.search(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(name), sentence):
                continue
            if _STOP.search(sentence):
                return "stop"
            if _START.search(sentence):
                said = "start"
        if said == "start" and _OFF.search(text) is None:
            return said
    return None


def _merge(emit: Emit, pv: PatchView, fv: FileView, ln: Line) -> None:
    for a in ln.facts.assigns:
        if a.op != "|=" or a.register != "HCR_EL2":
            continue
        if _GUEST_MERGE.search(a.value) and "&" not in a.value:
            emit(Severity.QUESTION, pv, fv, ln, register="HCR_EL2",
                 message="OR-merging the guest hypervisor's HCR_EL2 also ORs its allow bits "
                 "(API, APK, ATA, ...), which removes traps instead of adding them: should "
                 "the value be masked first?")


@rule(id="host-flags", category=Category.HOST_FLAGS, severity=Severity.QUESTION,
      summary="a bit added to one host configuration's HCR_EL2 but not the others")
def host_flags(series: Series, ctx: Context) -> list[Finding]:
    """The VHE, nVHE, protected and hVHE hosts are the same kernel
    configured different ways; a bit one host's HCR_EL2 gains and another's
    lacks is a statement about the architecture (for example: the bit has
    no effect when E2H and TGE are both set, as for ATA). The patch should
    say which, so the next reader does not "fix" it; a bit that has no
    effect in the configurations lacking it is not asked about."""
    sv = view(series, ctx)
    emit = Emit(rule="host-flags", category=Category.HOST_FLAGS, sv=sv)
    mdl = ctx.regmodel
    if not isinstance(mdl, RegisterModel):
        return emit.out
    reg = mdl.register("HCR_EL2")
    if reg is None:
        return emit.out
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        old_ev, new_ev = sem.evaluator("old"), sem.evaluator("new")
        sets = _host_sets(mdl, pv)
        values = {n: v for n in sets if (v := new_ev.value(n)) is not None}
        hostvalues.check(emit, pv, sem, reg, values, _ignored_mask)
        for fv in pv.files:
            if not fv.path.endswith(".h"):
                continue
            for name in sorted(_changed_defines(fv) & sets):
                new = new_ev.value(name)
                old = old_ev.value(name)
                if new is None or old is None:
                    continue
                _, where = _define_text(fv, name, "new")
                if where is None:
                    continue
                for f in reg.fields:
                    if not (new & ~old & f.mask):
                        continue
                    lacking = [other for other in sorted(sets - {name})
                               if (v := new_ev.value(other)) is not None and not v & f.mask
                               and not _ignored(reg, f, v)]
                    if not lacking:
                        continue
                    emit(Severity.QUESTION, pv, fv, where, register="HCR_EL2", fields=(f.name,),
                         message="%s is added to %s but not to %s: what makes it right for one "
                         "host configuration and not the other%s?" % (
                             f.name, name, " or ".join(lacking),
                             "s" if len(lacking) > 1 else ""))
    return emit.out


def _host_sets(mdl: RegisterModel, pv: PatchView) -> set[str]:
    """The host configurations' HCR_EL2 flag sets: the model's, and any the
    patch defines."""
    names = {fs.name for fs in mdl.flag_sets
             if fs.register == "HCR_EL2" and "_HOST_" in fs.name}
    for fv in pv.files:
        names |= {n for n in _changed_defines(fv) if n.startswith("HCR_HOST_")
                  and n.endswith("_FLAGS")}
    return names


def _ignored_mask(reg: Register, mask: int, value: int) -> bool:
    f = next((g for g in reg.fields if g.mask == mask), None)
    return f is not None and _ignored(reg, f, value)


def _ignored(reg: Register, f: Field, value: int) -> bool:
    """The field has no effect in a configuration with this value."""
    if not f.ignored_when:
        return False
    masks = [g.mask for g in (reg.field(n) for n in f.ignored_when) if g is not None]
    return bool(masks) and all(value & m == m for m in masks)
