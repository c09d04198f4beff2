"""The labelled set: what maintainers raised is found, clean patches stay quiet."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.lore.assemble import assemble
from bot.rules import Severity, Status, run
from bot.sources import InputSet
from tests.conftest import DATA
from tests.rules_support import rules_config, rules_ctx  # noqa: F401  (fixture)

LABELLED = DATA / "labelled"
CASES = tomllib.loads((LABELLED / "labels.toml").read_text())["case"]


def _findings(path: Path, ctx):  # type: ignore[no-untyped-def]
    cfg = rules_config()
    out = []
    for raws in InputSet([str(path)], cfg.input).threads():
        for series in assemble(raws).series:
            out.extend(run(series, ctx, cfg.rules).findings)
    return out


def test_every_labelled_file_is_listed() -> None:
    listed = {c["file"] for c in CASES}
    assert listed == {p.name for p in LABELLED.glob("*.mbox")}


@pytest.mark.parametrize("case", [c for c in CASES if c["kind"] == "problem"],
                         ids=lambda c: c["file"])
def test_labelled_problem_is_found(case, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    found = [f for f in _findings(LABELLED / case["file"], rules_ctx)
             if f.status is Status.OPEN and str(f.category) == case["category"]
             and f.patch == case["patch"] and f.file == case["path"]
             and f.line is not None and abs(f.line - case["line"]) <= 3]
    assert found, "%s: no open %s finding near %s:%d" % (case["file"], case["category"],
                                                         case["path"], case["line"])


@pytest.mark.parametrize("case", [c for c in CASES if c["kind"] == "clean"],
                         ids=lambda c: c["file"])
def test_labelled_clean_has_no_error_or_warning(case, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    loud = [f for f in _findings(LABELLED / case["file"], rules_ctx)
            if f.status is Status.OPEN and f.severity.rank >= Severity.WARNING.rank]
    assert not loud, [(f.rule, f.file, f.line, f.message) for f in loud]
