"""`bot check`: local inputs through the pipeline, reported, optionally stored.

A SOURCE that is not a local path may be a Message-ID (fetched from
`lore.url`) or a lore message URL (fetched from the archive it names): the
whole thread is fetched first, through the poller's client, and checked like
a local mbox; only its References thread, as the poller keeps it, not the
threads public-inbox adds for sharing its subject.

The whole input is validated (first pass of `bot.sources.InputSet`) before
any thread is checked or stored, so a bad input stores nothing. With
`--store`, each thread is stored in its own transaction.

Re-review: with `--compare-to SOURCE` (any SOURCE as above), the series
there are checked first and each series of the input is compared with its
earlier revision among them; with `--store`, with the revision stored
before it (bot.history). A later revision in the same thread is compared
with the earlier one in any case.

The b4 formats (`b4`, `b4-series`, `checkpatch`) are what b4 runs for every
patch a maintainer looks at, so their path imports only what it uses: no
HTTP client, no database, no template engine (`bench/b4check.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, TextIO

from bot.config import Config
from bot.data import ThreadResult
from bot.errors import BotError
from bot.pipeline import AHEAD, Checker, Lookup, Started, Window, carried
from bot.report import B4_FORMATS, Reporter
from bot.sources import InputSet, StreamInput

if TYPE_CHECKING:  # SQLAlchemy, requests and the history are imported only when used
    from bot.history import CompareTo
    from bot.lore.client import LoreClient
    from bot.store.db import Database
    from bot.store.queries import StoreStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOptions:
    """How `bot check` runs and reports, as the command line sets it."""

    fmt: str = "text"
    fail_on: str = "error"
    store: bool = False
    kernel_repo: str | None = None
    verbose: int = 0
    quiet: bool = False
    baseline: str | None = None
    write_baseline: str | None = None
    compare_to: tuple[str, ...] = ()


def run_check(cfg: Config, sources: list[str], *, out: TextIO, err: TextIO | None = None,
              fmt: str = "text", fail_on: str = "error", store: bool = False,
              kernel_repo: str | None = None, verbose: int = 0, quiet: bool = False,
              baseline: str | None = None, write_baseline: str | None = None,
              compare_to: list[str] | None = None) -> int:
    """Check `sources` as `bot check` does (the options are its own);
    `err` gets the progress display when it is a terminal."""
    opts = CheckOptions(fmt=fmt, fail_on=fail_on, store=store, kernel_repo=kernel_repo,
                        verbose=verbose, quiet=quiet, baseline=baseline,
                        write_baseline=write_baseline, compare_to=tuple(compare_to or ()))
    if opts.kernel_repo:
        cfg = dataclasses.replace(cfg, kernel=dataclasses.replace(cfg.kernel,
                                                                  repo=opts.kernel_repo))
    known = None
    if opts.baseline:
        from bot import baseline as baseline_file
        known = baseline_file.read(opts.baseline)
    target = context = None
    specs: list[str | StreamInput]
    with contextlib.ExitStack() as fetched:
        if opts.fmt in B4_FORMATS or opts.fmt == "checkpatch":
            from bot.b4check import prepare
            prepared = prepare(sources, cfg)
            specs, target, context = prepared.specs, prepared.target, prepared.context
        else:
            specs = list(sources)
        progress = None
        if err is not None and not opts.quiet and opts.fmt in ("text", "json"):
            from bot.output.terminal import Progress
            progress = Progress(err)
        inputs = InputSet(_fetch_remote(cfg, specs, fetched), cfg.input,
                          reading=progress.reading if progress is not None else None)
        if progress is not None:
            progress.start(inputs.message_count)
        earlier = None
        if opts.compare_to:
            from bot.history import CompareTo
            earlier_inputs = InputSet(_fetch_remote(cfg, list(opts.compare_to), fetched),
                                      cfg.input)
            with Checker(cfg, strict_repo=True) as earlier_checker:
                earlier = CompareTo(earlier_checker.check_thread(raws)
                                    for raws in earlier_inputs.threads())
            logger.info("compare-to: %d series", len(earlier))
        reporter = Reporter(opts.fmt, out, verbose=opts.verbose, quiet=opts.quiet,
                            baseline=known, public_url=cfg.web.public_url, target=target,
                            context=context, progress=progress)
        drafts = opts.store or opts.fmt == "json" or (opts.fmt == "text" and opts.verbose > 0)
        _run(cfg, inputs, reporter, store=opts.store, drafts=drafts, compare_to=earlier)
    if opts.write_baseline:
        from bot import baseline as baseline_file
        logger.info("baseline %s", baseline_file.write(opts.write_baseline,
                                                       reporter.open_findings))
        return 0
    return reporter.exit_code(opts.fail_on)


def _remote(cfg: Config, spec: str) -> tuple[str, str] | None:
    """(archive, Message-ID) when `spec` names mail on lore, else None."""
    if spec == "-" or os.path.exists(spec):
        return None
    if spec.startswith(("http://", "https://")):
        from bot.lore.client import split_message_url
        return split_message_url(spec)
    mid = spec.strip()
    if (mid.startswith("<") and mid.endswith(">")) or (
            "@" in mid and "/" not in mid and not any(c.isspace() for c in mid)):
        return cfg.lore.url, mid.strip("<>")
    return None


def _fetch_remote(cfg: Config, sources: list[str | StreamInput],
                  fetched: contextlib.ExitStack) -> list[str | StreamInput]:
    specs: list[str | StreamInput] = []
    clients: dict[str, LoreClient] = {}
    for spec in sources:
        remote = None if isinstance(spec, StreamInput) else _remote(cfg, spec)
        if remote is None:
            specs.append(spec)
            continue
        from bot.lore.client import LoreClient  # requests only when fetching
        base, msgid = remote
        if base not in clients:
            clients[base] = fetched.enter_context(LoreClient(cfg.lore, base_url=base))
        mbox: IO[bytes] = fetched.enter_context(clients[base].thread(msgid))
        specs.append(StreamInput("%s/%s/t.mbox.gz" % (base, msgid), mbox,  # type: ignore[arg-type]
                                 thread_of=msgid))
    return specs


def _store(database: Database, result: ThreadResult) -> StoreStats:
    """Store one thread in its own transaction; a thread the database
    refuses is stored again item by item, so that only what it refuses is
    left out (quarantined, or logged)."""
    from bot.store.queries import save_thread
    try:
        with database.transaction() as session:
            return save_thread(session, result, carry=carried)
    except BotError:
        raise
    except Exception as exc:  # noqa: BLE001 - one refused row must not stop the input
        logger.warning("thread %s: storing failed: %s: %s; storing it item by item",
                       result.thread.messages[0].message_id if result.thread.messages
                       else "?", type(exc).__name__, exc)
    with database.transaction() as session:
        return save_thread(session, result, isolate=True, carry=carried)


def _run(cfg: Config, inputs: InputSet, reporter: Reporter, *, store: bool,
         drafts: bool, compare_to: CompareTo | None = None) -> None:
    # A repository that cannot be opened stops the check before any thread is
    # checked or stored.
    checker = Checker(cfg, drafts=drafts, strict_repo=True)
    database = None
    lookups: list[Lookup] = [compare_to.earlier] if compare_to is not None else []
    try:
        if store:  # SQLAlchemy is imported only when storing
            from bot.store.db import Database
            from bot.store.queries import StoreStats
            database = Database(cfg)
            stored = StoreStats()
            from bot.history import stored_lookup
            lookups.append(stored_lookup(database))
    except BaseException:
        checker.close()
        raise
    lookup = None
    if lookups:
        from bot.history import combined
        lookup = combined(*lookups)
    def finish(started: Started) -> None:
        nonlocal stored
        result = checker.finish_thread(started, lookup)
        if database is not None:
            stored += _store(database, result)
        reporter.add(result)

    try:
        # With a rules worker, threads ahead: the next ones are read,
        # assembled and their rules started there before this one is
        # finished, stored and reported; whatever stops the reading, the
        # threads in hand are reported first, in order.
        pending: Window[Started] = Window(AHEAD if checker.pool is not None else 0)
        checker.expect(inputs.thread_count)
        try:
            for raws in inputs.threads():
                pending.push(checker.start_thread(raws), raws)
                while pending.over():
                    finish(pending.pop())
        finally:
            while pending:
                finish(pending.pop())
    finally:
        checker.close()
        if database is not None:
            database.close()
    reporter.finish()
    if database is not None:
        logger.info("stored: %s", ", ".join("%d %s" % (n, k)
                                              for k, n in stored.as_dict().items()))
