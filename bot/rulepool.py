"""The rules in a worker process beside the main one ([rules] workers).

Checking a thread is assembling it, finding its base, running the rules
(pure, and the largest part), then comparing with an earlier revision and
rendering drafts. With a worker, the rules of one thread run there while
the main process assembles the next thread and stores the one before
(`bot.pipeline.Checker.start_thread` / `finish_thread`), so a machine with
two cores does both at once. The worker loads the register model itself
(from the same cache) and receives each series with its tree snapshot; the
findings come back pickled, equal to what the main process would compute.

The main process never waits idle while series are queued for the worker:
it takes back the newest one the worker has not started and checks it
itself (`RulesPool.result`), so both processes stay busy whichever is
behind. A worker that dies (killed, out of memory) is replaced, and the
series it held is checked again in the main process: a broken worker never loses or
quarantines a thread; a main process killed outright leaves no worker
behind (it stops itself within a second). Exceptions the rules raise come
back as themselves, and the caller handles them as if the rules had run in
its own process.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from bot.config import Config
from bot.data import NO_BODY, RuleResult, Series, TreeSnapshot
from bot.parse.diff import split_body
from bot.regmodel import load_model
from bot.rules import Context, run

logger = logging.getLogger(__name__)

# The worker process's own context and settings, set once by its
# initializer: the state of that process, never read in the main one.
_WORKER: dict[str, Any] = {}


def _start_worker(cfg: Config, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # ^C is the main process's to handle
    # Standard output is the main process's (bot check's report).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    # A main process killed outright (SIGKILL, OOM) cannot stop its worker,
    # which would wait for work forever holding its standard error open:
    # it stops itself once its parent is gone.
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()
    _WORKER["context"] = Context(regmodel=load_model(cfg.regmodel.kernel_tree or None))
    _WORKER["cfg"] = cfg


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL)
    os._exit(0)


_PARENT_POLL = 0.5   # seconds


def _rules(series: Series, tree: TreeSnapshot) -> RuleResult:
    context = dataclasses.replace(_WORKER["context"], tree=tree)
    return run(_with_diffs(series), context, _WORKER["cfg"].rules)


# A patch's parsed diff is most of what a series pickles to (and unpickling
# it cost the worker more than parsing the text again): it is handed over
# as the text it came from, the mail's body (bot.lore.assemble splits each
# patch's body out of its mail's body), and parsed again in the worker.
def _without_diffs(series: Series) -> Series:
    return dataclasses.replace(series, patches=tuple(
        dataclasses.replace(p, body=NO_BODY) for p in series.patches))


def _with_diffs(series: Series) -> Series:
    return dataclasses.replace(series, patches=tuple(
        dataclasses.replace(p, body=split_body(p.mail.body)) for p in series.patches))


def _outcome(rules: Callable[[Series, TreeSnapshot], RuleResult],
             job: Job) -> Callable[[], RuleResult]:
    """The rules of `job` run now, as a call that returns their result or
    raises what they raised."""
    try:
        result = rules(job.series, job.tree)
    except Exception as exc:  # noqa: BLE001 - raised again at result(job)
        def fail(exc: Exception = exc) -> RuleResult:
            raise exc
        return fail
    return lambda: result


@dataclass(frozen=True, slots=True)
class Job:
    """The rules of one series, running or queued in the worker (or, with no
    worker, to be run when asked)."""

    series: Series
    tree: TreeSnapshot
    future: cf.Future[RuleResult] | None
    pool: cf.ProcessPoolExecutor | None = None


class RulesPool:
    """One worker process for the rules, started when first used."""

    def __init__(self, cfg: Config, here: Callable[[Series, TreeSnapshot], RuleResult]) -> None:
        self.cfg = cfg
        self._here = here            # the rules in this process: the fallback
        self._pool: cf.ProcessPoolExecutor | None = None
        # Jobs handed to the worker and not yet asked for, oldest first; and
        # the results of those this process took back and checked itself,
        # by future (held, so that no other job's can be taken for it).
        self._queued: list[Job] = []
        self._taken: dict[cf.Future[RuleResult], Callable[[], RuleResult]] = {}
        self.handed = 0              # series handed to the worker
        self.taken_back = 0          # series this process took back from the queue

    @property
    def started(self) -> bool:
        """A worker process is running, or starting (started by the first
        series handed over; replaced when lost)."""
        return self._pool is not None

    def start(self) -> cf.ProcessPoolExecutor:
        """The worker process, started now if it is not running: it loads
        the register model while this process goes on."""
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.cfg.rules.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self.cfg, os.getpid()))
            self._pool.submit(int)   # a process is spawned with the first call
        return self._pool

    def submit(self, series: Series, tree: TreeSnapshot) -> Job:
        pool = self.start()
        try:
            job = Job(series, tree, pool.submit(_rules, _without_diffs(series), tree), pool)
            self._queued.append(job)
            self.handed += 1
            return job
        except BrokenProcessPool:
            self._replace(pool, "it had stopped before %s was handed over" % series.message_id)
            return Job(series, tree, None)

    def result(self, job: Job) -> RuleResult:
        if job.future is None:   # checked here (not read closely, or one of the first few)
            return self._here(job.series, job.tree)
        self._queued = [j for j in self._queued if j is not job]
        taken = self._taken.pop(job.future, None)
        if taken is not None:
            return taken()
        # Rather than wait for the worker, this process checks the newest
        # series still queued there (the one it will need last), as often
        # as it would otherwise wait: both keep busy whichever is behind.
        # What those rules raise is raised when that series is asked for,
        # so it lands on its own thread, not on the one waited for.
        while not job.future.done():
            other = self._take_back()
            if other is None:
                break
            assert other.future is not None
            self._taken[other.future] = _outcome(self._here, other)
        try:
            return job.future.result()
        except BrokenProcessPool:
            self._replace(job.pool, "it stopped while checking %s" % job.series.message_id)
            return self._here(job.series, job.tree)

    def cancel(self, job: Job) -> None:
        """Let go of a job whose result will not be asked for (the poll
        cycle that started it was cut short): the worker does not run it if
        it has not started it, and nothing of it is kept."""
        if job.future is None:
            return
        self._queued = [j for j in self._queued if j is not job]
        self._taken.pop(job.future, None)
        job.future.cancel()

    def _take_back(self) -> Job | None:
        """The newest job the worker has not started, withdrawn from it."""
        for k in range(len(self._queued) - 1, -1, -1):
            job = self._queued[k]
            assert job.future is not None
            if job.future.cancel():
                del self._queued[k]
                self.taken_back += 1
                return job
            if job.future.running() or job.future.done():
                return None   # it has started everything older too
        return None

    def _replace(self, pool: cf.ProcessPoolExecutor | None, why: str) -> None:
        """Let go of a broken pool (once: the series it held each fail)."""
        logger.warning("rules worker process lost (%s); checking that series here", why)
        if pool is not None and pool is self._pool:
            self._pool = None
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
