"""Ordering facts of kvm.toml, as data: what must come before what, and
which synchronisation a register write needs ([[reenable]],
[[sync_scope]], [[erratum_sequences]]; see the comments above them) read
into frozen objects that `KvmFacts.order` holds.

- [[reenable]]: with an erratum capability, something the world switch
  turns off for the switch (stage-1 table walks of the EL1&0 regime, by
  TCR_EL1.EPDx) comes back on only once the state it uses is in place:
  the incoming context's registers written, the stage-2 switch
  synchronised.
- [[sync_scope]]: the fields of a register only code at EL1/EL0 sees; the
  exception return that gets there is itself a context synchronisation
  event, so nothing at EL2 needs an isb after a write of only those.
- [[erratum_sequences]]: a barrier an erratum needs right before an access
  of a register, which an exception taken between the two must not
  undo: the exception return carries the barrier too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ConfigError
from bot.regmodel.reach import ContextsOf
from bot.regmodel.tomlcheck import TomlTable


@dataclass(frozen=True, slots=True, kw_only=True)
class Reenable:
    """[[reenable]]: a write that turns something back on (the value of
    `register` without every bit of `disabled_by` set), in the
    configuration with one of `capabilities`, must come after the writes
    of `after_writes` and after an isb that follows the writes of
    `after_sync`, on the same path."""

    name: str
    capabilities: tuple[str, ...]
    tests: tuple[str, ...]
    contexts: frozenset[str]       # execution contexts (bot.regmodel.facts.Ctx values)
    register: str
    disabled_by: str
    after_writes: tuple[str, ...]
    after_sync: tuple[str, ...]
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncScope:
    """[[sync_scope]]: the fields of `register` that only EL1/EL0 see."""

    register: str
    lower: tuple[str, ...]
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErratumSequence:
    """[[erratum_sequences]]: with `capability`, `barrier` must come right
    before each `access` of `register`; `masked` are the contexts that
    always run with interrupts masked, `exception_return` the files whose
    exception return must carry the barrier when the sequence can be
    interrupted."""

    capability: str
    barrier: str
    register: str
    access: str
    masked: frozenset[str]         # Ctx values
    exception_return: tuple[str, ...]
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFacts:
    """Everything kvm.toml says about ordering and synchronisation needs."""

    reenables: tuple[Reenable, ...] = ()
    sync_scopes: tuple[SyncScope, ...] = ()
    sequences: tuple[ErratumSequence, ...] = ()

    def scope(self, register: str) -> SyncScope | None:
        return next((s for s in self.sync_scopes if s.register == register), None)


def _items(raw: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError("%s: %s: expected an array of tables ([[%s]])" % (source, key, key))
    return value


def read_order(raw: Mapping[str, Any], sources: Mapping[str, str], source: str,
               contexts: ContextsOf) -> OrderFacts:
    """The ordering sections of kvm.toml; problems name the dotted key."""
    reenables = []
    for i, item in enumerate(_items(raw, "reenable", source)):
        t = TomlTable(item, "reenable[%d]" % i, source)
        t.only("name", "capabilities", "tests", "contexts", "register", "disabled_by",
               "after_writes", "after_sync", "source", "note")
        reenables.append(Reenable(
            name=t.text("name"), capabilities=t.texts("capabilities", True),
            tests=t.texts("tests", True), contexts=contexts(t, "contexts", True),
            register=t.text("register"), disabled_by=t.text("disabled_by"),
            after_writes=t.texts("after_writes"), after_sync=t.texts("after_sync"),
            source=t.sources("source", sources), note=t.text("note", "")))
    scopes = []
    for i, item in enumerate(_items(raw, "sync_scope", source)):
        t = TomlTable(item, "sync_scope[%d]" % i, source)
        t.only("register", "lower", "source", "note")
        scopes.append(SyncScope(register=t.text("register"), lower=t.texts("lower", True),
                                source=t.sources("source", sources), note=t.text("note", "")))
    sequences = []
    for i, item in enumerate(_items(raw, "erratum_sequences", source)):
        t = TomlTable(item, "erratum_sequences[%d]" % i, source)
        t.only("capability", "barrier", "register", "access", "masked", "exception_return",
               "source", "note")
        sequences.append(ErratumSequence(
            capability=t.text("capability"), barrier=t.text("barrier"),
            register=t.text("register"), access=t.choice("access", ("read", "write")),
            masked=contexts(t, "masked", True), exception_return=t.texts("exception_return", True),
            source=t.sources("source", sources), note=t.text("note", "")))
    return OrderFacts(reenables=tuple(reenables), sync_scopes=tuple(scopes),
                      sequences=tuple(sequences))
