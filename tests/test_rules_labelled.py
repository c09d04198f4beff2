"""The labelled set: what maintainers raised is found, clean patches stay quiet.

A case the current engine gets wrong carries `known_miss = true` (problem not
found) or `known_noise = true` (clean patch with an error or warning finding)
in labels.toml; its test is a strict xfail, so it turns into a failure the
moment the engine gets it right and the key must be removed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.data import Category, LineKind
from bot.lore.assemble import assemble
from bot.rules import Severity, Status, run
from bot.sources import InputSet
from tests.conftest import DATA
from tests.rules_support import rules_config, rules_ctx  # noqa: F401  (fixture)

LABELLED = DATA / "labelled"
CASES = tomllib.loads((LABELLED / "labels.toml").read_text())["case"]
ENGINE_V2 = pytest.mark.xfail(strict=True, reason="rules engine v2 (issue 9)")


def _series(path: Path):  # type: ignore[no-untyped-def]
    cfg = rules_config()
    for raws in InputSet([str(path)], cfg.input).threads():
        yield from assemble(raws).series


def _findings(path: Path, ctx):  # type: ignore[no-untyped-def]
    cfg = rules_config()
    return [f for series in _series(path) for f in run(series, ctx, cfg.rules).findings]


def _cases(kind: str, known: str) -> list[Any]:
    return [pytest.param(c, id=c["file"].removesuffix(".mbox") + (
                ":%s" % c["category"] if kind == "problem" else ""),
                         marks=[ENGINE_V2] if c.get(known) else [])
            for c in CASES if c["kind"] == kind]


def test_every_labelled_file_is_listed() -> None:
    listed = {c["file"] for c in CASES}
    assert listed == {p.name for p in LABELLED.glob("*.mbox")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "%s:%s" % (c["file"], c.get("line", "")))
def test_label_matches_its_mail(case: dict[str, Any]) -> None:
    """The label names the mail's Message-ID, and a problem's place exists in that patch."""
    assert case["kind"] in ("problem", "clean")
    assert case["note"].strip()
    assert set(case) <= {"file", "message_id", "kind", "category", "patch", "path", "line",
                         "review", "note", "known_miss", "known_noise"}
    [series] = list(_series(LABELLED / case["file"]))
    [patch] = series.patches
    assert patch.message_id == case["message_id"]
    if case["kind"] == "clean":
        assert not {"category", "path", "line", "known_miss"} & set(case)
        return
    assert "known_noise" not in case and case["review"]
    assert Category(case["category"])
    assert patch.index == case["patch"]
    [fd] = [fd for fd in patch.files if fd.path == case["path"]]
    lines = {ln.new_no for h in fd.hunks for ln in h.lines if ln.kind is not LineKind.REMOVED}
    assert case["line"] in lines


@pytest.mark.parametrize("case", _cases("problem", "known_miss"))
def test_labelled_problem_is_found(case, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    found = [f for f in _findings(LABELLED / case["file"], rules_ctx)
             if f.status is Status.OPEN and str(f.category) == case["category"]
             and f.patch == case["patch"] and f.file == case["path"]
             and f.line is not None and abs(f.line - case["line"]) <= 3]
    assert found, "%s: no open %s finding near %s:%d" % (case["file"], case["category"],
                                                         case["path"], case["line"])


@pytest.mark.parametrize("case", _cases("clean", "known_noise"))
def test_labelled_clean_has_no_error_or_warning(case, rules_ctx) -> None:  # type: ignore[no-untyped-def]
    loud = [f for f in _findings(LABELLED / case["file"], rules_ctx)
            if f.status is Status.OPEN and f.severity.rank >= Severity.WARNING.rank]
    assert not loud, [(f.rule, f.file, f.line, f.message) for f in loud]
