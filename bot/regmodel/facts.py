"""KVM facts the rules reason with, as data: where code runs, which tests
select a configuration, which memory holds a register value, which calls
are events, what must come before what. Read from kvm.toml's [[places]],
[[guards]], [[storage]], [ops] and its ordering sections (see the comments
at its top) into frozen objects.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.regmodel.ordering import OrderFacts, read_order
from bot.regmodel.reach import ConfigWork, read_config_work
from bot.regmodel.tomlcheck import TomlTable
from bot.regmodel.valuefacts import KconfigFacts, RegValueFacts, read_kconfig, read_regvalues

_PTR_MEMBER = re.compile(r"^\(?(\w+_ptr)\(([\w.&]+)\)\)?->(.+)$")
_DEREF_MEMBER = re.compile(r"^\(\*(\w+)\)\.(.+)$")


def _canonical(compact: str) -> str:
    """One spelling of a field access (see Facts.storage_of)."""
    m = _PTR_MEMBER.match(compact)
    if m is not None:
        return "*%s(%s.%s)" % (m.group(1), m.group(2), m.group(3).replace("->", "."))
    m = _DEREF_MEMBER.match(compact)
    if m is not None:
        return "%s->%s" % (m.group(1), m.group(2))
    return compact


class Ctx(enum.StrEnum):
    """One execution context: a configuration of KVM and where in it code runs."""

    NVHE_HOST = "nvhe-host"
    NVHE_HYP = "nvhe-hyp"
    PKVM_HOST = "pkvm-host"
    PKVM_HYP = "pkvm-hyp"
    HVHE_HOST = "hvhe-host"
    HVHE_HYP = "hvhe-hyp"
    VHE = "vhe"

    @property
    def el(self) -> int:
        """The exception level code runs at in this context."""
        return 1 if self.value.endswith("-host") else 2

    @property
    def mode(self) -> str:
        """nvhe, pkvm, hvhe or vhe."""
        return self.value.split("-", 1)[0]


ALL = frozenset(Ctx)
EL1 = frozenset(c for c in Ctx if c.el == 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Files whose code runs in the given contexts ([[places]] of kvm.toml)."""

    files: tuple[str, ...]
    contexts: frozenset[Ctx]
    source: str = ""
    note: str = ""

    def matches(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, g) for g in self.files)


@dataclass(frozen=True, slots=True, kw_only=True)
class Guard:
    """A test that tells contexts apart, and where it holds ([[guards]])."""

    name: str
    arg: str | None
    true_in: frozenset[Ctx]
    maybe_in: frozenset[Ctx]
    source: str = ""
    note: str = ""

    def split(self, contexts: frozenset[Ctx]) -> tuple[frozenset[Ctx], frozenset[Ctx]]:
        """(contexts where the guard can be true, where it can be false)."""
        can_true = contexts & (self.true_in | self.maybe_in)
        can_false = contexts - self.true_in
        return can_true, can_false


@dataclass(frozen=True, slots=True, kw_only=True)
class Storage:
    """Where KVM keeps a register's value between uses ([[storage]])."""

    pattern: re.Pattern[str]
    name: str
    register: str
    kind: str
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loader:
    """A helper that loads registers from the object it is handed
    ([[loaders]]: __load_stage2(mmu, arch) sets VTTBR_EL2 and VTCR_EL2)."""

    function: str
    registers: tuple[str, ...]
    arg: int | None = None      # which argument names what is loaded
    source: str = ""
    note: str = ""


_OPS = ("read", "write", "clear_set", "isb", "dsb", "tlbi", "at", "irq_off", "irq_on",
        "preempt_off", "preempt_on", "warn", "percpu", "regime", "percpu_write", "loads",
        "patched", "consume", "address_of", "e2h_redirected", "el1_accessors",
        "dsb_observers", "vhe_loaded", "memory_copy", "loaded_aware", "loaded_test",
        "per_vm_registers", "per_vm_tests")


