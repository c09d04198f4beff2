"""Findings, rule metadata and the rule registry.

A rule is a small pure function registered with `@rule(...)`: it receives
the series and a `Context` and yields `Finding`s. Built-in rules register
exactly as a new one would. The rule's docstring is its architectural
reason; drafts and the dashboard show it.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from bot.parse.series import Series


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    QUESTION = "question"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.ERROR: 3, Severity.WARNING: 2, Severity.QUESTION: 1, Severity.INFO: 0}


class Category(enum.StrEnum):
    FIELD_DEFINITION = "field-definition"
    RESERVED_BIT = "reserved-bit"
    HOST_RESTORE = "host-restore"
    SAME_VALUE = "same-value"
    HOT_PATH_LOAD = "hot-path-load"
    BARRIER = "barrier"
    TLB_SYMMETRY = "tlb-symmetry"
    POLARITY = "polarity"
    PMU_OWNERSHIP = "pmu-ownership"
    VHE_NVHE = "vhe-nvhe"
    INIT_ORDER = "init-order"
    EL2_ACCESS = "el2-access"
    PREEMPTION = "preemption"
    REGISTER_WIDTH = "register-width"
    HOST_FLAGS = "host-flags"
    SHADOW_VS_LIVE = "shadow-vs-live"


class Status(enum.StrEnum):
    OPEN = "open"
    RESOLVED_IN_SERIES = "resolved-in-series"
    PRE_EXISTING = "pre-existing"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule: str
    category: Category
    severity: Severity
    patch: int
    file: str | None
    line: int | None
    register: str | None
    fields: tuple[str, ...]
    message: str
    evidence: tuple[str, ...]
    status: Status = Status.OPEN
    message_id: str = ""

    @property
    def fingerprint(self) -> str:
        """Stable across re-checks and line moves: rule, place and evidence."""
        key = "\x1f".join([self.rule, self.file or "", self.register or "",
                           ",".join(self.fields),
                           "\x1e".join(" ".join(e.split()) for e in self.evidence),
                           self.message_id])
        return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "category": str(self.category),
            "severity": str(self.severity), "patch": self.patch, "file": self.file,
            "line": self.line, "register": self.register, "fields": list(self.fields),
            "message": self.message, "evidence": "\n".join(self.evidence),
        }


RuleFunc = Callable[[Series, "Context"], Iterable[Finding]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
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

    regmodel: Any = None
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
