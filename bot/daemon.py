"""`bot daemon`: poll cycles every `daemon.interval` seconds until stopped.

SIGTERM or SIGINT asks for a stop: the daemon stops at the next safe point
(between two requests or two threads, or while it waits), leaving the
database as a cut-short cycle does (see `bot.poller`), and exits 0. A
second signal stops it at once. A cycle that fails (lore or the database
unavailable, a bug) is logged and the next one runs at the usual time; the
daemon itself exits only when asked to, or when it cannot start (bad
configuration, schema not at head).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from bot.config import Config
from bot.errors import BotError, Transient
from bot.lore.client import LoreClient, Stopped
from bot.pipeline import Checker
from bot.poller import Poller
from bot.store.db import Database

logger = logging.getLogger(__name__)


class _StopOnSignal:
    """Turns the first SIGTERM/SIGINT into a stop request, the second into
    KeyboardInterrupt; restores the previous handlers on exit."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt()
        logger.info("%s received: stopping after the current step",
                    signal.Signals(signum).name)
        self.stop.set()

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def run_daemon(cfg: Config, stop: threading.Event | None = None) -> int:
    stop = stop if stop is not None else threading.Event()
    database = Database(cfg)
    checker = Checker(cfg)
    logger.info("daemon: polling %s every %d s", cfg.lore.url, cfg.daemon.interval)
    try:
        with _StopOnSignal(stop), LoreClient(cfg.lore, stop=stop) as client:
            poller = Poller(cfg, database, client, checker=checker, stop=stop)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    report = poller.cycle()
                    logger.info("poll: %s", report.summary())
                except Stopped:
                    break
                except Transient as exc:
                    logger.warning("poll cycle failed, next one in %d s: %s",
                                   cfg.daemon.interval, exc)
                except BotError as exc:
                    logger.error("poll cycle failed, next one in %d s: %s",
                                 cfg.daemon.interval, exc)
                except Exception:  # a bug: keep polling, the trace is in the log
                    logger.exception("poll cycle failed (internal error), next one in %d s",
                                     cfg.daemon.interval)
                stop.wait(max(cfg.daemon.interval - (time.monotonic() - started), 0))
    finally:
        checker.close()
        database.close()
    logger.info("daemon: stopped")
    return 0
