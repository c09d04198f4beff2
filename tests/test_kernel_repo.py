"""The kernel repository: base inference, snapshots, and the repository untouched.

The repository is real git, made from linux-source-6.12's arm64 parts with a
few later commits (tests/kernel_repo.py); patches are made with git against
one of its commits in a scratch clone, exactly as posted to the list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.data import Base, BaseSource
from bot.kernel import KernelRepo
from bot.lore.assemble import assemble
from bot.pipeline import Checker
from bot.sources import InputSet
from tests.conftest import DATA, make_config
from tests.kernel_repo import KVM_ARM_H, TLB, git, make_patch, make_series

HYP_SWITCH = "arch/arm64/kvm/hyp/include/hyp/switch.h"
NVHE_TLB = "arch/arm64/kvm/hyp/nvhe/tlb.c"


def _drop_irq_restore(text: str) -> str:
    """exit_vmid_context() no longer restores interrupts (enter_vmid_context(),
    fifty lines above and outside any hunk, still saves and masks them)."""
    return text.replace("\tlocal_irq_restore(cxt->flags);\n}\n\nvoid __kvm_tlb_flush_vmid_ipa",
                        "}\n\nvoid __kvm_tlb_flush_vmid_ipa")


def _bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          check=False, env=full)


def _check(patch: Path, *extra: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    proc = _bot("check", str(patch), "--format", "json", "--fail-on", "never", *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    [series] = json.loads(proc.stdout)["series"]
    return series  # type: ignore[no-any-return]


def _series(path: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = make_config(tmp_path)
    [series] = [s for raws in InputSet([str(path)], cfg.input).threads()
                for s in assemble(raws).series]
    return series


def _state(repo: Path) -> dict[str, str]:
    """Everything a run could change: every file of the work tree and of .git
    (refs, index, objects, config, logs), by content."""
    out = {}
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    out["(status)"] = git(repo, "status", "--porcelain", "--ignored")
    return out


# -- base inference ------------------------------------------------------------


def test_base_from_the_trailer_and_whole_functions(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    at = kernel_repo.commits["tlb-names"]
    patch = make_patch(kernel_repo.path, at, {TLB: _drop_irq_restore},
                       "KVM: arm64: VHE: Let callers restore interrupts", tmp_path / "a.patch",
                       base=True)
    series = _check(patch, "--kernel-repo", str(kernel_repo.path))
    base = series["base"]
    assert (base["source"], base["commit"], base["version"]) == ("base-commit", at, "v6.13")
    assert base["whole_files"] is True and base["reason"] == ""
    # The whole function is read from the repository: the unchanged
    # counterpart in enter_vmid_context() decides the finding.
    [finding] = [f for f in series["findings"] if f["rule"] == "tlb-symmetry"]
    assert (finding["severity"], finding["file"]) == ("warning", TLB)
    assert "enter_vmid_context" in finding["message"]
    # Without the repository the same patch is only a question.
    without = _check(patch)
    assert [f["severity"] for f in without["findings"] if f["rule"] == "tlb-symmetry"] == [
        "question"]


def test_base_from_blobs_applies_at_the_older_commit(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = kernel_repo.commits["v6.12"]
    patch = make_patch(kernel_repo.path, old, {TLB: _drop_irq_restore},
                       "KVM: arm64: VHE: Let callers restore interrupts", tmp_path / "b.patch")
    assert "base-commit:" not in patch.read_text()
    series = _check(patch, "--kernel-repo", str(kernel_repo.path))
    assert (series["base"]["source"], series["base"]["commit"], series["base"]["version"]) == (
        "index-blobs", old, "v6.12")
    assert series["base"]["whole_files"] is True
    assert [f["severity"] for f in series["findings"] if f["rule"] == "tlb-symmetry"] == [
        "warning"]
    # The series does not apply at the tip (tlb-names renamed what it changes):
    # only the base it was written against gives whole files.
    with KernelRepo(kernel_repo.path) as repo:
        tip = Base(source=BaseSource.TRAILER, commit=kernel_repo.commits["mdcr-table"])
        snap = repo.snapshot(_series(patch, tmp_path), tip)
    assert not snap.applied and "does not apply" in snap.reason
    assert snap.file_after(1, TLB) is None and snap.file_before(TLB) is not None


def test_a_trailer_the_repository_lacks_falls_back_to_blobs(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = kernel_repo.commits["v6.12"]
    patch = make_patch(kernel_repo.path, old, {TLB: _drop_irq_restore}, "KVM: arm64: x",
                       tmp_path / "c.patch")
    patch.write_text(patch.read_text() + "\nbase-commit: %s\n" % ("d" * 40))
    with KernelRepo(kernel_repo.path) as repo:
        found = repo.find_base(_series(patch, tmp_path))
    assert found.base is not None and found.base.source is BaseSource.BLOBS
    assert found.base.commit == old
    assert "base-commit: dddddddddddd is not in the repository" in found.base.detail


def test_base_not_found_is_the_version_of_its_facts(kernel_repo) -> None:  # type: ignore[no-untyped-def]
    # Made-up index lines (1111111..2222222): no commit has that blob.
    patch = DATA / "rules" / "tlb-symmetry-trigger.patch"
    series = _check(patch, "--kernel-repo", str(kernel_repo.path))
    base = series["base"]
    assert (base["source"], base["commit"], base["whole_files"]) == ("version-facts", None,
                                                                       False)
    assert base["version"] and "pre-image blobs are not in the repository" in base["reason"]
    assert "without the base" in base["summary"]


def test_without_a_repository_every_output_says_so(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    patch = make_patch(kernel_repo.path, kernel_repo.commits["v6.12"], {TLB: _drop_irq_restore},
                       "KVM: arm64: VHE: Let callers restore interrupts", tmp_path / "d.patch")
    series = _check(patch)
    assert series["base"]["commit"] is None and series["base"]["source"] == "version-facts"
    assert "findings on the hunks, without the base" in series["base"]["summary"]
    text = _bot("check", str(patch), "--fail-on", "never").stdout
    header, *_, summary = text.splitlines()
    assert "base none: findings on the hunks, without the base (as of v6." in header
    assert summary.endswith("1 without the base (findings on the hunks)")
    clean = _bot("check", str(DATA / "poll" / "unrelated-sys-regs-typo.mbox")).stdout
    assert clean.endswith("no findings; 1 without the base (findings on the hunks)\n")
    for fmt in ("b4", "b4-series"):
        proc = subprocess.run([sys.executable, "-m", "bot", "check", "--format", fmt, "-"],
                              input=patch.read_text(), capture_output=True, text=True,
                              check=False)
        [entry] = json.loads(proc.stdout)
        assert "base none: findings on the hunks, without the base" in entry["summary"], fmt
    # With the repository the same outputs name the commit.
    text = _bot("check", str(patch), "--fail-on", "never", "--kernel-repo",
                str(kernel_repo.path)).stdout
    assert "base %s (v6.12), from the pre-image blobs" % kernel_repo.commits["v6.12"][:12] in text
    assert "without the base" not in text


def test_a_series_snapshot_after_each_patch(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = kernel_repo.commits["v6.12"]
    mbox = make_series(kernel_repo.path, old, [
        ("KVM: arm64: VHE: Let callers restore interrupts", {TLB: _drop_irq_restore}),
        ("KVM: arm64: Spell out the TGE flip",
         {TLB: lambda t: t.replace("let's flip TGE", "let us flip TGE"),
          KVM_ARM_H: lambda t: t.replace("/* Hyp Configuration Register (HCR) bits */",
                                         "/* Hyp Configuration Register (HCR_EL2) bits */")}),
    ], tmp_path / "series.mbox")
    series = _series(mbox, tmp_path)
    assert [p.index for p in series.patches] == [1, 2]
    base_tlb = git(kernel_repo.path, "show", "%s:%s" % (old, TLB))
    with KernelRepo(kernel_repo.path) as repo:
        found = repo.find_base(series)
        assert found.base is not None and found.base.commit == old
        snap = repo.snapshot(series, found.base, [HYP_SWITCH, "arch/arm64/kvm/hyp/nvhe/"])
    assert snap.applied
    assert snap.file_before(TLB) == base_tlb
    assert snap.file_after(1, TLB) == _drop_irq_restore(base_tlb)
    assert "let us flip TGE" in (snap.file_after(2, TLB) or "")
    assert "let us flip TGE" not in (snap.file_after(1, TLB) or "x")
    assert snap.file_after(1, KVM_ARM_H) == snap.file_before(KVM_ARM_H)
    assert "HCR_EL2) bits" in (snap.file_after(2, KVM_ARM_H) or "")
    # Context files the series leaves alone: at the base, for every patch.
    assert "__activate_traps_common" in (snap.file_after(2, HYP_SWITCH) or "")
    assert snap.file_after(2, NVHE_TLB) == git(kernel_repo.path, "show", "%s:%s" % (old,
                                                                                  NVHE_TLB))


def test_the_repository_is_untouched(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = _state(kernel_repo.path)
    a = make_patch(kernel_repo.path, kernel_repo.commits["tlb-names"], {TLB: _drop_irq_restore},
                   "KVM: arm64: a", tmp_path / "a.patch", base=True)
    b = make_series(kernel_repo.path, kernel_repo.commits["v6.12"], [
        ("KVM: arm64: b1", {TLB: _drop_irq_restore}),
        ("KVM: arm64: b2", {KVM_ARM_H: lambda t: t.replace("BIT(18) |", "BIT(18) | BIT(19) |")}),
    ], tmp_path / "b.mbox")
    assert _state(kernel_repo.path) == before   # making the patches changed nothing either
    proc = _bot("check", str(a), str(b), str(DATA / "rules" / "tlb-symmetry-trigger.patch"),
                "--kernel-repo", str(kernel_repo.path), "--format", "json", "--fail-on",
                "never")
    assert proc.returncode == 0, proc.stderr
    sources = [s["base"]["source"] for s in json.loads(proc.stdout)["series"]]
    assert sorted(sources) == ["base-commit", "index-blobs", "version-facts"]
    assert _state(kernel_repo.path) == before


# -- what the base knew: RES0 drift ------------------------------------------


_RES0_HEAD = "#define MDCR_EL2_RES0\t\t(GENMASK(63, 37) |\t\\\n"
_RES0_TAIL = "\t\t\t\t BIT(18) |\t\t\\\n\t\t\t\t GENMASK(16, 15))\n"


def _res0_patch(kernel_repo, tmp_path: Path, old: str, new: str, name: str) -> Path:  # type: ignore[no-untyped-def]
    """A patch at 6.12 rewriting part of MDCR_EL2_RES0."""
    def change(text: str) -> str:
        assert text.count(old) == 1
        return text.replace(old, new)
    return make_patch(kernel_repo.path, kernel_repo.commits["v6.12"], {KVM_ARM_H: change},
                      "KVM: arm64: Adjust MDCR_EL2_RES0", tmp_path / name,
                      date="2024-11-25T10:00:00+00:00",
                      body="Update the bits of MDCR_EL2 the hypervisor treats as reserved.")


def _res0_findings(series: dict) -> tuple[list, list]:  # type: ignore[type-arg]
    opened = [(f["severity"], f["fields"]) for f in series["findings"]
              if f["rule"] == "reserved-bit"]
    pre = [(f["severity"], f["fields"]) for f in series["pre_existing"]
           if f["rule"] == "reserved-bit"]
    return opened, pre


# The patches mark bit 19 (TTRF, in kvm_arm.h since v5.12) reserved. 6.12's
# mask already called E2TB (v5.13) reserved: drift, but not the patch's. It
# also calls PMSSE, EBWE, PMEE, EnSTEPOP and EnSPM reserved, fields no kernel
# knew before v6.13: not drift at all for a 6.12 base.
EXPECTED = ([("warning", ["TTRF"])], [("info", ["E2TB"])])


@pytest.mark.parametrize("with_repo", [True, False])
def test_res0_drift_is_judged_by_what_the_base_knew(kernel_repo, tmp_path: Path,
                                                      with_repo: bool) -> None:  # type: ignore[no-untyped-def]
    patch = _res0_patch(kernel_repo, tmp_path, _RES0_HEAD,
                        _RES0_HEAD.replace("(GENMASK(63, 37) |", "(GENMASK(63, 37) | BIT(19) |"),
                        "r.patch")
    extra = ("--kernel-repo", str(kernel_repo.path)) if with_repo else ()
    series = _check(patch, *extra)
    assert series["base"]["version"] == "v6.12"
    assert series["base"]["source"] == ("index-blobs" if with_repo else "version-facts")
    assert _res0_findings(series) == EXPECTED
    assert not any("E2TB" in d["body"] for d in series["drafts"])


def test_a_mask_the_hunk_shows_in_part_is_read_whole(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # git's three lines of context do not reach the #define line: only the
    # repository says which mask these lines belong to.
    patch = _res0_patch(kernel_repo, tmp_path, _RES0_TAIL,
                        _RES0_TAIL.replace("BIT(18) |", "GENMASK(19, 18) |"), "t.patch")
    assert "#define MDCR_EL2_RES0" not in patch.read_text()
    series = _check(patch, "--kernel-repo", str(kernel_repo.path))
    assert series["base"]["whole_files"] is True
    assert _res0_findings(series) == EXPECTED


def test_res0_mask_unchanged_in_value_stays_quiet(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    patch = _res0_patch(kernel_repo, tmp_path, _RES0_TAIL,
                        _RES0_TAIL.replace("BIT(18) |\t", "GENMASK(18, 18) |"), "q.patch")
    series = _check(patch, "--kernel-repo", str(kernel_repo.path))
    assert series["base"]["commit"] == kernel_repo.commits["v6.12"]
    opened, pre = _res0_findings(series)
    assert opened == [] and pre == [("info", ["E2TB"])]
    assert not series["drafts"]


# -- a repository that cannot be used --------------------------------------------


def _corrupt_copy(kernel_repo, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp_path / "corrupt"
    shutil.copytree(kernel_repo.path, copy)
    head = kernel_repo.commits["mdcr-table"]
    (copy / ".git" / "objects" / head[:2] / head[2:]).unlink()
    return copy


def test_a_missing_or_corrupt_repository_is_one_line_exit_2(kernel_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    patch = DATA / "rules" / "tlb-symmetry-trigger.patch"
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = {
        str(tmp_path / "nowhere"): "no such file or directory",
        str(plain): "not a git repository",
        str(_corrupt_copy(kernel_repo, tmp_path)): "is not a commit the repository can read",
    }
    for repo, why in cases.items():
        proc = _bot("check", str(patch), "--kernel-repo", repo)
        assert proc.returncode == 2, (repo, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "kernel.repo %s" % repo in proc.stderr
        assert why in proc.stderr, proc.stderr
        assert proc.stdout == ""
    proc = _bot("check", str(patch), "--kernel-repo", str(kernel_repo.path),
                env={"BOT_KERNEL_BASE_RANGE": "no-such-branch"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no-such-branch" in proc.stderr


def test_the_daemon_falls_back_to_the_hunks(kernel_repo, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    patch = make_patch(kernel_repo.path, kernel_repo.commits["v6.12"], {TLB: _drop_irq_restore},
                       "KVM: arm64: x", tmp_path / "p.patch")
    raws = next(iter(InputSet([str(patch)], make_config(tmp_path).input).threads()))
    corrupt = _corrupt_copy(kernel_repo, tmp_path)
    cfg = make_config(tmp_path, BOT_KERNEL_REPO=str(corrupt))
    with caplog.at_level(logging.ERROR), Checker(cfg) as checker:   # not strict: the daemon's
        assert checker.repo is None
        [res] = checker.check_thread(raws).results
    assert "checking on the hunks alone" in caplog.text and str(corrupt) in caplog.text
    assert not res.whole_files and res.base is not None and res.base.commit is None
    # A repository that fails in the middle of a run: that series is checked
    # on its hunks, and the next one has the repository again.
    cfg = make_config(tmp_path, BOT_KERNEL_REPO=str(kernel_repo.path))
    with Checker(cfg) as checker:
        assert checker.repo is not None
        checker.repo.git._proc.kill()  # type: ignore[union-attr]
        checker.repo.git._proc.wait()  # type: ignore[union-attr]
        [failed] = checker.check_thread(raws).results
        [again] = checker.check_thread(raws).results
    assert not failed.whole_files and "failed" in failed.hunks_reason
    assert again.whole_files and again.base is not None
    assert again.base.commit == kernel_repo.commits["v6.12"]


def test_the_base_is_stored_with_the_series(kernel_repo, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from bot import cli

    patch = make_patch(kernel_repo.path, kernel_repo.commits["v6.12"], {TLB: _drop_irq_restore},
                       "KVM: arm64: x", tmp_path / "p.patch")
    monkeypatch.setenv("BOT_DATABASE_URL", "sqlite:///%s" % (tmp_path / "bot.sqlite3"))
    monkeypatch.setenv("BOT_STATE_DIR", str(tmp_path / "state"))
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["check", str(patch), "--store", "--fail-on", "never"]) == 0
    assert cli.main(["check", str(patch), "--store", "--fail-on", "never", "--kernel-repo",
                     str(kernel_repo.path)]) == 0, capsys.readouterr().err
    import sqlite3
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        rows = db.execute("SELECT base_source, base_commit, base_version FROM series").fetchall()
    # The second check, with the repository, knows the commit: it replaces
    # the version the first one inferred.
    assert rows == [("index-blobs", kernel_repo.commits["v6.12"], "v6.12")]
