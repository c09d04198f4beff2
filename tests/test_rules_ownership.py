"""pmu-ownership beyond the exit path: the values that carry the host's
MDCR_EL2.HPMN/E2PB/E2TB (bot/rules/ownership.py) and feature bits set with
fewer feature checks around them than before (bot/rules/featureguard.py).
Real linux 6.12 code (tests/data/ownership/cases.toml says where each patch
comes from and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import _findings, linux_repo  # noqa: F401  (fixture)
from tests.value_cases import assert_case, ids, load_cases, tree_findings

HERE = DATA / "ownership"
CASES = load_cases(HERE)
PLAIN = [c for c in CASES if c.get("without_tree")]


def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    near = assert_case(case, tree_findings(HERE / case["file"], linux_repo, tmp_path),
                       "pmu-ownership")
    assert all(f.fields for f in near)


@pytest.mark.parametrize("case", PLAIN, ids=ids(PLAIN))
def test_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    assert_case(case, _findings(HERE / case["file"], rules_ctx), "pmu-ownership")


def test_field_get_keeps_the_source_at_bit_zero() -> None:
    from bot.rules.bits import Bits
    x = Bits.source("host-copy:host-copy.mdcr_el2")
    assert (x & Bits.const(31)).shr(0) == x & Bits.const(31)
    assert x.shl(0) == x