@dataclass(frozen=True, slots=True, kw_only=True)
class LateSaved:
    """A register of the guest's exit state that the state save after the
    early-exit loop copies into the vcpu ([[late_saved]]): until then the
    vcpu's copy (`copy`) holds the previous entry's value and the live
    register (`live` reads it) the exit's."""

    register: str
    copy: re.Pattern[str]
    live: re.Pattern[str]
    saved_by: str
    # Calls that copy the live register into the vcpu's first.
    synced_by: tuple[str, ...] = ()
    # Calls that copy it in for good: from there on the vcpu's copy is the
    # value, and the state save no longer takes the live register's.
    owned_by: tuple[str, ...] = ()
    # Calls that read or adjust the vcpu's copy themselves.
    users: tuple[str, ...] = ()
    # How changed hyp code names the copy (what makes a patch matter).
    names: tuple[str, ...] = ()
    # The window's functions where the copy can be stale (empty: all of
    # them; the others run after a function of these takes it over).
    only_in: tuple[str, ...] = ()
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lifecycle:
    """When the stored register values come to exist ([lifecycle] of
    kvm.toml): the stages KVM goes through in order (boot, each CPU's
    init, vcpu init, ..., the world switch), the stage a function runs in,
    the stage where each storage is first used (it must be computed in an
    earlier one), and what helpers compute, for callers whose text does not
    show it."""

    stages: tuple[str, ...] = ()
    stage_of: Mapping[str, str] = field(default_factory=dict)
    first_use: Mapping[str, str] = field(default_factory=dict)
    defines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def rank(self, stage: str | None) -> int | None:
        return self.stages.index(stage) if stage in self.stages else None

    def stage(self, function: str) -> int | None:
        """The rank of the stage `function` runs in; None when no fact says."""
        return self.rank(self.stage_of.get(function))

    def used_from(self, storage: str) -> int | None:
        return self.rank(self.first_use.get(storage))


