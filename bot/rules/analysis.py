"""The series as the rules read it: changed lines with their function and facts.

Built once per series and shared by every rule (memoised on the `Context`).
Most patches on the list never touch HCR_EL2 or MDCR_EL2: those are
recognised from the raw mail text and never parsed further
(bot.rules.relevance), so the common patch costs microseconds. For the
others every hunk side is attributed to functions (hunk header and
tree-sitter) and every changed line is read for register facts.

Also here: what "pre-existing" and "resolved in series" mean, so every
rule applies them the same way. A line that the patch removes and adds
back unchanged (code moved between files, as in the 5.9 split of the hyp
code) is not new code; a finding on it is pre-existing. A finding whose
evidence line a later patch of the series removes is resolved in series.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from bot.data import FileDiff, Hunk, LineKind, Patch, Series
from bot.parse.csource import (
    EMPTY,
    LineFacts,
    attribute,
    find_function,
    is_asm,
    line_facts,
    strip_comment,
)
from bot.rules.core import Category, Context, Finding, Severity, Status
from bot.rules.relevance import (
    KERNEL_PREFIXES,
    CopyUse,
    hyp_register_names,
    loaded_copy_use,
    mapped_names,
    relevant,
)

_REG_TOKEN = re.compile(r"(?<![A-Za-z0-9_])(?:HCR|MDCR)_[A-Z0-9_]+|(?i:(?<![a-z0-9_])(?:sys_)?"
                        r"(?:hcr|mdcr)_el2(?![a-z0-9_]))")
_NFC = re.compile(r"(?i)no functional change|\bNFC\b|no change in behaviou?r|"
                  r"should be no functional|without functional change|functionally equivalent")


def normalize(text: str) -> str:
    return " ".join(strip_comment(text).split())


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One line of a file's diff, with what it does and where a reviewer would point."""

    kind: LineKind
    text: str
    code: str                 # comment stripped
    new_no: int | None
    old_no: int | None
    anchor: int               # new-file line a reviewer would quote (removed lines: the next)
    function: str | None
    facts: LineFacts
    hunk: int

    @property
    def added(self) -> bool:
        return self.kind is LineKind.ADDED

    @property
    def removed(self) -> bool:
        return self.kind is LineKind.REMOVED

    @property
    def new_side(self) -> bool:
        return self.kind is not LineKind.REMOVED

    @property
    def old_side(self) -> bool:
        return self.kind is not LineKind.ADDED


@dataclass(frozen=True, kw_only=True)
class FileView:
    """One file of a patch as the rules read it, line by line."""

    path: str
    old_path: str | None
    new_path: str | None
    lines: tuple[Line, ...]
    diff: FileDiff | None = None
    # What several checks derive from these lines alike (the functions the
    # hunks show), computed once (bot.rules.semantic.hunk_functions).
    derived: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def asm(self) -> bool:
        return is_asm(self.path)

    @property
    def hyp(self) -> bool:
        """Code that runs at EL2 (hyp objects, the EL2 setup, the stub)."""
        p = self.path
        return ("/kvm/hyp/" in p or p.endswith(("head.S", "hyp-stub.S", "el2_setup.h"))
                or "virt/kvm/arm/hyp/" in p)

    @property
    def deleted(self) -> bool:
        return self.new_path is None

    @property
    def vhe(self) -> bool:
        return "/hyp/vhe/" in self.path

    @property
    def nvhe(self) -> bool:
        return "/hyp/nvhe/" in self.path

    @cached_property
    def changed(self) -> tuple[Line, ...]:
        return tuple(ln for ln in self.lines if ln.kind is not LineKind.CONTEXT)

    def in_function(self, name: str | None, *, side: str = "new") -> list[Line]:
        return [ln for ln in self.lines if ln.function == name
                and (ln.new_side if side == "new" else ln.old_side)]

    def functions(self) -> list[str]:
        seen: list[str] = []
        for ln in self.changed:
            if ln.function and ln.function not in seen:
                seen.append(ln.function)
        return seen


@dataclass(frozen=True, kw_only=True)
class PatchView:
    """One patch as the rules read it: whether it matters, and its files."""

    patch: Patch
    relevant: bool
    files: tuple[FileView, ...] = ()

    @property
    def index(self) -> int:
        return self.patch.index

    @cached_property
    def message(self) -> str:
        return self.patch.subject + "\n" + (self.patch.body.message if self.relevant else "")

    @cached_property
    def claims_no_change(self) -> bool:
        return bool(_NFC.search(self.message))

    @cached_property
    def moved(self) -> frozenset[str]:
        """Normalised lines this patch both removes and adds (moved code)."""
        added = {normalize(ln.text) for f in self.files for ln in f.changed if ln.added}
        removed = {normalize(ln.text) for f in self.files for ln in f.changed if ln.removed}
        return frozenset(t for t in added & removed if t)

    def file(self, path: str) -> FileView | None:
        for f in self.files:
            if f.path == path:
                return f
        return None


@dataclass(frozen=True, kw_only=True)
class FunctionText:
    """A function after the patch: whole (from a kernel tree) or as the hunks show it."""

    name: str
    path: str
    lines: tuple[tuple[int, str], ...]
    complete: bool
    from_tree: bool


