"""Running the registered rules over a series, as the configuration says.

Selection (enable/disable by rule id or category), severity overrides and
path restrictions are applied here, once, so rules stay unaware of them.
Findings on code the series did not touch come back apart, as
pre-existing; they never reach a draft.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging

from bot.config import RulesConfig
from bot.data import Finding, RuleResult, Series, Severity, Status
from bot.rules.core import REGISTRY, Context, Registry, RuleSpec

logger = logging.getLogger(__name__)


def selected(cfg: RulesConfig, registry: Registry = REGISTRY) -> list[RuleSpec]:
    """The rules the configuration turns on."""
    out = []
    for spec in registry:
        names = {spec.id, str(spec.category)}
        if cfg.enable and not names & set(cfg.enable):
            continue
        if names & set(cfg.disable):
            continue
        out.append(spec)
    return out


def _severity(spec: RuleSpec, finding: Finding, cfg: RulesConfig) -> Severity:
    for key in (spec.id, str(spec.category)):
        if key in cfg.severity:
            return Severity(cfg.severity[key])
    return finding.severity


def _path_allowed(spec: RuleSpec, finding: Finding, cfg: RulesConfig) -> bool:
    globs: tuple[str, ...] = ()
    for key in (spec.id, str(spec.category)):
        if key in cfg.paths:
            globs = cfg.paths[key]
            break
    if not globs or finding.file is None:
        return True
    return any(fnmatch.fnmatch(finding.file, g) for g in globs)


def run(series: Series, ctx: Context, cfg: RulesConfig,
        registry: Registry = REGISTRY) -> RuleResult:
    findings: list[Finding] = []
    pre: list[Finding] = []
    errors: list[str] = []
    seen: set[str] = set()
    for spec in selected(cfg, registry):
        try:
            produced = list(spec.func(series, ctx))
        except Exception as exc:  # a rule bug must not lose the other rules' findings
            logger.exception("rule %s failed on %s", spec.id, series.message_id)
            errors.append("%s: rule %s failed: %s" % (series.message_id, spec.id, exc))
            continue
        for finding in produced:
            if not _path_allowed(spec, finding, cfg):
                continue
            finding = dataclasses.replace(finding, severity=_severity(spec, finding, cfg))
            if finding.key in seen:
                continue
            seen.add(finding.key)
            (pre if finding.status is Status.PRE_EXISTING else findings).append(finding)
    order = {"open": 0, "resolved-in-series": 1, "pre-existing": 2}
    findings.sort(key=lambda f: (f.patch, f.file or "", f.line or 0, order[f.status], f.rule))
    pre.sort(key=lambda f: (f.patch, f.file or "", f.line or 0, f.rule))
    return RuleResult(findings=tuple(findings), pre_existing=tuple(pre), errors=tuple(errors))
