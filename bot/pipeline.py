"""One thread through the pipeline: assemble -> base -> rules -> re-review -> drafts.

`bot check` and the poller both call `Checker.check_thread`; storing the
result is the caller's choice (`bot.store.queries.save_thread`), so the same
path serves `check` without a database and `check --store`.

Re-review: each series is compared with its earlier revision when one is
known (`bot.revisions.choose`): an earlier revision in the same thread, or
one the caller's `lookup` finds (given with --compare-to, or stored). Its
findings are then marked new or still present, the earlier revision's
trailers are carried over to the unchanged patches, and the drafts leave out
what a maintainer dismissed before.

Before the rules, each series gets its base: with `kernel.repo`, the commit
it was written against (`bot.kernel`) and a snapshot of the files the rules
read whole; otherwise, or when the repository has no such commit, the
newest kernel version its hunks are consistent with (`bot.regmodel.versions`)
and no files. A repository that cannot be opened stops `bot check` (strict)
and is logged and left out by the poller and the daemon, which then check
on the hunks; a git failure on one series leaves that series on its hunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from bot.config import Config
from bot.data import (
    NO_BODY,
    Base,
    BaseSource,
    Draft,
    EarlierRevision,
    EarlierSource,
    Mail,
    RawMessage,
    RuleResult,
    Series,
    SeriesResult,
    Thread,
    ThreadResult,
    Trailer,
    TreeSnapshot,
)
from bot.errors import BadInput
from bot.lore.assemble import assemble, carry_trailers
from bot.regmodel import RegisterModel, load_model
from bot.regmodel.versions import infer_version
from bot.revisions import as_earlier, choose, compare, drafted
from bot.rulepool import Job, RulesPool
from bot.rules import Context, run
from bot.rules.relevance import read_closely

if TYPE_CHECKING:  # the kernel repository's git plumbing is imported when one is configured
    from bot.kernel import KernelRepo

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Earlier revisions of a series known outside its thread (given with
# --compare-to, stored in the database).
Lookup = Callable[[Series], Iterable[EarlierRevision | None]]

NO_REPO = "no kernel repository configured (kernel.repo)"

# Threads `bot check` and the poller start (assemble, hand to the rules
# worker) before finishing the oldest, when there is a worker: enough that
# the main process has work while the worker checks a run of heavy series
# (4 left it waiting: bench/check.py over 7812 messages 36.1 -> 29.8 s, 16
# took 27.8 s, 64 23.9 s), and no more than AHEAD_BYTES of mail, so that
# memory stays flat whatever the threads' sizes. Without a worker, `bot
# check` starts none ahead and the poller one. A poll cycle cut short
# stores, or lets go of, the threads in hand (`bot.poller`,
# `Checker.cancel_thread`).
AHEAD = 64
AHEAD_BYTES = 8 << 20


class Window(Generic[T]):
    """Threads started and not yet finished, oldest first, with the bytes
    of mail they hold: `over()` says when the oldest is to be finished."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0

    def push(self, item: T, raws: Iterable[RawMessage]) -> None:
        size = sum(len(r.data) for r in raws)
        self._items.append((item, size))
        self._bytes += size

    def over(self) -> bool:
        return len(self._items) > self.limit or (
            len(self._items) > 1 and self._bytes > AHEAD_BYTES)

    def pop(self) -> T:
        item, size = self._items.popleft()
        self._bytes -= size
        return item

    def __len__(self) -> int:
        return len(self._items)


# Series the rules read closely that a run checks in the main process
# before it hands any to a rules worker: starting one (a Python process
# loading the register model) costs about as much as checking a few.
# Unless the run knows it has many threads ahead (MANY_THREADS: a poll
# cycle catching up, `bot check` of a list's mailbox): then the worker is
# started at once, and loads while the first threads are read and assembled.
HERE_FIRST = 4
MANY_THREADS = 16


def _use_workers(cfg: Config) -> bool:
    """A rules worker is configured and the process may run on another
    core: with one, a worker would only take turns with the main process."""
    if cfg.rules.workers <= 0:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        logger.debug("one core: the rules run in the main process (rules.workers ignored)")
        return False
    return True


def load_regmodel(cfg: Config) -> RegisterModel:
    """The register model, loaded once per Checker."""
    return load_model(cfg.regmodel.kernel_tree or None)


def open_repo(cfg: Config, *, strict: bool) -> KernelRepo | None:
    """The configured kernel repository; None when unset, or (not strict)
    when it cannot be opened, with the reason logged."""
    if not cfg.kernel.repo:
        return None
    from bot.kernel import KernelRepo  # git plumbing only when a repository is configured
    try:
        return KernelRepo(cfg.kernel.repo, cfg.kernel.base_range)
    except BadInput as exc:
        if strict:
            raise
        logger.error("%s; checking on the hunks alone", exc)
        return None


