"""A bounded soak: 200 poll cycles through the daemon's own path
(`bot.runner.PollerProcess`: lock, status row, cycle) against a real
public-inbox, with real mail delivered every few cycles. The process's
resident memory stays within a small bound and no file descriptor leaks."""

from __future__ import annotations

import os
from pathlib import Path

from bot.runner import PollerProcess
from bot.sources import thread_headers
from bot.store import db
from bot.store.models import PollResult
from tests.conftest import DATA, make_config
from tests.pi import messages, public_inbox  # noqa: F401  (the module's server)
from tests.test_poll import snapshot

CYCLES = 200
WARM_UP = 20
DELIVER_EVERY = 20
# Python keeps freed memory for reuse, so a little growth is allocator
# noise; a leak of one response, thread or session per cycle is far more.
RSS_BOUND = 16 * 1024 * 1024


def rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_200_cycles_hold_memory_and_file_descriptors(public_inbox, tmp_path: Path):
    inbox = public_inbox.create()
    cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "soak.sqlite3"),
                      BOT_LORE_URL=inbox.url)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    mail: dict[str, bytes] = {}
    for path in sorted((DATA / "poll").glob("*.mbox")) + sorted((DATA / "threads").glob("*.mbox")):
        for raw in messages(path):
            mid, _ = thread_headers(raw)
            if mid is not None:
                mail.setdefault(mid, raw)
    pending = list(mail.values())
    batch = -(-len(pending) // (CYCLES // DELIVER_EVERY - 1))  # all in by the last deliveries
    proc = PollerProcess(cfg, "bot daemon")
    steady: int | None = None
    try:
        proc.lock.acquire(0)
        proc.claim()
        for cycle in range(CYCLES):
            if cycle % DELIVER_EVERY == 1 and pending:
                inbox.deliver(*pending[:batch])
                del pending[:batch]
            outcome = proc.cycle()
            assert outcome.result is PollResult.OK, outcome.error
            proc.record_end(outcome)
            # The baseline is taken once the process has all its parts: the
            # rules worker (default rules.workers = 1) starts only when a
            # few series have been checked, and brings its pipes with it.
            pool = proc.checker.pool
            if steady is None and cycle >= WARM_UP and (pool is None or pool.started):
                rss_before, fds_before, steady = rss(), open_fds(), cycle
        rss_after, fds_after = rss(), open_fds()
    finally:
        proc.close()
    # At least 100 cycles with every part running, the rules worker included.
    assert steady is not None and steady <= CYCLES - 100, steady
    assert not pending  # every message went in between cycles
    assert len(snapshot(cfg)["messages"]) >= 5  # and the polls stored what they found
    assert fds_after <= fds_before, (fds_before, fds_after)
    print("soak: rss %d -> %d kB, fds %d -> %d" % (rss_before // 1024, rss_after // 1024,
                                                 fds_before, fds_after))
    assert rss_after - rss_before < RSS_BOUND, (rss_before, rss_after)
