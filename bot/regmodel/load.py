"""Loading the register model: the shipped data files, or a kernel tree.

The shipped model is hcr_mdcr.sysreg (layout, tools/sysreg format) plus
kvm.toml (everything else); it is parsed once per process, and kept parsed
between processes in the user's cache directory (bot.regmodel.cache). A
kernel tree replaces the layout: a register its arch/arm64/tools/sysreg
describes is taken from there, otherwise from the hand-written macros of its
arch/arm64/include/asm/kvm_arm.h; kvm.toml still supplies polarity, aliases,
features and the save/restore map, and the tree's own flag sets are added
under the tree's version.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeGuard

from bot.errors import BadInput, ConfigError
from bot.regmodel import cache
from bot.regmodel.defines import evaluate_defines
from bot.regmodel.facts import KvmFacts, read_facts
from bot.regmodel.kvmarm import MacroLayout, generated_macros, macro_layout
from bot.regmodel.model import (
    Field,
    FileEra,
    FlagSet,
    FunctionRole,
    Macro,
    Polarity,
    Register,
    RegisterModel,
    Role,
    ValueExpr,
    mask_to_ranges,
    parse_era,
    parse_version,
    ranges_to_mask,
)
from bot.regmodel.sysreg import parse_sysreg
from bot.regmodel.tomlcheck import TomlTable as _Toml

logger = logging.getLogger(__name__)

SYSREG_FILE = "hcr_mdcr.sysreg"
KVM_FILE = "kvm.toml"
SYSREG_PATH = "arch/arm64/tools/sysreg"
KVM_ARM_H = "arch/arm64/include/asm/kvm_arm.h"

_LAYOUTS = ("pre-5.9", "post-5.9", "any")
_MODES = ("vhe", "nvhe", "both")


# -- kvm.toml ----------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class FieldInfo:
    """What kvm.toml says about one field, beyond its layout."""

    name: str
    polarity: Polarity
    feature: str | None
    aliases: tuple[str, ...]
    note: str
    kernel_note: str
    ignored_when: tuple[str, ...]
    source: str
    arch: str = ""
    kernel: tuple[int, ...] | None = None
    kernel_source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterInfo:
    """What kvm.toml says about one register and its fields."""

    name: str
    description: str
    prefixes: tuple[str, ...]
    res0_macros: tuple[str, ...]
    fields: Mapping[str, FieldInfo]

    def info_for(self, name: str) -> FieldInfo | None:
        up = name.upper()
        for info in self.fields.values():
            if info.name.upper() == up or up in (a.upper() for a in info.aliases):
                return info
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class KvmData:
    """kvm.toml, checked and parsed."""

    sources: Mapping[str, str]
    registers: Mapping[str, RegisterInfo]
    flag_sets: tuple[dict[str, Any], ...]
    functions: tuple[FunctionRole, ...]
    values: tuple[ValueExpr, ...]
    facts: KvmFacts
    file_eras: tuple[FileEra, ...] = ()
    releases: Mapping[tuple[int, ...], dt.date] = field(default_factory=dict)
    snapshot_files: tuple[str, ...] = ()


def read_kvm_data(text: str, source: str = KVM_FILE) -> KvmData:
    """Parse and check kvm.toml; a problem raises ConfigError naming the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("%s: not valid TOML: %s" % (source, exc)) from None
    top = _Toml(raw, "(top)", source)
    top.only("schema", "sources", "registers", "flag_sets", "functions", "values", "places",
             "guards", "storage", "ops", "lifecycle", "round_trips", "constants", "loaders",
             "late_saved", "exit_window",
             "file_eras", "reenable", "sync_scope", "erratum_sequences",
             "reach", "config_work", "hyp_state", "e2h_state",
             "releases",
             "snapshot_files", "regvalues", "kconfig")
    if raw.get("schema") != 1:
        raise top.fail("schema", "must be 1")
    src = _Toml(raw.get("sources", {}), "sources", source)
    sources = {key: src.text(key) for key in src.data}
    regs_t = _Toml(raw.get("registers", {}), "registers", source)
    registers: dict[str, RegisterInfo] = {}
    for name in regs_t.data:
        rt = _Toml(regs_t.data[name], "registers.%s" % name, source)
        rt.only("description", "prefixes", "res0_macros", "fields")
        ft = _Toml(rt.data.get("fields", {}), "registers.%s.fields" % name, source)
        fields: dict[str, FieldInfo] = {}
        for fname in ft.data:
            one = _Toml(ft.data[fname], "registers.%s.fields.%s" % (name, fname), source)
            one.only("polarity", "feature", "aliases", "note", "kvm_arm_h", "source",
                     "ignored_when", "arch", "kernel", "kernel_source")
            kernel = one.text("kernel", "")
            version = parse_version(kernel) if kernel else None
            if kernel and version is None:
                raise one.fail("kernel", "not a version (vX.Y): %r" % kernel)
            fields[fname] = FieldInfo(
                name=fname, polarity=Polarity(one.choice("polarity", tuple(Polarity))),
                feature=one.text("feature", "") or None, aliases=one.texts("aliases"),
                note=one.text("note", ""), kernel_note=one.text("kvm_arm_h", ""),
                ignored_when=one.texts("ignored_when"),
                source=one.sources("source", sources), arch=one.text("arch", ""),
                kernel=version[:2] if version else None,
                kernel_source=one.sources("kernel_source", sources, required=bool(kernel)))
        registers[name] = RegisterInfo(
            name=name, description=rt.text("description", ""),
            prefixes=tuple(sorted(rt.texts("prefixes") or (name + "_",), key=len,
                                  reverse=True)),
            res0_macros=rt.texts("res0_macros"), fields=fields)
    flag_sets: list[dict[str, Any]] = []
    for i, item in enumerate(_list(raw, "flag_sets", source)):
        t = _Toml(item, "flag_sets[%d]" % i, source)
        t.only("name", "register", "era", "fields", "source", "note")
        reg = t.text("register")
        if reg not in registers:
            raise t.fail("register", "%s is not under [registers]" % reg)
        flag_sets.append({"name": t.text("name"), "register": reg,
                          "era": t.era("era", True, parse_era),
                          "fields": t.texts("fields", True),
                          "source": t.sources("source", sources), "note": t.text("note", ""),
                          "where": t.where})
    functions: list[FunctionRole] = []
    for i, item in enumerate(_list(raw, "functions", source)):
        t = _Toml(item, "functions[%d]" % i, source)
        t.only("name", "role", "layout", "mode", "files", "registers", "era", "source", "note")
        for reg in t.texts("registers"):
            if reg not in registers:
                raise t.fail("registers", "%s is not under [registers]" % reg)
        functions.append(FunctionRole(
            name=t.text("name"), role=Role(t.choice("role", tuple(Role))),
            layout=t.choice("layout", _LAYOUTS), files=t.texts("files", True),
            mode=t.choice("mode", _MODES), registers=t.texts("registers"),
            era=t.era("era", False, parse_era), source=t.sources("source", sources),
            note=t.text("note", "")))
    values: list[ValueExpr] = []
    for i, item in enumerate(_list(raw, "values", source)):
        t = _Toml(item, "values[%d]" % i, source)
        t.only("register", "side", "expr", "mode", "era", "source", "note")
        reg = t.text("register")
        if reg not in registers:
            raise t.fail("register", "%s is not under [registers]" % reg)
        values.append(ValueExpr(
            register=reg, side=t.choice("side", ("guest", "host")),
            expr=" ".join(t.text("expr").split()), mode=t.choice("mode", _MODES, "both"),
            era=t.era("era", False, parse_era), source=t.sources("source", sources),
            note=t.text("note", "")))
    file_eras: list[FileEra] = []
    for i, item in enumerate(_list(raw, "file_eras", source)):
        t = _Toml(item, "file_eras[%d]" % i, source)
        t.only("path", "era", "source", "macro")
        file_eras.append(FileEra(path=t.text("path"), era=t.era("era", True, parse_era),
                                 source=t.sources("source", sources),
                                 macro=t.text("macro", "")))
    rel = _Toml(raw.get("releases", {}), "releases", source)
    releases: dict[tuple[int, ...], dt.date] = {}
    for key, value in rel.data.items():
        ver = parse_version(key)
        if ver is None:
            raise rel.fail(key, "not a version (vX.Y)")
        if not isinstance(value, str):
            raise rel.fail(key, "expected a date string YYYY-MM-DD")
        try:
            releases[ver[:2]] = dt.date.fromisoformat(value)
        except ValueError:
            raise rel.fail(key, "not a date: %r" % value) from None
    return KvmData(sources=sources, registers=registers, flag_sets=tuple(flag_sets),
                   functions=tuple(functions), values=tuple(values),
                   facts=read_facts(raw, sources, source),
                   file_eras=tuple(file_eras), releases=releases,
                   snapshot_files=top.texts("snapshot_files"))


