"""Every rule family: a patch that must trigger it and one that must not."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.lore.assemble import assemble
from bot.rules import REGISTRY, Category, Finding, Severity, Status, run
from bot.sources import InputSet
from tests.conftest import DATA
from tests.rules_support import rules_config, rules_ctx  # noqa: F401  (fixture)

RULES = DATA / "rules"
CASES = tomllib.loads((RULES / "cases.toml").read_text())["case"]


def findings(path: Path, ctx, cfg=None) -> list[Finding]:  # type: ignore[no-untyped-def]
    cfg = cfg or rules_config()
    out: list[Finding] = []
    for raws in InputSet([str(path)], cfg.input).threads():
        for series in assemble(raws).series:
            result = run(series, ctx, cfg.rules)
            out.extend(result.findings + result.pre_existing)
    return out


def test_one_family_per_category_with_metadata() -> None:
    cats = {spec.category for spec in REGISTRY}
    assert cats == set(Category)
    for spec in REGISTRY:
        assert spec.doc and spec.summary and spec.severity in Severity
        assert len(spec.doc.split()) >= 25, spec.id


def test_every_rule_has_a_trigger_and_a_quiet_case() -> None:
    for spec in REGISTRY:
        kinds = {c["expect"] for c in CASES if c["rule"] == spec.id}
        assert kinds == {"trigger", "quiet"}, spec.id


def test_every_rules_fixture_is_used() -> None:
    used = {(RULES / c["file"]).resolve() for c in CASES}
    present = {p.resolve() for p in RULES.glob("*") if p.suffix in (".patch", ".mbox")}
    assert present <= used
    series = {p.name for p in RULES.glob("series/*")}
    assert series == {"resolved-in-series.mbox"}   # read by tests/test_rules_series.py


@pytest.mark.parametrize("case", CASES, ids=lambda c: "%s-%s-%s" % (c["rule"], c["expect"],
                                                                     Path(c["file"]).stem))
def test_case(case, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    mine = [f for f in findings(RULES / case["file"], rules_ctx)
            if f.rule == case["rule"] and f.status is Status.OPEN]
    if case["expect"] == "quiet":
        assert not mine, [(f.line, f.message) for f in mine]
        return
    near = [f for f in mine if f.line is not None and abs(f.line - case["line"]) <= 3]
    assert near, [(f.line, f.message) for f in mine]
    f = near[0]
    least = Severity(case.get("min", "question"))
    assert f.severity.rank >= least.rank
    assert f.message and f.message.endswith((".", "?")) and f.evidence
    assert f.category == REGISTRY.get(case["rule"]).category  # type: ignore[union-attr]
    assert f.register in ("HCR_EL2", "MDCR_EL2") or f.rule == "tlb-symmetry"


def test_without_tree_nothing_undecided_is_an_error(rules_ctx) -> None:  # type: ignore[no-untyped-def]
    """Errors only where the model proves it: field positions and RES0 bits."""
    for case in CASES:
        for f in findings(RULES / case["file"], rules_ctx):
            if f.severity is Severity.ERROR:
                assert f.rule in ("field-definition", "reserved-bit"), (case["file"], f.rule)


def test_findings_name_register_patch_and_place(rules_ctx) -> None:  # type: ignore[no-untyped-def]
    [f] = [f for f in findings(RULES / "field-definition-trigger.patch", rules_ctx)
           if f.rule == "field-definition"]
    assert (f.severity, f.register, f.fields, f.patch) == (Severity.ERROR, "HCR_EL2",
                                                           ("TWEDEn",), 1)
    assert f.file == "arch/arm64/include/asm/kvm_arm.h" and f.line == 18
    assert "59" in f.message and "HCR_TWEDEN" in f.evidence[0]
