"""init-order on real linux 6.12 code: values used before they are computed.

Each patch in tests/data/initorder/ was generated from the 6.12 sources by
bench/mutations.py (cases.toml names the case and says why it is a bug or
not). The three mechanisms of bot/rules/initorder.py each have a case that
must trigger: a computation moved to a later stage of KVM's life (or onto
some paths only), a read that now comes before the computation inside one
function (through inlined callees), and a consumer of a whole object (the
cache clean for the MMU-off reader) that now sees less of the value. The
neighbours move the computation earlier or reach the same value another
way, and must stay quiet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.regmodel.facts import read_facts
from tests.conftest import DATA
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import _findings, linux_repo  # noqa: F401  (fixture)
from tests.value_cases import assert_case, ids, load_cases, tree_findings

HERE = DATA / "initorder"
CASES = load_cases(HERE)
PLAIN = [c for c in CASES if c.get("without_tree")]



def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}

@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    assert_case(case, tree_findings(HERE / case["file"], linux_repo, tmp_path), "init-order")


@pytest.mark.parametrize("case", PLAIN, ids=ids(PLAIN))
def test_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    assert_case(case, _findings(HERE / case["file"], rules_ctx), "init-order")


@pytest.mark.parametrize("section, problem", [
    ({"stages": ["a", "b"], "stage_of": {"f": "c"}}, "lifecycle.stage_of.f: unknown stage 'c'"),
    ({"stages": ["a"], "first_use": {"nowhere": "a"}}, "lifecycle.first_use.nowhere: unknown "
     "storage"),
    ({"stages": ["a"], "defines": {"f": ["x.y"]}}, "lifecycle.defines.f: unknown storage"),
    ({"stages": ["a"], "order": []}, "lifecycle.order: unknown key"),
])
def test_lifecycle_facts_name_the_bad_key(section: dict[str, Any], problem: str) -> None:
    raw = {"lifecycle": dict(section, source="s")}
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        read_facts(raw, {"s": "a source"}, "kvm.toml")
