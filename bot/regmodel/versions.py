"""Which kernel version a series was written against, from what its hunks show.

Used when no repository decides the base commit: the answer is the newest
mainline version consistent with every dated fact the series carries, each
from kvm.toml:

- the paths it changes that exist only in some versions (`[[file_eras]]`:
  virt/kvm/arm/ before the 5.8 move, hyp/switch.c before the 5.9 split...);
- the field macros its pre-image lines define in kvm_arm.h (the base knew
  them: `kernel` of each field), and the ones it adds (the base did not);
- a flag set (`HCR_GUEST_FLAGS`...) its pre-image lines define, whose
  value matches some eras of `[[flag_sets]]`;
- a function of the save/restore map its pre-image names that exists only
  in an era (`activate_traps_vhe_load` until v6.6);
- the date it was sent: no later than the version then in development
  (`[releases]`).

Pure: reads the series and the model, returns a `Base`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from bot.data import Base, BaseSource, FileDiff, LineKind, Series
from bot.regmodel.defines import evaluate_defines
from bot.regmodel.model import Macro, RegisterModel, parse_era

KVM_ARM_H = "arch/arm64/include/asm/kvm_arm.h"
_DEFINE = re.compile(r"^\s*#\s*define\s+((?:HCR|MDCR_EL2)_[A-Za-z0-9_]+)\b")
_NOT_A_FIELD = re.compile(r"_(FLAGS|RES0|RES1|MASK_ALL|VIRT_EXCP_MASK|SHIFT|WIDTH)$|_GUEST_|"
                          r"_HOST_|^HCR_GUEST|_MASK$")

Version = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Fact:
    """A range of kernel versions a series fits, and why."""

    lo: Version | None
    hi: Version | None
    why: str


def _fmt(v: Version) -> str:
    return "v%d.%d" % v[:2]


def _old_side(fd: FileDiff) -> Iterator[str]:
    for hunk in fd.hunks:
        for ln in hunk.lines:
            if ln.kind is not LineKind.ADDED:
                yield ln.text


def _old_text(fd: FileDiff) -> str:
    return "\n".join(_old_side(fd))


def _macros(model: RegisterModel) -> dict[str, Macro]:
    """Every kernel name of every field, as kvm_arm.h would define it."""
    out: dict[str, Macro] = {}
    for reg in model.registers.values():
        for f in reg.fields:
            for prefix in reg.prefixes:
                for name in (f.name, *f.aliases):
                    macro = prefix + name.upper()
                    out.setdefault(macro, Macro(name=macro, expr="", value=f.mask, msb=f.msb,
                                                lsb=f.lsb, line=0))
                    for vname, val in f.values:
                        key = "%s_%s" % (macro, vname.upper())
                        out.setdefault(key, Macro(name=key, expr="", value=val << f.lsb,
                                                  msb=None, lsb=None, line=0))
    return out


class _Facts:
    def __init__(self, model: RegisterModel) -> None:
        self.model = model
        self.versions = model.versions()
        self.found: list[_Fact] = []

    def era(self, era: str, why: str) -> None:
        lo, hi = parse_era(era)
        self.found.append(_Fact(lo=lo[:2], hi=hi[:2] if hi else None, why=why))

    def before(self, version: Version, why: str) -> None:
        earlier = [v for v in self.versions if v < version[:2]]
        if earlier:
            self.found.append(_Fact(lo=None, hi=earlier[-1], why=why))

    def at_least(self, version: Version, why: str) -> None:
        self.found.append(_Fact(lo=version[:2], hi=None, why=why))


def _base_files(series: Series) -> Iterator[tuple[int, FileDiff]]:
    """(patch index, file diff) for the diffs whose pre-image is the base's
    file: not one an earlier patch of the series created, renamed or changed."""
    touched: set[str] = set()
    for patch in series.patches:
        for fd in patch.files:
            path = fd.old_path
            if path is not None and path not in touched:
                yield patch.index, fd
        for fd in patch.files:
            touched.update(p for p in (fd.old_path, fd.new_path) if p)


def _paths(facts: _Facts, series: Series) -> None:
    by_era: dict[str, list[str]] = {}
    for _, fd in _base_files(series):
        for fe in facts.model.file_eras:
            if fe.macro:
                defined = {m.group(1) for t in _old_side(fd) if (m := _DEFINE.match(t))}
                if fd.old_path and fe.matches(fd.old_path) and fe.macro in defined:
                    facts.era(fe.era, "%s defines %s (%s)" % (fd.old_path, fe.macro, fe.era))
                continue
            if fd.old_path and fe.matches(fd.old_path):
                by_era.setdefault(fe.era, []).append(fd.old_path)
    for era, paths in by_era.items():
        more = " and %d more files" % (len(paths) - 1) if len(paths) > 1 else ""
        facts.era(era, "%s%s exist%s only in %s" % (paths[0], more, "" if more else "s", era))


def _kvm_arm_h(facts: _Facts, series: Series, model: RegisterModel) -> None:
    known: dict[str, Macro] | None = None
    for _, fd in _base_files(series):
        if fd.old_path != KVM_ARM_H:
            continue
        before = {m.group(1) for t in _old_side(fd) if (m := _DEFINE.match(t))}
        added = {m.group(1) for h in fd.hunks for ln in h.lines
                 if ln.kind is LineKind.ADDED and (m := _DEFINE.match(ln.text))}
        lo: tuple[Version, str] | None = None
        hi: tuple[Version, str] | None = None
        for name in sorted(before | added):
            if _NOT_A_FIELD.search(name):
                continue
            field = facts.model.lookup(name)
            if field is None or field.kernel is None:
                continue
            if name in before and (lo is None or field.kernel > lo[0]):
                lo = (field.kernel, "kvm_arm.h defines %s" % name)
            elif name not in before and (hi is None or field.kernel < hi[0]):
                hi = (field.kernel, "the series adds %s to kvm_arm.h" % name)
        if lo is not None:
            facts.at_least(*lo)
        if hi is not None:
            facts.before(*hi)
        if known is None:
            known = _macros(model)
        _flag_sets(facts, _old_text(fd), known)


def _flag_sets(facts: _Facts, text: str, known: dict[str, Macro]) -> None:
    names = {fs.name for fs in facts.model.flag_sets}
    defined = evaluate_defines(text, known)
    starts = {m.group(1) for line in text.split("\n") if (m := _DEFINE.match(line))}
    for name in sorted(names & starts):
        macro = defined.get(name)
        if macro is None or macro.value is None:
            continue
        eras = [fs.era for fs in facts.model.flag_sets
                if fs.name == name and fs.value == macro.value]
        if not eras:
            continue
        los = [parse_era(e)[0][:2] for e in eras]
        his = [parse_era(e)[1] for e in eras]
        hi = None if any(h is None for h in his) else max(h[:2] for h in his if h)
        facts.found.append(_Fact(lo=min(los), hi=hi, why="its %s is the one of %s"
                                 % (name, ", ".join(eras))))


def _functions(facts: _Facts, series: Series) -> None:
    dated = [fr for fr in facts.model.functions if fr.era]
    seen: set[str] = set()
    for _, fd in _base_files(series):
        path = fd.old_path or ""
        text = "\n".join([h.section for h in fd.hunks] + list(_old_side(fd)))
        for fr in dated:
            if fr.name in seen or not any(path == f or path.endswith("/" + f)
                                          for f in fr.files):
                continue
            if re.search(r"\b%s\s*\(" % re.escape(fr.name), text):
                seen.add(fr.name)
                facts.era(fr.era, "%s() is in %s" % (fr.name, path))


def _date(facts: _Facts, series: Series) -> None:
    mail = series.cover or (series.patches[0].mail if series.patches else None)
    when = mail.date if mail is not None else None
    releases = facts.model.releases
    if when is None or not releases:
        return
    day = when.date()
    out = [v for v, released in releases.items() if released <= day]
    if not out:
        return
    # A series sent then targets the next merge window at the latest: the
    # version after the one in development (what -next trees carry).
    newer = [v for v in facts.versions if v > out[-1]]
    if len(newer) < 2:
        return   # sent after the last releases the model knows: no bound
    facts.found.append(_Fact(lo=None, hi=newer[1], why="sent %s, when %s was the newest "
                             "release" % (day.isoformat(), _fmt(out[-1]))))


def infer_version(series: Series, model: RegisterModel) -> Base:
    """The newest version consistent with the series' dated facts, as a Base
    (source VERSION), or source NONE when the facts contradict each other."""
    facts = _Facts(model)
    _paths(facts, series)
    _kvm_arm_h(facts, series, model)
    _functions(facts, series)
    _date(facts, series)
    candidates = list(facts.versions)
    if not candidates:
        return Base(source=BaseSource.NONE, detail="the model knows no kernel versions")
    lo = max((f.lo for f in facts.found if f.lo is not None), default=candidates[0])
    hi = min((f.hi for f in facts.found if f.hi is not None), default=candidates[-1])
    inside = [v for v in candidates if lo <= v <= hi]
    if (not inside and lo in candidates and hi in candidates
            and candidates.index(lo) == candidates.index(hi) + 1):
        # A development tree between two releases (kvmarm/next during a
        # merge window) has the new files before the old ones are gone.
        return Base(source=BaseSource.VERSION, version=_fmt(lo), detail=(
            "a development tree between %s and %s: %s" % (_fmt(hi), _fmt(lo), "; ".join(
                f.why for f in facts.found))))
    if not inside:
        return Base(source=BaseSource.NONE, detail="its dated facts disagree: %s" % "; ".join(
            f.why for f in facts.found))
    if not facts.found:
        return Base(source=BaseSource.VERSION, version=_fmt(inside[-1]),
                    detail="no dated facts in its hunks: the newest version the model knows")
    return Base(source=BaseSource.VERSION, version=_fmt(inside[-1]),
                detail="newest version consistent with: %s" % "; ".join(
                    f.why for f in facts.found))
