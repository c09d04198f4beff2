"""Rule family 9, pmu-ownership: MDCR_EL2 bits of features that may be
absent, set where no feature check guards them.

The EL2 setup (el2_setup.h, head.S) sets E2PB, E2TB and the like only after
probing ID_AA64DFR0_EL1 and friends: each such bit sits between a
conditional branch (`cbz x0, .Lskip_spe`) and the label it skips to. A
patch that leaves the line setting the bit with fewer guarding branches
than before (the line moved out of the skipped region, or a probe removed)
sets it on CPUs without the feature. C code is read the same way: a bit
OR-ed into the value in a function that computes it with fewer feature tests
(`if (kvm_has_feat(...))`, `cpus_have_final_cap()`) around it than before,
or added where none guards it. Pure: works on the texts it is handed.
"""

from __future__ import annotations

import re

from bot.rules import flow
from bot.rules.analysis import Emit, FileView, Line, PatchView, normalize
from bot.rules.core import Severity

FEATURE_BITS = re.compile(r"MDCR_EL2_(E2PB|E2TB|TPMS|TTRF|HPMD|HCCD|PMSSE|EnSPM|HPMFZ\w*|"
                          r"PMEE|EBWE|TDCC|MTPME|HLP)")
_BRANCH = re.compile(r"^\s*(?:cbn?z|tbn?z|b\.\w+)\s+[^/]*?,?\s*(\.L[\w\\@]+|\d+f)(?![\w\\@])")
_C_TEST = re.compile(r"\bif\s*\(.*(kvm_has_feat|cpus_have_\w+|system_supports_\w+|"
                     r"_feature\(|kvm_pmu_is_\w+|has_\w+\()")
_WINDOW = 60


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"//.*|/\*.*?\*/", "", text)).strip()


def _label_at(label: str, text: str) -> bool:
    if label.endswith("f"):
        return re.match(r"^\s*%s:" % label[:-1], text) is not None
    return text.strip().startswith(label + ":")


def _asm_guards(lines: list[str], i: int) -> list[int]:
    """Lines of the conditional branches that skip line i."""
    out = []
    for j in range(i - 1, max(i - _WINDOW, -1), -1):
        if lines[j].strip().startswith((".macro", ".endm")):
            break
        m = _BRANCH.match(lines[j])
        if m is None:
            continue
        label = m.group(1)
        end = min(len(lines), i + _WINDOW)
        # The branch goes to the first such label after it (`1f` is the next
        # `1:`): it skips line i when that label comes after line i.
        target = next((k for k in range(j + 1, end) if _label_at(label, lines[k])), None)
        if target is not None and target > i:
            out.append(j)
    return out


def _c_guards(lines: list[str], i: int) -> list[int]:
    """Feature tests of the if-blocks (by indentation) line i sits in."""
    depth = len(lines[i]) - len(lines[i].lstrip("\t"))
    out = []
    for j in range(i - 1, max(i - _WINDOW, -1), -1):
        text = lines[j]
        if text.startswith("}") or re.match(r"^\w.*\)\s*$", text):
            break   # the function's start or end
        d = len(text) - len(text.lstrip("\t"))
        if text.strip() and d < depth:
            if _C_TEST.search(text):
                out.append(j)
            depth = d
    return out


def check(emit: Emit, pv: PatchView, fv: FileView, old: list[str], new: list[str],
          setup: frozenset[str]) -> None:
    """`old`/`new`: the file's text on each side (whole, or as far as the
    hunks show it, at their line numbers); `setup`: the functions that
    compute the values at init (a bit new there needs its own check)."""

    def line_at(number: int, side: str) -> Line | None:
        return flow.line_at(pv, fv.path, number, side)

    guards = _asm_guards if fv.asm or (fv.path.endswith(".h") and any(
        _BRANCH.match(t) for t in new)) else _c_guards
    before: dict[str, list[tuple[int, list[int]]]] = {}
    for i, text in enumerate(old):
        if FEATURE_BITS.search(text):
            before.setdefault(_norm(text), []).append((i, guards(old, i)))
    for i, text in enumerate(new):
        m = FEATURE_BITS.search(text)
        if m is None:
            continue
        now = guards(new, i)
        was = before.get(_norm(text))
        ln = line_at(i + 1, "new")
        if was is None:
            # A bit the file did not name before, added with no check at all.
            if not now and ln is not None and ln.added and ln.function in setup \
                    and normalize(ln.text) not in pv.moved \
                    and not any(m.group(0) in t for t in old) \
                    and not any(f.line == ln.anchor and f.file == fv.path for f in emit.out):
                emit(Severity.QUESTION, pv, fv, ln, register="MDCR_EL2", fields=(m.group(1),),
                     message="MDCR_EL2.%s is set here without a feature check around it: "
                     "is the feature present on every CPU that runs this?" % m.group(1))
                return
            continue
        fewer = min(len(g) for _, g in was) > len(now)
        if not fewer:
            continue
        if ln is None or ln.kind.value == " ":
            # The bit's line is unchanged: quote the guard the patch removed.
            gone = [j for _, g in was for j in g]
            ln = next((x for x in (line_at(j + 1, "old") for j in gone)
                       if x is not None and x.removed), ln)
        if ln is None:
            continue
        emit(Severity.QUESTION, pv, fv, ln, register="MDCR_EL2", fields=(m.group(1),),
             message="MDCR_EL2.%s is now set with fewer feature checks around it than "
             "before (%d, was %d): is the feature probed first on every CPU that runs "
             "this?" % (m.group(1), len(now), min(len(g) for _, g in was)))
        return
