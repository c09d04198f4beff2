"""Mails and checks spread over worker processes.

Each worker builds its own scratch repository of the 6.12 files once, so
workers never share a git repository (git worktrees of one repository
added and pruned concurrently would race). Results are put back in case
order, so the output does not depend on the number of workers.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mutate.cases import Case
from mutate.mail import BaseRepo, render
from mutate.measure import Outcome, run, tree_config
from mutate.source import Kernel

from bot.pipeline import Checker

_WORKER: dict[str, Any] = {}
_CHUNK = 16


def _init(kernel_root: str, workdir: str, seed: int) -> None:
    kernel = Kernel(Path(kernel_root))
    base = Path(tempfile.mkdtemp(prefix="worker-", dir=workdir))
    _WORKER.update(repo=BaseRepo(kernel, base / "linux"), work=base, seed=seed)


def _mails(chunk: list[tuple[int, Case]]) -> list[tuple[str, str]]:
    repo: BaseRepo = _WORKER["repo"]
    return [(case.id, render(case, repo.diff(case.files), index, _WORKER["seed"]))
            for index, case in chunk]


def _check(job: tuple[list[Case], dict[str, str], bool]) -> list[Outcome]:
    cases, mails, with_tree = job
    key = "checker-tree" if with_tree else "checker"
    if key not in _WORKER:
        repo: BaseRepo = _WORKER["repo"]
        _WORKER[key] = Checker(tree_config(repo.path if with_tree else None, _WORKER["work"]))
    return run(cases, mails, _WORKER[key], _WORKER["seed"])


class Workers:
    """`jobs` processes (or this one, for 1) with a repository each."""

    def __init__(self, kernel_root: Path, workdir: Path, seed: int, jobs: int) -> None:
        self.jobs = jobs
        args = (str(kernel_root), str(workdir), seed)
        if jobs > 1:
            self.pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
                max_workers=jobs, initializer=_init, initargs=args)
        else:
            self.pool = None
            _init(*args)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def _map(self, func: Any, items: list[Any]) -> list[Any]:
        if self.pool is None:
            return [func(item) for item in items]
        return list(self.pool.map(func, items))

    def mails(self, cases: list[Case]) -> dict[str, str]:
        indexed = list(enumerate(cases))
        chunks = [indexed[i:i + _CHUNK] for i in range(0, len(indexed), _CHUNK)]
        return dict(pair for chunk in self._map(_mails, chunks) for pair in chunk)

    def check(self, cases: list[Case], mails: dict[str, str], with_tree: bool) -> list[Outcome]:
        chunks = [cases[i:i + _CHUNK] for i in range(0, len(cases), _CHUNK)]
        jobs = [(chunk, {c.id: mails[c.id] for c in chunk}, with_tree) for chunk in chunks]
        return [o for part in self._map(_check, jobs) for o in part]
