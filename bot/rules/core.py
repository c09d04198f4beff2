"""Findings, rule metadata and the rule registry.

A rule is a small pure function registered with `@rule(...)`: it receives
the series and a `Context` and yields `Finding`s. Built-in rules register
exactly as a new one would. The rule's docstring is its architectural
reason; drafts and the dashboard show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.data import Category, Finding, Series, Severity, Status
from bot.regmodel import RegisterModel

__all__ = ["REGISTRY", "Category", "Context", "Finding", "Registry", "RuleFunc", "RuleSpec",
           "Severity", "Status", "rule"]


RuleFunc = Callable[[Series, "Context"], Iterable[Finding]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
    """A registered rule: its metadata and the function that runs it."""

    id: str
    category: Category
    severity: Severity
    summary: str
    doc: str
    files: tuple[str, ...]
    func: RuleFunc


@dataclass(frozen=True, kw_only=True)
class Context:
    """What rules receive besides the series: the model and the settings."""

    regmodel: RegisterModel | None = None
    tree: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    # Per-series analysis shared by the rules (bot.rules.analysis.view).
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


class Registry:
    def __init__(self) -> None:
        self._rules: dict[str, RuleSpec] = {}

    def add(self, spec: RuleSpec) -> None:
        if spec.id in self._rules:
            raise ValueError("rule %s registered twice" % spec.id)
        self._rules[spec.id] = spec

    def __iter__(self) -> Iterator[RuleSpec]:
        return iter(sorted(self._rules.values(), key=lambda s: s.id))

    def __len__(self) -> int:
        return len(self._rules)

    def get(self, rule_id: str) -> RuleSpec | None:
        return self._rules.get(rule_id)


REGISTRY = Registry()


def rule(*, id: str, category: Category, severity: Severity, summary: str,
         files: tuple[str, ...] = (), registry: Registry | None = None
         ) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule function; its docstring is the architectural reason."""

    def wrap(func: RuleFunc) -> RuleFunc:
        (registry or REGISTRY).add(RuleSpec(
            id=id, category=category, severity=severity, summary=summary,
            doc=" ".join((func.__doc__ or "").split()), files=files, func=func))
        return func

    return wrap
