"""The real linux 6.12 sources the tests and bench scripts read, fetched once.

`ensure_kernel_tree()` downloads Debian's linux-source-6.12 package with
`apt-get download` into a per-machine cache ($XDG_CACHE_HOME or
~/.cache, under kvm-sysreg-bot/), unpacks only the files listed in `MEMBERS`
and returns the tree's path. Later calls (and later test runs) return at
once. Concurrent callers serialise on a lock file and unpack into a temporary
directory renamed into place, so nobody ever sees half a tree.

Bench scripts import it with tests/ on sys.path; it does not import pytest.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "linux-source-6.12"
TARBALL = "./usr/src/linux-source-6.12.tar.xz"
TOP = "linux-source-6.12"

# What the tests need from the kernel: the register tables and headers KVM
# defines HCR_EL2/MDCR_EL2 in, the whole KVM directory (hyp code for the
# rules), the EL2 boot code, checkpatch.pl with its data files, and the
# Makefile for the version.
MEMBERS = (
    "Makefile",
    "arch/arm64/tools/sysreg",
    "arch/arm64/tools/gen-sysreg.awk",
    "arch/arm64/include/asm/kvm_arm.h",
    "arch/arm64/include/asm/sysreg.h",
    "arch/arm64/include/asm/kvm_host.h",
    "arch/arm64/include/asm/kvm_emulate.h",
    "arch/arm64/include/asm/kvm_asm.h",
    "arch/arm64/include/asm/kvm_hyp.h",
    "arch/arm64/include/asm/el2_setup.h",
    "arch/arm64/include/asm/kvm_mmu.h",
    "arch/arm64/kvm/",
    "arch/arm64/kernel/head.S",
    "arch/arm64/kernel/hyp-stub.S",
    "scripts/checkpatch.pl",
    "scripts/spelling.txt",
    "scripts/const_structs.checkpatch",
)


class KernelSourceError(RuntimeError):
    """The package could not be downloaded or unpacked."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvm-sysreg-bot"


def _stamp() -> str:
    # The tree is unpacked again when the list of wanted files changes.
    return hashlib.sha256("\n".join(MEMBERS).encode()).hexdigest()[:16]


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except OSError as exc:
        raise KernelSourceError("%s: cannot run %s: %s" % (what, cmd[0], exc)) from None
    if proc.returncode != 0:
        raise KernelSourceError("%s failed (exit %d): %s" % (
            " ".join(cmd), proc.returncode, (proc.stderr or proc.stdout).strip()[-2000:]))


def _download(debs: Path) -> Path:
    """The package's .deb in `debs`, fetched with apt-get download if absent."""
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob("%s_*.deb" % PACKAGE))
    if found:
        return found[-1]
    scratch = Path(tempfile.mkdtemp(prefix="download-", dir=debs))
    try:
        # apt-get download writes into the current directory; a scratch
        # directory keeps a failed or partial download out of `debs`.
        try:
            _run(["apt-get", "download", PACKAGE], scratch, "apt-get download")
        except KernelSourceError:
            if os.geteuid() != 0:
                raise
            # A fresh container has no package lists yet: fetch them once.
            _run(["apt-get", "update", "-qq"], scratch, "apt-get update")
            _run(["apt-get", "download", PACKAGE], scratch, "apt-get download")
        got = sorted(scratch.glob("%s_*.deb" % PACKAGE))
        if not got:
            raise KernelSourceError("apt-get download %s produced no .deb" % PACKAGE)
        target = debs / got[-1].name
        os.replace(got[-1], target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unpack(deb: Path, into: Path) -> Path:
    """Extract MEMBERS from the .deb's inner tarball into `into`/TOP."""
    wanted = [TOP + "/" + m + ("*" if m.endswith("/") else "") for m in MEMBERS]
    outer = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    inner = subprocess.Popen(["tar", "-xO", TARBALL], stdin=outer.stdout,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert outer.stdout is not None
    outer.stdout.close()   # so dpkg-deb sees SIGPIPE if tar stops early
    untar = subprocess.run(["tar", "-xJ", "--wildcards", "-C", str(into), *wanted],
                           stdin=inner.stdout, capture_output=True, text=True)
    assert inner.stdout is not None
    inner.stdout.close()
    inner_err = inner.communicate()[1]
    outer_err = outer.communicate()[1]
    for name, code, err in (("dpkg-deb", outer.returncode, outer_err),
                            ("tar -xO", inner.returncode, inner_err),
                            ("tar -xJ", untar.returncode, untar.stderr)):
        if code != 0:
            text = err.decode(errors="replace") if isinstance(err, bytes) else err
            raise KernelSourceError("unpacking %s: %s failed (exit %d): %s"
                                    % (deb, name, code, text.strip()[-2000:]))
    tree = into / TOP
    missing = [m for m in MEMBERS if not (tree / m).exists()]
    if missing:
        raise KernelSourceError("unpacking %s: missing %s" % (deb, ", ".join(missing)))
    return tree


def ensure_kernel_tree(root: Path | None = None) -> Path:
    """The unpacked linux-source-6.12 subset, downloading it the first time."""
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    tree = root / TOP
    marker = tree / ".kvm-sysreg-bot-complete"
    if marker.is_file() and marker.read_text().strip() == _stamp():
        return tree
    with open(root / (TOP + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == _stamp():
            return tree   # another process finished while we waited
        deb = _download(root / "debs")
        scratch = Path(tempfile.mkdtemp(prefix="unpack-", dir=root))
        try:
            fresh = _unpack(deb, scratch)
            (fresh / marker.name).write_text(_stamp() + "\n")
            if tree.exists():   # a tree unpacked for an older MEMBERS list
                old = Path(tempfile.mkdtemp(prefix="old-", dir=root))
                os.replace(tree, old / TOP)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(fresh, tree)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return tree


if __name__ == "__main__":  # pragma: no cover - a convenience for humans
    print(ensure_kernel_tree())
