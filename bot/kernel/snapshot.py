"""Whole files around a series, read at its base and after each patch.

The series is applied patch by patch with `git apply --cached` into a
private index holding only the files it changes (`git ls-tree` of the base
piped into `git update-index --index-info`); after each patch `git ls-files`
names the blobs it produced and the cat-file process reads them. No work
tree, no checkout: a series costs a few short git commands, whatever the
size of the repository.

Besides the files the series changes, the snapshot holds the files the
caller names (the save/restore map's files and the headers they include),
so rules can follow a call into a helper the series leaves alone. A path
ending in "/" names the files directly in that directory.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from bot.data import Base, Series, TreeSnapshot
from bot.kernel.git import GitRepo, RepoError

logger = logging.getLogger(__name__)

# Files larger than this are not read (no kernel source file comes close).
MAX_FILE_BYTES = 2 * 1024 * 1024
# Decoded file texts kept across series (by blob id): series of one run
# mostly share a base, so they share their context files too.
_CACHE_BYTES = 64 * 1024 * 1024
_FOOTER = re.compile(r"^(-- \n|_______________________________________________\n)", re.M)


def diff_text(body: str) -> bytes:
    """The patch part of a mail body, as `git apply` reads it."""
    m = re.search(r"^diff --git ", body, re.M)
    if m is None:
        return b""
    text = body[m.start():]
    # A signature or mailing-list footer after the last hunk is not the patch.
    cut = _FOOTER.search(text)
    if cut is not None:
        text = text[:cut.start()]
    return text.encode("utf-8", "surrogateescape")


class SnapshotBuilder:
    """Builds `TreeSnapshot`s from one repository, caching file texts by blob."""

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self._dirs: dict[tuple[str, str], tuple[str, ...]] = {}

    def _text(self, oid: str) -> str | None:
        text = self._texts.get(oid)
        if text is not None:
            self._texts.move_to_end(oid)
            return text
        info = self.repo.info(oid)
        if info is None or info.type != "blob" or info.size > MAX_FILE_BYTES:
            return None
        got = self.repo.contents(oid)
        if got is None:
            return None
        text = got[1].decode("utf-8", "replace")
        self._texts[oid] = text
        self._bytes += len(text)
        while self._bytes > _CACHE_BYTES and self._texts:
            _, old = self._texts.popitem(last=False)
            self._bytes -= len(old)
        return text

    def _at(self, commit: str, path: str) -> str | None:
        info = self.repo.info("%s:%s" % (commit, path))
        if info is None or info.type != "blob":
            return None
        return self._text(info.oid)

    def _expand(self, commit: str, paths: Iterable[str]) -> list[str]:
        out: list[str] = []
        for path in paths:
            if not path.endswith("/"):
                out.append(path)
                continue
            key = (commit, path)
            if key not in self._dirs:
                listing = self.repo.run(["ls-tree", "--full-name", "--end-of-options", commit,
                                         "--", path])
                self._dirs[key] = tuple(
                    line.split("\t", 1)[1] for line in listing.splitlines()
                    if "\t" in line and line.split()[1] == "blob")
            out.extend(self._dirs[key])
        return out

    def build(self, series: Series, base: Base, context: Iterable[str] = ()) -> TreeSnapshot:
        """The snapshot of `series` at `base.commit`; RepoError if git cannot answer.

        A series that does not apply gives a snapshot with `applied` False,
        the reason, and the files at the base only."""
        commit = base.commit
        if commit is None:
            return TreeSnapshot(base=base, applied=False, reason="no base commit")
        touched: list[str] = []
        for patch in series.patches:
            for fd in patch.files:
                for p in (fd.old_path, fd.new_path):
                    if p and p not in touched:
                        touched.append(p)
        files: dict[tuple[int, str], str] = {}
        for path in dict.fromkeys([*touched, *self._expand(commit, context)]):
            text = self._at(commit, path)
            if text is not None:
                files[(0, path)] = text
        work = self.repo.scratch_dir()
        try:
            reason = self._apply(series, commit, touched, work, files)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            self.repo.clear_scratch_objects()
        if reason:
            base_only = {k: v for k, v in files.items() if k[0] == 0}
            return TreeSnapshot(base=base, files=base_only, applied=False, reason=reason)
        return TreeSnapshot(base=base, files=files, applied=True)

    def _apply(self, series: Series, commit: str, touched: list[str], work: Path,
               files: dict[tuple[int, str], str]) -> str:
        """Apply every patch, adding the files each produced; a reason if one fails."""
        env = self.repo.scratch_env(work / "index")
        listing = self.repo.run(["ls-tree", "-r", "--full-name", "--end-of-options", commit,
                                 "--", *touched]) if touched else ""
        self.repo.run(["update-index", "--index-info"], stdin=listing.encode("utf-8",
                                                                            "surrogateescape"),
                      env=env)
        current = {ln.split("\t", 1)[1]: ln.split()[2] for ln in listing.splitlines()
                   if "\t" in ln}
        for patch in series.patches:
            diff = diff_text(patch.mail.body)
            if not diff:
                continue
            try:
                self.repo.run(["apply", "--cached", "--whitespace=nowarn", "-"], stdin=diff,
                              env=env)
            except RepoError as exc:
                return "patch %d/%d does not apply at %s: %s" % (
                    patch.index, patch.total, commit[:12], exc)
            paths = [p for fd in patch.files for p in (fd.old_path, fd.new_path) if p]
            if not paths:
                continue
            out = self.repo.run(["ls-files", "-s", "-z", "--", *paths], env=env)
            after: dict[str, str] = {}
            for entry in out.split("\0"):
                if "\t" in entry:
                    meta, path = entry.split("\t", 1)
                    after[path] = meta.split()[1]
            for path in dict.fromkeys(paths):
                oid = after.get(path)
                if oid is None:
                    if path in current:   # deleted (or renamed away) by this patch
                        files[(patch.index, path)] = ""
                        del current[path]
                    continue
                if current.get(path) == oid:
                    continue
                current[path] = oid
                text = self._text(oid)
                if text is None:
                    return "patch %d/%d: cannot read %s after applying it" % (
                        patch.index, patch.total, path)
                files[(patch.index, path)] = text
        return ""
