"""The register model's types and the questions rules ask of it.

Everything here is frozen data built once by `bot.regmodel.load`; rules
receive a `RegisterModel` and never build one. Names are matched without
regard to case because the kernel spells one field several ways
(`HCR_ENSCXT`, `HCR_EL2_EnSCXT`).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from bot.regmodel.facts import KvmFacts

MASK64 = (1 << 64) - 1

# Suffixes the kernel puts after a field name: gen-sysreg.awk emits the first
# three for every field, kvm_arm.h uses _SHIFT and _MASK by hand.
FIELD_SUFFIXES = ("_SHIFT", "_MASK", "_WIDTH", "_SIGNED")


class Polarity(enum.StrEnum):
    """Which value of a field is the conservative one.

    TRAP: 1 traps, routes or restricts what the lower ELs may do.
    ALLOW: 1 removes a trap or enables an access or feature for them.
    NEUTRAL: configuration or state with no conservative direction
    (VM, BSU, HPMN, E2PB, the virtual interrupt pending bits...).
    """

    TRAP = "trap"
    ALLOW = "allow"
    NEUTRAL = "neutral"


class Role(enum.StrEnum):
    """What a KVM function does with HCR_EL2/MDCR_EL2 (REVIEW-GUIDE section 4)."""

    ENTRY = "entry"
    EXIT = "exit"
    VCPU_LOAD = "vcpu-load"
    VCPU_PUT = "vcpu-put"
    TLB_TO_GUEST = "tlb-to-guest"
    TLB_TO_HOST = "tlb-to-host"
    INIT = "init"
    PANIC = "panic"
    EARLY_EXIT = "early-exit"
    VCPU_INIT = "vcpu-init"   # computes vcpu->arch.hcr_el2/mdcr_el2 before first use
    RUN = "run"               # the world switch that calls entry and exit
    HOST_QUERY = "host-query"  # reads EL2 state on behalf of the EL1 host


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One field of a register: its bits, names, polarity and where that is known from."""

    register: str
    name: str
    msb: int
    lsb: int
    aliases: tuple[str, ...]
    polarity: Polarity
    feature: str | None
    source: str
    note: str = ""
    # Named values of an Enum field, unshifted, as tools/sysreg lists them.
    values: tuple[tuple[str, int], ...] = ()
    # Why linux 6.12's kvm_arm.h has no macro for this field, when it has none.
    kernel_note: str = ""
    # Fields that, all set to 1, make this one have no effect (ATA: E2H and
    # TGE); a host configuration running that way does not need the bit.
    ignored_when: tuple[str, ...] = ()
    # The architecture version that brought the field (Armv8.1...).
    arch: str = ""
    # The first mainline kernel whose kvm_arm.h or tools/sysreg knew the
    # field, (major, minor), and the sources saying so; None: not recorded.
    kernel: tuple[int, ...] | None = None
    kernel_source: str = ""

    @property
    def kernel_checked(self) -> bool:
        """`kernel` comes from a cited file or mail, not from memory."""
        return bool(self.kernel_source) and "memory" not in self.kernel_source.split()

    def known_at(self, version: tuple[int, ...] | None) -> bool:
        """Whether a kernel of `version` knew this field (None: today's kernel)."""
        return version is None or self.kernel is None or self.kernel <= version[:2]

    @property
    def width(self) -> int:
        return self.msb - self.lsb + 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    @property
    def bits(self) -> str:
        return str(self.msb) if self.msb == self.lsb else "%d:%d" % (self.msb, self.lsb)

    def value(self, name: str) -> int | None:
        """The unshifted value of a named Enum value (BSU "IS" -> 1)."""
        for vname, val in self.values:
            if vname.upper() == name.upper():
                return val
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    """One system register: its layout and the macro names the kernel gives it."""

    name: str
    encoding: tuple[int, ...] | None
    width: int
    fields: tuple[Field, ...]
    res0: tuple[tuple[int, int], ...]
    res1: tuple[tuple[int, int], ...]
    unkn: tuple[tuple[int, int], ...] = ()
    source: str = ""
    description: str = ""
    # Kernel macro prefixes naming this register's fields, longest first.
    prefixes: tuple[str, ...] = ()
    # Hand-written RES0 masks in kvm_arm.h (the stale MDCR_EL2_RES0...).
    res0_macros: tuple[str, ...] = ()

    @property
    def res0_mask(self) -> int:
        return ranges_to_mask(self.res0)

    @property
    def res1_mask(self) -> int:
        return ranges_to_mask(self.res1)

    @property
    def field_mask(self) -> int:
        mask = 0
        for f in self.fields:
            mask |= f.mask
        return mask

    def field(self, name: str) -> Field | None:
        up = name.upper()
        for f in self.fields:
            if f.name.upper() == up or up in (a.upper() for a in f.aliases):
                return f
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagSet:
    """A value KVM writes to a register (HCR_GUEST_FLAGS...), in a kernel era."""

    name: str
    register: str
    era: str
    fields: tuple[str, ...]
    value: int
    source: str = ""
    note: str = ""

    def contains(self, version: str | tuple[int, ...]) -> bool:
        return era_contains(self.era, version)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionRole:
    """A kernel function with a part in save/restore (entry, exit, TLB...)."""

    name: str
    role: Role
    layout: str   # "pre-5.9" | "post-5.9" | "any"
    files: tuple[str, ...]
    mode: str     # "vhe" | "nvhe" | "both"
    registers: tuple[str, ...] = ()
    era: str = ""
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueExpr:
    """A C expression that holds a guest or a host value of a register."""

    register: str
    side: str     # "guest" | "host"
    expr: str
    mode: str = "both"
    era: str = ""
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEra:
    """A path (a directory when it ends in "/") that exists only in an era."""

    path: str
    era: str
    source: str = ""
    # When set, the era is that of this #define in the file, not of the file.
    macro: str = ""

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) if self.path.endswith("/") else path == self.path


