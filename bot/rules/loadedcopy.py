"""Rule family 16 (shadow versus live) for the EL1 registers VHE keeps on
the CPU while a vcpu is loaded.

On VHE, kvm_vcpu_load_sysregs_vhe() puts the guest's EL1 registers on the
CPU at vcpu load and saves them back at vcpu put; in between, the copy in
the vcpu's sys_regs array is stale. vcpu_read_sys_reg() and
vcpu_write_sys_reg() know which one holds the value; `__vcpu_sys_reg()`
always means the memory copy. Host code that already goes through the
loaded-aware accessors (so it runs while the vcpu may be loaded) and that
the patch makes use the memory copy of a loaded register reads a stale
value, or writes one that vcpu put overwrites. The registers and the
accessors are kvm.toml data ([ops] vhe_loaded, memory_copy, loaded_aware,
loaded_test). Pure: works on the patch's text and the function around it.
"""

from __future__ import annotations

import functools
import re

from bot.regmodel import RegisterModel
from bot.regmodel.facts import Ctx
from bot.rules.analysis import Emit, FileView, Line, PatchView, SeriesView
from bot.rules.core import Severity
from bot.rules.relevance import CopyUse, alternatives, loaded_copy_use


@functools.lru_cache(maxsize=4)
def _patterns(aware: frozenset[str], test: frozenset[str]
              ) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """(a loaded-aware accessor, a test of which case the code is in)."""
    aware_re = re.compile(r"\b(%s)\s*\(" % alternatives(aware))
    test_re = re.compile(r"\b(%s)\b" % alternatives(test)) if test else None
    return aware_re, test_re


def check(emit: Emit, sv: SeriesView, pv: PatchView, mdl: RegisterModel) -> None:
    ops = mdl.facts.ops
    aware, test = ops.get("loaded_aware", frozenset()), ops.get("loaded_test", frozenset())
    use = loaded_copy_use(mdl)
    if use is None or not aware:
        return
    aware_re, test_re = _patterns(aware, test)
    for fv in pv.files:
        if fv.hyp or Ctx.VHE not in mdl.facts.contexts_of(fv.path):
            continue   # hyp code switches the copies itself
        added = {ln.function for ln in fv.changed if ln.added and use.search(ln.code)}
        for name in fv.functions():
            if name in added:
                _function(emit, sv, pv, fv, name, use, (aware_re, aware), test_re)


def _function(emit: Emit, sv: SeriesView, pv: PatchView, fv: FileView, name: str,
              use: CopyUse, accessors: tuple[re.Pattern[str], frozenset[str]],
              test: re.Pattern[str] | None) -> None:
    aware, names = accessors
    body = [text for _, text in sv.function(pv, fv, name).lines]
    code = "\n".join(body)
    if not aware.search(code) or (test is not None and test.search(code)):
        return   # no sign it runs loaded, or it tells the two cases apart itself
    hit: tuple[Line, re.Match[str]] | None = None
    for ln in fv.in_function(name):
        m = use.search(ln.code) if ln.added else None
        if m is not None:
            hit = (ln, m)
            break
    if hit is None:
        return
    ln, m = hit
    accessor = aware.search(code)
    assert accessor is not None
    writes = m.group(3) is not None
    verb = "write" if writes else "read"
    better = next((a for a in sorted(names) if verb in a), accessor.group(1))
    emit(Severity.QUESTION, pv, fv, ln, register=None,
         message="%s() %s %s through %s(), the copy in memory, while it uses %s() elsewhere "
         "and so runs with the vcpu loaded: on VHE the guest's %s is on the CPU between "
         "vcpu load and put, so the copy is %s. Should this be %s()?" % (
             name, "writes" if writes else "reads", m.group(2), m.group(1),
             accessor.group(1), m.group(2),
             "overwritten at vcpu put" if writes else "stale", better))
