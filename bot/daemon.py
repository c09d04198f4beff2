"""`bot daemon`: poll cycles every `daemon.interval` seconds until stopped.

One poller per database: the daemon holds the poll lock (`bot.store.lock`)
for its whole life. On SQLite a second daemon exits at once (exit 3),
naming the holder. On PostgreSQL it stands by, trying the lock every few
seconds, and takes over when the active one dies, however it dies; its
first cycle then keeps to the interval since the last poll the dead one
started (at once when that poll never finished).

Signals. SIGTERM or SIGINT asks for a stop: the daemon stops at the next
safe point (between two requests or two threads, or while it waits); one
that is still busy after `_GRACE` seconds (a slow request) is interrupted
where it is, once no database transaction is open (a thread being stored
is stored whole; see `bot.poller`). It exits 0. A second signal stops it at
once. SIGHUP re-reads the configuration between two cycles and logs what
changed; a configuration that cannot be loaded, or that changes the
database, is refused and logged, and the old one stays.

Failures. A cycle that fails (the archive unreachable, rate-limiting or
answering with errors; the database gone; a bug) is recorded and the next
one waits longer: `daemon.interval` doubled per failure in a row, up to
`daemon.max_backoff`, with jitter, or longer when the archive asked for
it (a Retry-After too long to wait inside a cycle). The cursor stays where it was, so the
first good cycle catches up. One line is logged per change of state
(failing, failing differently, recovered), not one per failed cycle. A
database connection that died (PostgreSQL restarted) is replaced on the
next use, and the lock taken again.

systemd: with NOTIFY_SOCKET set, READY=1 once running (or standing by),
WATCHDOG=1 while the main loop makes progress, STATUS= lines, STOPPING=1
(`bot.sdnotify`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from bot.config import Config, Secret
from bot.errors import BotError, ConfigError, DatabaseUnavailable, Transient
from bot.lore.client import Stopped
from bot.pipeline import Checker
from bot.runner import Outcome, PollerProcess
from bot.sdnotify import Notifier
from bot.store import status as st
from bot.store.lock import FileLock, LockHeld
from bot.store.models import PollResult, utcnow

logger = logging.getLogger(__name__)

# Seconds a stop request waits for the current step before interrupting it.
_GRACE = 5.0
# A standby tries the lock this often (at most; `daemon.interval` when shorter).
_STANDBY_EVERY = 5.0
# An archive's Retry-After is honoured up to this many seconds.
_MAX_RETRY_AFTER = 86400.0
# Keys that cannot change under a running daemon.
_FIXED = ("state_dir", "database.")


class _Signals:
    """SIGTERM/SIGINT: a stop request (a second one: KeyboardInterrupt);
    SIGHUP: a reload request. Both wake the main loop. After a stop request
    SIGALRM interrupts whatever is still running `_GRACE` seconds later."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.reload = False
        # True while interrupting would cut a transaction short: then the
        # interruption waits for it to end.
        self.busy: Callable[[], bool] = lambda: False
        self._previous: dict[int, object] = {}

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt()
        logger.info("%s received: stopping after the current step",
                    signal.Signals(signum).name)
        self.stop.set()
        self.wake.set()
        signal.setitimer(signal.ITIMER_REAL, _GRACE)

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.stop.is_set():
            return
        if self.busy():
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return
        logger.info("still busy %d s after the stop request: interrupting", _GRACE)
        raise Stopped()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload = True
        self.wake.set()

    def __enter__(self) -> _Signals:
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_hup), (signal.SIGALRM, self._on_alarm)):
            self._previous[sig] = signal.signal(sig, handler)
        return self

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *_exc: object) -> None:
        self.disarm()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


class Trouble(enum.StrEnum):
    """What a failing cycle failed on; a change of it is worth a log line."""

    NONE = "none"
    ARCHIVE = "the archive"
    DATABASE = "the database"
    ERROR = "an error"
    BUG = "an internal error"


def trouble_of(exc: BaseException | None) -> Trouble:
    if exc is None:
        return Trouble.NONE
    if isinstance(exc, DatabaseUnavailable):
        return Trouble.DATABASE
    if isinstance(exc, Transient):
        return Trouble.ARCHIVE
    if isinstance(exc, BotError):
        return Trouble.ERROR
    return Trouble.BUG


