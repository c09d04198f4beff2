"""`bot check`: local inputs through the pipeline, reported, optionally stored.

A SOURCE that is not a local path may be a Message-ID (fetched from
`lore.url`) or a lore message URL (fetched from the archive it names): the
whole thread is fetched first, through the poller's client, and checked like
a local mbox.

The whole input is validated (first pass of `bot.sources.InputSet`) before
any thread is checked or stored, so a bad input stores nothing. With
`--store`, each thread is stored in its own transaction.

Re-review: with `--compare-to SOURCE` (any SOURCE as above), the series
there are checked first and each series of the input is compared with its
earlier revision among them; with `--store`, with the revision stored
before it (bot.history). A later revision in the same thread is compared
with the earlier one in any case.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import IO, TYPE_CHECKING, TextIO

from bot.config import Config
from bot.data import ThreadResult
from bot.errors import BotError
from bot.history import CompareTo, combined, stored_lookup
from bot.lore.client import LoreClient, split_message_url
from bot.pipeline import Checker, Lookup
from bot.report import Reporter
from bot.sources import InputSet, StreamInput

if TYPE_CHECKING:  # SQLAlchemy is imported only when storing
    from bot.store.db import Database
    from bot.store.queries import StoreStats

logger = logging.getLogger(__name__)


def run_check(cfg: Config, sources: list[str], *, fmt: str, fail_on: str, store: bool,
              kernel_tree: str | None, out: TextIO,
              compare_to: list[str] | None = None) -> int:
    if kernel_tree:
        cfg = dataclasses.replace(cfg, rules=dataclasses.replace(cfg.rules,
                                                                 kernel_tree=kernel_tree))
    with contextlib.ExitStack() as fetched:
        inputs = InputSet(_fetch_remote(cfg, sources, fetched), cfg.input)
        earlier = None
        if compare_to:
            earlier_inputs = InputSet(_fetch_remote(cfg, compare_to, fetched), cfg.input)
            checker = Checker(cfg)
            earlier = CompareTo(checker.check_thread(raws) for raws in earlier_inputs.threads())
            logger.info("compare-to: %d series", len(earlier))
        return _run(cfg, inputs, fmt=fmt, fail_on=fail_on, store=store, out=out,
                    compare_to=earlier)


def _remote(cfg: Config, spec: str) -> tuple[str, str] | None:
    """(archive, Message-ID) when `spec` names mail on lore, else None."""
    if spec == "-" or os.path.exists(spec):
        return None
    if spec.startswith(("http://", "https://")):
        return split_message_url(spec)
    mid = spec.strip()
    if (mid.startswith("<") and mid.endswith(">")) or (
            "@" in mid and "/" not in mid and not any(c.isspace() for c in mid)):
        return cfg.lore.url, mid.strip("<>")
    return None


def _fetch_remote(cfg: Config, sources: list[str],
                  fetched: contextlib.ExitStack) -> list[str | StreamInput]:
    specs: list[str | StreamInput] = []
    clients: dict[str, LoreClient] = {}
    for spec in sources:
        remote = _remote(cfg, spec)
        if remote is None:
            specs.append(spec)
            continue
        base, msgid = remote
        if base not in clients:
            clients[base] = fetched.enter_context(LoreClient(cfg.lore, base_url=base))
        mbox: IO[bytes] = fetched.enter_context(clients[base].thread(msgid))
        specs.append(StreamInput("%s/%s/t.mbox.gz" % (base, msgid), mbox))  # type: ignore[arg-type]
    return specs


def _store(database: Database, result: ThreadResult) -> StoreStats:
    """Store one thread in its own transaction; a thread the database
    refuses is stored again item by item, so that only what it refuses is
    left out (quarantined, or logged)."""
    from bot.store.queries import save_thread
    try:
        with database.transaction() as session:
            return save_thread(session, result)
    except BotError:
        raise
    except Exception as exc:  # noqa: BLE001 - one refused row must not stop the input
        logger.warning("thread %s: storing failed: %s: %s; storing it item by item",
                       result.thread.messages[0].message_id if result.thread.messages
                       else "?", type(exc).__name__, exc)
    with database.transaction() as session:
        return save_thread(session, result, isolate=True)


def _run(cfg: Config, inputs: InputSet, *, fmt: str, fail_on: str, store: bool,
         out: TextIO, compare_to: CompareTo | None = None) -> int:
    database = None
    lookups: list[Lookup] = [compare_to.earlier] if compare_to is not None else []
    if store:  # SQLAlchemy is imported only when storing
        from bot.store.db import Database
        from bot.store.queries import StoreStats
        database = Database(cfg)
        stored = StoreStats()
        lookups.append(stored_lookup(database))
    checker = Checker(cfg)
    reporter = Reporter(fmt, out)
    lookup = combined(*lookups) if lookups else None
    try:
        for raws in inputs.threads():
            result = checker.check_thread(raws, lookup)
            if database is not None:
                stored += _store(database, result)
            reporter.add(result)
    finally:
        if database is not None:
            database.close()
    reporter.finish()
    if database is not None:
        logger.info("stored: %s", ", ".join("%d %s" % (n, k)
                                              for k, n in stored.as_dict().items()))
    return reporter.exit_code(fail_on)
