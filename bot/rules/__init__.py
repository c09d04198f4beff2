"""The rules engine: registry, findings and the built-in rule families."""

from bot.data import RuleResult
from bot.rules import (  # noqa: F401  (registration)
    definitions,
    hotpath,
    intent,
    lifecycle,
    ownership,
    paths,
    regime,
    reserved,
    restore,
    tlbsym,
)
from bot.rules.core import REGISTRY, Category, Context, Finding, RuleSpec, Severity, Status, rule
from bot.rules.engine import run, selected

__all__ = ["REGISTRY", "Category", "Context", "Finding", "RuleResult", "RuleSpec",
           "Severity", "Status", "rule", "run", "selected"]
