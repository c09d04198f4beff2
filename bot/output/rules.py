"""`bot rules` and `bot rules show ID`: the rule registry as a table, and
one rule's architectural reason, with what the configuration does to it
(`rules.enable`/`disable`, `rules.severity`, `rules.paths`)."""

from __future__ import annotations

import json
import textwrap

from bot.config import RulesConfig
from bot.errors import BadInput
from bot.rules import REGISTRY, RuleSpec, selected


def _configured(spec: RuleSpec, cfg: RulesConfig) -> tuple[bool, str, tuple[str, ...]]:
    """Whether the rule runs, its severity and path globs under `cfg`
    (an override by rule id wins over one by category, as in the engine)."""
    enabled = spec in selected(cfg)
    severity = str(spec.severity)
    globs: tuple[str, ...] = ()
    for key in (str(spec.category), spec.id):
        severity = cfg.severity.get(key, severity)
        globs = cfg.paths.get(key, globs)
    return enabled, severity, globs


def table(cfg: RulesConfig) -> str:
    rows = [("ID", "CATEGORY", "SEVERITY", "ENABLED", "SUMMARY")]
    for spec in REGISTRY:
        enabled, severity, _ = _configured(spec, cfg)
        if severity != str(spec.severity):
            severity = "%s (default %s)" % (severity, spec.severity)
        rows.append((spec.id, str(spec.category), severity, "yes" if enabled else "no",
                     spec.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join("%s  %s\n" % ("  ".join(c.ljust(w) for c, w in zip(r[:4], widths,
                                                                      strict=True)), r[4])
                   for r in rows)


def as_json(cfg: RulesConfig) -> str:
    out = []
    for spec in REGISTRY:
        enabled, severity, globs = _configured(spec, cfg)
        out.append({"id": spec.id, "category": str(spec.category),
                    "default_severity": str(spec.severity), "severity": severity,
                    "enabled": enabled, "summary": spec.summary, "files": list(spec.files),
                    "paths": list(globs), "doc": spec.doc})
    return json.dumps(out, indent=1) + "\n"


def show(cfg: RulesConfig, rule_id: str) -> str:
    spec = REGISTRY.get(rule_id)
    if spec is None:
        in_category = [s.id for s in REGISTRY if str(s.category) == rule_id]
        if len(in_category) == 1:
            spec = REGISTRY.get(in_category[0])
        elif in_category:
            raise BadInput("%s is a category of several rules: %s"
                           % (rule_id, ", ".join(in_category)))
    if spec is None:
        raise BadInput("%s: no such rule (`bot rules` lists them)" % rule_id)
    enabled, severity, globs = _configured(spec, cfg)
    lines = [
        "%s: %s" % (spec.id, spec.summary),
        "",
        "category:  %s" % spec.category,
        "severity:  %s%s" % (severity, "" if severity == str(spec.severity)
                             else " (default %s)" % spec.severity),
        "enabled:   %s" % ("yes" if enabled else "no (rules.enable/rules.disable)"),
        "files:     %s" % (", ".join(spec.files) or "any"),
    ]
    if globs:
        lines.append("paths:     %s (rules.paths)" % ", ".join(globs))
    lines += ["", textwrap.fill(spec.doc or "(no explanation given)", width=72)]
    return "\n".join(lines) + "\n"
