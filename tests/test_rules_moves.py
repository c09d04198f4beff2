"""Code a patch moves into another file is compared with where it came from.

The 5.9 split of hyp/switch.c into hyp/{vhe,nvhe}/switch.c (a real,
applied patch: tests/data/labelled/clean-split-switch-vhe-nvhe.mbox) moves
every world-switch function. Seen per file, the old file loses its restores
and the new files gain code from nothing; seen per configuration, the nVHE
copy does exactly what the original did on nVHE. The rules must stay quiet
on the move itself and still see a change made while moving.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.rules import Finding, Status
from tests.conftest import DATA
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules import findings

SPLIT = DATA / "labelled" / "clean-split-switch-vhe-nvhe.mbox"
SPLIT_DEBUG = DATA / "labelled" / "clean-split-debug-sr.mbox"
NVHE = "arch/arm64/kvm/hyp/nvhe/switch.c"
COMPARED = {"host-restore", "same-value", "shadow-vs-live", "hot-path-load", "vhe-nvhe",
            "pmu-ownership"}


def _open(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.status is Status.OPEN and f.rule in COMPARED]


def _edit_added_file(text: str, path: str, old: str, new: str | None) -> str:
    """Replace (or drop, when `new` is None) the added line `old` in the
    new file `path`, keeping its hunk header's count right."""
    start = text.index("+++ b/%s\n" % path)
    header = re.compile(r"@@ -0,0 \+1,(\d+) @@").search(text, start)
    assert header is not None
    line = "\n+%s\n" % old
    at = text.index(line, header.end())
    if new is not None:
        return text[:at] + "\n+%s\n" % new + text[at + len(line):]
    count = int(header.group(1)) - 1
    text = text[:at] + "\n" + text[at + len(line):]
    return text[:header.start()] + "@@ -0,0 +1,%d @@" % count + text[header.end():]


@pytest.mark.parametrize("path", [SPLIT, SPLIT_DEBUG], ids=lambda p: p.stem)
def test_moving_the_world_switch_is_quiet(path: Path, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    found = _open(findings(path, rules_ctx))
    assert not found, [(f.rule, f.file, f.line, f.message) for f in found]


def test_a_move_that_drops_the_host_restore_is_caught(tmp_path, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    mutated = tmp_path / "drop.mbox"
    mutated.write_text(_edit_added_file(SPLIT.read_text(), NVHE,
                                        "\twrite_sysreg(HCR_HOST_NVHE_FLAGS, hcr_el2);", None))
    found = [f for f in _open(findings(mutated, rules_ctx)) if f.rule == "host-restore"]
    assert found, "dropping the nVHE copy's HCR_EL2 restore went unnoticed"
    assert {f.register for f in found} == {"HCR_EL2"}
    assert any("nVHE" in f.message for f in found), [f.message for f in found]


def test_a_move_that_changes_the_restored_value_is_caught(tmp_path, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    """The moved copy keeps less of the host's MDCR_EL2 than the original."""
    mutated = tmp_path / "value.mbox"
    mutated.write_text(_edit_added_file(SPLIT.read_text(), NVHE,
                                        "\tmdcr_el2 &= MDCR_EL2_HPMN_MASK;",
                                        "\tmdcr_el2 = 0;"))
    found = [f for f in _open(findings(mutated, rules_ctx)) if f.register == "MDCR_EL2"]
    assert found, "the nVHE copy no longer keeping the host's HPMN went unnoticed"
    assert all(f.file == NVHE for f in found), [(f.file, f.message) for f in found]
