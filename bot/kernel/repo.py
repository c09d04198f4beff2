"""The kernel repository as the pipeline uses it: open once, then per series
find the base and build the snapshot.

Opening checks everything a run relies on (a git repository whose
`kernel.base_range` resolves to commits whose trees can be read) and
raises BadInput naming `kernel.repo` otherwise, so `bot check` stops with
one line before reading any mail. Later failures (a git command failing
mid-run) are RepoError: the caller falls back to the hunks for that series.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable

from bot.data import Base, Series, TreeSnapshot
from bot.errors import BadInput
from bot.kernel.base import BaseFinder, BaseSearch
from bot.kernel.git import GitRepo, RepoError
from bot.kernel.snapshot import SnapshotBuilder

logger = logging.getLogger(__name__)


def parse_range(text: str) -> tuple[str, ...]:
    """`kernel.base_range` as git revision arguments ("v6.6..HEAD next")."""
    try:
        parts = tuple(shlex.split(text))
    except ValueError as exc:
        raise BadInput("kernel.base_range %r: %s" % (text, exc)) from None
    if not parts:
        raise BadInput("kernel.base_range is empty: name the commits to search, e.g. HEAD")
    for part in parts:
        if part.startswith("-"):
            raise BadInput("kernel.base_range %r: %s is not a revision" % (text, part))
    return parts


class KernelRepo:
    """One repository for a whole run: `find_base`, `snapshot`, `close`."""

    def __init__(self, path: str | os.PathLike[str], base_range: str = "HEAD") -> None:
        revisions = parse_range(base_range)
        self.git = GitRepo(path)
        try:
            self.finder = BaseFinder(self.git, revisions)
        except RepoError as exc:
            self.git.close()
            raise BadInput("kernel.repo %s: %s" % (path, exc)) from None
        self.builder = SnapshotBuilder(self.git)
        self.path = str(path)

    def __enter__(self) -> KernelRepo:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def find_base(self, series: Series) -> BaseSearch:
        return self.finder.find(series)

    def snapshot(self, series: Series, base: Base, context: Iterable[str] = ()) -> TreeSnapshot:
        return self.builder.build(series, base, context)

    @property
    def alive(self) -> bool:
        """The cat-file process still answers."""
        return self.git.alive

    def close(self) -> None:
        self.git.close()
