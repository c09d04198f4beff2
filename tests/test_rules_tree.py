"""Rules with a kernel tree: whole post-patch functions instead of hunks.

The tree is a git repository made from the real linux 6.12 KVM sources
(tests/kernel_source.py); the patch is made with git from a one-line change
to the real vhe/tlb.c, so it applies exactly as a posted patch would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.kernel_tree import snapshot
from bot.lore.assemble import assemble
from bot.sources import InputSet
from tests.conftest import make_config
from tests.kernel_source import ensure_kernel_tree

TLB = "arch/arm64/kvm/hyp/vhe/tlb.c"
FILES = (TLB, "arch/arm64/kvm/hyp/nvhe/tlb.c", "arch/arm64/include/asm/kvm_arm.h")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def tree_and_patch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src = ensure_kernel_tree()
    repo = tmp_path_factory.mktemp("kernel")
    for rel in FILES:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, repo / rel)
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "add", ".")
    _git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "base")
    # Drop the interrupt restore from exit_vmid_context: enter_vmid_context
    # (50 lines above, outside any hunk) still saves and masks them.
    path = repo / TLB
    text = path.read_text()
    start = text.index("static void exit_vmid_context")
    cut = text.index("\tlocal_irq_restore(cxt->flags);\n", start)
    path.write_text(text[:cut] + text[cut + len("\tlocal_irq_restore(cxt->flags);\n"):])
    _git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qam",
         "KVM: arm64: VHE: Let callers restore interrupts")
    out = tmp_path_factory.mktemp("patch")
    _git(repo, "format-patch", "-q", "-1", "-o", str(out))
    _git(repo, "reset", "-q", "--hard", "HEAD~1")
    return repo, next(out.glob("*.patch"))


def _check(patch: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run([sys.executable, "-m", "bot", "check", str(patch), "--format", "json",
                           "--fail-on", "never", *extra], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_tree_turns_an_undecided_question_into_a_warning(tree_and_patch) -> None:  # type: ignore[no-untyped-def]
    repo, patch = tree_and_patch
    without = [f for f in _check(patch)["series"][0]["findings"] if f["rule"] == "tlb-symmetry"]
    assert [(f["severity"], f["file"]) for f in without] == [("question", TLB)]
    with_tree = [f for f in _check(patch, "--kernel-tree", str(repo))["series"][0]["findings"]
                 if f["rule"] == "tlb-symmetry"]
    assert [(f["severity"], f["file"]) for f in with_tree] == [("warning", TLB)]
    assert "enter_vmid_context" in with_tree[0]["message"]
    assert _git(repo, "worktree", "list").count("\n") == 1   # scratch worktree removed


def test_snapshot_reads_post_patch_files(tree_and_patch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, patch = tree_and_patch
    cfg = make_config(tmp_path)
    [series] = [s for raws in InputSet([str(patch)], cfg.input).threads()
                for s in assemble(raws).series]
    snap = snapshot(str(repo), series)
    assert snap is not None
    after = snap.file_after(1, TLB)
    assert after is not None and "exit_vmid_context" in after
    assert after.count("local_irq_restore") == (repo / TLB).read_text().count(
        "local_irq_restore") - 1
    assert snap.file_after(1, "arch/arm64/kvm/hyp/nvhe/tlb.c") is None


def test_a_series_that_does_not_apply_means_no_tree(tree_and_patch, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    repo, patch = tree_and_patch
    broken = tmp_path / "broken.patch"
    broken.write_text(patch.read_text().replace("local_irq_restore(cxt->flags);",
                                                "local_irq_restore(cxt->nope);"))
    cfg = make_config(tmp_path)
    [series] = [s for raws in InputSet([str(broken)], cfg.input).threads()
                for s in assemble(raws).series]
    assert snapshot(str(repo), series) is None
    assert "not applied" in caplog.text
    assert _git(repo, "worktree", "list").count("\n") == 1
    assert snapshot(str(tmp_path / "no-such-tree"), series) is None
