"""tlb-symmetry by values (bot/rules/roundtrip.py): enter_vmid_context()
and exit_vmid_context() run as one sequence, before and after the patch,
with what the first saves in its context structure handed to the second;
a patch that changes what the pair leaves in a register or the interrupt
mask broke the symmetry, however it is spelt. Real linux 6.12 code with the
kernel tree (tests/data/roundtrip/cases.toml says where each patch comes
from and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA
from tests.test_rules_kinds import linux_repo  # noqa: F401  (fixture)
from tests.value_cases import assert_case, ids, load_cases, tree_findings

HERE = DATA / "roundtrip"
CASES = load_cases(HERE)



def test_every_fixture_is_listed() -> None:
    assert {c["file"] for c in CASES} == {p.name for p in HERE.glob("*.patch")}

@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    near = assert_case(case, tree_findings(HERE / case["file"], linux_repo, tmp_path),
                       "tlb-symmetry")
    assert all("no longer undo each other" in f.message for f in near)
