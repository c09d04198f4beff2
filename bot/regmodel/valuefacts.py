"""Facts about registers the model does not lay out field by field, as data.

HCR_EL2 and MDCR_EL2 have their fields in the model; the value checks of
bot/rules/keepmask.py, entrystate.py and kconfigsym.py also follow values
of other registers, with less: which C expressions hold the guest's
PSTATE, an SPSR or SCTLR_EL1 (and the AArch32 names of that storage),
which calls write one, the names of their bits the evaluator should know,
what exception entry does to PSTATE by a field of SCTLR, and the Kconfig
symbols KVM code tests. Read from kvm.toml's [regvalues] and [kconfig]
(see the comments there) into frozen objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.regmodel.tomlcheck import TomlTable


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterExpr:
    """C expressions (spaces removed) that hold one register's value: the
    `register` named, or the one the pattern's `reg` group names."""

    pattern: re.Pattern[str]
    register: str = ""
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Writer:
    """A call that writes a register from its argument `value`: the
    `register` named, or the one its argument `register_arg` names."""

    value: int
    register: str = ""
    register_arg: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryEffect:
    """What taking an exception does to one PSTATE bit, by a field of the
    register that controls the target exception level: `target.sets` (bit
    `set_bit`) is set when `register.field` (bit `bit`) is `when`, and left
    as it was otherwise."""

    register: str
    field: str
    bit: int
    when: int
    target: str
    sets: str
    set_bit: int
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegValueFacts:
    """kvm.toml [regvalues]."""

    exprs: tuple[RegisterExpr, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    writers: Mapping[str, Writer] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    families: Mapping[str, str] = field(default_factory=dict)
    drop_words: tuple[str, ...] = ()
    few_bits: int = 0
    constants: Mapping[str, str] = field(default_factory=dict)
    on_entry: tuple[EntryEffect, ...] = ()

    def register_of(self, compact: str) -> str | None:
        """The register whose value the expression (its text without
        spaces) holds, if [regvalues] exprs names one."""
        for rx in self.exprs:
            m = rx.pattern.match(compact)
            if m is None:
                continue
            named = rx.register or m.groupdict().get("reg")
            if named:
                return self.canonical(named)
        return None

    def canonical(self, register: str) -> str:
        """A register by the name the checks compare: through `aliases`
        (c1_SCTLR is SCTLR_EL1) and `families` (SCTLR_EL1 is SCTLR_ELx)."""
        register = self.aliases.get(register, register)
        return self.families.get(register, register)

    def drop_word(self, text: str) -> str | None:
        """The first word of `drop_words` in a name or comment (names split
        at underscores and case changes)."""
        words = set(re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
                               .replace("_", " ").lower()))
        return next((w for w in self.drop_words if w in words), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class KconfigFacts:
    """kvm.toml [kconfig]: the Kconfig symbols KVM code tests (read from
    `files` too when a kernel tree is at hand) and what selects a 32-bit
    half of 64-bit register storage."""

    files: tuple[str, ...] = ()
    symbols: frozenset[str] = frozenset()
    halves: re.Pattern[str] | None = None
    source: str = ""


def _regex(t: TomlTable, key: str) -> re.Pattern[str]:
    try:
        return re.compile(t.text(key))
    except re.error as exc:
        raise t.fail(key, "not a regular expression: %s" % exc) from None


def _int(t: TomlTable, key: str, low: int, high: int) -> int:
    value = t.data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise t.fail(key, "expected an integer from %d to %d" % (low, high))
    return value


def _names(t: TomlTable, key: str) -> dict[str, str]:
    sub = TomlTable(t.data.get(key, {}), "%s.%s" % (t.where, key), t.source)
    return {k: sub.text(k) for k in sub.data}


def read_regvalues(raw: Mapping[str, Any], sources: Mapping[str, str],
                   source: str) -> RegValueFacts:
    if "regvalues" not in raw:
        return RegValueFacts()
    t = TomlTable(raw["regvalues"], "regvalues", source)
    t.only("source", "note", "exprs", "params", "writers", "aliases", "families",
           "drop_words",
           "few_bits", "constants", "on_entry")
    t.sources("source", sources)
    exprs: list[RegisterExpr] = []
    for i, item in enumerate(t.data.get("exprs", [])):
        e = TomlTable(item, "regvalues.exprs[%d]" % i, source)
        e.only("match", "register", "source", "note")
        pattern = _regex(e, "match")
        register = e.text("register", "")
        if not register and "reg" not in pattern.groupindex:
            raise e.fail("register", "missing (or a `reg` group in match)")
        exprs.append(RegisterExpr(pattern=pattern, register=register,
                                  source=e.sources("source", sources), note=e.text("note", "")))
    wt = TomlTable(t.data.get("writers", {}), "regvalues.writers", source)
    writers: dict[str, Writer] = {}
    for name in wt.data:
        w = TomlTable(wt.data[name], "regvalues.writers.%s" % name, source)
        w.only("value", "register", "register_arg")
        if ("register" in w.data) == ("register_arg" in w.data):
            raise w.fail("register", "give either register or register_arg")
        writers[name] = Writer(value=_int(w, "value", 0, 7), register=w.text("register", ""),
                               register_arg=_int(w, "register_arg", 0, 7)
                               if "register_arg" in w.data else None)
    constants = _names(t, "constants")
    for key in constants:
        if not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise t.fail("constants.%s" % key, "not a C identifier")
    effects: list[EntryEffect] = []
    for i, item in enumerate(t.data.get("on_entry", [])):
        e = TomlTable(item, "regvalues.on_entry[%d]" % i, source)
        e.only("register", "field", "bit", "when", "target", "sets", "set_bit", "source",
               "note")
        effects.append(EntryEffect(
            register=e.text("register"), field=e.text("field"), bit=_int(e, "bit", 0, 63),
            when=_int(e, "when", 0, 1), target=e.text("target"), sets=e.text("sets"),
            set_bit=_int(e, "set_bit", 0, 63), source=e.sources("source", sources),
            note=e.text("note", "")))
    return RegValueFacts(
        exprs=tuple(exprs), params=_names(t, "params"), writers=writers,
        aliases=_names(t, "aliases"), families=_names(t, "families"),
        drop_words=t.texts("drop_words"),
        few_bits=_int(t, "few_bits", 1, 32) if "few_bits" in t.data else 0,
        constants=constants, on_entry=tuple(effects))


def read_kconfig(raw: Mapping[str, Any], sources: Mapping[str, str],
                 source: str) -> KconfigFacts:
    if "kconfig" not in raw:
        return KconfigFacts()
    t = TomlTable(raw["kconfig"], "kconfig", source)
    t.only("source", "note", "files", "symbols", "halves")
    symbols = t.texts("symbols")
    for name in symbols:
        if name.startswith("CONFIG_") or not re.fullmatch(r"[A-Z0-9_]+", name):
            raise t.fail("symbols", "%r is not a Kconfig symbol's name (without CONFIG_)"
                         % name)
    return KconfigFacts(files=t.texts("files"), symbols=frozenset(symbols),
                        halves=_regex(t, "halves") if "halves" in t.data else None,
                        source=t.sources("source", sources))