@dataclass(slots=True)
class _FactsMemo:
    """Answers worked out once per facts object: the [ops] index, each
    path's contexts, each storage spelling's storage."""

    ops: dict[str, str] | None = None
    contexts: dict[str, frozenset[Ctx]] = field(default_factory=dict)
    storage: dict[str, Storage | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class KvmFacts:
    """Everything kvm.toml says about how KVM's code runs and stores registers."""

    places: tuple[Place, ...] = ()
    guards: tuple[Guard, ...] = ()
    storage: tuple[Storage, ...] = ()
    ops: Mapping[str, frozenset[str]] = field(default_factory=dict)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    # Functions that save registers and the ones that put them back, as a
    # caller runs them in turn ([[round_trips]]).
    round_trips: tuple[tuple[str, str], ...] = ()
    # Constants of the other registers the save/restore helpers change, and
    # accessor macros they use ([constants]: "NAME" or "name(params)" -> C).
    constants: Mapping[str, str] = field(default_factory=dict)
    loaders: Mapping[str, Loader] = field(default_factory=dict)
    # Values of the registers besides HCR_EL2/MDCR_EL2 the value checks
    # follow ([regvalues]), and the Kconfig symbols KVM code tests ([kconfig]).
    regvalues: RegValueFacts = field(default_factory=RegValueFacts)
    kconfig: KconfigFacts = field(default_factory=KconfigFacts)
    late_saved: tuple[LateSaved, ...] = ()
    # The exit handlers the early-exit function calls (names; a trailing *
    # matches a prefix): they run in the same window ([exit_window]).
    exit_handlers: tuple[str, ...] = ()

    def in_exit_handlers(self, function: str) -> bool:
        return any(function.startswith(h[:-1]) if h.endswith("*") else function == h
                   for h in self.exit_handlers)
    # Which configuration reaches the host's init code, and what one
    # configuration's path may not keep to itself (bot.regmodel.reach).
    config_work: ConfigWork = field(default_factory=ConfigWork)
    # What must come before what, and which writes need an isb
    # ([[reenable]], [[sync_scope]], [[erratum_sequences]]).
    order: OrderFacts = field(default_factory=OrderFacts)
    # Answers worked out once per facts object (not part of what it says).
    memo: _FactsMemo = field(default_factory=_FactsMemo, init=False, compare=False,
                             repr=False)

    def contexts_of(self, path: str) -> frozenset[Ctx]:
        """Where code in `path` may run (every context when no place says)."""
        known = self.memo.contexts
        got = known.get(path)
        if got is None:
            if len(known) > _MEMO_MAX:   # paths come from mail: bounded
                known.clear()
            got = known[path] = next((place.contexts for place in self.places
                                      if place.matches(path)), ALL)
        return got

    def guard(self, name: str, arg: str | None = None) -> Guard | None:
        for g in self.guards:
            if g.name == name and (g.arg is None or g.arg == arg):
                return g
        return None

    def storage_of(self, compact: str) -> Storage | None:
        """The storage an expression (its text without spaces) names, in
        any of the spellings C allows for one field: `F(a)->b` for `*F(a.b)`
        with a per-CPU pointer accessor F (host_data_ptr), `(*p).b` for
        `p->b`."""
        known = self.memo.storage
        if compact in known:
            return known[compact]
        found = None
        for text in dict.fromkeys((compact, _canonical(compact))):
            found = next((st for st in self.storage if st.pattern.match(text)), None)
            if found is not None:
                break
        if len(known) > _MEMO_MAX:
            known.clear()
        known[compact] = found
        return found

    def op(self, kind: str, name: str) -> bool:
        return name in self.ops.get(kind, frozenset())

    def op_kind(self, name: str) -> str | None:
        """Which [ops] list names this call (the first, in file order)."""
        return self._op_index().get(name)

    def _op_index(self) -> dict[str, str]:
        memo = self.memo
        if memo.ops is None:
            table: dict[str, str] = {}
            for kind in _OPS:
                for name in self.ops.get(kind, ()):
                    table.setdefault(name, kind)
            memo.ops = table
        return memo.ops


_MEMO_MAX = 65536


def _contexts(t: TomlTable, key: str, required: bool) -> frozenset[Ctx]:
    names = t.texts(key, required)
    out = set()
    for name in names:
        try:
            out.add(Ctx(name))
        except ValueError:
            raise t.fail(key, "unknown context %r (one of %s)"
                         % (name, ", ".join(c.value for c in Ctx))) from None
    return frozenset(out)


def _context_names(t: TomlTable, key: str, required: bool) -> frozenset[str]:
    return frozenset(c.value for c in _contexts(t, key, required))


def read_facts(raw: Mapping[str, Any], sources: Mapping[str, str], source: str) -> KvmFacts:
    """The facts sections of kvm.toml; problems name the dotted key."""
    places: list[Place] = []
    for i, item in enumerate(_items(raw, "places", source)):
        t = TomlTable(item, "places[%d]" % i, source)
        t.only("files", "contexts", "source", "note")
        places.append(Place(files=t.texts("files", True), contexts=_contexts(t, "contexts", True),
                            source=t.sources("source", sources), note=t.text("note", "")))
    guards: list[Guard] = []
    for i, item in enumerate(_items(raw, "guards", source)):
        t = TomlTable(item, "guards[%d]" % i, source)
        t.only("name", "arg", "true_in", "maybe_in", "source", "note")
        guards.append(Guard(name=t.text("name"), arg=t.text("arg", "") or None,
                            true_in=_contexts(t, "true_in", False),
                            maybe_in=_contexts(t, "maybe_in", False),
                            source=t.sources("source", sources), note=t.text("note", "")))
    storage: list[Storage] = []
    for i, item in enumerate(_items(raw, "storage", source)):
        t = TomlTable(item, "storage[%d]" % i, source)
        t.only("match", "name", "register", "kind", "source", "note")
        try:
            pattern = re.compile(t.text("match"))
        except re.error as exc:
            raise t.fail("match", "not a regular expression: %s" % exc) from None
        storage.append(Storage(pattern=pattern, name=t.text("name"), register=t.text("register"),
                               kind=t.choice("kind", ("vcpu", "guest-hyp", "host-copy",
                                                      "percpu")),
                               source=t.sources("source", sources), note=t.text("note", "")))
    ops_t = TomlTable(raw.get("ops", {}), "ops", source)
    ops_t.only(*_OPS)
    ops = {key: frozenset(ops_t.texts(key)) for key in _OPS}
    regvalues = read_regvalues(raw, sources, source)
    return KvmFacts(places=tuple(places), guards=tuple(guards), storage=tuple(storage), ops=ops,
                    lifecycle=_lifecycle(raw, {st.name for st in storage}, sources, source),
                    round_trips=_round_trips(raw, sources, source),
                    constants={**regvalues.constants, **_constants(raw, sources, source)},
                    loaders=_loaders(raw, sources, source), regvalues=regvalues,
                    kconfig=read_kconfig(raw, sources, source),
                    late_saved=_late_saved(raw, sources, source),
                    exit_handlers=TomlTable(raw.get("exit_window", {}), "exit_window",
                                            source).texts("handlers"),
                    config_work=read_config_work(raw, sources, source, _context_names),
                    order=read_order(raw, sources, source, _context_names))


def _pattern(t: TomlTable, key: str) -> re.Pattern[str]:
    try:
        return re.compile(t.text(key))
    except re.error as exc:
        raise t.fail(key, "not a regular expression: %s" % exc) from None


def _late_saved(raw: Mapping[str, Any], sources: Mapping[str, str],
                source: str) -> tuple[LateSaved, ...]:
    out = []
    for i, item in enumerate(_items(raw, "late_saved", source)):
        t = TomlTable(item, "late_saved[%d]" % i, source)
        t.only("register", "copy", "live", "saved_by", "synced_by", "owned_by", "users", "names",
               "only_in", "source", "note")
        out.append(LateSaved(register=t.text("register"), copy=_pattern(t, "copy"),
                             live=_pattern(t, "live"), saved_by=t.text("saved_by"),
                             synced_by=t.texts("synced_by"), users=t.texts("users"),
                             names=t.texts("names"), owned_by=t.texts("owned_by"),
                             only_in=t.texts("only_in"), source=t.sources("source", sources),
                             note=t.text("note", "")))
    return tuple(out)


def _loaders(raw: Mapping[str, Any], sources: Mapping[str, str],
             source: str) -> dict[str, Loader]:
    out = {}
    for i, item in enumerate(_items(raw, "loaders", source)):
        t = TomlTable(item, "loaders[%d]" % i, source)
        t.only("function", "registers", "arg", "source", "note")
        arg = t.data.get("arg")
        if arg is not None and (not isinstance(arg, int) or isinstance(arg, bool) or arg < 0):
            raise t.fail("arg", "expected an argument position (0, 1, ...)")
        loader = Loader(function=t.text("function"), registers=t.texts("registers", True),
                        arg=arg, source=t.sources("source", sources), note=t.text("note", ""))
        out[loader.function] = loader
    return out


def _constants(raw: Mapping[str, Any], sources: Mapping[str, str],
               source: str) -> dict[str, str]:
    t = TomlTable(raw.get("constants", {}), "constants", source)
    if not t.data:
        return {}
    t.sources("source", sources)
    out = {}
    for key in t.data:
        if key in ("source", "note"):
            continue
        if not re.fullmatch(r"[A-Za-z_]\w*(\(\s*\w+(\s*,\s*\w+)*\s*\))?", key):
            raise t.fail(key, "not a C identifier or NAME(PARAMS)")
        out[key] = t.text(key)
    return out


def _round_trips(raw: Mapping[str, Any], sources: Mapping[str, str],
                 source: str) -> tuple[tuple[str, str], ...]:
    out = []
    for i, item in enumerate(_items(raw, "round_trips", source)):
        t = TomlTable(item, "round_trips[%d]" % i, source)
        t.only("save", "restore", "source", "note")
        t.sources("source", sources)
        out.append((t.text("save"), t.text("restore")))
    return tuple(out)


def _lifecycle(raw: Mapping[str, Any], storage: set[str], sources: Mapping[str, str],
               source: str) -> Lifecycle:
    t = TomlTable(raw.get("lifecycle", {}), "lifecycle", source)
    t.only("stages", "stage_of", "first_use", "defines", "source", "note")
    if not t.data:
        return Lifecycle()
    t.sources("source", sources)
    stages = t.texts("stages", True)

    def table(key: str) -> TomlTable:
        return TomlTable(t.data.get(key, {}), "lifecycle.%s" % key, source)

    def stage(sub: TomlTable, key: str) -> str:
        name = sub.text(key)
        if name not in stages:
            raise sub.fail(key, "unknown stage %r (one of %s)" % (name, ", ".join(stages)))
        return name

    def known(sub: TomlTable, key: str, name: str) -> str:
        if name not in storage:
            raise sub.fail(key, "unknown storage %r (a [[storage]] name)" % name)
        return name

    st_of, fu, dfn = table("stage_of"), table("first_use"), table("defines")
    return Lifecycle(
        stages=stages,
        stage_of={key: stage(st_of, key) for key in st_of.data},
        first_use={known(fu, key, key): stage(fu, key) for key in fu.data},
        defines={key: tuple(known(dfn, key, n) for n in dfn.texts(key, True))
                 for key in dfn.data})


def _items(raw: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError("%s: %s: expected an array of tables ([[%s]])" % (source, key, key))
    return value
