"""barrier by order (bot/rules/syncorder.py): on each path every barrier sits
between two operations (register writes, TLBI, AT, exception return); a
patch that takes one away from between the same two - removed, or the
operations moved across it - is reported. Real linux 6.12 code
(tests/data/syncorder/cases.toml says where each patch comes from and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import _findings, linux_repo  # noqa: F401  (fixture)
from tests.value_cases import assert_case, ids, load_cases, tree_findings

HERE = DATA / "syncorder"
CASES = load_cases(HERE)
PLAIN = [c for c in CASES if c.get("without_tree")]


def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    assert_case(case, tree_findings(HERE / case["file"], linux_repo, tmp_path), "barrier")


@pytest.mark.parametrize("case", PLAIN, ids=ids(PLAIN))
def test_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    assert_case(case, _findings(HERE / case["file"], rules_ctx), "barrier")