def _file_view(fd: FileDiff) -> FileView:
    path = fd.path
    asm = is_asm(path)
    lines: list[Line] = []
    for hi, hunk in enumerate(fd.hunks):
        new_side = [ln for ln in hunk.lines if ln.kind is not LineKind.REMOVED]
        old_side = [ln for ln in hunk.lines if ln.kind is not LineKind.ADDED]
        new_funcs = attribute([ln.text for ln in new_side], hunk.section, path)
        old_funcs = attribute([ln.text for ln in old_side], hunk.section, path)
        fn_new = {id(ln): f for ln, f in zip(new_side, new_funcs, strict=True)}
        fn_old = {id(ln): f for ln, f in zip(old_side, old_funcs, strict=True)}
        next_new = _next_new_numbers(hunk)
        joined = _statements(hunk, asm)
        for k, ln in enumerate(hunk.lines):
            function = fn_new.get(id(ln)) if ln.kind is not LineKind.REMOVED else fn_old.get(id(ln))
            if function is None and ln.kind is LineKind.CONTEXT:
                function = fn_old.get(id(ln))
            code = strip_comment(ln.text) if not asm else ln.text.split("//", 1)[0]
            stmt = joined.get(k, code)
            facts = line_facts(stmt, asm_file=asm) if stmt.strip() else EMPTY
            lines.append(Line(kind=ln.kind, text=ln.text, code=code, new_no=ln.new_no,
                              old_no=ln.old_no, anchor=ln.new_no or next_new[k],
                              function=function, facts=facts, hunk=hi))
    return FileView(path=path, old_path=fd.old_path, new_path=fd.new_path, lines=tuple(lines),
                    diff=fd)


def _statements(hunk: Hunk, asm: bool) -> dict[int, str]:
    """C calls split over lines, joined onto their first line (same diff side)."""
    out: dict[int, str] = {}
    if asm:
        return out
    lines = hunk.lines
    for k, ln in enumerate(lines):
        code = strip_comment(ln.text)
        depth = code.count("(") - code.count(")")
        if depth <= 0:
            continue
        parts = [code]
        side_new = ln.kind is not LineKind.REMOVED
        j = k + 1
        while depth > 0 and j < len(lines) and len(parts) < 6:
            nxt = lines[j]
            j += 1
            if (nxt.kind is not LineKind.REMOVED) != side_new and nxt.kind is not LineKind.CONTEXT:
                continue
            c = strip_comment(nxt.text)
            parts.append(c.strip())
            depth += c.count("(") - c.count(")")
        out[k] = " ".join(parts)
    return out


def _next_new_numbers(hunk: Hunk) -> list[int]:
    out = [0] * len(hunk.lines)
    nxt = hunk.new_start + hunk.new_len
    for k in range(len(hunk.lines) - 1, -1, -1):
        ln = hunk.lines[k]
        if ln.new_no is not None:
            nxt = ln.new_no
        out[k] = nxt
    prev = None
    for k, ln in enumerate(hunk.lines):
        # A removed line at the end of a hunk is quoted after the last kept line.
        if ln.new_no is not None:
            prev = ln.new_no
        elif out[k] >= hunk.new_start + hunk.new_len and prev is not None:
            out[k] = prev
    return out


def patch_view(patch: Patch, mapped: frozenset[str] = frozenset(),
               hyp: frozenset[str] = frozenset(),
               copy_use: CopyUse | None = None) -> PatchView:
    if not relevant(patch, mapped, hyp, copy_use):
        return PatchView(patch=patch, relevant=False)
    return read_patch(patch)


def read_patch(patch: Patch) -> PatchView:
    """The patch read line by line whatever it names: for a check that
    picks the patches it reads by a cheap test of its own (the registers
    besides HCR_EL2/MDCR_EL2 that bot.rules.regvalue follows)."""
    files = tuple(_file_view(fd) for fd in patch.files
                  if not fd.binary and fd.path.startswith(KERNEL_PREFIXES))
    return PatchView(patch=patch, relevant=True, files=files)


