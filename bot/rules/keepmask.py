"""Rule family 8, polarity, by values: a keep-mask where a clear-mask was meant.

`spsr &= ~overlap` clears the bits of a register value that mean something
else in another view; `spsr &= overlap` keeps only them and clears the
rest. A register value (a live read, the guest's PSTATE or SPSR, a copy
of a register, a parameter named for one: kvm.toml [regvalues]) ANDed in
place with a constant mask of a few bits, when the code around it says
those bits are the ones to drop - the mask's name or the comment on its
definition (kvm.toml [regvalues] drop_words), or the same mask applied
with `~` elsewhere in the code at hand and never kept - and what is left
still goes on as the register value (written to a register, or returned
to a caller that writes it), is asked about: few register values mean to
keep only those bits. A field taken out of the value (shifted, compared,
FIELD_GET) is no register value any more and is left alone. Pure.
"""

from __future__ import annotations

import re

from bot.rules.analysis import Emit, Line, PatchView, SeriesView
from bot.rules.bits import MASK64, Bits
from bot.rules.cexpr import Name, expr_text
from bot.rules.core import Context, Severity
from bot.rules.cstmt import Decl, Function, walk
from bot.rules.flow import line_at
from bot.rules.regvalue import (
    Point,
    Recorder,
    bit_list,
    header_params,
    register_of_source,
    traced,
    written_as,
)
from bot.rules.semantic import PatchSemantics
from bot.rules.trace import Ev, Trace

# An added line that ANDs in place with no `~`: `x &= mask`, `x = x & mask`.
# Only added lines holding a `&` are tried (the pattern over every line of
# every mail body cost more than the rest of this check).
_AND_LINE = re.compile(r"\n\+(?!\+)([^\n]*&[^\n]*)")
_KEEP = re.compile(r"[^&|^!<>=]&=\s*[\w(]|\b(\w+)\s*=\s*\1\s*&\s*[\w(]")


def _keeps(body: str) -> bool:
    return any(_KEEP.search(m.group(1)) is not None
               for m in _AND_LINE.finditer("\n" + body))


def check(emit: Emit, sv: SeriesView, ctx: Context) -> None:
    for t in traced(sv, ctx, _keeps):
        for point in t.rec.points:
            if point.kind == "and":
                _point(emit, t.pv, t.sem, t.trace, t.rec, point)


def _point(emit: Emit, pv: PatchView, sem: PatchSemantics, trace: Trace, rec: Recorder,
           point: Point) -> None:
    ln = _added(pv, point)
    if ln is None:
        return
    facts = sem.facts
    mask = rec.value(point, point.expr).value
    if mask is None or bin(mask).count("1") > facts.regvalues.few_bits:
        return
    old = rec.value(point, Name(point.target))
    params = header_params(pv, point.function)
    regs = [(name, m, reg) for name, m in old.srcs
            if (reg := register_of_source(name, facts, params)) is not None]
    if not regs:
        return
    source, whole, register = max(regs, key=lambda r: bin(r[1]).count("1"))
    dropped = whole & ~mask
    if bin(dropped).count("1") <= facts.regvalues.few_bits:
        return
    why = _drop_intent(point, sem, pv, ln, rec, mask)
    if why is None:
        return
    sink = _sink(trace, point, source, mask, sem)
    if sink is None:
        return
    kept = mask & whole
    name = expr_text(point.expr)
    emit(Severity.QUESTION, pv, pv.file(point.function.path), ln, register=register,
         message="%s(): `%s &= %s` keeps only %s of the %s value and clears the other %d, "
         "and what is left %s; yet %s. Is `%s &= ~%s` meant?" % (
             point.function.name, point.target, name, bit_list(kept), register,
             bin(dropped).count("1"), sink, why, point.target,
             name if isinstance(point.expr, Name) else "(%s)" % name))


def _added(pv: PatchView, point: Point) -> Line | None:
    for no in range(point.line, max(point.end, point.line) + 1):
        ln = line_at(pv, point.function.path, no, "new")
        if ln is not None and ln.added:
            return ln
    return None


def _drop_intent(point: Point, sem: PatchSemantics, pv: PatchView, ln: Line,
                 rec: Recorder, mask: int) -> str | None:
    """Why the mask's bits look like the ones to clear, in words; None
    when nothing says so."""
    rv = sem.facts.regvalues
    if isinstance(point.expr, Name):
        name = point.expr.id
        if rv.drop_word(name) is not None:
            return "the mask's name (%s) says they are the bits to drop" % name
        comment = _definition_comment(point, sem, pv, name)
        word = rv.drop_word(comment) if comment else None
        if word is not None:
            return "the comment on its definition says they are the bits to %s" % word
        cleared, kept = _uses(point, sem, pv, ln, name)
        if cleared and not kept:
            return "%s is applied with `~` (cleared) everywhere else" % name
    refilled = 0
    for p in rec.points:
        if p.kind == "or" and p.target == point.target and p.line > point.line:
            refilled |= ~rec.value(p, p.expr).zeros & mask
    if refilled:
        return "the lines after it OR new values into %s, as one does after clearing them" % (
            bit_list(refilled))
    return None


