"""The rules engine: registry, findings and the built-in rule families."""

from bot.rules.core import (REGISTRY, Category, Context, Finding, RuleSpec, Severity,
                            Status, rule)
from bot.rules.engine import RuleResult, run, selected
from bot.rules import definitions, intent, paths, regime, restore  # noqa: F401  (registration)

__all__ = ["REGISTRY", "Category", "Context", "Finding", "RuleResult", "RuleSpec",
           "Severity", "Status", "rule", "run", "selected"]
