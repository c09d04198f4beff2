"""The host configurations' runtime HCR_EL2 values, for rule family 15
(host-flags).

The #define flag sets are only part of what the host runs with: the nVHE,
protected and hVHE hosts' values are chosen at init into per-CPU storage
(cpu_prepare_hyp_mode()) and changed again when pKVM finalises
(__pkvm_prot_finalize()). Over the traces of bot.rules.semantic, a field
that one configuration's stored value newly sets while another host
configuration's value (stored in another context of the same function, or
a flag set of a configuration the function does not choose for) has it
clear is asked about, unless the field has no effect there. Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.regmodel import Register
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, Line, PatchView
from bot.rules.bits import Bits
from bot.rules.core import Severity
from bot.rules.flow import changed_line
from bot.rules.semantic import Pair, PatchSemantics
from bot.rules.trace import Ev, Trace

_CONFIG_WORDS = {"nvhe": "the nVHE host", "pkvm": "the protected host", "hvhe": "the hVHE host",
                 "vhe": "the VHE host"}


def _config(ctx: Ctx) -> str:
    return ctx.value.split("-")[0]


def _set_config(name: str) -> str:
    if "PROTECTED" in name:
        return "pkvm"
    return "nvhe" if "NVHE" in name else "vhe"


def check(emit: Emit, pv: PatchView, sem: PatchSemantics, reg: Register,
          flag_sets: dict[str, int], ignored: Callable[[Register, int, int], bool]) -> None:
    """`flag_sets`: the host flag sets' values after the patch; `ignored`:
    whether a field (by mask) has no effect in a configuration with a value."""
    storages = [st.name for st in sem.facts.storage
                if st.register == reg.name and st.kind == "percpu"]
    for pair in sem.pairs():
        if pair.before is None or pair.after is None:
            continue
        for storage in storages:
            if _pair(emit, pv, pair, storage, reg, flag_sets, ignored):
                return


def _values(trace: Trace, storage: str) -> dict[str, Bits]:
    out: dict[str, Bits] = {}
    for o in trace.outcomes:
        value = o.stored.get(storage)
        if value is not None:
            for ctx in o.contexts:
                out.setdefault(_config(ctx), value)
    return out


def _pair(emit: Emit, pv: PatchView, pair: Pair, storage: str, reg: Register,
          flag_sets: dict[str, int], ignored: Callable[[Register, int, int], bool]) -> bool:
    assert pair.before is not None and pair.after is not None
    before, after = _values(pair.before, storage), _values(pair.after, storage)
    for config, new in sorted(after.items()):
        old = before.get(config)
        if old is None:
            continue
        gained = new.ones & ~old.ones   # forced on now (was clear, or whatever it held)
        for f in reg.fields:
            if not gained & f.mask:
                continue
            others = {c: v.zeros for c, v in after.items() if c != config}
            others.update((_set_config(n), ~v) for n, v in flag_sets.items()
                          if _set_config(n) not in after)
            lacking = sorted(c for c, clear in others.items()
                             if clear & f.mask == f.mask and not ignored(reg, f.mask, ~clear))
            if not lacking:
                continue
            line = _store_line(pv, pair, storage, config)
            if line is None:
                continue
            emit(Severity.QUESTION, pv, pv.file(pair.key.path), line, register=reg.name,
                 fields=(f.name,),
                 message="%s() now sets %s in %s's %s but %s lacks it: what makes it right for "
                 "one host configuration and not the other%s?" % (
                     pair.key.name, f.name, _CONFIG_WORDS[config], reg.name,
                     _either([_CONFIG_WORDS[c] for c in lacking]),
                     "s" if len(lacking) > 1 else ""))
            return True
    return False


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else "%s or %s" % (", ".join(words[:-1]), words[-1])


def _store_line(pv: PatchView, pair: Pair, storage: str, config: str) -> Line | None:
    assert pair.after is not None
    for e in pair.after.events:
        if e.kind is Ev.STORE and e.storage == storage \
                and any(_config(c) == config for c in e.contexts):
            ln = changed_line(pv, e, "new")
            if ln is not None:
                return ln
    return pair.anchor