def _list(raw: dict[str, Any], key: str, source: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError("%s: %s: expected an array of tables ([[%s]])" % (source, key, key))
    return value


# -- building the model ------------------------------------------------------

def _enrich(raw: Register, info: RegisterInfo, *, strict: bool, source: str) -> Register:
    """Layout from `raw`, everything else from kvm.toml."""
    fields: list[Field] = []
    matched: set[str] = set()
    for f in raw.fields:
        fi = info.info_for(f.name)
        if fi is None:
            if strict:
                raise ConfigError("%s: registers.%s.fields: no entry for %s (%s)"
                                  % (source, raw.name, f.name, f.source))
            fields.append(replace(f, register=raw.name,
                                  note="not described in kvm.toml: a field this model "
                                       "does not know"))
            continue
        if fi.name in matched:
            raise ConfigError("%s: registers.%s.fields.%s: names two fields of the layout"
                              % (source, raw.name, fi.name))
        matched.add(fi.name)
        aliases = fi.aliases + ((f.name,) if f.name != fi.name and f.name.upper() not in
                                (a.upper() for a in fi.aliases) else ())
        fields.append(replace(
            f, register=raw.name, name=fi.name, aliases=aliases, polarity=fi.polarity,
            feature=fi.feature, note=fi.note, kernel_note=fi.kernel_note,
            ignored_when=fi.ignored_when,
            source="%s; %s" % (f.source, fi.source) if fi.source else f.source,
            arch=fi.arch, kernel=fi.kernel, kernel_source=fi.kernel_source))
    if strict:
        for name in info.fields:
            if name not in matched:
                raise ConfigError("%s: registers.%s.fields.%s: %s has no such field"
                                  % (source, raw.name, name, SYSREG_FILE))
    return replace(raw, fields=tuple(fields), description=info.description,
                   prefixes=info.prefixes, res0_macros=info.res0_macros)


def _field_value(reg: Register, name: str) -> int | None:
    f = reg.field(name)
    if f is not None:
        return f.mask if f.width == 1 else None
    for f in reg.fields:
        for n in (f.name, *f.aliases):
            if name.upper().startswith(n.upper() + "_"):
                val = f.value(name[len(n) + 1:])
                if val is not None:
                    return val << f.lsb
    return None


def _flag_sets(data: KvmData, registers: Mapping[str, Register]) -> list[FlagSet]:
    out: list[FlagSet] = []
    for item in data.flag_sets:
        reg = registers[item["register"]]
        value = 0
        for name in item["fields"]:
            bits = _field_value(reg, name)
            if bits is None:
                raise ConfigError("%s: %s.fields: %s is not a one-bit field or FIELD_VALUE of %s"
                                  % (KVM_FILE, item["where"], name, reg.name))
            value |= bits
        out.append(FlagSet(name=item["name"], register=reg.name, era=item["era"],
                           fields=tuple(item["fields"]), value=value,
                           source=item["source"], note=item["note"]))
    return out


def _read_package(name: str) -> str:
    # The data files ship beside this module (pyproject package-data).
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


def build_parts(sysreg_text: str, kvm_text: str) -> tuple[dict[str, Register], KvmData]:
    """The model's layout (enriched) and kvm.toml from the two data files' text.

    Every field of the layout needs a kvm.toml entry and every entry a field:
    a mismatch raises ConfigError naming the key.
    """
    data = read_kvm_data(kvm_text)
    try:
        layout = parse_sysreg(sysreg_text, SYSREG_FILE)
    except BadInput as exc:   # our own data file: a packaging bug, reported as config
        raise ConfigError(str(exc)) from None
    registers = {}
    for name, info in data.registers.items():
        if name not in layout:
            raise ConfigError("%s: registers.%s: not in %s" % (KVM_FILE, name, SYSREG_FILE))
        registers[name] = _enrich(layout[name], info, strict=True, source=KVM_FILE)
    return registers, data


def build_model(sysreg_text: str, kvm_text: str, origin: str) -> RegisterModel:
    registers, data = build_parts(sysreg_text, kvm_text)
    return RegisterModel(registers=registers, flag_sets=_flag_sets(data, registers),
                         functions=data.functions, values=data.values, sources=data.sources,
                         facts=data.facts,
                         origin=origin,
                         file_eras=data.file_eras, releases=data.releases,
                         snapshot_files=data.snapshot_files)


Parsed = tuple[dict[str, Register], KvmData, tuple[FlagSet, ...]]


@functools.lru_cache(maxsize=1)
def _shipped() -> Parsed:
    return cached_parts(_read_package(SYSREG_FILE), _read_package(KVM_FILE))


def shipped_parts() -> tuple[dict[str, Register], KvmData]:
    """The shipped layout and kvm.toml, parsed once per process; across
    processes, once per change of the files or the code (bot.regmodel.cache)."""
    registers, data, _ = _shipped()
    return registers, data


def cached_parts(sysreg_text: str, kvm_text: str, directory: Path | None = None) -> Parsed:
    """build_parts() and the flag sets, or what an earlier process stored for
    the same text (bot.regmodel.cache; `directory` defaults to the user's cache)."""
    def build() -> Parsed:
        registers, data = build_parts(sysreg_text, kvm_text)
        return registers, data, tuple(_flag_sets(data, registers))
    return cache.cached("regmodel", (sysreg_text.encode(), kvm_text.encode()), build,
                        _is_parsed, directory=directory)


def _is_parsed(value: object) -> TypeGuard[Parsed]:
    return (isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], dict)
            and all(isinstance(r, Register) for r in value[0].values())
            and isinstance(value[1], KvmData)
            and isinstance(value[2], tuple) and all(isinstance(f, FlagSet) for f in value[2]))


