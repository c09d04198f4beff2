"""The one evaluator of C constant expressions over the register model.

Rules never evaluate a macro expression themselves: they ask an `Evaluator`,
which knows every kernel name of every field (hand-written and generated,
`bot.regmodel.kvmarm.kernel_macros`), KVM's flag sets for an era, and the
macros a patch defines or redefines (each side of a patch gets its own
evaluator, so a macro the series changes has its old value before and its
new value after).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from bot.regmodel.defines import evaluate_defines, evaluate_expression
from bot.regmodel.kvmarm import kernel_macros
from bot.regmodel.model import Macro, RegisterModel, parse_version

# The first release whose tools/sysreg generates MDCR_EL2's macros (REVIEW-GUIDE
# section 1): before it, kvm_arm.h's hand-written names mean what they say.
_GENERATED_SINCE = (6, 13)


@functools.lru_cache(maxsize=8)
def _base_table(model: RegisterModel, era: str | None) -> Mapping[str, Macro]:
    version = parse_version(era) if era else None
    table = dict(kernel_macros(model, generated_first=version is not None
                               and version[:2] >= _GENERATED_SINCE))
    for key, expr in model.facts.constants.items():
        name, _, params = key.partition("(")
        if params:   # a function-like accessor: expanded where it is used
            table.setdefault(name, Macro(name=name, expr=expr, value=None, msb=None, lsb=None,
                                         line=0, params=tuple(
                                             p.strip() for p in params.rstrip(")").split(","))))
            continue
        table.setdefault(name, Macro(name=name, expr=expr, value=evaluate_expression(expr, table),
                                     msb=None, lsb=None, line=0))
    names = {fs.name for fs in model.flag_sets}
    for name in names:
        fs = model.flag_set(name, era)
        if fs is not None:
            table[name] = Macro(name=name, expr=" | ".join(fs.fields), value=fs.value,
                                msb=None, lsb=None, line=0)
    return table


class Evaluator:
    """Constant expressions in the kernel's terms, with a patch's own macros."""

    def __init__(self, model: RegisterModel, era: str | None = None,
                 defines: Mapping[str, Macro] | None = None) -> None:
        self.model = model
        self.era = era
        self._table: dict[str, Macro] = dict(_base_table(model, era))
        if defines:
            self._table.update(defines)
        self._memo: dict[str, int | None] = {}

    @staticmethod
    def of(model: RegisterModel, era: str | None = None) -> Evaluator:
        """The evaluator of the kernel's own names for an era: one per model
        and era, so that what it has worked out serves every patch."""
        return _shared(model, era)

    def with_defines(self, text: str) -> Evaluator:
        """This evaluator plus the `#define`s in `text` (a patch side); this
        one itself when `text` defines nothing."""
        defined = evaluate_defines(text, self._table)
        if not defined:
            return self
        return Evaluator(self.model, self.era, {**self._table, **defined})

    def macro(self, name: str) -> Macro | None:
        return self._table.get(name)

    def value(self, expr: str) -> int | None:
        """The value of `expr`, or None when it is not a constant expression
        of known names."""
        key = " ".join(expr.split())
        if key not in self._memo:
            if len(self._memo) > _MEMO_MAX:   # expressions come from mail: bounded
                self._memo.clear()
            self._memo[key] = evaluate_expression(key, self._table)
        return self._memo[key]


_MEMO_MAX = 65536


@functools.lru_cache(maxsize=8)
def _shared(model: RegisterModel, era: str | None) -> Evaluator:
    return Evaluator(model, era)
