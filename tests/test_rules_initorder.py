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

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.data import Finding, Severity, Status
from bot.errors import ConfigError
from bot.pipeline import Checker
from bot.regmodel.facts import read_facts
from bot.sources import InputSet
from tests.conftest import DATA, make_config
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import TREE_ENV, _findings, linux_repo  # noqa: F401  (fixture)

HERE = DATA / "initorder"
CASES: list[dict[str, Any]] = tomllib.loads((HERE / "cases.toml").read_text())["case"]


def _ok(case: dict[str, Any], findings: list[Finding]) -> None:
    mine = [f for f in findings if f.status is Status.OPEN]
    if case["expect"] == "quiet":
        loud = [f for f in mine if f.severity.rank >= Severity.WARNING.rank]
        assert not loud, [(f.rule, f.file, f.line, f.message) for f in loud]
        return
    near = [f for f in mine if f.rule == "init-order" and f.line is not None
            and any(f.file == p and abs(f.line - ln) <= 3 for p, ln in case["anchors"])]
    assert near, [(f.rule, f.file, f.line, f.message) for f in mine]
    assert all(f.message.endswith((".", "?")) for f in near)


def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}
    assert {c["expect"] for c in CASES} == {"trigger", "quiet"}


@pytest.mark.parametrize("case", CASES, ids=[c["file"][:-6] for c in CASES])
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **{TREE_ENV: str(linux_repo)})
    checker = Checker(cfg)
    found: list[Finding] = []
    for raws in InputSet([str(HERE / case["file"])], cfg.input).threads():
        for result in checker.check_thread(raws).results:
            found.extend(result.rules.findings)
    _ok(case, found)


@pytest.mark.parametrize("case", [c for c in CASES if c.get("without_tree")],
                         ids=[c["file"][:-6] for c in CASES if c.get("without_tree")])
def test_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    _ok(case, _findings(HERE / case["file"], rules_ctx))


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