class Checker:
    """Holds what every check needs once (config, register model, kernel
    repository). With `drafts=False` no reply is rendered (and jinja2 is
    never imported): for outputs that show no drafts, such as b4's checks.
    With `strict_repo`, a kernel repository that cannot be opened raises
    BadInput instead of being left out."""

    def __init__(self, cfg: Config, context: Context | None = None, *,
                 drafts: bool = True, strict_repo: bool = False) -> None:
        self.cfg = cfg
        self.context = context if context is not None else Context(regmodel=load_regmodel(cfg))
        self.drafts = drafts
        self.repo = open_repo(cfg, strict=strict_repo)
        self.pool = RulesPool(cfg, self._rules) if _use_workers(cfg) else None
        self._closely = 0   # series read closely so far

    def close(self) -> None:
        if self.repo is not None:
            self.repo.close()
            self.repo = None
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def expect(self, threads: int) -> None:
        """Told how many threads a run is about to check: with many, the
        rules worker (if configured) is started now and is handed every
        series read closely from the first (see HERE_FIRST)."""
        if self.pool is not None and threads >= MANY_THREADS:
            self.pool.start()
            self._closely = max(self._closely, HERE_FIRST)

    def tree(self, series: Series) -> TreeSnapshot:
        """The series' base and, when it has a commit and applies, its files."""
        model = self.context.regmodel
        why = NO_REPO
        if self.repo is not None:
            from bot.kernel import RepoError
            try:
                search = self.repo.find_base(series)
                if search.base is not None:
                    base = search.base
                    files = model.snapshot_files(base.version) if model is not None else ()
                    snap = self.repo.snapshot(series, base, files)
                    if not snap.applied:
                        logger.info("%s: base %s found, but %s; rules use the hunks",
                                    series.message_id, (base.commit or "")[:12], snap.reason)
                    return snap
                why = "no base in %s: %s" % (self.repo.path, search.why_not)
            except RepoError as exc:
                why = "kernel repository %s failed: %s" % (self.repo.path, exc)
                logger.warning("%s: %s; rules use the hunks", series.message_id, why)
                if not self.repo.alive:
                    self.repo.close()
                    self.repo = open_repo(self.cfg, strict=False)
        base = (infer_version(series, model) if model is not None
                else Base(source=BaseSource.NONE, detail="no register model"))
        return TreeSnapshot(base=base, applied=False, reason=why)

    def _rules(self, series: Series, tree: TreeSnapshot) -> RuleResult:
        return run(series, dataclasses.replace(self.context, tree=tree), self.cfg.rules)

    def check_series(self, series: Series, earlier: EarlierRevision | None = None) -> SeriesResult:
        tree = self.tree(series)
        return self._finish_series(series, tree, self._rules(series, tree), earlier)

    def _finish_series(self, series: Series, tree: TreeSnapshot, result: RuleResult,
                       earlier: EarlierRevision | None) -> SeriesResult:
        comparison = None
        if earlier is not None:
            if earlier.messages:
                series = carry_trailers(series, earlier.messages)
            result, comparison = compare(result, earlier, series.revision)
        drafts: tuple[Draft, ...] = ()
        if self.drafts:
            from bot.drafts import render
            drafts = render(series, drafted(result.findings, comparison,
                                            self.cfg.drafts.repeat_still_present),
                            self.cfg.drafts)
        logger.debug("checked %s v%d against %s: %d patches, %d findings, %d drafts%s",
                     series.message_id, series.revision, tree.base.summary,
                     len(series.patches), len(result.findings), len(drafts),
                     "" if comparison is None else "; against v%d (%s), %d resolved" % (
                         comparison.earlier.revision, comparison.earlier.source,
                         len(comparison.resolved)))
        return SeriesResult(series=series, rules=result, drafts=drafts, comparison=comparison,
                            base=tree.base, whole_files=tree.applied, hunks_reason=tree.reason)

    def check_thread(self, raws: list[RawMessage], lookup: Lookup | None = None) -> ThreadResult:
        return self.finish_thread(self.start_thread(raws), lookup)

    def start_thread(self, raws: list[RawMessage]) -> Started:
        """Assemble the thread and start its series' rules: in the worker
        process when there is one, so that the caller can store or print
        the thread before this one meanwhile (`finish_thread` then waits)."""
        thread = assemble(raws)
        jobs = []
        for series in thread.series:
            tree = self.tree(series)
            # Only a series the rules read closely is worth handing over:
            # the rest take less time here than copying them there would.
            # The first few are checked here, so a short run (a b4 check,
            # a poll finding a few threads) never starts a worker process.
            if self.pool is not None and read_closely(series, self.context):
                self._closely += 1
                if self._closely > HERE_FIRST:
                    jobs.append(self.pool.submit(_for_rules(series), tree))
                    continue
            jobs.append(Job(series, tree, None))
        return Started(thread=thread, jobs=tuple(jobs))

    def finish_thread(self, started: Started, lookup: Lookup | None = None) -> ThreadResult:
        """The rules' findings of a started thread, compared with earlier
        revisions (`lookup` is asked now, so it sees what was stored since
        the thread was started) and drafted."""
        results: list[SeriesResult] = []
        for series, job in zip(started.thread.series, started.jobs, strict=True):
            # b4 hands revisions over in order
            rules = (self.pool.result(job) if self.pool is not None
                     else self._rules(series, job.tree))
            in_thread = max((r for r in results if r.series.revision < series.revision),
                            key=lambda r: r.series.revision, default=None)
            candidates = list(lookup(series)) if lookup is not None else []
            if in_thread is not None:
                candidates.append(as_earlier(in_thread, EarlierSource.THREAD))
            results.append(self._finish_series(series, job.tree, rules,
                                               choose(series.revision, candidates)))
        return ThreadResult(thread=started.thread, results=tuple(results))

    def cancel_thread(self, started: Started) -> None:
        """Let go of a started thread that will not be finished: what of its
        rules the worker has not started is not run, nor kept."""
        if self.pool is not None:
            for job in started.jobs:
                self.pool.cancel(job)


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """A thread assembled, its series' rules started (`Checker.start_thread`)."""

    thread: Thread
    jobs: tuple[Job, ...]