@functools.lru_cache(maxsize=1)
def _shipped_model() -> RegisterModel:
    registers, data, flag_sets = _shipped()
    return RegisterModel(registers=registers, flag_sets=flag_sets,
                         functions=data.functions, values=data.values, sources=data.sources,
                         facts=data.facts,
                         origin="shipped (%s, %s)" % (SYSREG_FILE, KVM_FILE),
                         file_eras=data.file_eras, releases=data.releases,
                         snapshot_files=data.snapshot_files)


def load_model(kernel_tree: str | None = None) -> RegisterModel:
    """The shipped model (cached), or one whose layout comes from a kernel tree."""
    if not kernel_tree:
        return _shipped_model()
    return _tree_model(read_tree(kernel_tree))


# -- kernel trees --------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class KernelTree:
    """What the model takes from a kernel tree: version, tools/sysreg, kvm_arm.h."""

    root: Path
    version: tuple[int, ...] | None
    sysreg: Mapping[str, Register] | None   # None: the tree has no tools/sysreg
    macros: Mapping[str, Macro]             # kvm_arm.h, evaluated

    def where(self, relpath: str, line: int | None = None) -> str:
        return relpath if line is None else "%s:%d" % (relpath, line)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput("%s: cannot read: %s" % (path, exc.strerror)) from None


