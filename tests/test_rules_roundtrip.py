"""tlb-symmetry by values (bot/rules/roundtrip.py): enter_vmid_context()
and exit_vmid_context() run as one sequence, before and after the patch,
with what the first saves in its context structure handed to the second;
a patch that changes what the pair leaves in a register or the interrupt
mask broke the symmetry, however it is spelt. Real linux 6.12 code with the
kernel tree (tests/data/roundtrip/cases.toml says where each patch comes
from and why).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.data import Finding, Severity, Status
from bot.pipeline import Checker
from bot.sources import InputSet
from tests.conftest import DATA, make_config
from tests.test_rules_kinds import TREE_ENV, linux_repo  # noqa: F401  (fixture)

HERE = DATA / "roundtrip"
CASES: list[dict[str, Any]] = tomllib.loads((HERE / "cases.toml").read_text())["case"]


def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}


@pytest.mark.parametrize("case", CASES, ids=[c["file"][:-6] for c in CASES])
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **{TREE_ENV: str(linux_repo)})
    checker = Checker(cfg)
    found: list[Finding] = []
    for raws in InputSet([str(HERE / case["file"])], cfg.input).threads():
        for result in checker.check_thread(raws).results:
            found.extend(result.rules.findings)
    mine = [f for f in found if f.status is Status.OPEN]
    if case["expect"] == "quiet":
        assert not [f for f in mine if f.severity.rank >= Severity.WARNING.rank], mine
        return
    near = [f for f in mine if f.rule == "tlb-symmetry" and f.line is not None
            and any(f.file == p and abs(f.line - ln) <= 3 for p, ln in case["anchors"])]
    assert near, [(f.rule, f.file, f.line, f.message) for f in mine]
    assert all("no longer undo each other" in f.message for f in near)
