"""Which configuration reaches which host code, and what only one
configuration's path may do, as data: kvm.toml's [[reach]], [config_work],
[[hyp_state]] and [[e2h_state]] (see the comments above them) read into
frozen objects.

- [[reach]]: calls the host's init code makes under a configuration test
  (kvm_arm_init() calls init_hyp_mode() only when !is_kernel_in_hyp_mode());
  with a kernel tree, or hunks that show the call, the test is read from
  the caller's text instead, so these are the fallback.
- [config_work]: the work both configurations need on a CPU (TLB and
  instruction-cache maintenance of the guest's regime), the calls that run
  a function at EL2, per-CPU accessors and definers, and the EL2 contexts
  that run with HCR_EL2.E2H set.
- [[hyp_state]]: per-CPU state the hypervisor reads on the vcpu run path,
  in the contexts that read it, and the host functions that set it up.
- [[e2h_state]]: PSTATE fields that exist at EL2 only when HCR_EL2.E2H is 1,
  and how code spells a write to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.regmodel.tomlcheck import TomlTable

# Reads a key naming execution contexts, checked against bot.regmodel.facts.Ctx
# (which imports this module): the names come back.
ContextsOf = Callable[[TomlTable, str, bool], frozenset[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReachEdge:
    """`caller` calls `callee` only where `guard` holds ("" for always;
    "!name" negated), in the files given ([[reach]])."""

    caller: str
    callee: str
    guard: str
    files: tuple[str, ...]
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HypState:
    """Per-CPU state the hypervisor reads on the vcpu run path ([[hyp_state]])."""

    name: str
    read_in: frozenset[str]        # execution contexts (bot.regmodel.facts.Ctx values)
    written_by: tuple[str, ...]
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class E2hState:
    """A PSTATE field that exists at EL2 only with HCR_EL2.E2H=1 ([[e2h_state]])."""

    name: str
    spellings: frozenset[str]      # macros and system-register names that write it
    msr: frozenset[str]            # its name as the immediate form of `msr` takes it
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigWork:
    """What one configuration's path may not keep to itself, and how to see it."""

    edges: tuple[ReachEdge, ...] = ()
    tlbi: frozenset[str] = frozenset()
    ic: frozenset[str] = frozenset()
    calls: frozenset[str] = frozenset()
    hyp_calls: frozenset[str] = frozenset()
    percpu_accessors: frozenset[str] = frozenset()
    percpu_defines: frozenset[str] = frozenset()
    e2h_contexts: frozenset[str] = frozenset()     # Ctx values
    hyp_state: Mapping[str, HypState] = field(default_factory=dict)
    e2h_state: tuple[E2hState, ...] = ()

    def edges_to(self, callee: str, path: str) -> list[ReachEdge]:
        return [e for e in self.edges if e.callee == callee and path in e.files]

    def e2h_names(self) -> frozenset[str]:
        """Every spelling of a write to E2H-only state."""
        return frozenset().union(*(s.spellings for s in self.e2h_state))


def read_config_work(raw: Mapping[str, Any], sources: Mapping[str, str], source: str,
                     contexts: ContextsOf) -> ConfigWork:
    """kvm.toml's [[reach]], [config_work], [[hyp_state]], [[e2h_state]];
    problems name the dotted key."""
    edges: list[ReachEdge] = []
    for i, item in enumerate(_items(raw, "reach", source)):
        t = TomlTable(item, "reach[%d]" % i, source)
        t.only("caller", "callee", "guard", "files", "source", "note")
        edges.append(ReachEdge(caller=t.text("caller"), callee=t.text("callee"),
                               guard=t.text("guard", ""), files=t.texts("files", True),
                               source=t.sources("source", sources), note=t.text("note", "")))
    w = TomlTable(raw.get("config_work", {}), "config_work", source)
    keys = ("tlbi", "ic", "calls", "hyp_calls", "percpu_accessors", "percpu_defines")
    w.only(*keys, "e2h_contexts", "source", "note")
    if w.data:
        w.sources("source", sources)
    lists = {key: frozenset(w.texts(key)) for key in keys}
    states: dict[str, HypState] = {}
    for i, item in enumerate(_items(raw, "hyp_state", source)):
        t = TomlTable(item, "hyp_state[%d]" % i, source)
        t.only("name", "read_in", "written_by", "source", "note")
        st = HypState(name=t.text("name"), read_in=contexts(t, "read_in", True),
                      written_by=t.texts("written_by"), source=t.sources("source", sources),
                      note=t.text("note", ""))
        states[st.name] = st
    e2h: list[E2hState] = []
    for i, item in enumerate(_items(raw, "e2h_state", source)):
        t = TomlTable(item, "e2h_state[%d]" % i, source)
        t.only("name", "spellings", "msr", "source", "note")
        e2h.append(E2hState(name=t.text("name"), spellings=frozenset(t.texts("spellings", True)),
                            msr=frozenset(t.texts("msr")), source=t.sources("source", sources),
                            note=t.text("note", "")))
    return ConfigWork(edges=tuple(edges), tlbi=lists["tlbi"], ic=lists["ic"],
                      calls=lists["calls"], hyp_calls=lists["hyp_calls"],
                      percpu_accessors=lists["percpu_accessors"],
                      percpu_defines=lists["percpu_defines"],
                      e2h_contexts=contexts(w, "e2h_contexts", False), hyp_state=states,
                      e2h_state=tuple(e2h))


def _items(raw: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError("%s: %s: expected an array of tables ([[%s]])" % (source, key, key))
    return value