@dataclass(frozen=True, slots=True, kw_only=True)
class Macro:
    """A `#define` evaluated: its value and, when it is one run of bits, the run."""

    name: str
    expr: str
    value: int | None
    msb: int | None
    lsb: int | None
    line: int
    # Parameter names of a function-like macro; None for an object-like one.
    params: tuple[str, ...] | None = None


# -- eras -------------------------------------------------------------------

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


def parse_version(text: str) -> tuple[int, ...] | None:
    """'v6.12' or '6.12.117' -> (6, 12) / (6, 12, 117); None if not a version."""
    m = _VERSION.match(text.strip())
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def parse_era(era: str) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """'v5.9..v5.18' -> ((5, 9), (5, 18)); 'v6.14..' -> ((6, 14), None);
    'v6.12' -> ((6, 12), (6, 12)). Raises ValueError on anything else."""
    if ".." in era:
        lo_text, hi_text = era.split("..", 1)
    else:
        lo_text = hi_text = era
    lo = parse_version(lo_text)
    hi = parse_version(hi_text) if hi_text else None
    if lo is None or (hi_text and hi is None):
        raise ValueError("not an era: %r (expected vX.Y..vX.Y, vX.Y.. or vX.Y)" % era)
    if hi is not None and hi[:2] < lo[:2]:
        raise ValueError("era %r ends before it starts" % era)
    return lo, hi


def era_contains(era: str, version: str | tuple[int, ...]) -> bool:
    ver = parse_version(version) if isinstance(version, str) else version
    if ver is None:
        return False
    lo, hi = parse_era(era)
    # Eras name mainline releases: 6.12.117 belongs to the era holding 6.12.
    if ver[:2] < lo[:2]:
        return False
    return hi is None or ver[:2] <= hi[:2]


