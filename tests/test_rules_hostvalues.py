"""host-flags on the hosts' runtime HCR_EL2 values (bot/rules/hostvalues.py).

The nVHE, protected and hVHE hosts' HCR_EL2 is chosen at init into per-CPU
storage and changed when pKVM finalises; a bit one configuration's value
newly forces while another host configuration lacks it is asked about.
Real linux 6.12 code, with and without the kernel tree (tests/data/
hostvalues/cases.toml says where each patch comes from and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.data import Finding
from tests.conftest import DATA
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import _findings, linux_repo  # noqa: F401  (fixture)
from tests.value_cases import assert_case, ids, load_cases, tree_findings

HERE = DATA / "hostvalues"
CASES = load_cases(HERE)


def _ok(case: dict[str, Any], findings: list[Finding]) -> None:
    near = assert_case(case, findings, "host-flags")
    if case["expect"] == "quiet":
        assert not [f for f in findings if f.rule == "host-flags"], findings
    assert all(f.message.endswith("?") and f.fields for f in near)



def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}

@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    _ok(case, tree_findings(HERE / case["file"], linux_repo, tmp_path))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    _ok(case, _findings(HERE / case["file"], rules_ctx))