class Backoff:
    """Waits between cycles: `interval` while they succeed; after failures
    in a row, `interval` doubled per failure up to `cap`, with jitter (so
    that daemons failing together do not come back together)."""

    def __init__(self, interval: float, cap: float, rng: random.Random | None = None) -> None:
        self.interval, self.cap = interval, max(cap, interval)
        self.failures = 0
        self._rng = rng if rng is not None else random.Random()

    def next_delay(self, failed: bool) -> float:
        if not failed:
            self.failures = 0
            return self.interval
        self.failures += 1
        base = min(self.interval * 2.0 ** min(self.failures - 1, 32), self.cap)
        return float(min(base * self._rng.uniform(0.75, 1.25), self.cap))


def config_changes(old: Config, new: Config, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, "old -> new") for every setting that differs."""
    out: list[tuple[str, str]] = []
    for f in dataclasses.fields(old):
        if not f.compare:  # where the values came from, not settings
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(a) and not isinstance(a, type):
            out.extend(config_changes(a, b, key + "."))  # type: ignore[arg-type]
        elif a != b:
            secret = isinstance(a, Secret) or isinstance(b, Secret)
            out.append((key, "changed (a secret)" if secret else "%r -> %r" % (a, b)))
    return out


class Daemon:
    """The loop: the lock (or standing by for it), cycles, waits, reloads."""

    def __init__(self, cfg: Config, reload: Callable[[], Config] | None,
                 signals: _Signals, notifier: Notifier) -> None:
        self.cfg = cfg
        self._reload = reload
        self.signals = signals
        self.notifier = notifier
        self.proc = PollerProcess(cfg, "bot daemon", stop=signals.stop, alive=notifier.alive)
        self.backoff = Backoff(cfg.daemon.interval, cfg.daemon.max_backoff)
        self.trouble = Trouble.NONE
        self.trouble_since: dt.datetime | None = None
        self._failed_in_a_row = 0

    @property
    def stopping(self) -> bool:
        return self.signals.stop.is_set()

    def wait(self, seconds: float) -> None:
        """Wait, pinging the watchdog, until `seconds` pass or a signal comes;
        a reload request is applied on the way."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            self.notifier.alive()
            if self.signals.reload:
                self.apply_reload()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.signals.wake.wait(self.notifier.ping_every(left))
            self.signals.wake.clear()

    def apply_reload(self) -> None:
        self.signals.reload = False
        if self._reload is None:
            logger.warning("SIGHUP: no configuration to re-read")
            return
        try:
            new = self._reload()
            changes = config_changes(self.cfg, new)
            fixed = [k for k, _ in changes if k.startswith(_FIXED)]
            if fixed:
                raise ConfigError("%s cannot change while the daemon runs (restart it)"
                                  % ", ".join(fixed))
            checker = Checker(new) if changes else None
        except BotError as exc:
            logger.error("SIGHUP: new configuration refused, the old one stays: %s",
                         " ".join(str(exc).split()))
            return
        if not changes:
            logger.info("SIGHUP: configuration re-read from %s: nothing changed", new.source)
            return
        logger.info("SIGHUP: configuration re-read from %s: %s", new.source,
                    "; ".join("%s: %s" % change for change in changes))
        if new.log_level != self.cfg.log_level:
            root = logging.getLogger()
            if root.level == getattr(logging, self.cfg.log_level.upper()):
                root.setLevel(getattr(logging, new.log_level.upper()))
        self.cfg = new
        assert checker is not None
        self.proc.reconfigure(new, checker)
        self.backoff.interval = new.daemon.interval
        self.backoff.cap = max(new.daemon.max_backoff, new.daemon.interval)

    def take_lock(self) -> bool:
        """Hold the poll lock, standing by for it on PostgreSQL; False when
        stopped first. SQLite: LockHeld when a daemon holds it."""
        lock = self.proc.lock
        if isinstance(lock, FileLock):
            try:
                lock.acquire(self.cfg.daemon.lock_wait, stop=self.signals.stop,
                             waiting=self.notifier.alive)
            except LockHeld:
                if self.stopping:
                    return False
                raise
            return True
        announced = ""
        while not self.stopping:
            try:
                if lock.try_acquire():
                    if announced:
                        logger.info("taking over: the poll lock of %s is ours", lock.what)
                    return True
                holder = lock.holder()
                line = "standing by: %s holds the poll lock of %s" % (
                    holder or "another poller", lock.what)
                problem = None
            except DatabaseUnavailable as exc:
                line = "standing by: %s" % exc
                problem = exc
            if line != announced:
                (logger.warning if problem else logger.info)("%s", line)
                self.notifier.status(line)
                announced = line
            self.wait(min(self.cfg.daemon.interval, _STANDBY_EVERY))
        return False

    def first_delay(self) -> float:
        """Keep to the interval since the last poll started, also across a
        restart or takeover; at once when that poll never finished."""
        try:
            with self.proc.database.transaction() as session:
                row = st.daemon_status(session)
        except DatabaseUnavailable:
            return 0.0
        if row is None or row.last_poll_started_at is None or (
                row.last_result is PollResult.RUNNING):
            return 0.0
        due = row.last_poll_started_at + dt.timedelta(seconds=self.cfg.daemon.interval)
        delay = (due - utcnow()).total_seconds()
        if delay > 0:
            logger.info("next poll at %s, %d s after the last one",
                        due.strftime("%H:%M:%SZ"), self.cfg.daemon.interval)
        return max(delay, 0.0)

    def note(self, outcome: Outcome, delay: float) -> None:
        """One log line per change of state; the rest at debug level."""
        trouble = trouble_of(outcome.error if outcome.result is PollResult.FAILED else None)
        if outcome.report is not None:
            logger.info("poll: %s", outcome.report.summary())
        previous, self.trouble = self.trouble, trouble
        if trouble is Trouble.NONE:
            if previous is not Trouble.NONE:
                since = self.trouble_since
                logger.info("poll recovered after %d failed cycles%s", self._failed_in_a_row,
                            " (failing since %s)" % since.strftime("%Y-%m-%d %H:%M:%SZ")
                            if since else "")
            self.trouble_since = None
            self._failed_in_a_row = 0
            return
        self._failed_in_a_row += 1
        error = outcome.describe_error()
        if trouble is previous:
            logger.debug("poll failed again (%d in a row), next one in %.0f s: %s",
                         self._failed_in_a_row, delay, error)
            return
        if previous is Trouble.NONE:
            self.trouble_since = utcnow()
        log = logger.error if trouble in (Trouble.ERROR, Trouble.BUG) else logger.warning
        log("poll failing on %s: %s; backing off: next poll in %.0f s, waits doubling up "
            "to %d s while it fails (logged again when this changes)", trouble, error,
            delay, self.backoff.cap, exc_info=outcome.error if trouble is Trouble.BUG
            else None)

    def run(self) -> None:
        # Ready once started: waiting for the lock, or standing by, is part
        # of running (and may last longer than systemd waits for a start).
        self.notifier.ready("taking the poll lock of %s" % self.proc.lock.what)
        if not self.take_lock():
            return
        self.proc.claim()
        logger.info("daemon: polling %s every %d s", self.cfg.lore.url, self.cfg.daemon.interval)
        self.notifier.status("polling %s every %d s; poll lock held as %s"
                             % (self.cfg.lore.url, self.cfg.daemon.interval,
                                self.proc.lock.holder()))
        self.wait(self.first_delay())
        while not self.stopping:
            if not self.proc.lock.verify():
                logger.warning("the poll lock of %s was lost (the database restarted?); "
                               "taking it again", self.proc.lock.what)
                if not self.take_lock():
                    return
                self.proc.claim()
            self.notifier.status("polling %s" % self.cfg.lore.url)
            outcome = self.proc.cycle()
            if outcome.result is PollResult.STOPPED:
                self.proc.record_end(outcome)
                return
            delay = self.backoff.next_delay(outcome.result is PollResult.FAILED)
            if isinstance(outcome.error, Transient) and outcome.error.retry_after:
                # The archive said when to come back.
                delay = max(delay, min(outcome.error.retry_after, _MAX_RETRY_AFTER))
            self.proc.record_end(outcome, utcnow() + dt.timedelta(seconds=delay))
            self.note(outcome, delay)
            self.notifier.status("%s; next poll in %.0f s" % (
                "last poll ok" if outcome.result is PollResult.OK else
                "failing on %s (%d in a row)" % (self.trouble, self._failed_in_a_row), delay))
            self.wait(max(delay - (time.monotonic() - outcome.started), 0.0))


def run_daemon(cfg: Config, reload: Callable[[], Config] | None = None) -> int:
    """`bot daemon`; `reload` loads the configuration again (on SIGHUP)."""
    notifier = Notifier()
    with _Signals() as signals:
        daemon = Daemon(cfg, reload, signals, notifier)
        signals.busy = lambda: daemon.proc.database.busy > 0
        try:
            daemon.run()
        except Stopped:
            pass
        finally:
            signals.disarm()
            notifier.stopping("stopping")
            daemon.proc.close()
            notifier.close()
    logger.info("daemon: stopped")
    return 0