def _definition_comment(point: Point, sem: PatchSemantics, pv: PatchView, name: str) -> str:
    """The comment on the line defining `name` (a local's declaration or a
    #define the patch or the file shows), or just above it."""
    lines = _file_lines(sem, pv, point.function.path)
    define = re.compile(r"^\s*#\s*define\s+%s\b" % re.escape(name))
    decl_lines = {s.line for s in walk(point.function.body)
                  if isinstance(s, Decl) and any(d.name == name for d in s.names)}
    for i, text in enumerate(lines):
        if (i + 1) in decl_lines or define.match(text):
            above: list[str] = []
            j = i - 1
            while j >= 0 and re.match(r"^\s*(/?\*|//)", lines[j]):
                above.insert(0, lines[j])
                j -= 1
            trailing = re.search(r"(/\*.*?(\*/|$)|//.*)$", text)
            return " ".join(above + ([trailing.group(1)] if trailing else []))
    return ""


def _file_lines(sem: PatchSemantics, pv: PatchView, path: str) -> list[str]:
    text = sem.sv.file_after(pv, path) if sem.from_tree else None
    if text is not None:
        return text.split("\n")
    fv = pv.file(path)
    if fv is None:
        return []
    out = [""] * max((ln.new_no or 0) for ln in fv.lines if ln.new_side)
    for ln in fv.lines:
        if ln.new_side and ln.new_no:
            out[ln.new_no - 1] = ln.text
    return out


def _uses(point: Point, sem: PatchSemantics, pv: PatchView, ln: Line,
          name: str) -> tuple[int, int]:
    """How often the code at hand (the file after the patch, or both sides
    of the hunks) ANDs with `~name` and with `name` itself, this line
    apart."""
    texts: list[str] = []
    text = sem.sv.file_after(pv, point.function.path) if sem.from_tree else None
    if text is not None:
        texts = [t for i, t in enumerate(text.split("\n"), 1)
                 if not point.line <= i <= max(point.end, point.line)]
    else:
        for fv in pv.files:
            texts.extend(x.code for x in fv.lines if x is not ln)
    word = re.escape(name)
    cleared = kept = 0
    for t in texts:
        cleared += len(re.findall(r"&=?\s*~\s*\(?\s*%s\b" % word, t))
        kept += len(re.findall(r"&=?\s*\(?\s*%s\b" % word, t))
    return cleared, kept


def _reused(point: Point, trace: Trace, fn: Function) -> bool:
    """After the AND, the local is assigned anew, shifted, or compared on
    the lines at hand (a field taken out of it, or another value)."""
    word = re.compile(r"\b%s\b\s*(>>|<<|==|!=|(?<![|&^])=(?!=))|(>>|<<|==|!=)\s*\(?\s*%s\b" % (
        re.escape(point.target), re.escape(point.target)))
    for stmt in walk(fn.body):
        line = getattr(stmt, "line", 0)
        if line > point.line and not isinstance(stmt, Decl) and word.search(_text(stmt)):
            return True
    return False


def _text(stmt: object) -> str:
    expr = getattr(stmt, "expr", None) or getattr(stmt, "cond", None) or getattr(
        stmt, "value", None)
    return expr_text(expr) if expr is not None else ""


def _sink(trace: Trace, point: Point, source: str, mask: int,
          sem: PatchSemantics) -> str | None:
    """Where what is left goes on as the register value, in words: a
    register write, a store into a register value, a writer call, or the
    function's return, unshifted (None: it goes nowhere as such)."""
    facts = sem.facts
    fn = point.function

    def reduced(v: Bits | None) -> bool:
        """What is left of the value: its own bits only where the mask
        kept them, or nothing but bits of the mask (what was ORed back)."""
        if v is None:
            return False
        m = dict(v.srcs).get(source, 0)
        confined = not ~v.zeros & ~mask & MASK64 and v.known != MASK64
        return (bool(m) and not m & ~mask & MASK64) or confined

    for e in trace.events:
        if e.depth or e.line < point.line:
            continue
        if e.kind is Ev.WRITE and reduced(e.value):
            return "is written to %s" % e.register
        if e.kind is Ev.STORE and e.storage and reduced(e.value):
            reg = facts.regvalues.register_of(e.storage)
            if reg is not None:
                return "is stored as the %s value (%s)" % (reg, e.storage)
        if e.kind is Ev.CALL and e.name in facts.regvalues.writers:
            w = facts.regvalues.writers[e.name]
            if w.value < len(e.args) and reduced(e.args[w.value]):
                return "is handed to %s()" % e.name
    returned = any(reduced(e.value) for e in trace.events
                   if e.kind is Ev.RETURN and e.depth == 0 and e.line >= point.line)
    if not returned:
        # A function the hunks show only up to here: what is left goes on
        # past the lines at hand, unless they take a field out of it.
        if not fn.has_end and not _reused(point, trace, fn):
            return "goes on past the lines the patch shows"
        return None
    written = written_as(sem, fn.name)
    if written is not None:
        return "is returned (%s writes %s()'s result)" % (
            written[1] + ("()" if written[1].isidentifier() else ""), fn.name)
    return "is returned"
