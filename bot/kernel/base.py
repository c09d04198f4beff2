"""Which commit of the kernel repository a series was written against.

In this order, as a maintainer would look:

1. the series' own `base-commit:` trailer (b4 and `git format-patch
   --base` write it), when the repository has that commit;
2. the pre-image blob ids of its `index abc..def` lines: the commit, among
   the configured range (`kernel.base_range`), at which every file the
   series changes has exactly the blob the series was made from. As
   `b4 am --guess-base` does, the candidates are the commits that gave a
   file one of those blobs; unlike it, a candidate must match every blob.

A blob the repository has never seen rules the repository out at once, so
a patch written against another tree costs one cat-file question per file.
The history of each file over the range is read once per run and kept.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.data import Base, BaseSource, Series
from bot.kernel.git import GitRepo, RepoError, is_hex

logger = logging.getLogger(__name__)

_TRAILER = re.compile(r"^base-commit:[ \t]*([0-9a-fA-F]{7,64})[ \t]*$", re.M)
_VERSION_LINE = re.compile(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d+)\s*$", re.M)
# Candidates verified per series at most: a file changed this often in the
# range is not what decides a base.
_MAX_CANDIDATES = 400
# Seconds the resolved tips of kernel.base_range are trusted.
_TIPS_TTL = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseSearch:
    """What base inference found: a Base, or None and why not."""

    base: Base | None
    why_not: str = ""


def trailer_commit(series: Series) -> str | None:
    """The `base-commit:` a series names (cover letter first), if any."""
    texts = [series.cover.body] if series.cover is not None else []
    texts += [p.mail.body for p in series.patches]
    for text in texts:
        found = _TRAILER.findall(text)
        if found:
            return str(found[-1]).lower()
    return None


def pre_images(series: Series) -> dict[str, str]:
    """path -> abbreviated blob id the series' first change to that path was made from.

    A path an earlier patch of the series created or renamed into has no
    pre-image at the base, nor has a new file."""
    out: dict[str, str] = {}
    made: set[str] = set()
    for patch in series.patches:
        for fd in patch.files:
            if fd.old_path is None:
                if fd.new_path:
                    made.add(fd.new_path)
                continue
            path = fd.old_path
            if path in made or path in out:
                continue
            blob = (fd.old_blob or "").lower()
            if blob and is_hex(blob) and blob.strip("0"):
                out[path] = blob
            if fd.new_path and fd.new_path != path:
                made.add(fd.new_path)
    return out


class BaseFinder:
    """Base inference against one repository, with the per-run history cache."""

    def __init__(self, repo: GitRepo, base_range: Sequence[str]) -> None:
        self.repo = repo
        self.range = tuple(base_range)
        self.tips = self._tips()
        self._tips_at = time.monotonic()
        self._history: dict[str, list[tuple[str, int, str]]] = {}
        self._versions: dict[str, str | None] = {}

    def _refresh(self) -> None:
        """A daemon's repository moves (the maintainer fetches): look at the
        range again now and then, and forget histories of older tips."""
        if time.monotonic() - self._tips_at < _TIPS_TTL:
            return
        tips = self._tips()
        self._tips_at = time.monotonic()
        if tips != self.tips:
            self.tips = tips
            self._history.clear()

    def _tips(self) -> tuple[str, ...]:
        """The positive revisions of the range, as commit ids (checked at open)."""
        # parse_range refused anything starting with "-": these are revisions.
        out = self.repo.run(["rev-parse", "--revs-only", *self.range])
        tips = [ln for ln in out.split() if ln and not ln.startswith("^")]
        if not tips:
            raise RepoError("kernel.base_range %s names no commit" % " ".join(self.range))
        for tip in tips:
            info = self.repo.info(tip + "^{commit}")
            if info is None:
                raise RepoError("%s (from kernel.base_range) is not a commit the "
                                "repository can read" % tip)
            if self.repo.info(info.oid + "^{tree}") is None:
                raise RepoError("the tree of %s cannot be read" % info.oid)
        return tuple(tips)

    def version(self, commit: str) -> str | None:
        """The kernel version a commit's top-level Makefile says (v6.12), if any."""
        if commit not in self._versions:
            got = self.repo.contents(commit + ":Makefile")
            found: dict[str, int] = {}
            if got is not None and got[0].type == "blob":
                head = got[1][:4096].decode("utf-8", "replace")
                for key, value in _VERSION_LINE.findall(head):
                    found.setdefault(key, int(value))
            self._versions[commit] = ("v%d.%d" % (found["VERSION"], found["PATCHLEVEL"])
                                      if "VERSION" in found and "PATCHLEVEL" in found
                                      else None)
        return self._versions[commit]

    def find(self, series: Series) -> BaseSearch:
        self._refresh()
        why: list[str] = []
        named = trailer_commit(series)
        if named is not None:
            info = self.repo.info(named + "^{commit}")
            if info is not None:
                return BaseSearch(base=Base(
                    source=BaseSource.TRAILER, commit=info.oid, version=self.version(info.oid),
                    detail="base-commit: %s is in the repository" % named[:12]))
            why.append("its base-commit: %s is not in the repository" % named[:12])
        wanted = pre_images(series)
        if not wanted:
            why.append("it has no index lines to match")
            return BaseSearch(base=None, why_not="; ".join(why))
        absent = [p for p, blob in wanted.items() if self.repo.info(blob) is None]
        if absent:
            why.append("%d of its %d pre-image blobs are not in the repository (%s)"
                       % (len(absent), len(wanted), absent[0]))
            return BaseSearch(base=None, why_not="; ".join(why))
        commit = self._match(wanted)
        if commit is None:
            why.append("no commit of %s has all %d of its pre-image blobs"
                       % (" ".join(self.range), len(wanted)))
            return BaseSearch(base=None, why_not="; ".join(why))
        detail = "the pre-image blobs of %d file(s) match at %s" % (len(wanted), commit[:12])
        return BaseSearch(base=Base(
            source=BaseSource.BLOBS, commit=commit, version=self.version(commit),
            detail=detail + ("; %s" % "; ".join(why) if why else "")))

    def _matches(self, commit: str, wanted: dict[str, str]) -> bool:
        for path, blob in wanted.items():
            info = self.repo.info("%s:%s" % (commit, path))
            if info is None or not info.oid.startswith(blob):
                return False
        return True

    def _match(self, wanted: dict[str, str]) -> str | None:
        for tip in self.tips:
            if self._matches(tip, wanted):
                return tip
        # Every commit that gave one of the files its wanted blob, newest first.
        # At the newest commit where all files hold their blobs, one of them
        # got its blob, so these candidates are enough on a linear history.
        candidates: dict[str, int] = {}
        for path, blob in wanted.items():
            for commit, when, new in self._file_history(path):
                if new.startswith(blob):
                    candidates[commit] = when
        ordered = sorted(candidates, key=lambda c: -candidates[c])[:_MAX_CANDIDATES]
        for commit in ordered:
            if self._matches(commit, wanted):
                return commit
        return None

    def _file_history(self, path: str) -> list[tuple[str, int, str]]:
        """(commit, commit time, new blob) for each commit of the range changing `path`."""
        if path not in self._history:
            out = self.repo.run(["log", "--format=%x01%H %ct", "--raw", "--no-abbrev",
                                 "--no-renames", "--end-of-options", *self.range, "--", path])
            entries: list[tuple[str, int, str]] = []
            commit, when = "", 0
            for line in out.split("\n"):
                if line.startswith("\x01"):
                    parts = line[1:].split()
                    commit, when = parts[0], int(parts[1]) if len(parts) > 1 else 0
                elif line.startswith(":") and commit:
                    meta, _, name = line.partition("\t")
                    fields = meta.split()
                    if len(fields) >= 4 and name == path:
                        entries.append((commit, when, fields[3]))
            self._history[path] = entries
        return self._history[path]
