"""One poll cycle: new mail on lore, through the pipeline, into the database.

A cycle makes one search over a window of Received times, then fetches the
whole thread of each new patch (and of each new reply answering a stored
series), so b4 assembles series, later revisions and replies exactly as
`bot check` does; each thread goes through the Checker (`start_thread`,
`finish_thread`) and `save_thread`, the same path as `bot check --store`.

The window starts `lore.overlap` seconds before the stored cursor (on an
empty database, `lore.initial_lookback` days ago; every
`lore.longscan_every`-th cycle, `lore.longscan_lookback` days ago) and is
open-ended. With `lore.followups`, the same search also matches replies
carrying Reviewed-by, Acked-by or Tested-by, since those touch no file; a
reply is kept only when it answers a stored message or another new hit.

Threads are fetched by a background thread, still one request at a time,
so that waiting for the archive overlaps with checking and storing; with a
rules worker ([rules] workers), the poller reads up to `bot.pipeline.AHEAD`
threads ahead, so that their rules run in the worker while this process
fetches, assembles and stores.

A thread fetch answers more than the thread: public-inbox adds every
message whose subject equals the requested one's (a pull request
re-posting a series' patches, a series resent under the same subject).
Those belong to other threads, which would be stored in part; so only the
References thread of the requested message is kept (as `bot check` splits
its input), and a hit outside it is fetched in its own right.

Crash safety: each thread is stored whole in one transaction, together
with the bookkeeping that says it was (`poll_seen`: every message of the
thread), and the cursor (the time the search was sent) is written in the
transaction of the last thread of the cycle. A cycle cut short (lore
unavailable, the database gone, SIGKILL, stop) leaves every thread stored
whole or not at all and the cursor where it was (lore failing mid-cycle,
the threads already fetched are stored first; a stop comes right after
the thread being stored), so the next cycle
searches the same window again and fetches every hit not recorded as
seen: nothing is lost or stored twice, whatever else (`bot check
--store`, a merged thread) put some of its messages in the database.
Not synced to disk one by one (`durable=False`), a power loss may undo
the last of these transactions, the cursor's with them: a cycle cut short.
A message the pipeline cannot use is quarantined with the reason; a
thread the database refuses is stored again message by message and
series by series, so that only what is refused is left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from bot.config import Config, LoreConfig
from bot.data import MessageError, RawMessage, ThreadResult
from bot.errors import BadInput, BotError, NotFound
from bot.history import stored_lookup
from bot.lore.client import LoreClient, Stopped
from bot.lore.prefetch import Prefetcher
from bot.pipeline import AHEAD, Carrier, Checker, Started, Window
from bot.sources import StreamInput, read_stream
from bot.store.db import Database
from bot.store.models import utcnow
from bot.store.queries import (
    StoreStats,
    advance_cursor,
    mark_seen,
    message_ids,
    quarantine,
    read_cursor,
    save_thread,
    seen_ids,
)
from bot.threads import ThreadIndex, own_thread

logger = logging.getLogger(__name__)

# A reply giving one of these is what a maintainer waits for.
FOLLOWUP_TRAILERS = ("reviewed-by", "acked-by", "tested-by")
# Whether a hit carries a patch: a line of its raw bytes starting so (a full
# parse of every hit, or a regular expression, costs more than bytes.find).
_DIFF_LINES = (b"\ndiff --git ", b"\n--- a/", b"\n--- /dev/null", b"\nIndex: ")
_DIFF_FIRST = tuple(line[1:] for line in _DIFF_LINES)
_CURSOR_NAME_MAX = 2048
_RT_MIN = 100000


def search_query(lore: LoreConfig, start: dt.datetime) -> str:
    """The cycle's one search: the configured query (and, with followups,
    trailer-giving replies), restricted to the lists and the window."""
    query = "(%s)" % lore.query
    if lore.followups:
        trailers = " OR ".join('nq:"%s"' % t for t in FOLLOWUP_TRAILERS)
        query = "(%s OR (s:re AND (%s)))" % (query, trailers)
    if lore.lists:
        query += " AND (%s)" % " OR ".join("l:%s" % name for name in lore.lists)
    # public-inbox reads rt: as a Unix time only with five digits or more.
    return "%s AND rt:%d.." % (query, max(int(start.timestamp()), _RT_MIN))


def cursor_name(lore: LoreConfig, base_url: str) -> str:
    """What a cursor is the position of: the archive and what is searched."""
    name = "%s\n%s\n%s" % (base_url, lore.query, ",".join(lore.lists))
    if len(name) > _CURSOR_NAME_MAX:
        name = "%s\nsha256:%s" % (base_url, hashlib.sha256(name.encode()).hexdigest())
    return name


def _aware(when: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


_FAILED = "thread %s: the pipeline failed; quarantining its %d messages"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hit:
    """One message a lore search returned, with what threading needs."""

    message_id: str
    refs: tuple[str, ...]
    patch: bool


@dataclass(slots=True, kw_only=True)
class CycleReport:
    """What one polling cycle fetched and stored."""

    start: dt.datetime
    position: dt.datetime
    longscan: bool
    hits: int = 0
    new_hits: int = 0
    threads: int = 0
    skipped: int = 0
    requests: int = 0
    stats: StoreStats = field(default_factory=StoreStats)

    def summary(self) -> str:
        stored = ", ".join("%d %s" % (n, k) for k, n in self.stats.as_dict().items())
        return ("window from %s%s: %d hits, %d new; %d threads fetched, %d skipped; "
                "%d requests; stored %s" % (
                    self.start.strftime("%Y-%m-%d %H:%M:%SZ"),
                    " (long look-back)" if self.longscan else "", self.hits,
                    self.new_hits, self.threads, self.skipped, self.requests, stored))


@dataclass(slots=True)
class _Work:
    """One fetched thread, checked, waiting to be stored."""

    thread_id: str
    raws: list[RawMessage]
    result: ThreadResult | None = None
    failed: list[MessageError] = field(default_factory=list)
    started: Started | None = None      # assembled, rules running

    @property
    def seen(self) -> list[str]:
        return [raw.message_id for raw in self.raws if raw.message_id is not None]

    def quarantine(self, why: str, exc: BaseException) -> None:
        """Keep every message of the thread in quarantine instead."""
        reason = "thread %s: %s: %s: %s" % (self.thread_id, why, type(exc).__name__, exc)
        self.result = self.started = None
        self.failed = [MessageError(origin=raw.origin, message_id=raw.message_id,
                                    reason=reason, raw=raw.data) for raw in self.raws]


class Poller:
    """Runs poll cycles against one archive with one database."""

    def __init__(self, cfg: Config, database: Database, client: LoreClient,
                 checker: Checker | None = None, stop: threading.Event | None = None,
                 progress: Callable[[StoreStats], None] | None = None) -> None:
        self.cfg = cfg
        self.database = database
        self.client = client
        self.checker = checker if checker is not None else Checker(cfg)
        self.stop = stop
        # Called after the search and after each committed thread (with what
        # it stored): the daemon's watchdog and status row follow the cycle.
        self.progress = progress
        self.name = cursor_name(cfg.lore, client.base)
        self._earlier = stored_lookup(database)
        self._carry = Carrier()

    def cycle(self) -> CycleReport:
        lore = self.cfg.lore
        requests_before = self.client.requests_sent
        with self.database.transaction() as session:
            row = read_cursor(session, self.name)
            position = _aware(row.position) if row is not None else None
            cycles = row.cycles if row is not None else 0
        now = utcnow()
        if position is None:
            start = now - dt.timedelta(days=lore.initial_lookback)
        else:
            start = min(position, now) - dt.timedelta(seconds=lore.overlap)
        longscan = bool(position is not None and lore.longscan_every
                        and (cycles + 1) % lore.longscan_every == 0)
        if longscan:
            start = min(start, now - dt.timedelta(days=lore.longscan_lookback))
        report = CycleReport(start=start, position=now, longscan=longscan)
        query = search_query(lore, start)
        logger.debug("search: %s", query)
        found = self.client.search(query)
        hits = self._read_hits(found) if found is not None else []
        if self.progress is not None:
            self.progress(StoreStats())
        report.hits = len(hits)
        # Threads in hand (fetched and started, not yet stored): with a
        # rules worker up to AHEAD of them (and AHEAD_BYTES of mail), so
        # that the worker checks while this process fetches, assembles and
        # stores; without one, one (nothing to overlap). A thread is
        # finished only once the one before it is stored, so that a
        # revision finds it there. While the archive has sent nothing new,
        # all but the newest are stored meanwhile, so that few are in hand
        # when a cycle is cut short. Each thread stored is a step: a stop
        # request is honoured after the thread being stored (Stopped; the
        # next cycle fetches those in hand again), and an archive failing
        # mid-cycle has those in hand stored before the cycle fails. Either
        # way the cursor stays where it was.
        pending: Window[_Work] = Window(AHEAD if self.checker.pool is not None else 1)
        try:
            groups = [[h.message_id for h in group]
                      for group in self._wanted_groups(hits, report)]
            self.checker.expect(len(groups))
            with Prefetcher(self.fetch, groups, self.stop) as fetcher:
                try:
                    for fetched in fetcher.results(
                            meanwhile=lambda: self._store_oldest(pending, report, keep=1)):
                        if fetched is None:
                            report.skipped += 1
                            continue
                        report.threads += 1
                        pending.push(self._start(*fetched), fetched[1])
                        while pending.over():
                            self._store_oldest(pending, report)
                except Exception as exc:
                    if exc is not fetcher.error or isinstance(exc, Stopped):
                        raise
                    logger.info("the archive failed mid-cycle: storing the %d threads "
                                "fetched before it", len(pending))
                    while self._store_oldest(pending, report):
                        pass
                    raise
            while self._store_oldest(pending, report, keep=1):
                pass
            # The cursor goes with the last thread (alone when none was fetched).
            if not self._store_oldest(pending, report, cursor=now):
                self._commit(None, report, cursor=now)
        finally:
            while pending:  # a cycle cut short: their rules are not waited for
                self._drop(pending.pop())
        report.requests = self.client.requests_sent - requests_before
        return report

    def _read_hits(self, found: IO[bytes]) -> list[_Hit]:
        hits: list[_Hit] = []
        seen: set[str] = set()
        with found:
            source = StreamInput("%s search" % self.client.base, found)  # type: ignore[arg-type]
            try:
                for raw in read_stream(source, self.cfg.input):
                    # An oversized message keeps its first lines: enough for this.
                    mid, refs = raw.message_id, raw.refs
                    if mid is None or mid in seen:
                        continue
                    seen.add(mid)
                    # An oversized message still gets its thread fetched, so
                    # that it is quarantined with the reason.
                    patch = (raw.error is not None or raw.data.startswith(_DIFF_FIRST)
                             or any(line in raw.data for line in _DIFF_LINES))
                    hits.append(_Hit(message_id=mid, refs=tuple(refs), patch=patch))
            except BadInput as exc:
                raise BadInput("%s: unreadable search answer: %s"
                               % (self.client.base, exc)) from None
        return hits

    def _wanted_groups(self, hits: list[_Hit], report: CycleReport) -> list[list[_Hit]]:
        """New hits, grouped by thread, keeping the groups worth fetching."""
        with self.database.transaction() as session:
            seen = seen_ids(session, [h.message_id for h in hits])
            new = [h for h in hits if h.message_id not in seen]
            replies = [h for h in new if not h.patch]
            refs = [r for h in replies for r in h.refs]
            answered = set(message_ids(session, refs)) | seen_ids(session, refs)
        report.new_hits = len(new)
        index = ThreadIndex()
        for hit in new:
            index.add(hit.message_id, list(hit.refs))
        index.finish()
        groups: dict[int, list[_Hit]] = {}
        for pos, hit in enumerate(new):
            groups.setdefault(index.thread_of(pos), []).append(hit)
        wanted = []
        for group in groups.values():
            if (not self.cfg.lore.followups or any(h.patch for h in group)
                    or any(r in answered for h in group for r in h.refs)):
                wanted.append(group)
            else:
                logger.debug("skipping %s: a reply to nothing stored", group[0].message_id)
        return wanted

    def fetch(self, msgid: str) -> list[RawMessage] | None:
        """The messages of the whole thread holding `msgid`, or None when the
        archive no longer has it or it cannot be used (logged)."""
        try:
            found = self.client.thread(msgid)
        except NotFound:
            logger.warning("thread %s: no longer in the archive, skipped", msgid)
            return None
        except BadInput as exc:  # refused: larger than lore.max_response_bytes
            logger.warning("thread %s: %s; skipped", msgid, exc)
            return None
        name = "%s/%s/t.mbox.gz" % (self.client.base, msgid)
        with found:
            try:
                raws = list(read_stream(StreamInput(name, found), self.cfg.input))  # type: ignore[arg-type]
            except BadInput as exc:
                logger.warning("thread %s: unreadable: %s; skipped", msgid, exc)
                return None
        own = own_thread(msgid, raws)
        if own is None:
            logger.warning("thread %s: the archive's answer does not hold it; skipped", msgid)
        elif len(own) < len(raws):
            logger.debug("thread %s: %d messages of other threads with the same subject "
                         "left out", msgid, len(raws) - len(own))
        return own

    def _start(self, msgid: str, raws: list[RawMessage]) -> _Work:
        work = _Work(thread_id=msgid, raws=raws)
        try:
            work.started = self.checker.start_thread(raws)
        except BotError:
            raise
        except Exception as exc:  # one bad thread must not stop the cycle
            logger.exception(_FAILED, msgid, len(raws))
            work.quarantine("pipeline failed", exc)
        return work

    def _store_oldest(self, pending: Window[_Work], report: CycleReport, keep: int = 0,
                      cursor: dt.datetime | None = None) -> bool:
        """Finish and store the oldest thread in hand, unless only `keep`
        are; False when none was stored. A stop request raises Stopped
        before it (after the thread stored before)."""
        if len(pending) <= keep:
            return False
        if self.stop is not None and self.stop.is_set():
            raise Stopped()
        work = pending.pop()
        try:
            self._commit(self._finish(work), report, cursor)
        finally:
            self._drop(work)
        return True

    def _drop(self, work: _Work) -> None:
        """Let go of the rules of a thread not finished (a cycle cut short)."""
        if work.started is not None:
            self.checker.cancel_thread(work.started)
            work.started = None

    def _finish(self, work: _Work) -> _Work:
        if work.started is None:
            return work   # quarantined already
        try:
            work.result = self.checker.finish_thread(work.started, self._earlier)
            self._carry.remember(work.result)
        except BotError:
            raise  # the database went away (or cannot be used) reading the earlier revision
        except Exception as exc:  # one bad thread must not stop the cycle
            logger.exception(_FAILED, work.thread_id, len(work.raws))
            work.quarantine("pipeline failed", exc)
        work.started = None
        return work

    def _commit(self, work: _Work | None, report: CycleReport,
                cursor: dt.datetime | None = None) -> None:
        """Store one thread, and with `cursor` move the cursor, in one
        transaction; the database being unavailable fails the cycle."""
        if work is None:
            self._transaction(None, cursor)
            return
        stats = self._store_or_quarantine(work, cursor)
        report.stats += stats
        if self.progress is not None:
            self.progress(stats)
        # Logged once committed: the line is a promise the rows are there.
        logger.info("thread %s: stored %s", work.thread_id,
                    ", ".join("%d %s" % (n, k) for k, n in stats.as_dict().items() if n)
                    or "nothing new")

    def _store_or_quarantine(self, work: _Work, cursor: dt.datetime | None) -> StoreStats:
        """A thread the database refuses twice (once may be another poller
        storing the same thread at the same time) is stored piece by piece,
        leaving out only what is refused; if even that fails, the thread is
        quarantined."""
        error: Exception | None = None
        for attempt, isolate in ((1, False), (2, False), (3, True)):
            try:
                return self._transaction(work, cursor, isolate=isolate)
            except BotError:  # the database unavailable or unusable: the cycle fails
                raise
            except Exception as exc:  # noqa: BLE001 - retried, then quarantined
                error = exc
                logger.warning("thread %s: storing failed (attempt %d): %s: %s",
                               work.thread_id, attempt, type(exc).__name__, exc)
        assert error is not None
        logger.error("thread %s: storing failed; quarantining its %d messages",
                     work.thread_id, len(work.raws), exc_info=error)
        work.quarantine("storing failed", error)
        return self._transaction(work, cursor)

    def _transaction(self, work: _Work | None, cursor: dt.datetime | None,
                     isolate: bool = False) -> StoreStats:
        stats = StoreStats()
        # Not durable (see the module's docstring): redone by the next cycle.
        with self.database.transaction(durable=False) as session:
            if work is not None:
                if work.result is not None:
                    stats += save_thread(session, work.result, isolate=isolate, carry=self._carry)
                for err in work.failed:
                    stats.quarantined += quarantine(session, err)
                mark_seen(session, work.thread_id, work.seen)
            if cursor is not None:
                advance_cursor(session, self.name, cursor)
        return stats
