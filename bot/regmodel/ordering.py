"""Ordering facts of kvm.toml: what must come before what, and which
synchronisation a register write needs, as data.

Three sections, read into frozen objects held by `KvmFacts.order`:

- [[reenable]]: with an erratum capability, something the world switch
  turns off for the switch (stage-1 table walks of the EL1&0 regime, by
  TCR_EL1.EPDx) may only be turned back on once the state it would use is
  in place: the registers of the context being restored written, and the
  stage-2 switch synchronised.
- [[sync_scope]]: the fields of a register whose change only code at
  EL1/EL0 sees. The exception return that takes the CPU there is itself a
  context synchronisation event, so an isb after a write that changes
  only those fields is not needed by anything at EL2.
- [[erratum_sequences]]: a barrier an erratum requires right before a
  register access, with nothing between them; an exception taken between
  the two can do what the barrier was there to keep apart, unless the
  exception return carries the barrier too.

Pure: `read_order` is handed kvm.toml's parsed table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError
from bot.regmodel.tomlcheck import TomlTable

if TYPE_CHECKING:
    from bot.regmodel.facts import Ctx


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
    contexts: frozenset[Ctx]
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
    masked: frozenset[Ctx]
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


def _contexts(t: TomlTable, key: str) -> frozenset[Ctx]:
    from bot.regmodel.facts import Ctx

    out = set()
    for name in t.texts(key, True):
        try:
            out.add(Ctx(name))
        except ValueError:
            raise t.fail(key, "unknown context %r (one of %s)"
                         % (name, ", ".join(c.value for c in Ctx))) from None
    return frozenset(out)


def _items(raw: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError("%s: %s: expected an array of tables ([[%s]])" % (source, key, key))
    return value


def read_order(raw: Mapping[str, Any], sources: Mapping[str, str], source: str) -> OrderFacts:
    """The ordering sections of kvm.toml; problems name the dotted key."""
    reenables = []
    for i, item in enumerate(_items(raw, "reenable", source)):
        t = TomlTable(item, "reenable[%d]" % i, source)
        t.only("name", "capabilities", "tests", "contexts", "register", "disabled_by",
               "after_writes", "after_sync", "source", "note")
        reenables.append(Reenable(
            name=t.text("name"), capabilities=t.texts("capabilities", True),
            tests=t.texts("tests", True), contexts=_contexts(t, "contexts"),
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
            masked=_contexts(t, "masked"), exception_return=t.texts("exception_return", True),
            source=t.sources("source", sources), note=t.text("note", "")))
    return OrderFacts(reenables=tuple(reenables), sync_scopes=tuple(scopes),
                      sequences=tuple(sequences))
