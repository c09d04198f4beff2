"""The ordering facts of kvm.toml and the barrier checks built on them.

tests/data/{walkorder,syncneed,errseq}/ are run by tests/test_rules_values.py
(a trigger finds, a neighbour has no error or warning); the checks here are
stricter about the neighbours, which must not even ask, and pin the facts
themselves: every field a [[sync_scope]] names is a field of the model, and
a write of EL2's own regime fields is never taken for one only EL1/EL0 see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import Ctx
from bot.rules import syncneed, walkorder
from tests.conftest import DATA
from tests.rules_support import real_model, rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import _findings, linux_repo  # noqa: F401  (fixture)
from tests.value_cases import load_cases, tree_findings

# What each directory's own check says, to tell its findings from others'.
MARKS = {"walkorder": "back on", "syncneed": "What needs this isb?", "errseq": "1508412"}
QUIET = [(d, c) for d in MARKS for c in load_cases(DATA / d) if c["expect"] == "quiet"]
IDS = ["%s/%s" % (d, c["file"].removesuffix(".patch")) for d, c in QUIET]


def _mine(directory: str, found: list[Any]) -> list[Any]:
    return [(f.file, f.line, f.message) for f in found if f.rule == "barrier"
            and MARKS[directory] in f.message]


@pytest.mark.parametrize("directory, case", QUIET, ids=IDS)
def test_a_neighbour_does_not_even_ask(directory: str, case: dict[str, Any], linux_repo: Path,
                                       tmp_path: Path, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    patch = DATA / directory / case["file"]
    assert _mine(directory, tree_findings(patch, linux_repo, tmp_path)) == []
    if case.get("without_tree"):
        assert _mine(directory, _findings(patch, rules_ctx)) == []


TRIGGERS = [(d, c) for d in MARKS for c in load_cases(DATA / d) if c["expect"] == "trigger"]


@pytest.mark.parametrize("directory, case", TRIGGERS,
                         ids=["%s/%s" % (d, c["file"].removesuffix(".patch")) for d, c in TRIGGERS])
def test_a_trigger_is_found_by_its_own_check(directory: str, case: dict[str, Any],
                                            linux_repo: Path, tmp_path: Path,
                                            rules_ctx) -> None:  # type: ignore[no-untyped-def]
    patch = DATA / directory / case["file"]
    runs = [tree_findings(patch, linux_repo, tmp_path)]
    if case.get("without_tree"):
        runs.append(_findings(patch, rules_ctx))
    for found in runs:
        assert any(f == p and abs(ln - a) <= 3 for f, ln, _ in _mine(directory, found)
                   for p, a in case["anchors"]), _mine(directory, found)


def test_sync_scope_names_fields_of_the_model() -> None:
    model = real_model()
    scopes = model.facts.order.sync_scopes
    assert {s.register for s in scopes} == {"HCR_EL2", "MDCR_EL2"}
    for scope in scopes:
        for name in scope.lower:
            assert model.lookup(name, scope.register) is not None, (scope.register, name)
    hcr = model.facts.order.scope("HCR_EL2")
    assert hcr is not None
    # EL2's own regime, what EL2 itself takes, and what its AT/TLBI use.
    assert not {"TGE", "E2H", "AMO", "IMO", "FMO", "HCD", "VM", "FWB", "DC"} & set(hcr.lower)


def _changes(lines: list[str], path: str) -> Any:
    model = real_model()
    seq = list(enumerate(lines, start=1))
    k = next(i for i, (_, t) in enumerate(seq) if t.strip() == "isb")
    return syncneed._changes(model, Evaluator(model), seq, k, model.facts.contexts_of(path))


def test_an_isb_after_the_regime_fields_is_needed() -> None:
    start = ["SYM_CODE_START(x)"]
    vhe = start + ["\tmov_q\tx0, HCR_HOST_VHE_FLAGS", "\tmsr\thcr_el2, x0", "\tisb", "\teret"]
    assert _changes(vhe, "arch/arm64/kernel/hyp-stub.S") is None
    tsc = start + ["\tmov_q\tx1, HCR_HOST_NVHE_PROTECTED_FLAGS", "\tmsr\thcr_el2, x1", "\tisb"]
    [(reg, diff, _, _)] = _changes(tsc, "arch/arm64/kvm/hyp/nvhe/hyp-init.S")
    assert reg == "HCR_EL2" and [f.name for f in real_model().decode(reg, diff)[0]] == ["TSC"]
    loaded = start + ["\tldr\tx1, [x0, #NVHE_INIT_HCR_EL2]", "\tmsr\thcr_el2, x1", "\tisb"]
    assert _changes(loaded, "arch/arm64/kvm/hyp/nvhe/hyp-init.S") is None
    other = start + ["\tmov_q\tx1, HCR_HOST_NVHE_FLAGS", "\tmsr\thcr_el2, x1",
                     "\tmsr\tvbar_el2, x2", "\tisb"]
    assert _changes(other, "arch/arm64/kvm/hyp/nvhe/hyp-init.S") is None


def test_the_erratum_configuration_decides_only_its_capabilities() -> None:
    facts = real_model().facts
    [fact] = facts.order.reenables
    forced = walkorder.erratum_facts(facts, fact)
    g = forced.guard("cpus_have_final_cap", "ARM64_WORKAROUND_SPECULATIVE_AT")
    assert g is not None and g.true_in == walkorder.contexts(fact) and Ctx.VHE not in g.true_in
    # An erratum of CPUs without VHE before 5.7 keeps its own contexts.
    old = forced.guard("cpus_have_const_cap", "ARM64_WORKAROUND_1319367")
    assert old is not None and old.true_in == {Ctx.NVHE_HYP, Ctx.PKVM_HYP}
    assert forced.guard("has_vhe") == facts.guard("has_vhe")
    assert walkorder.erratum_facts(facts, fact) is forced
