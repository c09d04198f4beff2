"""A real kernel git repository for tests and benchmarks, built from linux 6.12.

`build_kernel_repo(dest)` makes a git repository of the linux-source-6.12
files tests/kernel_source.py unpacks (arch/arm64 KVM, its headers and
tools/sysreg, the EL2 boot code, the Makefile): one commit "Linux 6.12",
then a few later commits that look like 6.13 development and change what
patches written against 6.12 touch:

    v6.12        Linux 6.12 (tagged)
    rc1          Linux 6.13-rc1 (Makefile)
    tlb-names    KVM: arm64: VHE: Name the saved EL1 registers after their
                 registers (hyp/vhe/tlb.c: cxt->tcr/sctlr -> tcr_el1/sctlr_el1)
    mdcr-table   arm64: sysreg: Migrate MDCR_EL2 definition to table
                 (tools/sysreg gains the MDCR_EL2 block; kvm_arm.h loses its
                 hand-written MDCR_EL2_RES0)

`make_patch(...)` writes a `git format-patch` mail of one change made at a
given commit, in a scratch clone, so the repository itself never gets the
commit: exactly a patch posted to the list against that commit.

Bench scripts import it with tests/ on sys.path; it does not import pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:
    from tests.kernel_source import ensure_kernel_tree
except ImportError:   # bench scripts put tests/ itself on sys.path
    from kernel_source import ensure_kernel_tree  # type: ignore[no-redef]

TLB = "arch/arm64/kvm/hyp/vhe/tlb.c"
KVM_ARM_H = "arch/arm64/include/asm/kvm_arm.h"
SYSREG = "arch/arm64/tools/sysreg"
_SHIPPED_SYSREG = Path(__file__).resolve().parent.parent / "bot/regmodel/hcr_mdcr.sysreg"
_IDENT = {"GIT_AUTHOR_NAME": "Kernel Developer", "GIT_AUTHOR_EMAIL": "dev@example.org",
          "GIT_COMMITTER_NAME": "Kernel Maintainer", "GIT_COMMITTER_EMAIL": "maint@example.org"}


def git(repo: Path, *args: str, date: str | None = None, stdin: bytes | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_IDENT)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["HOME"] = str(repo)   # no user configuration (signing, hooks, templates)
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    proc = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError("git %s: %s" % (" ".join(args), proc.stderr.decode()))
    return proc.stdout.decode()


@dataclass(frozen=True)
class KernelRepoFixture:
    path: Path
    commits: dict[str, str]     # name (see the module docstring) -> commit id


def _edit(root: Path, rel: str, change: Callable[[str], str]) -> None:
    path = root / rel
    before = path.read_text()
    after = change(before)
    assert after != before, "the edit of %s changed nothing" % rel
    path.write_text(after)


def _rename_tlb_fields(text: str) -> str:
    text = re.sub(r"\bcxt->tcr\b", "cxt->tcr_el1", text)
    text = re.sub(r"\bcxt->sctlr\b", "cxt->sctlr_el1", text)
    return text.replace("\tu64\t\t\ttcr;\n\tu64\t\t\tsctlr;\n",
                        "\tu64\t\t\ttcr_el1;\n\tu64\t\t\tsctlr_el1;\n")


def _mdcr_table(root: Path) -> None:
    shipped = _SHIPPED_SYSREG.read_text()
    start = shipped.index("Sysreg\tMDCR_EL2")
    block = shipped[start:shipped.index("EndSysreg", start)] + "EndSysreg\n"
    with open(root / SYSREG, "a") as fh:
        fh.write("\n" + block)

    def drop_res0(text: str) -> str:
        return re.sub(r"#define MDCR_EL2_RES0\t\t\(GENMASK\(63, 37\)(.*\\\n)*?.*GENMASK\(16, 15\)\)\n",
                      "", text)
    _edit(root, KVM_ARM_H, drop_res0)


def build_kernel_repo(dest: Path, source: Path | None = None) -> KernelRepoFixture:
    """The repository described in the module docstring, at `dest` (created)."""
    src = source or ensure_kernel_tree()
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".kvm-sysreg-bot-complete"))
    git(dest, "init", "-q", "-b", "master")
    git(dest, "add", "-A")
    commits: dict[str, str] = {}

    def commit(name: str, subject: str, date: str) -> None:
        git(dest, "commit", "-q", "-a", "-m", subject, date=date)
        commits[name] = git(dest, "rev-parse", "HEAD").strip()

    commit("v6.12", "Linux 6.12", "2024-11-17T12:00:00+00:00")
    git(dest, "tag", "v6.12")
    _edit(dest, "Makefile", lambda t: t.replace("PATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n",
                                                "PATCHLEVEL = 13\nSUBLEVEL = 0\nEXTRAVERSION = -rc1\n"))
    commit("rc1", "Linux 6.13-rc1", "2024-12-01T12:00:00+00:00")
    _edit(dest, TLB, _rename_tlb_fields)
    commit("tlb-names", "KVM: arm64: VHE: Name the saved EL1 registers after their registers",
           "2024-12-09T12:00:00+00:00")
    _mdcr_table(dest)
    commit("mdcr-table", "arm64: sysreg: Migrate MDCR_EL2 definition to table",
           "2024-12-16T12:00:00+00:00")
    return KernelRepoFixture(path=dest, commits=commits)


Edits = dict[str, Callable[[str], str]]


def make_series(repo: Path, at: str, changes: list[tuple[str, Edits]], out: Path, *,
                date: str = "2024-12-20T10:00:00+00:00", base: bool = False,
                body: str = "A change made for the tests.") -> Path:
    """An mbox of `git format-patch` mails, one per (subject, edits) in
    `changes`, made one on top of the other at commit `at` in a scratch
    clone (the repository never gets them); with `base`, they carry
    `base-commit: <at>`. Several changes make a numbered series."""
    scratch = out.parent / (out.name + ".clone")
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(scratch)],
                   check=True, capture_output=True)
    try:
        git(scratch, "checkout", "-q", "--detach", at)
        for subject, edits in changes:
            for rel, change in edits.items():
                _edit(scratch, rel, change)
            message = "%s\n\n%s\n\nSigned-off-by: Kernel Developer <dev@example.org>\n" % (
                subject, body)
            git(scratch, "commit", "-q", "-a", "-F", "-", date=date, stdin=message.encode())
        args = ["format-patch", "-%d" % len(changes), "--stdout", "--no-signature"]
        if len(changes) > 1:
            args += ["-n", "--thread=shallow"]
        if base:
            args.append("--base=%s" % at)
        out.write_text(git(scratch, *args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def make_patch(repo: Path, at: str, edits: Edits, subject: str, out: Path, *,
               date: str = "2024-12-20T10:00:00+00:00", base: bool = False,
               body: str = "A change made for the tests.") -> Path:
    """One patch mail changing `edits` (path -> text change) at commit `at`."""
    return make_series(repo, at, [(subject, edits)], out, date=date, base=base, body=body)
