"""Applying a series to a kernel git tree, so rules can read whole functions.

The series is applied patch by patch in a scratch worktree (`git worktree
add --detach`, then `git apply --3way` per patch) and, after each patch,
the files that patch touched are read back. The result is plain data
(`TreeSnapshot.file_after(patch, path)`), so rules stay pure; the worktree
is removed whatever happens. A series that does not apply gives no
snapshot and a logged reason: rules then work on the hunks alone.

The base is the series' `base-commit:` when the tree has it, else the
tree's HEAD. Nothing taken from mail chooses a command or a path: patch
text goes to git on stdin, and file paths are checked to stay inside the
worktree.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bot.data import Series

logger = logging.getLogger(__name__)

_BASE = re.compile(r"^base-commit:\s*([0-9a-f]{7,40})\s*$", re.M)
_TIMEOUT = 120


@dataclass(frozen=True, kw_only=True)
class TreeSnapshot:
    """Post-patch contents of the files each patch of a series touched."""

    base: str
    files: dict[tuple[int, str], str] = field(default_factory=dict)

    def file_after(self, patch: int, path: str) -> str | None:
        """The file as it is after `patch` (the latest patch <= it that touched it)."""
        best = None
        for (idx, p), text in self.files.items():
            if p == path and idx <= patch and (best is None or idx > best[0]):
                best = (idx, text)
        return best[1] if best is not None else None


class TreeError(Exception):
    """The series cannot be applied to the tree (the reason is the message)."""


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True,
                          timeout=_TIMEOUT, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TreeError("git %s: %s" % (args[0], err[-1] if err else "exit %d" % proc.returncode))
    return proc.stdout.decode("utf-8", "replace")


def _base(repo: Path, series: Series) -> str:
    texts = [series.cover.body] if series.cover is not None else []
    texts += [p.mail.body for p in series.patches]
    for text in texts:
        m = _BASE.search(text)
        if m:
            try:
                return _git(repo, "rev-parse", "--verify", "--quiet", m.group(1) + "^{commit}"
                            ).strip()
            except TreeError:
                logger.info("%s: base-commit %s not in %s, using HEAD", series.message_id,
                            m.group(1), repo)
    return _git(repo, "rev-parse", "--verify", "HEAD").strip()


def _diff_text(body: str) -> bytes:
    m = re.search(r"^diff --git ", body, re.M)
    if m is None:
        return b""
    text = body[m.start():]
    # A mailing-list footer after the last hunk is not part of the patch.
    cut = re.search(r"^(-- \n|_______________________________________________\n)", text, re.M)
    if cut is not None:
        text = text[:cut.start()]
    return text.encode("utf-8", "surrogateescape")


def snapshot(kernel_tree: str, series: Series) -> TreeSnapshot | None:
    """Apply `series` in a scratch worktree of `kernel_tree`; None if it cannot."""
    repo = Path(kernel_tree)
    try:
        return _apply(repo, series)
    except (TreeError, OSError, subprocess.SubprocessError) as exc:
        logger.warning("%s: not applied to %s, rules use the hunks alone: %s",
                       series.message_id, kernel_tree, exc)
        return None


def _apply(repo: Path, series: Series) -> TreeSnapshot:
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        raise TreeError("%s is not a git tree" % repo)
    base = _base(repo, series)
    scratch = Path(tempfile.mkdtemp(prefix="bot-tree-"))
    work = scratch / "wt"
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(work), base)
        files: dict[tuple[int, str], str] = {}
        root = work.resolve()
        for patch in series.patches:
            diff = _diff_text(patch.mail.body)
            if not diff:
                continue
            _git(work, "apply", "--3way", "--whitespace=nowarn", "-", stdin=diff)
            for path in patch.paths:
                target = (work / path).resolve()
                if root not in target.parents:
                    raise TreeError("patch %d names a path outside the tree: %s"
                                    % (patch.index, path))
                if target.is_file():
                    files[(patch.index, path)] = target.read_text("utf-8", "replace")
        return TreeSnapshot(base=base, files=files)
    finally:
        try:
            _git(repo, "worktree", "remove", "--force", str(work))
        except (TreeError, OSError, subprocess.SubprocessError) as exc:
            logger.debug("worktree remove: %s", exc)
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            _git(repo, "worktree", "prune")
        except (TreeError, OSError, subprocess.SubprocessError):
            pass
