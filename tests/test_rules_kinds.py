"""Every bug kind of REVIEW-GUIDE section 6 on real linux 6.12 code: one
patch that must trigger, one semantics-preserving neighbour that must stay
quiet.

The patches in tests/data/kinds/ were generated from the 6.12 sources by
bench/mutations.py --write-fixtures (cases.toml says from which generator
and why each is what it claims). A trigger passes when an open finding of
one of the kind's categories, at question or above, is within 3 lines of
an anchor; a neighbour passes when no open finding is an error or a
warning. Cases the rules engine of the time gets wrong carry `known_miss`
and are xfail(strict=True): when the engine starts getting one right the
test fails, and the key must be removed from cases.toml.

Some kinds are also checked with a kernel tree: a git repository of the
6.12 files (the patches must apply to it, which checks they are real).
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.data import Finding, Severity, Status
from bot.lore.assemble import assemble
from bot.pipeline import Checker
from bot.rules import run
from bot.sources import InputSet
from tests.conftest import DATA, make_config
from tests.rules_support import rules_config, rules_ctx  # noqa: F401  (fixture)

KINDS_DIR = DATA / "kinds"
CASES: list[dict[str, Any]] = tomllib.loads((KINDS_DIR / "cases.toml").read_text())["case"]
MISS = pytest.mark.xfail(strict=True, reason="rules engine v2 (issue 9)")
# How a check is given the kernel repository (one place to change).
TREE_ENV = "BOT_KERNEL_REPO"


def _id(case: dict[str, Any]) -> str:
    return "%s-%s" % (case["kind"], case["expect"])


def _params(key: str, only_tree: bool = False) -> list[Any]:
    return [pytest.param(c, id=_id(c), marks=[MISS] if c.get(key) else [])
            for c in CASES if c.get("tree") or not only_tree]


def _findings(path: Path, ctx) -> list[Finding]:  # type: ignore[no-untyped-def]
    cfg = rules_config()
    out: list[Finding] = []
    for raws in InputSet([str(path)], cfg.input).threads():
        for series in assemble(raws).series:
            out.extend(run(series, ctx, cfg.rules).findings)
    return out


def _check(case: dict[str, Any], findings: list[Finding]) -> None:
    mine = [f for f in findings if f.status is Status.OPEN]
    if case["expect"] == "quiet":
        loud = [f for f in mine if f.severity.rank >= Severity.WARNING.rank]
        assert not loud, [(f.rule, f.severity, f.file, f.line, f.message) for f in loud]
        return
    near = [f for f in mine if str(f.category) in case["categories"]
            and f.severity.rank >= Severity.QUESTION.rank and f.patch == 1
            and f.line is not None
            and any(f.file == p and abs(f.line - line) <= 3 for p, line in case["anchors"])]
    assert near, [(f.rule, f.severity, f.file, f.line) for f in mine]


def test_one_trigger_and_one_neighbour_per_kind() -> None:
    kinds = {}
    for case in CASES:
        kinds.setdefault(case["kind"], []).append(case["expect"])
        assert case["justification"] and case["function"] and case["generator"]
        if case["expect"] == "trigger":
            assert case["categories"] and case["anchors"], case["file"]
    assert kinds == {k: ["trigger", "quiet"] for k in "abcdefghijklmnop"}


def test_every_kinds_fixture_is_listed() -> None:
    listed = {c["file"] for c in CASES}
    assert listed == {p.name for p in KINDS_DIR.glob("*.patch")}


@pytest.mark.parametrize("case", _params("known_miss"))
def test_kind_without_tree(case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    _check(case, _findings(KINDS_DIR / case["file"], rules_ctx))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def linux_repo(kernel_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 6.12 files in one commit, as a kernel repository the bot can use."""
    repo = tmp_path_factory.mktemp("linux")
    for src in kernel_tree.rglob("*"):
        if src.is_file() and not src.name.startswith(".kvm-sysreg-bot"):
            dest = repo / src.relative_to(kernel_tree)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    (repo / ".gitattributes").write_text("*.c   diff=cpp\n*.h   diff=cpp\n")
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "6.12")
    return repo


def test_every_fixture_applies_to_linux_612(linux_repo: Path) -> None:
    for case in CASES:
        proc = subprocess.run(["git", "-C", str(linux_repo), "apply", "--check", "-"],
                              input=(KINDS_DIR / case["file"]).read_bytes(),
                              capture_output=True, check=False)
        assert proc.returncode == 0, (case["file"], proc.stderr.decode())


@pytest.mark.parametrize("case", _params("known_miss_tree", only_tree=True))
def test_kind_with_tree(case: dict[str, Any], linux_repo: Path, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **{TREE_ENV: str(linux_repo)})
    checker = Checker(cfg)
    findings: list[Finding] = []
    for raws in InputSet([str(KINDS_DIR / case["file"])], cfg.input).threads():
        for result in checker.check_thread(raws).results:
            findings.extend(result.rules.findings)
    _check(case, findings)