def _era_key(era: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    lo, hi = parse_era(era)
    return lo, hi if hi is not None else (10**6,)


# -- bit ranges -------------------------------------------------------------

def ranges_to_mask(ranges: Iterable[tuple[int, int]]) -> int:
    mask = 0
    for msb, lsb in ranges:
        mask |= ((1 << (msb - lsb + 1)) - 1) << lsb
    return mask


def mask_to_ranges(mask: int) -> tuple[tuple[int, int], ...]:
    """Contiguous runs of set bits, highest first: 0b1101 -> ((3, 2), (0, 0))."""
    runs: list[tuple[int, int]] = []
    bit = mask.bit_length() - 1
    while bit >= 0:
        if mask >> bit & 1:
            msb = bit
            while bit >= 0 and mask >> bit & 1:
                bit -= 1
            runs.append((msb, bit + 1))
        else:
            bit -= 1
    return tuple(runs)


def contiguous_range(value: int) -> tuple[int, int] | None:
    """(msb, lsb) when `value` is one run of set bits, else None."""
    if value <= 0:
        return None
    lsb = (value & -value).bit_length() - 1
    run = value >> lsb
    if run & (run + 1):
        return None
    return lsb + run.bit_length() - 1, lsb


def format_bits(msb: int, lsb: int) -> str:
    return str(msb) if msb == lsb else "%d:%d" % (msb, lsb)


# -- the model --------------------------------------------------------------

class RegisterModel:
    """HCR_EL2/MDCR_EL2 fields plus KVM's flag sets and save/restore map."""

    def __init__(self, *, registers: Mapping[str, Register],
                 flag_sets: Iterable[FlagSet] = (),
                 functions: Iterable[FunctionRole] = (),
                 values: Iterable[ValueExpr] = (),
                 sources: Mapping[str, str] | None = None,
                 origin: str = "shipped",
                 kernel_version: tuple[int, ...] | None = None,
                 facts: KvmFacts | None = None,
                 file_eras: Iterable[FileEra] = (),
                 releases: Mapping[tuple[int, ...], dt.date] | None = None,
                 snapshot_files: Iterable[str] = ()) -> None:
        self.registers: Mapping[str, Register] = MappingProxyType(dict(registers))
        self.flag_sets: tuple[FlagSet, ...] = tuple(flag_sets)
        self.functions: tuple[FunctionRole, ...] = tuple(functions)
        self.values: tuple[ValueExpr, ...] = tuple(values)
        self.sources: Mapping[str, str] = MappingProxyType(dict(sources or {}))
        self.origin = origin
        # Where code runs, guards, storage of values, events (kvm.toml).
        self.facts = facts if facts is not None else KvmFacts()
        self.file_eras: tuple[FileEra, ...] = tuple(file_eras)
        # Mainline releases, oldest first: (major, minor) -> release date.
        self.releases: Mapping[tuple[int, ...], dt.date] = MappingProxyType(
            dict(sorted((releases or {}).items())))
        self._snapshot_files = tuple(snapshot_files)
        # Set when loaded from a kernel tree: flag_set() then defaults to it.
        self.kernel_version = kernel_version
        self._by_upper = {name.upper(): reg for name, reg in self.registers.items()}
        # Per register: NAME or ALIAS -> field, and FIELD_VALUE -> field.
        self._names: dict[str, dict[str, Field]] = {}
        self._values: dict[str, dict[str, Field]] = {}
        for reg in self.registers.values():
            names: dict[str, Field] = {}
            vals: dict[str, Field] = {}
            for f in reg.fields:
                for n in (f.name, *f.aliases):
                    names.setdefault(n.upper(), f)
                for vname, _ in f.values:
                    for n in (f.name, *f.aliases):
                        vals.setdefault("%s_%s" % (n.upper(), vname.upper()), f)
            self._names[reg.name] = names
            self._values[reg.name] = vals
        self._roles: dict[str, list[FunctionRole]] = {}
        for fr in self.functions:
            self._roles.setdefault(fr.name, []).append(fr)

    def __repr__(self) -> str:
        return "<RegisterModel %s: %s>" % (self.origin, ", ".join(self.registers))

    # registers and fields

    def register(self, name: str) -> Register | None:
        return self._by_upper.get(name.strip().upper())

    def _require(self, register: str) -> Register:
        reg = self.register(register)
        if reg is None:
            raise KeyError("register %s is not in the model (known: %s)"
                           % (register, ", ".join(self.registers)))
        return reg

    def _match(self, reg: Register, rest: str) -> Field | None:
        names = self._names[reg.name]
        if rest in names:
            return names[rest]
        for suffix in FIELD_SUFFIXES:
            if rest.endswith(suffix) and rest[:-len(suffix)] in names:
                return names[rest[:-len(suffix)]]
        return self._values[reg.name].get(rest)

    def lookup(self, name: str, register: str | None = None) -> Field | None:
        """The field a kernel macro, generated name or alias denotes.

        Accepts "HCR_TGE", "HCR_EL2_TGE", "HCR_EL2_TGE_MASK", "HCR_TAC",
        "HCR_BSU_IS" (a value of BSU), "MDCR_EL2_E2PB_SHIFT", "HCR_EL2.TGE",
        and a bare "TGE" (unique across registers, or within `register`).
        """
        text = name.strip()
        if "." in text:
            reg_name, _, fld = text.partition(".")
            if register is not None and reg_name.upper() != register.upper():
                return None
            return self.lookup(fld, reg_name)
        up = text.upper()
        if register is not None:
            reg = self.register(register)
            regs = [reg] if reg is not None else []
        else:
            regs = list(self.registers.values())
        found: list[Field] = []
        for reg in regs:
            for prefix in reg.prefixes or (reg.name + "_",):
                if up.startswith(prefix.upper()):
                    hit = self._match(reg, up[len(prefix):])
                    if hit is not None:
                        return hit
                    break
        for reg in regs:
            hit = self._match(reg, up)
            if hit is not None:
                found.append(hit)
        return found[0] if len(found) == 1 else None

    def polarity(self, register: str, field: str) -> Polarity:
        f = self.lookup(field, self._require(register).name)
        if f is None:
            raise KeyError("%s has no field %s" % (register, field))
        return f.polarity

    # values

    def decode(self, register: str, value: int) -> tuple[tuple[Field, ...], int]:
        """The fields with any bit set in `value`, and the bits in no field."""
        reg = self._require(register)
        value &= MASK64
        hits = tuple(f for f in reg.fields if value & f.mask)
        return hits, value & ~reg.field_mask

    def res0_violations(self, register: str, value: int) -> tuple[tuple[int, int], ...]:
        """Runs of bits set in `value` that the model calls RES0."""
        reg = self._require(register)
        return mask_to_ranges(value & MASK64 & reg.res0_mask)

    def res1_violations(self, register: str, value: int) -> tuple[tuple[int, int], ...]:
        """Runs of RES1 bits that `value` leaves clear."""
        reg = self._require(register)
        return mask_to_ranges(~value & MASK64 & reg.res1_mask)

    # KVM's flag sets

    def flag_sets_with(self, register: str, field: str) -> tuple[FlagSet, ...]:
        reg = self._require(register)
        f = self.lookup(field, reg.name)
        if f is None:
            raise KeyError("%s has no field %s" % (register, field))
        return tuple(fs for fs in self.flag_sets
                     if fs.register == reg.name and fs.value & f.mask)

    def flag_set(self, name: str, era: str | None = None) -> FlagSet | None:
        """The set `name` in `era` (an era string or a version such as "v6.12").

        Without `era`: the kernel tree's version when the model came from one,
        else the latest era.
        """
        candidates = [fs for fs in self.flag_sets if fs.name.upper() == name.strip().upper()]
        if not candidates:
            return None
        if era is None and self.kernel_version is not None:
            era = "v%d.%d" % self.kernel_version[:2]
        if era is None:
            return max(candidates, key=lambda fs: _era_key(fs.era))
        for fs in candidates:
            if fs.era == era:
                return fs
        if parse_version(era) is not None:
            # A tree's own evaluated set (era "vX.Y") wins over a shipped range.
            inside = [fs for fs in candidates if fs.contains(era)]
            if inside:
                return min(inside, key=lambda fs: _era_key(fs.era)[1])
        return None

    # the save/restore map

    def role(self, function: str, path: str | None = None) -> FunctionRole | None:
        """The role of `function`; with `path`, only an entry for that file."""
        entries = self._roles.get(function.strip(), [])
        if path is None:
            return entries[0] if entries else None
        norm = path.strip().lstrip("./")
        for fr in entries:
            if any(norm == f or norm.endswith("/" + f) or f.endswith("/" + norm)
                   for f in fr.files):
                return fr
        return None

    def roles(self, function: str) -> tuple[FunctionRole, ...]:
        return tuple(self._roles.get(function.strip(), ()))

    def functions_with_role(self, role: Role | str) -> tuple[FunctionRole, ...]:
        return tuple(fr for fr in self.functions if fr.role == Role(role))

    def guest_value_exprs(self, register: str) -> tuple[str, ...]:
        reg = self._require(register)
        return tuple(v.expr for v in self.values if v.register == reg.name and v.side == "guest")

    def host_value_exprs(self, register: str) -> tuple[str, ...]:
        reg = self._require(register)
        return tuple(v.expr for v in self.values if v.register == reg.name and v.side == "host")

    def value_expr(self, expr: str) -> ValueExpr | None:
        """What the model knows about one guest/host value expression."""
        norm = " ".join(expr.split())
        for v in self.values:
            if v.expr == norm:
                return v
        return None

    # what a kernel version knew

    def known_fields(self, register: str, version: str | tuple[int, ...] | None
                     ) -> tuple[Field, ...]:
        """The fields of `register` a kernel of `version` knew (None: every field)."""
        reg = self._require(register)
        ver = parse_version(version) if isinstance(version, str) else version
        return tuple(f for f in reg.fields if f.known_at(ver))

    def res0_mask_at(self, register: str, version: str | tuple[int, ...] | None) -> int:
        """The bits a kernel of `version` knew no field at: today's RES0 bits
        plus the fields it did not know yet."""
        reg = self._require(register)
        known = 0
        for f in self.known_fields(reg.name, version):
            known |= f.mask
        return (((1 << reg.width) - 1) & MASK64) & ~known & ~reg.res1_mask

    def snapshot_files(self, version: str | tuple[int, ...] | None) -> tuple[str, ...]:
        """The files a snapshot of a kernel of `version` should hold besides the
        series' own: the save/restore map's files of that era, the
        headers listed in kvm.toml and the Kconfig files of [kconfig]."""
        ver = parse_version(version) if isinstance(version, str) else version
        layout = "post-5.9" if ver is None or ver[:2] >= (5, 9) else "pre-5.9"
        out: dict[str, None] = {}
        for fr in self.functions:
            if fr.layout not in (layout, "any"):
                continue
            if ver is not None and fr.era and not era_contains(fr.era, ver):
                continue
            for path in fr.files:
                out[path] = None
        for path in (*self._snapshot_files, *self.facts.kconfig.files):
            out[path] = None
        return tuple(p for p in out if ver is None or not any(
            e.matches(p) and not e.macro and not era_contains(e.era, ver)
            for e in self.file_eras))

    def versions(self) -> tuple[tuple[int, ...], ...]:
        """Every mainline version the model can name, oldest first."""
        found: set[tuple[int, ...]] = set(self.releases)
        for fs in self.flag_sets:
            lo, hi = parse_era(fs.era)
            found.add(lo[:2])
            if hi is not None:
                found.add(hi[:2])
        for reg in self.registers.values():
            found.update(f.kernel for f in reg.fields if f.kernel is not None)
        return tuple(sorted(found))