def carried(message_id: str, later: tuple[RawMessage, ...],
            earlier: tuple[RawMessage, ...]) -> dict[int, tuple[Trailer, ...]]:
    """The trailers b4 carries from an earlier revision's trailer mail
    (`earlier`) to the series `message_id` made of the messages `later`
    (its cover and patches), by patch index: what checking it with that
    earlier revision at hand would have stored. For the store, when the
    earlier revision is stored after the later one (a `Carry`)."""
    series = next((s for s in assemble(list(later)).series if s.message_id == message_id),
                  None)
    if series is None:
        logger.debug("%s: not assembled again from its stored mail; no trailers carried",
                     message_id)
        return {}
    return _carried(series, earlier)


def _carried(series: Series, earlier: tuple[RawMessage, ...]) -> dict[int, tuple[Trailer, ...]]:
    out = {p.index: tuple(t for t in p.trailers if t.revision is not None)
           for p in carry_trailers(series, earlier).patches}
    return {index: trailers for index, trailers in out.items() if trailers}


def _for_rules(series: Series) -> Series:
    """`series` as the rules read it: its mail without the raw bytes and the
    headers they do not read (half of what a worker would be handed)."""
    return dataclasses.replace(
        series, cover=_bare(series.cover) if series.cover is not None else None,
        patches=tuple(dataclasses.replace(p, mail=_bare(p.mail)) for p in series.patches))


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


def _bare(mail: Mail) -> Mail:
    # What carrying reads of a message: the headers b4 is given (Message-ID,
    # In-Reply-To, References, Date, Subject, From) and the decoded body.
    return dataclasses.replace(mail, raw=b"", headers=(), to_addrs=(), cc_addrs=())


class Carrier:
    """`carried`, remembering the series checked lately so as not to
    assemble them again from their stored mail.

    The poller stores newest mail first, so a later revision is often
    stored a few threads before the earlier one whose trailers it gets
    (`bot.store.trailers`); by then this process has assembled it already.
    A remembered series is used only when its cover and patches are the
    stored ones, byte for byte; the trailers it got in its thread are left
    out, as assembling the stored cover and patches alone gives none.
    Bounded: the `limit` series checked last, each without its raw bytes
    and the headers carrying does not read."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._known: OrderedDict[str, tuple[tuple[bytes, ...], Series]] = OrderedDict()

    def remember(self, result: ThreadResult) -> None:
        for res in result.results:
            series = res.series
            digests = tuple(_digest(m.raw) for m in series.messages)
            cover = _bare(series.cover) if series.cover is not None else None
            patches = tuple(dataclasses.replace(p, mail=_bare(p.mail), body=NO_BODY, trailers=())
                            for p in series.patches)
            self._known[series.message_id] = (
                digests, dataclasses.replace(series, cover=cover, patches=patches))
            self._known.move_to_end(series.message_id)
        while len(self._known) > self._limit:
            self._known.popitem(last=False)

    def __call__(self, message_id: str, later: tuple[RawMessage, ...],
                 earlier: tuple[RawMessage, ...]) -> dict[int, tuple[Trailer, ...]]:
        known = self._known.get(message_id)
        if known is None or known[0] != tuple(_digest(r.data) for r in later):
            return carried(message_id, later, earlier)
        return _carried(known[1], earlier)
