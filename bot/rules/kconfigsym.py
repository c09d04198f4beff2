"""Rule family 14, register-width: a configuration test without CONFIG_
that picks a half of 64-bit register storage.

Kconfig symbols reach C as CONFIG_ macros: `config CPU_BIG_ENDIAN` is
tested as `#ifdef CONFIG_CPU_BIG_ENDIAN` or
`IS_ENABLED(CONFIG_CPU_BIG_ENDIAN)`. `#ifdef CPU_BIG_ENDIAN` tests a macro
nothing defines: it is false in every configuration, and what it was to
decide is decided one way everywhere. Where that is which 32-bit half of a
64-bit register's storage an AArch32 view reads (vcpu_cp14()/vcpu_cp15()
over the copro[] view of sys_regs[], kvm.toml [kconfig] halves), big-endian
hosts read and write the wrong half of every AArch32 register. A test is
reported when the name it tests is a Kconfig symbol (the tree's Kconfig
files when a kernel tree is at hand, kvm.toml [kconfig] symbols always),
the patch and the file define no such macro, and the lines it governs, or
the added lines using a macro it defines, pick such a half. Pure.
"""

from __future__ import annotations

import re

from bot.regmodel.valuefacts import KconfigFacts
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView
from bot.rules.core import Context, Severity
from bot.rules.regvalue import patches

# Matched after a newline put in front of the body: a pattern that starts
# with a literal newline is scanned for it, where `(?m)^` is tried at every
# character of every mail body.
_WANTED = re.compile(r"\n\+\s*#\s*(if|elif)|\n\+.*\bIS_(ENABLED|BUILTIN|MODULE|REACHABLE)\s*\(")
_PP = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
_ENABLED = re.compile(r"\bIS_(?:ENABLED|BUILTIN|MODULE|REACHABLE)\s*\(\s*(\w+)\s*\)")
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)")
_CONFIG = re.compile(r"^\s*(?:menu)?config\s+(\w+)", re.M)
_WORD = re.compile(r"[A-Za-z_]\w*")


def check(emit: Emit, sv: SeriesView, ctx: Context) -> None:
    model = ctx.regmodel
    kc = model.facts.kconfig if model is not None else None
    if kc is None or kc.halves is None:
        return
    for pv in patches(sv, ctx, lambda body: _WANTED.search("\n" + body) is not None):
        symbols = _symbols(sv, pv, kc, ctx)
        defined = {m.group(1) for fv in pv.files for ln in fv.lines if ln.new_side
                   for m in [_DEFINE.match(ln.text)] if m is not None}
        for fv in pv.files:
            _file(emit, sv, pv, fv, kc, symbols, defined)


def _symbols(sv: SeriesView, pv: PatchView, kc: KconfigFacts, ctx: Context) -> frozenset[str]:
    """The Kconfig symbols: kvm.toml's, and those the tree's Kconfig files
    declare after this patch."""
    key = ("kconfig-symbols", id(sv), pv.index)
    got = ctx.memo.get(key)
    if isinstance(got, frozenset):
        return got
    found = set(kc.symbols)
    for path in kc.files:
        text = sv.file_after(pv, path)
        if text:
            found.update(_CONFIG.findall(text))
    ctx.memo[key] = out = frozenset(found)
    return out


def _tested(text: str) -> list[str]:
    """The names a preprocessor test or an IS_ENABLED() on the line tests."""
    m = _PP.match(text)
    names = [n for n in _ENABLED.findall(text)]
    if m is not None and m.group(1) in ("ifdef", "ifndef"):
        names.extend(_WORD.findall(m.group(2).split("/*")[0].split("//")[0])[:1])
    elif m is not None and m.group(1) in ("if", "elif"):
        rest = _ENABLED.sub(" ", m.group(2).split("/*")[0].split("//")[0])
        names.extend(w for w in _WORD.findall(rest) if w != "defined")
    return names


def _file(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, kc: KconfigFacts,
          symbols: frozenset[str], defined: set[str]) -> None:
    text = sv.file_after(pv, fv.path)
    in_file = {m.group(1) for t in (text or "").split("\n") for m in [_DEFINE.match(t)]
               if m is not None}
    lines = [ln for ln in fv.lines if ln.new_side]
    for i, ln in enumerate(lines):
        if not ln.added:
            continue
        wrong = [n for n in _tested(ln.code if not _PP.match(ln.text) else ln.text)
                 if not n.startswith("CONFIG_") and n in symbols
                 and n not in defined and n not in in_file]
        if not wrong:
            continue
        governed = _governed(lines, i)
        made = [m.group(1) for x in governed for m in [_DEFINE.match(x.text)] if m is not None]
        users = [x for f in pv.files for x in f.lines if x.added and x is not ln
                 and any(re.search(r"\b%s\b" % re.escape(n), x.code) for n in made)]
        assert kc.halves is not None
        half = [x for x in governed + users if kc.halves.search(x.code)]
        if not half:
            continue
        users_of = [_macro_name(x.text) for x in half if _DEFINE.match(x.text)]
        if made and users_of:
            what = "%s, which %s use%s to pick a 32-bit half of 64-bit register storage," % (
                "/".join(dict.fromkeys(made)), "/".join(users_of),
                "" if len(users_of) > 1 else "s")
        else:
            what = "the 32-bit half of 64-bit register storage it picks"
        name = wrong[0]
        emit(Severity.WARNING, pv, fv, ln, register=None,
             message="`%s` tests %s, which nothing defines: the Kconfig symbol is CONFIG_%s, "
             "so the test is false in every configuration, and %s is chosen as if CONFIG_%s "
             "were never set. Test CONFIG_%s." % (ln.code.strip(), name, name, what, name,
                                                 name))
        return


def _macro_name(text: str) -> str:
    """`vcpu_cp15()` for `#define vcpu_cp15(v,r) ...`, `X` for `#define X ...`."""
    m = re.match(r"^\s*#\s*define\s+(\w+)(\()?", text)
    return "" if m is None else m.group(1) + ("()" if m.group(2) else "")


def _governed(lines: list[Line], i: int) -> list[Line]:
    """The lines a conditional at lines[i] governs, to its #endif (both
    branches), or the line itself for an IS_ENABLED() in code."""
    if not _PP.match(lines[i].text):
        out = [lines[i]]
        j = i
        while lines[j].text.rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
            out.append(lines[j])
        return out
    out = [lines[i]]
    depth = 0
    for x in lines[i + 1:]:
        m = _PP.match(x.text)
        word = m.group(1) if m is not None else ""
        if word in ("if", "ifdef", "ifndef"):
            depth += 1
        elif word == "endif":
            if depth == 0:
                break
            depth -= 1
        out.append(x)
    return out
