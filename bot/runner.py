"""A poller process: the poll lock, the status row, and cycles recorded in it.

`bot poll` (one cycle, for a cron job or a systemd timer) and `bot daemon`
(cycles in a loop, `bot.daemon`) both poll through `PollerProcess`, so both
hold the poll lock while they poll (`bot.store.lock`) and both keep the
`daemon_status` row that `bot status` and the dashboard read
(`bot.store.status`). The lock is taken around the cycle, by this module;
`bot.poller` knows nothing of it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from bot.config import Config
from bot.errors import BotError, DatabaseUnavailable
from bot.lore.client import LoreClient, Stopped
from bot.pipeline import Checker
from bot.poller import CycleReport, Poller
from bot.store import status as st
from bot.store.db import Database
from bot.store.lock import PollLock, poll_lock
from bot.store.models import PollResult, utcnow
from bot.store.queries import StoreStats

logger = logging.getLogger(__name__)

# Progress (rows stored so far) is written to the status row at most this often.
_PROGRESS_EVERY = 10.0


@dataclass(slots=True, kw_only=True)
class Outcome:
    """How one cycle ended."""

    result: PollResult
    started: float
    report: CycleReport | None = None
    error: BaseException | None = None
    stats: StoreStats = field(default_factory=StoreStats)

    def describe_error(self) -> str | None:
        if self.error is None:
            return None
        if isinstance(self.error, BotError):
            return " ".join(str(self.error).split())
        line = traceback.format_exception_only(type(self.error), self.error)[-1]
        return "internal error: " + " ".join(line.split())


class PollerProcess:
    """The database, the lock and the poller of one process running `command`."""

    def __init__(self, cfg: Config, command: str, stop: threading.Event | None = None,
                 alive: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.command = command
        self.database = Database(cfg)
        self.lock: PollLock = poll_lock(cfg, self.database.engine, command)
        self.checker = Checker(cfg)
        self._stop = stop
        self._alive = alive
        self._client: LoreClient | None = None
        self._claimed = False
        self._unsaved = StoreStats()
        self._saved_at = 0.0

    def reconfigure(self, cfg: Config, checker: Checker) -> None:
        """Use `cfg` from the next cycle on (the database stays the same)."""
        self.cfg = cfg
        self.checker.close()
        self.checker = checker
        if self._client is not None:
            self._client.close()
            self._client = None

    def client(self) -> LoreClient:
        if self._client is None:
            self._client = LoreClient(self.cfg.lore, stop=self._stop)
        return self._client

    def _write(self, what: str, action: Callable[..., None], *args: object,
               **kwargs: object) -> bool:
        """A status write; the database being away only costs the write."""
        try:
            with self.database.transaction() as session:
                action(session, *args, **kwargs)
        except DatabaseUnavailable as exc:
            logger.debug("status: %s not recorded: %s", what, exc)
            return False
        return True

    def claim(self) -> None:
        """This process holds the lock: the status row is ours."""
        me = self.lock.holder()
        assert me is not None and me.since is not None
        self._claimed = self._write("start", st.record_started, command=me.command,
                                    pid=me.pid, host=me.host, started_at=me.since)

    def _progress(self, stats: StoreStats) -> None:
        if self._alive is not None:
            self._alive()
        self._unsaved += stats
        now = time.monotonic()
        if now - self._saved_at >= _PROGRESS_EVERY and (self._unsaved.messages
                                                        or self._unsaved.series):
            if self._write("progress", st.record_progress, self._unsaved.messages,
                           self._unsaved.series):
                self._unsaved = StoreStats()
            self._saved_at = now

    def cycle(self) -> Outcome:
        """One poll cycle, recorded in the status row; never raises for a
        failed cycle (the outcome carries the error), except KeyboardInterrupt."""
        outcome = Outcome(result=PollResult.RUNNING, started=time.monotonic())
        if not self._claimed:
            self.claim()
        self._write("poll start", st.record_poll_started, utcnow())
        self._saved_at = time.monotonic()
        total = StoreStats()

        def progress(stats: StoreStats) -> None:
            nonlocal total
            total += stats
            self._progress(stats)

        try:
            poller = Poller(self.cfg, self.database, self.client(), checker=self.checker,
                            stop=self._stop, progress=progress)
            outcome.report = poller.cycle()
            outcome.result = PollResult.OK
        except Stopped as exc:
            outcome.result, outcome.error = PollResult.STOPPED, exc
        except Exception as exc:  # noqa: BLE001 - recorded, and handed to the caller
            outcome.result, outcome.error = PollResult.FAILED, exc
        outcome.stats = total
        return outcome

    def record_end(self, outcome: Outcome, next_poll_at: dt.datetime | None = None) -> None:
        self._write("poll end", st.record_progress, self._unsaved.messages,
                    self._unsaved.series)
        self._unsaved = StoreStats()
        self._write("poll end", st.record_poll_ended, when=utcnow(), result=outcome.result,
                    error=outcome.describe_error(), messages=outcome.stats.messages,
                    series=outcome.stats.series, next_poll_at=next_poll_at)

    def close(self) -> None:
        try:
            if self._claimed and self.lock.verify():
                self._write("stop", st.record_stopped, utcnow())
        finally:
            self.lock.release()
            if self._client is not None:
                self._client.close()
            self.checker.close()
            self.database.close()


def run_poll(cfg: Config, out: TextIO) -> int:
    """`bot poll`: one cycle under the poll lock, a one-line summary on `out`.

    Another `bot poll` holding the lock is waited for (`daemon.lock_wait`);
    a daemon holding it is named at once (exit 3)."""
    proc = PollerProcess(cfg, "bot poll")
    try:
        proc.lock.acquire(cfg.daemon.lock_wait)
        proc.claim()
        outcome = proc.cycle()
        proc.record_end(outcome)
    finally:
        proc.close()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.report is not None
    print("poll: %s" % outcome.report.summary(), file=out)
    return 0