@dataclass(frozen=True, kw_only=True)
class SeriesView:
    """A series as the rules read it, patch by patch."""

    series: Series
    patches: tuple[PatchView, ...]
    tree: object = None

    def relevant(self) -> Iterator[PatchView]:
        return (pv for pv in self.patches if pv.relevant)

    def later(self, pv: PatchView) -> Iterator[PatchView]:
        return (p for p in self.patches if p.index > pv.index and p.relevant)

    @property
    def base_version(self) -> str | None:
        """The kernel version the series was checked against ("v6.12"), if known."""
        return getattr(getattr(self.tree, "base", None), "version", None)

    def file_after(self, pv: PatchView, path: str) -> str | None:
        return self.file_after_index(pv.index, path)

    def file_after_index(self, index: int, path: str) -> str | None:
        """`path` after patch `index` (0: at the base), from the kernel tree."""
        getter = getattr(self.tree, "file_after", None)
        return getter(index, path) if getter is not None else None

    def function(self, pv: PatchView, fv: FileView, name: str) -> FunctionText:
        """The function `name` in `fv` after patch `pv`."""
        text = self.file_after(pv, fv.path)
        if text is not None:
            span = find_function(text, name, fv.path)
            if span is not None:
                all_lines = text.split("\n")
                return FunctionText(name=name, path=fv.path, from_tree=True, complete=True,
                                    lines=tuple((i + 1, all_lines[i])
                                                for i in range(span[0], span[1] + 1)))
        lines = fv.in_function(name)
        complete = bool(lines) and _starts_function(lines[0].text, name, fv.asm) and (
            _ends_function(lines[-1].text, fv.asm))
        return FunctionText(name=name, path=fv.path, from_tree=False, complete=complete,
                            lines=tuple((ln.new_no or 0, ln.text) for ln in lines))

    def resolved_later(self, pv: PatchView, path: str, text: str) -> bool:
        """A later patch of the series removes or rewrites this line."""
        key = normalize(text)
        for later in self.later(pv):
            fv = later.file(path)
            if fv is None:
                continue
            for ln in fv.changed:
                if ln.removed and normalize(ln.text) == key and key not in later.moved:
                    return True
        return False


def _starts_function(text: str, name: str, asm: bool) -> bool:
    if asm:
        return name in text and ("START" in text or "ENTRY" in text or ".macro" in text)
    return not text[:1].isspace() and re.search(r"\b%s\s*\(" % re.escape(name), text) is not None


def _ends_function(text: str, asm: bool) -> bool:
    if asm:
        return "_END" in text or "ENDPROC" in text or ".endm" in text
    return text.startswith("}")


def view(series: Series, ctx: Context) -> SeriesView:
    """The memoised analysis of `series` for this context."""
    memo = ctx.memo
    key = ("view", id(series), id(ctx.tree))
    sv = memo.get(key)
    if sv is None or sv.series is not series or sv.tree is not ctx.tree:
        mapped, hyp = mapped_names(ctx.regmodel), hyp_register_names(ctx.regmodel)
        copy_use = loaded_copy_use(ctx.regmodel)
        sv = SeriesView(series=series, tree=ctx.tree,
                        patches=tuple(patch_view(p, mapped, hyp, copy_use)
                                      for p in series.patches))
        memo.clear()
        memo[key] = sv
    return sv


def register_tokens(text: str) -> list[str]:
    return _REG_TOKEN.findall(text)


def mentions_registers(text: str) -> bool:
    return _REG_TOKEN.search(text) is not None


@dataclass(frozen=True, kw_only=True)
class Emit:
    """Builds findings of one rule with the shared status logic."""

    rule: str
    category: Category
    sv: SeriesView
    out: list[Finding] = field(default_factory=list)
    # Rules that compare what the code does before and after the patch have
    # already decided the patch changed something: a moved line or a context
    # line they point at is where the change shows, not old code.
    compared: bool = False

    def __call__(self, severity: Severity, pv: PatchView, fv: FileView | None,
                 line: Line | int | None, *, register: str | None, fields: Iterable[str] = (),
                 message: str, evidence: Iterable[str] = (), status: Status | None = None,
                 existed: bool = False) -> None:
        """`existed`: the rule saw the same problem on a line the patch removed."""
        if isinstance(line, Line) and (fv is None or not any(x is line for x in fv.lines)):
            # The line is another file's (a change in a function this one
            # reaches): quote it in its own file.
            fv = next((f for f in pv.files if any(x is line for x in f.lines)), fv)
        no = line.anchor if isinstance(line, Line) else line
        if status is None:
            status = Status.PRE_EXISTING if existed else Status.OPEN
            if isinstance(line, Line) and fv is not None and not existed:
                if not self.compared and (line.kind is LineKind.CONTEXT
                                          or normalize(line.text) in pv.moved):
                    status = Status.PRE_EXISTING
                elif line.added and self.sv.resolved_later(pv, fv.path, line.text):
                    status = Status.RESOLVED_IN_SERIES
        ev = tuple(evidence) or ((line.text.rstrip(),) if isinstance(line, Line) else ())
        diff = fv.diff if fv is not None else None
        hunk = _hunk_at(diff, line) if diff is not None else None
        self.out.append(Finding(
            rule=self.rule, category=self.category, severity=severity, patch=pv.index,
            file=fv.path if fv is not None else None, line=no, register=register,
            fields=tuple(dict.fromkeys(fields)), message=message, evidence=ev, status=status,
            message_id=pv.patch.message_id, diff=diff, hunk=hunk,
            function=line.function if isinstance(line, Line) else None))


def _hunk_at(diff: FileDiff, line: Line | int | None) -> Hunk | None:
    """The hunk a finding's line is in: the line's own, or the one whose
    new-side span holds the line number."""
    if isinstance(line, Line):
        return diff.hunks[line.hunk] if line.hunk < len(diff.hunks) else None
    if line is None:
        return None
    for hunk in diff.hunks:
        if hunk.new_start <= line < hunk.new_start + max(hunk.new_len, 1):
            return hunk
    return None
