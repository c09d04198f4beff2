"""What the value rules share: the patch's semantic model, once per patch,
and the words for contexts, registers and fields in a finding.

Every rule that compares values or orderings gets its `PatchSemantics` here
(memoised on the Context, like the line view of bot.rules.analysis), and
decides its severity the same way: a finding is decided (error/warning)
only when the function after the patch was seen whole (or read from the
kernel tree) and no call the bot cannot follow appeared with the patch; it
is a question otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.regmodel import RegisterModel, Role
from bot.regmodel.facts import Ctx
from bot.rules.analysis import FileView, Line, PatchView, SeriesView
from bot.rules.bits import MASK64, Bits, SourceKind, source_kind
from bot.rules.core import Context
from bot.rules.semantic import Pair, PatchSemantics
from bot.rules.trace import Ev, Event, Trace

WATCHED = ("HCR_EL2", "MDCR_EL2")
# Roles that hand the host its registers back (REVIEW-GUIDE section 4).
RESTORE_ROLES = frozenset({Role.EXIT, Role.PANIC, Role.EARLY_EXIT, Role.TLB_TO_HOST,
                           Role.VCPU_PUT})
# Roles on the world switch: run on every guest entry and exit.
SWITCH_ROLES = frozenset({Role.ENTRY, Role.EXIT, Role.EARLY_EXIT, Role.RUN})
_MODE_WORDS = {"nvhe": "nVHE", "pkvm": "protected nVHE", "hvhe": "hVHE", "vhe": "VHE"}


def semantics(sv: SeriesView, pv: PatchView, ctx: Context) -> PatchSemantics | None:
    """The semantic model of patch `pv` (None without a register model)."""
    model = ctx.regmodel
    if not isinstance(model, RegisterModel):
        return None
    key = ("semantics", pv.index, id(sv))
    sem = ctx.memo.get(key)
    if sem is None:
        base = getattr(getattr(sv.tree, "base", None), "version", None)
        sem = PatchSemantics(sv, pv, model, era=base)
        ctx.memo[key] = sem
    assert isinstance(sem, PatchSemantics)
    return sem


def modes(contexts: Iterable[Ctx]) -> str:
    """'nVHE and protected nVHE', 'VHE': the configurations, in words."""
    names = list(dict.fromkeys(_MODE_WORDS[c.mode] for c in sorted(contexts)))
    if len(names) <= 1:
        return names[0] if names else "no configuration"
    return ", ".join(names[:-1]) + " and " + names[-1]


def decided(pair: Pair) -> bool:
    """The bot saw all of the function after the patch, and the patch added
    no call it cannot follow."""
    if pair.after is None or pair.before is None:
        return False
    whole = pair.from_tree or pair.after.function.complete
    new_calls = set(pair.after.unresolved) - set(pair.before.unresolved)
    return whole and not new_calls


def line_at(pv: PatchView, path: str, number: int, side: str) -> Line | None:
    """The diff line of `path` with that line number on one side."""
    fv = pv.file(path)
    if fv is None:
        return None
    return _line_index(fv).get((side, number))


_LINE_INDEX: dict[int, tuple[FileView, dict[tuple[str, int], Line]]] = {}


def _line_index(fv: FileView) -> dict[tuple[str, int], Line]:
    hit = _LINE_INDEX.get(id(fv))
    if hit is not None and hit[0] is fv:
        return hit[1]
    index: dict[tuple[str, int], Line] = {}
    for ln in fv.lines:
        if ln.new_side and ln.new_no is not None:
            index.setdefault(("new", ln.new_no), ln)
        if ln.old_side and ln.old_no is not None:
            index.setdefault(("old", ln.old_no), ln)
    if len(_LINE_INDEX) > 256:
        _LINE_INDEX.clear()
    _LINE_INDEX[id(fv)] = (fv, index)
    return index


def file_of(pv: PatchView, path: str) -> FileView | None:
    return pv.file(path)


def changed_line(pv: PatchView, e: Event, side: str) -> Line | None:
    """The first changed line of the statement an event comes from."""
    for no in range(e.line, max(e.end, e.line) + 1):
        ln = line_at(pv, e.path, no, side)
        if ln is not None and ln.kind.value != " ":
            return ln
    return None


def changed_event(pv: PatchView, events: Iterable[Event], side: str,
                  kinds: tuple[Ev, ...], register: str | None = None) -> tuple[Event, Line] | None:
    """The first event of these kinds that sits on a line the patch changed."""
    for e in events:
        if e.kind not in kinds or (register is not None and e.register != register):
            continue
        ln = changed_line(pv, e, side)
        if ln is not None:
            return e, ln
    return None


def field_names(model: RegisterModel, register: str, mask: int) -> tuple[str, ...]:
    reg = model.register(register)
    if reg is None:
        return ()
    return tuple(f.name for f in reg.fields if f.mask & mask)


def field_mask(model: RegisterModel, register: str, *names: str) -> int:
    reg = model.register(register)
    mask = 0
    for name in names:
        f = reg.field(name) if reg is not None else None
        if f is not None:
            mask |= f.mask
    return mask


def has_memory(value: Bits, mask: int = MASK64) -> bool:
    return any(source_kind(name) in _MEMORY for name in value.sources(mask))


_MEMORY = (SourceKind.VCPU, SourceKind.GUEST_HYP, SourceKind.HOST_COPY, SourceKind.PERCPU,
           SourceKind.LOAD)


def source_words(name: str) -> str:
    """A value source as a reviewer would name it."""
    kind, _, rest = name.partition(":")
    if kind == "live":
        return "the live %s (read back)" % rest
    if kind == "param":
        return "the parameter %s" % rest
    if kind == "call" and rest.endswith(")"):
        # A kvm.toml [[loaders]] helper, with what it was handed.
        helper, _, arg = rest[:-1].partition("(")
        arg = {"memory": "a pointer from memory", "?": "another pointer"}.get(arg, arg)
        if arg.startswith("param#"):
            arg = "parameter %d" % (int(arg[6:]) + 1)
        return "what %s(%s) loads" % (helper, source_words(arg) if ":" in arg else arg)
    if kind == "call":
        return "what %s() returns" % rest
    if kind == "load":
        return rest
    return {"vcpu.hcr_el2": "vcpu->arch.hcr_el2", "vcpu.mdcr_el2": "vcpu->arch.mdcr_el2",
            "host-copy.mdcr_el2": "the host's saved MDCR_EL2 copy",
            "percpu.init_params.hcr_el2": "the per-CPU kvm_init_params.hcr_el2",
            "guest-hyp.HCR_EL2": "the guest hypervisor's HCR_EL2",
            "guest-hyp.MDCR_EL2": "the guest hypervisor's MDCR_EL2"}.get(rest, rest)


def value_words(value: Bits, mask: int) -> str:
    """How the bits of `mask` of a value are made, in words."""
    parts: list[str] = []
    forced1 = value.ones & mask
    forced0 = value.zeros & mask
    if forced1:
        parts.append("set")
    if forced0:
        parts.append("cleared")
    for name in value.sources(mask):
        parts.append("taken from " + source_words(name))
    if value.unknown_mask & mask:
        parts.append("not known")
    return " / ".join(parts) or "not known"


def always_written(trace: Trace | None, ctx: Ctx, register: str) -> Bits | None:
    """The value `register` holds when the function returns, if every path
    of `ctx` writes it."""
    if trace is None:
        return None
    w = trace.written(ctx, register)
    return w.value if w is not None and w.always else None


Stores = dict[tuple[str, Ctx], list[Bits]]


def series_stores(sv: SeriesView, ctx: Context) -> Stores:
    """What the series, after each of its patches, stores into the per-CPU
    and host-copy storage of a register value, per context (the init code
    choosing kvm_init_params.hcr_el2, for instance)."""
    key = ("stores", id(sv))
    found = ctx.memo.get(key)
    if isinstance(found, dict):
        return found
    out: Stores = {}
    for pv in sv.relevant():
        sem = semantics(sv, pv, ctx)
        if sem is None:
            continue
        for pair in sem.pairs():
            if pair.after is None:
                continue
            for e in pair.after.events:
                if e.kind is Ev.STORE and e.storage and e.value is not None \
                        and e.storage.startswith(("percpu.", "host-copy.")):
                    for c in e.contexts:
                        values = out.setdefault((e.storage, c), [])
                        if e.value not in values:
                            values.append(e.value)
    ctx.memo[key] = out
    return out


def resolve(value: Bits, c: Ctx, stores: Stores) -> Bits:
    """`value` with bits loaded from per-CPU storage replaced by the one
    constant the series stores there in context `c`, when it stores one."""
    out = value
    for name, mask in value.srcs:
        kind, _, storage = name.partition(":")
        if kind not in ("percpu", "host-copy"):
            continue
        stored = stores.get((storage, c), [])
        if len(stored) == 1 and stored[0].is_const:
            keep = Bits(ones=out.ones, zeros=out.zeros,
                        srcs=tuple((n, m) for n, m in out.srcs if n != name))
            out = _replace(keep, stored[0], mask)
    return out


def _replace(value: Bits, const: Bits, mask: int) -> Bits:
    return Bits(ones=value.ones | (const.ones & mask), zeros=value.zeros | (const.zeros & mask),
                srcs=value.srcs)


def returned(trace: Trace | None, ctx: Ctx) -> Bits | None:
    """What the function returns on the paths of `ctx`."""
    if trace is None:
        return None
    for out in trace.outcomes:
        if ctx in out.contexts:
            return out.ret
    return None


def contexts_of(pair: Pair) -> list[Ctx]:
    """The contexts both traces cover."""
    seen: list[Ctx] = []
    for trace in (pair.before, pair.after):
        if trace is None:
            continue
        for out in trace.outcomes:
            for c in sorted(out.contexts):
                if c not in seen:
                    seen.append(c)
    return seen


def pair_line(pv: PatchView, pair: Pair, register: str, side: str) -> tuple[FileView | None,
                                                                        Line | None]:
    """The diff line a finding about `register` in this pair is quoted at:
    the changed write of it, else the changed line that feeds it."""
    trace = pair.after if side == "new" else pair.before
    if trace is not None:
        hit = changed_event(pv, trace.events, side, (Ev.WRITE,), register)
        if hit is not None:
            return pv.file(hit[0].path), hit[1]
    ln = pair.anchor
    for fv in pv.files:
        if ln is not None and ln in fv.lines:
            return fv, ln
    return pv.file(pair.key.path), ln