def _tree_version(root: Path) -> tuple[int, ...] | None:
    makefile = root / "Makefile"
    if not makefile.is_file():
        return None
    found: dict[str, int] = {}
    for line in _read(makefile).splitlines()[:12]:
        m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d+)", line)
        if m:
            found[m.group(1)] = int(m.group(2))
    if "VERSION" not in found or "PATCHLEVEL" not in found:
        return None
    return tuple(found[k] for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL") if k in found)


def read_tree(path: str | Path) -> KernelTree:
    """tools/sysreg (when the tree has it) and kvm_arm.h of a kernel tree."""
    root = Path(path)
    if not root.is_dir():
        raise BadInput("%s: not a directory" % path)
    kvm_arm = root / KVM_ARM_H
    if not kvm_arm.is_file():
        raise BadInput("%s: not a kernel tree: no %s" % (path, KVM_ARM_H))
    sysreg_file = root / SYSREG_PATH
    sysreg = parse_sysreg(_read(sysreg_file), SYSREG_PATH) if sysreg_file.is_file() else None
    known = generated_macros(sysreg.values()) if sysreg else {}
    macros = evaluate_defines(_read(kvm_arm), known)
    return KernelTree(root=root, version=_tree_version(root), sysreg=sysreg, macros=macros)


def layout_from_macros(layout: MacroLayout, reference: Register) -> Register:
    """A register built from kvm_arm.h macros, named after `reference`'s fields."""
    fields: list[Field] = []
    covered = 0
    for mf in layout.fields:
        if mf.value_name is not None:
            continue
        width = mf.field.width if mf.field is not None else 1
        msb = mf.msb if mf.msb is not None else mf.lsb + width - 1
        name = mf.field.name if mf.field is not None else mf.name
        fields.append(Field(register=reference.name, name=name, msb=msb, lsb=mf.lsb,
                            aliases=(), polarity=Polarity.NEUTRAL, feature=None,
                            values=mf.field.values if mf.field is not None else (),
                            source="%s:%d" % (KVM_ARM_H, mf.line)))
        covered |= ((1 << (msb - mf.lsb + 1)) - 1) << mf.lsb
    res0 = 0
    for m in layout.res0:
        res0 |= m.value or 0
    res1 = 0
    for m in layout.res1:
        res1 |= m.value or 0
    if res0 & covered:
        logger.debug("%s: RES0 masks overlap defined fields at %#x", reference.name,
                     res0 & covered)
    fields.sort(key=lambda f: -f.msb)
    return Register(name=reference.name, encoding=reference.encoding, width=reference.width,
                    fields=tuple(fields), res0=mask_to_ranges(res0 & ~covered),
                    res1=mask_to_ranges(res1 & ~covered), source=KVM_ARM_H)


def _decode_names(reg: Register, value: int) -> tuple[str, ...]:
    names = []
    for f in reg.fields:
        part = (value & f.mask) >> f.lsb
        if not part:
            continue
        if f.width == 1:
            names.append(f.name)
            continue
        vname = next((n for n, v in f.values if v == part), None)
        names.append("%s_%s" % (f.name, vname) if vname else "%s=%#x" % (f.name, part))
    leftover = value & ~ranges_to_mask((f.msb, f.lsb) for f in reg.fields)
    if leftover:
        names.append("bits=%#x" % leftover)
    return tuple(names)


def tree_registers(tree: KernelTree) -> dict[str, tuple[Register, str]]:
    """Each modelled register's layout in `tree`, and where it came from."""
    shipped, _ = shipped_parts()
    out: dict[str, tuple[Register, str]] = {}
    for name, reference in shipped.items():
        if tree.sysreg is not None and name in tree.sysreg:
            out[name] = (tree.sysreg[name], SYSREG_PATH)
            continue
        layout = macro_layout(tree.macros, reference)
        if layout.fields:
            out[name] = (layout_from_macros(layout, reference), KVM_ARM_H)
        else:
            logger.warning("%s: neither %s nor %s describes %s; using the shipped layout",
                           tree.root, SYSREG_PATH, KVM_ARM_H, name)
            out[name] = (reference, "shipped")
    return out


def _tree_model(tree: KernelTree) -> RegisterModel:
    shipped, data = shipped_parts()
    registers = {name: _enrich(reg, data.registers[name], strict=False, source=KVM_FILE)
                 for name, (reg, _) in tree_registers(tree).items()}
    flag_sets = _flag_sets(data, shipped)
    era = "v%d.%d" % tree.version[:2] if tree.version else ""
    for name in sorted({item["name"] for item in data.flag_sets}):
        macro = tree.macros.get(name)
        reg_name = next(item["register"] for item in data.flag_sets if item["name"] == name)
        if macro is None or macro.value is None or not era:
            continue
        flag_sets.append(FlagSet(name=name, register=reg_name, era=era,
                                 fields=_decode_names(registers[reg_name], macro.value),
                                 value=macro.value, source="%s:%d" % (KVM_ARM_H, macro.line),
                                 note="evaluated from the kernel tree %s" % tree.root))
    return RegisterModel(registers=registers, flag_sets=flag_sets, functions=data.functions,
                         values=data.values, sources=data.sources,
                         facts=data.facts,
                         origin="kernel tree %s" % tree.root, kernel_version=tree.version,
                         file_eras=data.file_eras, releases=data.releases,
                         snapshot_files=data.snapshot_files)
