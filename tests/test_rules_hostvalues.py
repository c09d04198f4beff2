"""host-flags on the hosts' runtime HCR_EL2 values (bot/rules/hostvalues.py).

The nVHE, protected and hVHE hosts' HCR_EL2 is chosen at init into per-CPU
storage and changed when pKVM finalises; a bit one configuration's value
newly forces while another host configuration lacks it is asked about.
Real linux 6.12 code, with and without the kernel tree (tests/data/
hostvalues/cases.toml says where each patch comes from and why).
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
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import TREE_ENV, _findings, linux_repo  # noqa: F401  (fixture)

HERE = DATA / "hostvalues"
CASES: list[dict[str, Any]] = tomllib.loads((HERE / "cases.toml").read_text())["case"]
IDS = [c["file"][:-6] for c in CASES]


def _ok(case: dict[str, Any], findings: list[Finding]) -> None:
    mine = [f for f in findings if f.status is Status.OPEN]
    if case["expect"] == "quiet":
        assert not [f for f in mine if f.rule == "host-flags"], mine
        assert not [f for f in mine if f.severity.rank >= Severity.WARNING.rank], mine
        return
    near = [f for f in mine if f.rule == "host-flags" and f.line is not None
            and any(f.file == p and abs(f.line - ln) <= 3 for p, ln in case["anchors"])]
    assert near, [(f.rule, f.file, f.line, f.message) for f in mine]
    assert all(f.message.endswith("?") and f.fields for f in near)


def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **{TREE_ENV: str(linux_repo)})
    checker = Checker(cfg)
    found: list[Finding] = []
    for raws in InputSet([str(HERE / case["file"])], cfg.input).threads():
        for result in checker.check_thread(raws).results:
            found.extend(result.rules.findings)
    _ok(case, found)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    _ok(case, _findings(HERE / case["file"], rules_ctx))
