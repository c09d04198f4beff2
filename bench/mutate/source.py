"""The real linux 6.12 files the mutations start from, and edits on them.

`Kernel` reads files of the unpacked linux-source-6.12 subset
(tests/kernel_source.py) and finds a function's text the way a reader
would: its definition starts at column 0 and its body runs from the `{`
to the `}` at column 0 (kernel style); an assembler `.macro NAME` runs to
its `.endm`.

`Change` is one patch under construction: each edit names the file and
function it applies to and the exact text it replaces, and refuses to run
when that text is not found exactly once there, so a generator written
against 6.12 fails loudly instead of producing a different patch. Edits
record anchors (where a finding about the mutation must land) as offsets
that later edits shift, so the new-file line numbers come out right
however many edits a patch makes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


class GeneratorError(RuntimeError):
    """A generator's expectation about the 6.12 text does not hold."""


class Kernel:
    """Read-only access to the 6.12 files, with function spans."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._texts: dict[str, str] = {}

    def text(self, path: str) -> str:
        if path not in self._texts:
            self._texts[path] = (self.root / path).read_text()
        return self._texts[path]

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p.is_file() and not p.name.startswith(".kvm-sysreg-bot"))


def func_span(text: str, name: str | None) -> tuple[int, int]:
    """Character span of function (or asm macro) `name` in `text`; the
    whole text for None."""
    if name is None:
        return 0, len(text)
    if name.startswith("."):          # ".macro __init_el2_debug"
        m = re.search(r"^\.macro\s+%s\b" % re.escape(name.split()[-1]), text, re.M)
        if m is None:
            raise GeneratorError("no %s" % name)
        end = text.index("\n.endm\n", m.end()) + len("\n.endm\n")
        return m.start(), end
    pat = re.compile(r"^(?![\s#/*])[^\n;]*?\b%s\(" % re.escape(name), re.M)
    for m in pat.finditer(text):
        body = text.find("\n{\n", m.start())
        semi = text.find(";", m.start())
        if body < 0 or (0 <= semi < body):
            continue                     # a declaration, not the definition
        end = text.find("\n}\n", body)
        if end < 0:
            raise GeneratorError("%s: no closing brace" % name)
        return m.start(), end + 3
    raise GeneratorError("no definition of %s" % name)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


@dataclass
class Change:
    """One patch under construction against the 6.12 files."""

    kernel: Kernel
    subject: str = ""
    message: str = ""
    # The 6.12 function (or macro, or file for definitions) it mutates.
    function: str = ""
    files: dict[str, str] = field(default_factory=dict)
    # (path, offset) of each anchor in the current text of `path`.
    _anchors: list[tuple[str, int]] = field(default_factory=list)

    def text(self, path: str) -> str:
        if path in self.files:
            return self.files[path]
        return self.kernel.text(path)

    def _replace(self, path: str, start: int, end: int, new: str) -> None:
        text = self.text(path)
        self.files[path] = text[:start] + new + text[end:]
        delta = len(new) - (end - start)
        moved = []
        for p, off in self._anchors:
            if p == path and off > start:
                off = max(start, off + delta) if off >= end else start
            moved.append((p, off))
        self._anchors = moved

    def find(self, path: str, func: str | None, old: str) -> int:
        """Offset of the single occurrence of `old` in `func` of `path`."""
        text = self.text(path)
        lo, hi = func_span(text, func)
        first = text.find(old, lo, hi)
        if first < 0:
            raise GeneratorError("%s:%s: %r not found" % (path, func, old))
        if text.find(old, first + 1, hi) >= 0:
            raise GeneratorError("%s:%s: %r found more than once" % (path, func, old))
        return first

    def sub(self, path: str, func: str | None, old: str, new: str, *,
            anchor: bool = True) -> None:
        """Replace the single `old` in `func` by `new`; anchor the first
        changed line (for a deletion, the line that now takes its place)."""
        at = self.find(path, func, old)
        # Anchor where old and new first differ, at the start of that line.
        same = 0
        while same < min(len(old), len(new)) and old[same] == new[same]:
            same += 1
        text = self.text(path)
        self._replace(path, at, at + len(old), new)
        if anchor:
            pos = text.rfind("\n", 0, at + same) + 1
            fresh = self.text(path)
            while pos < at + len(new) and fresh[pos] == "\n":   # skip added blank lines
                pos += 1
            self._anchors.append((path, pos))

    def sub_all(self, path: str, func: str | None, old: str, new: str,
                *, anchor: bool = False) -> int:
        """Replace every `old` in `func` (at least one); returns how many."""
        n = 0
        text = self.text(path)
        lo, hi = func_span(text, func)
        at = text.find(old, lo, hi)
        while at >= 0:
            self._replace(path, at, at + len(old), new)
            if anchor:
                self._anchors.append((path, at))
            n += 1
            text = self.text(path)
            hi += len(new) - len(old)
            at = text.find(old, at + len(new), hi)
        if n == 0:
            raise GeneratorError("%s:%s: %r not found" % (path, func, old))
        return n

    def sub_word(self, path: str, func: str | None, old: str, new: str) -> int:
        """Rename identifier `old` to `new` inside `func` (not after `->` or
        `.`, so struct members of the same name stay); returns how many."""
        text = self.text(path)
        lo, hi = func_span(text, func)
        part = text[lo:hi]
        pat = re.compile(r"(?<![\w.>])%s\b" % re.escape(old))
        fresh, n = pat.subn(new, part)
        if n == 0:
            raise GeneratorError("%s:%s: no %s" % (path, func, old))
        self._replace(path, lo, hi, fresh)
        return n

    def _insert(self, path: str, at: int, new: str, anchor: bool) -> None:
        self._replace(path, at, at, new)
        if anchor:   # the first line of `new` with something on it
            self._anchors.append((path, at + len(new) - len(new.lstrip("\n"))))

    def insert_after(self, path: str, func: str | None, line: str, new: str, *,
                     anchor: bool = True) -> None:
        """Insert `new` (whole lines) after the single line containing `line`."""
        at = self.find(path, func, line)
        self._insert(path, self.text(path).index("\n", at) + 1, new, anchor)

    def insert_before(self, path: str, func: str | None, line: str, new: str, *,
                      anchor: bool = True) -> None:
        at = self.find(path, func, line)
        self._insert(path, self.text(path).rfind("\n", 0, at) + 1, new, anchor)

    def delete_line(self, path: str, func: str | None, line: str, *,
                    anchor: bool = True) -> None:
        """Delete the single line containing `line`."""
        at = self.find(path, func, line)
        text = self.text(path)
        bol = text.rfind("\n", 0, at) + 1
        eol = text.index("\n", at) + 1
        self._replace(path, bol, eol, "")
        if anchor:
            self._anchors.append((path, bol))

    def move_line(self, path: str, func: str | None, line: str, after: str, *,
                  anchor: bool = True) -> None:
        """Move the single line containing `line` to after the line containing
        `after`; anchors both the old and the new place."""
        at = self.find(path, func, line)
        text = self.text(path)
        bol = text.rfind("\n", 0, at) + 1
        eol = text.index("\n", at) + 1
        whole = text[bol:eol]
        self.delete_line(path, func, line, anchor=anchor)
        self.insert_after(path, func, after, whole, anchor=anchor)

    def effect(self, path: str, func: str | None, snippet: str) -> None:
        """Anchor an unchanged line the mutation acts on (the write a changed
        source flows into, the helper's other side)."""
        at = self.find(path, func, snippet)
        text = self.text(path)
        self._anchors.append((path, text.rfind("\n", 0, at) + 1))

    def new_file(self, path: str, text: str) -> None:
        if (self.kernel.root / path).exists():
            raise GeneratorError("%s exists" % path)
        self.files[path] = text

    def anchors(self) -> tuple[tuple[str, int], ...]:
        """(path, new-file line) of each anchor, in the files the patch changes."""
        out = sorted({(p, line_of(self.files[p], off)) for p, off in self._anchors
                      if p in self.files})
        return tuple(out)


# The 6.12 files of the save/restore map (bot/regmodel/kvm.toml [[functions]])
# and the definitions the mutations touch.
KVM_ARM_H = "arch/arm64/include/asm/kvm_arm.h"
KVM_HOST_H = "arch/arm64/include/asm/kvm_host.h"
KVM_ASM_H = "arch/arm64/include/asm/kvm_asm.h"
KVM_EMULATE_H = "arch/arm64/include/asm/kvm_emulate.h"
EL2_SETUP_H = "arch/arm64/include/asm/el2_setup.h"
SYSREG = "arch/arm64/tools/sysreg"
VHE_SWITCH = "arch/arm64/kvm/hyp/vhe/switch.c"
NVHE_SWITCH = "arch/arm64/kvm/hyp/nvhe/switch.c"
HYP_SWITCH_H = "arch/arm64/kvm/hyp/include/hyp/switch.h"
HYP_DEBUG_SR_H = "arch/arm64/kvm/hyp/include/hyp/debug-sr.h"
VHE_TLB = "arch/arm64/kvm/hyp/vhe/tlb.c"
NVHE_TLB = "arch/arm64/kvm/hyp/nvhe/tlb.c"
VHE_DEBUG_SR = "arch/arm64/kvm/hyp/vhe/debug-sr.c"
NVHE_DEBUG_SR = "arch/arm64/kvm/hyp/nvhe/debug-sr.c"
NVHE_PKVM = "arch/arm64/kvm/hyp/nvhe/pkvm.c"
NVHE_MEM_PROTECT = "arch/arm64/kvm/hyp/nvhe/mem_protect.c"
NVHE_HYP_MAIN = "arch/arm64/kvm/hyp/nvhe/hyp-main.c"
ARM_C = "arch/arm64/kvm/arm.c"
DEBUG_C = "arch/arm64/kvm/debug.c"
AT_C = "arch/arm64/kvm/at.c"
NESTED_C = "arch/arm64/kvm/nested.c"
TRACE_EXIT_H = "arch/arm64/kvm/trace_handle_exit.h"
