"""`bot check`: local inputs through the pipeline, reported, optionally stored.

The whole input is validated (first pass of `bot.sources.InputSet`) before
any thread is checked or stored, so a bad input stores nothing. With
`--store`, each thread is stored in its own transaction.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TextIO

from bot.config import Config
from bot.pipeline import Checker
from bot.report import Reporter
from bot.sources import InputSet

logger = logging.getLogger(__name__)


def run_check(cfg: Config, sources: list[str], *, fmt: str, fail_on: str, store: bool,
              kernel_tree: str | None, out: TextIO) -> int:
    if kernel_tree:
        cfg = dataclasses.replace(cfg, rules=dataclasses.replace(cfg.rules,
                                                                 kernel_tree=kernel_tree))
    inputs = InputSet(sources, cfg.input)
    database = None
    if store:
        from bot.store.db import Database
        database = Database(cfg)
    checker = Checker(cfg)
    reporter = Reporter(fmt, out)
    stored = None
    try:
        for raws in inputs.threads():
            result = checker.check_thread(raws)
            if database is not None:
                from bot.store.queries import StoreStats, save_thread
                with database.transaction() as session:
                    stats = save_thread(session, result)
                stored = stats if stored is None else _add(stored, stats)
            reporter.add(result)
    finally:
        if database is not None:
            database.close()
    reporter.finish()
    if stored is not None:
        logger.info("stored: %s", ", ".join("%d %s" % (n, k)
                                              for k, n in stored.as_dict().items()))
    return reporter.exit_code(fail_on)


def _add(a, b):  # type: ignore[no-untyped-def]
    a += b
    return a
