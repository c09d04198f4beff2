"""The poller against a real public-inbox server (tests/pi.py), on SQLite
and PostgreSQL: first poll, new mail, re-polls, a server stopped and a
poller killed mid-cycle, quarantine, the long look-back."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import cli
from bot.config import Config
from bot.lore.client import LoreClient, Stopped
from bot.pipeline import Checker
from bot.poller import Poller, cursor_name
from bot.store.db import Database
from bot.store.models import Draft, Finding, Message, Patch, PollCursor, Quarantine, Series, Trailer
from bot.store.queries import StoreStats
from tests.conftest import DATA, make_config
from tests.pi import messages, public_inbox  # noqa: F401  (the module's server)

ROOT = Path(__file__).resolve().parent.parent

# Loaded before the first poll: three threads touching watched files, and one
# (revision-v2-reply-to-v1) touching none, whose trailer-giving replies
# answer nothing stored, so it is not even fetched.
INITIAL = [DATA / "threads" / "series-complete-v2.mbox",
           DATA / "threads" / "revision-v2-reply-to-v1.mbox",
           DATA / "poll" / "sp-el0-v1.mbox",
           DATA / "poll" / "annotate-asm-v1.mbox"]
ACTLR = ["20200529150656.7339-%d-james.morse@arm.com" % n for n in (1, 2, 3, 4)] + [
    "159179498629.1496132.2497129458490530920.b4-ty@kernel.org"]
SP_EL0 = "20200425094321.162752-1-maz@kernel.org"
ANNOTATE_V1 = ["20200213153820.32049-1-broonie@kernel.org",
               "b25323d02c76441ee12c206f07907383@kernel.org"]
INITIAL_MESSAGES = set(ACTLR) | {SP_EL0} | set(ANNOTATE_V1)
INITIAL_SERIES = {("20200529150656.7339-1-james.morse@arm.com", 2), (SP_EL0, 1),
                  (ANNOTATE_V1[0], 1)}

ANNOTATE_V2 = "20200214152513.43496-1-broonie@kernel.org"
REVIEWED_BY = "20200427072825.ekcekll6f23bt2um@kamzik.brq.redhat.com"
UNRELATED = "20200214074625.1913-1-yuzenghui@huawei.com"
# The real patch dropping HCR_FB from the guest flags, with Marc Zyngier's
# objection and the replies after it (six messages).
DROP_FB = "1603331829-33879-1-git-send-email-zhangshaokun@hisilicon.com"


@pytest.fixture
def inbox(public_inbox):
    return public_inbox.create()


def with_lore(cfg: Config, inbox, **lore) -> Config:
    return dataclasses.replace(cfg, lore=dataclasses.replace(cfg.lore, url=inbox.url, **lore))


def poll(cfg: Config, checker: Checker | None = None):
    database = Database(cfg)
    try:
        with LoreClient(cfg.lore) as client:
            return Poller(cfg, database, client, checker=checker).cycle()
    finally:
        database.close()


def snapshot(cfg: Config) -> dict[str, set]:
    """Every row that matters, as comparable tuples (ids resolved to Message-IDs)."""
    database = Database(cfg)
    try:
        with database.transaction() as s:
            series_mid = dict(s.execute(select(Series.id, Series.message_id)).all())
            patch_of = {pid: (series_mid[sid], index) for pid, sid, index in
                        s.execute(select(Patch.id, Patch.series_id, Patch.index)).all()}
            return {
                "messages": set(s.scalars(select(Message.message_id))),
                "series": {(r.message_id, r.revision, series_mid.get(r.previous_id),
                            tuple(r.missing)) for r in s.scalars(select(Series))},
                "patches": {(series_mid[r.series_id], r.index, r.total) for r in
                            s.scalars(select(Patch))},
                "trailers": {(patch_of[r.patch_id], r.message_id, r.name, r.value)
                             for r in s.scalars(select(Trailer))},
                "findings": {(series_mid[r.series_id], r.fingerprint)
                             for r in s.scalars(select(Finding))},
                "drafts": {(series_mid[r.series_id], r.in_reply_to)
                           for r in s.scalars(select(Draft))},
                "quarantine": {(r.message_id, r.reason) for r in s.scalars(select(Quarantine))},
                "cursors": {(r.name, r.cycles) for r in s.scalars(select(PollCursor))},
            }
    finally:
        database.close()


def count_rows(cfg: Config, model) -> int:
    database = Database(cfg)
    try:
        with database.transaction() as s:
            return s.scalar(select(func.count()).select_from(model))
    finally:
        database.close()


def test_first_poll_stores_the_threads_and_a_repoll_adds_nothing(migrated, inbox):
    inbox.deliver(*INITIAL)
    cfg = with_lore(migrated, inbox)
    report = poll(cfg)
    assert (report.threads, report.requests) == (3, 4)  # one search, one fetch per thread
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES
    assert {(mid, rev) for mid, rev, _, _ in rows["series"]} == INITIAL_SERIES
    assert rows["patches"] == {("20200529150656.7339-1-james.morse@arm.com", n, 3)
                               for n in (1, 2, 3)} | {(SP_EL0, 1, 1), (ANNOTATE_V1[0], 1, 1)}
    assert rows["quarantine"] == set()
    assert rows["cursors"] == {(cursor_name(cfg.lore, inbox.url), 1)}

    again = poll(cfg)
    assert again.stats.total == 0 and again.threads == 0 and again.requests == 1
    after = snapshot(cfg)
    assert after.pop("cursors") == {(cursor_name(cfg.lore, inbox.url), 2)}
    rows.pop("cursors")
    assert after == rows


def test_new_mail_gives_exactly_the_expected_rows(migrated, inbox):
    inbox.deliver(*INITIAL)
    cfg = with_lore(migrated, inbox)
    poll(cfg)
    before = snapshot(cfg)

    inbox.deliver(DATA / "poll" / "annotate-asm-v2.mbox",
                  DATA / "poll" / "sp-el0-v1-reviewed-by.mbox",
                  DATA / "poll" / "unrelated-sys-regs-typo.mbox",
                  DATA / "threads" / "polarity-drop-fb-thread.mbox")
    report = poll(cfg)
    after = snapshot(cfg)
    new = {key: after[key] - before[key] for key in after}

    drop_fb = after["messages"] - before["messages"] - {ANNOTATE_V2, REVIEWED_BY}
    assert DROP_FB in drop_fb and len(drop_fb) == 6
    assert new["messages"] == {ANNOTATE_V2, REVIEWED_BY} | drop_fb  # not the unrelated patch
    # v2 arrived in a thread of its own and is linked to v1.
    assert new["series"] == {(ANNOTATE_V2, 2, ANNOTATE_V1[0], ()), (DROP_FB, 1, None, ())}
    assert new["patches"] == {(ANNOTATE_V2, 1, 1), (DROP_FB, 1, 1)}
    # The review is recorded against the patch it answers.
    assert new["trailers"] == {((SP_EL0, 1), REVIEWED_BY, "Reviewed-by",
                                "Andrew Jones <drjones@redhat.com>")}
    # Only the FB patch draws findings and a draft; nothing stored before changes.
    assert {mid for mid, _ in new["findings"]} == {DROP_FB}
    assert new["drafts"] == {(DROP_FB, DROP_FB)}
    assert new["quarantine"] == set()
    assert before["findings"] == after["findings"] - new["findings"]
    assert before["drafts"] == after["drafts"] - new["drafts"]
    assert report.threads == 3 and report.requests == 4


def test_a_revision_sent_in_the_same_thread_is_linked_with_its_trailers(migrated, inbox):
    # revision-v2-reply-to-v1.mbox: v1 and its review first; later v2, sent
    # in reply to the review, and the Acked-by given to v2.
    v1, review, v2, acked, *rest = messages(DATA / "threads" / "revision-v2-reply-to-v1.mbox")
    cfg = with_lore(migrated, inbox, query="dfn:arch/arm64/kvm/va_layout.c")
    inbox.deliver(v1, review)
    poll(cfg)
    before = snapshot(cfg)
    inbox.deliver(v2, acked, *rest)
    poll(cfg)
    after = snapshot(cfg)
    first, second = ("20191016165953.o6ogh4fdmsjmd2sw@linutronix.de",
                     "20191128195805.c2pryug4ohmcoqwd@linutronix.de")
    assert before["trailers"] == {((first, 1), "ecfbb413-e97e-c3eb-e051-1f218b387edd@arm.com",
                                   "Reviewed-by", "James Morse <james.morse@arm.com>")}
    assert after["series"] - before["series"] == {(second, 2, first, ())}
    assert after["trailers"] - before["trailers"] == {
        ((second, 1), "5aae0e8248df45c3f4c08a8bb5aabe06@www.loen.fr", "Acked-by",
         "Marc Zyngier <maz@kernel.org>")}
    assert len(after["messages"]) == 4 + len(rest)


def test_malformed_mail_is_quarantined_and_the_cycle_goes_on(migrated, inbox):
    # The reply in annotate-asm-v1.mbox is ~6.5 kB: over this cap it cannot
    # be parsed, so it is quarantined with the reason; its thread and the
    # other threads are stored.
    cfg = with_lore(migrated, inbox)
    cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input,
                                                             max_message_bytes=6000))
    inbox.deliver(*INITIAL)
    poll(cfg)
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES - {ANNOTATE_V1[1]}
    [(_, reason)] = rows["quarantine"]
    assert "exceeds input.max_message_bytes" in reason
    assert {(mid, rev) for mid, rev, _, _ in rows["series"]} == INITIAL_SERIES


class _FailingChecker(Checker):
    """A fake for a fault that real mail cannot cause on purpose: the
    pipeline itself failing (a bug in a rule) on one thread."""

    def finish_thread(self, started, lookup=None):
        if any(m.message_id == SP_EL0 for m in started.thread.messages):
            raise RuntimeError("rule crashed")
        return super().finish_thread(started, lookup)


def test_a_thread_the_pipeline_cannot_process_is_quarantined(migrated, inbox):
    cfg = with_lore(migrated, inbox)
    inbox.deliver(*INITIAL)
    report = poll(cfg, checker=_FailingChecker(cfg))
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES - {SP_EL0}
    assert rows["quarantine"] == {(SP_EL0, "thread %s: pipeline failed: RuntimeError: rule "
                                   "crashed" % SP_EL0)}
    assert report.threads == 3 and len(rows["cursors"]) == 1


def test_a_thread_the_database_refuses_is_quarantined(migrated, inbox, monkeypatch):
    # A fake for a fault that cannot be caused on purpose with real mail: the
    # database refusing one thread's rows. The thread is quarantined, the
    # others are stored, the cursor moves.
    import bot.poller
    real = bot.poller.save_thread

    def refusing(session, result, **kwargs):
        if any(m.message_id == SP_EL0 for m in result.thread.messages):
            session.execute(select(Message.id))  # the transaction has begun
            raise ValueError("value too long for type character varying(998)")
        return real(session, result, **kwargs)

    monkeypatch.setattr(bot.poller, "save_thread", refusing)
    cfg = with_lore(migrated, inbox)
    inbox.deliver(*INITIAL)
    poll(cfg)
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES - {SP_EL0}
    assert rows["quarantine"] == {(SP_EL0, "thread %s: storing failed: ValueError: value too "
                                   "long for type character varying(998)" % SP_EL0)}
    assert len(rows["cursors"]) == 1


def test_the_long_look_back_finds_mail_the_windows_missed(migrated, inbox):
    cfg = with_lore(migrated, inbox, longscan_every=2, longscan_lookback=3)
    poll(cfg)  # first cycle: nothing there yet
    # Mail that reached the archive two days ago, outside the normal window
    # (the cursor minus one hour), as after a long outage of the archive.
    inbox.deliver(DATA / "poll" / "sp-el0-v1.mbox", received=time.time() - 2 * 86400)
    second = poll(cfg)
    assert second.longscan and second.threads == 1 and second.stats.series == 1
    third = poll(cfg)
    assert not third.longscan and third.hits == 0
    assert snapshot(cfg)["messages"] == {SP_EL0}


def _bot(cfg: Config, *argv: str, **env: str) -> subprocess.Popen:
    env = dict(os.environ, BOT_CONFIG=str(DATA / "config" / "test.toml"),
               BOT_STATE_DIR=cfg.state_dir, BOT_DATABASE_URL=cfg.database_url,
               BOT_LORE_URL=cfg.lore.url, BOT_LORE_MIN_INTERVAL=str(cfg.lore.min_interval),
               **env)
    return subprocess.Popen([sys.executable, "-m", "bot", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> list[str]:
    """stderr lines up to the first containing `text`."""
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if text in line:
                done.set()
                return
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout) and lines and text in lines[-1], "".join(lines)
    return lines


class _OnLog(logging.Handler):
    """Calls `action` once, when the `count`-th record matching is logged."""

    def __init__(self, pattern: str, count: int, action) -> None:
        super().__init__(logging.DEBUG)
        self.pattern, self.count, self.action, self.fired = re.compile(pattern), count, action, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and self.pattern.search(record.getMessage()):
            self.count -= 1
            if self.count == 0:
                self.fired = True
                self.action()


_THREAD_OF = {ACTLR[0]: set(ACTLR), SP_EL0: {SP_EL0}, ANNOTATE_V1[0]: set(ANNOTATE_V1)}


def _kill_at_second_thread(public_inbox) -> _OnLog:
    """The server is killed once the second thread is downloaded."""
    return _OnLog(r": thread \S+: \d+ bytes in ", 2, lambda: public_inbox.stop(signal.SIGKILL))


@pytest.mark.parametrize("workers", [0, 1])
def test_server_stopped_mid_cycle_is_transient_and_the_next_cycle_catches_up(
        migrated, inbox, public_inbox, monkeypatch, capsys, workers):
    inbox.deliver(*INITIAL)
    cfg = with_lore(migrated, inbox)
    for name, value in (("BOT_CONFIG", str(DATA / "config" / "test.toml")),
                        ("BOT_STATE_DIR", cfg.state_dir), ("BOT_DATABASE_URL", cfg.database_url),
                        ("BOT_LORE_URL", inbox.url), ("BOT_RULES_WORKERS", str(workers))):
        monkeypatch.setenv(name, value)
    # The server dies once the second thread is downloaded: the third
    # cannot be fetched, and both threads fetched before are stored (with
    # a rules worker, read ahead) before the cycle fails.
    hook = _kill_at_second_thread(public_inbox)
    client_log = logging.getLogger("bot.lore.client")
    level = client_log.level
    client_log.setLevel(logging.DEBUG)
    client_log.addHandler(hook)
    try:
        code = cli.main(["poll"])
    finally:
        client_log.removeHandler(hook)
        client_log.setLevel(level)
        public_inbox.start()
    err = capsys.readouterr().err
    assert hook.fired and code == 3, err
    assert "bot: error: %s unavailable: thread " % inbox.url in err
    rows = snapshot(cfg)
    assert rows["cursors"] == set()  # the window is not covered yet
    assert len(rows["series"]) == 2, err  # the two threads fetched, each whole
    assert rows["messages"] == set().union(*(_THREAD_OF[mid] for mid, *_ in rows["series"]))

    assert cli.main(["poll"]) == 0
    assert "poll: window from " in capsys.readouterr().out
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES
    assert {(mid, rev) for mid, rev, _, _ in rows["series"]} == INITIAL_SERIES
    assert count_rows(cfg, Message) == len(INITIAL_MESSAGES)  # nothing stored twice
    assert len(rows["cursors"]) == 1


@pytest.mark.parametrize("workers", [0, 1])
def test_a_stop_between_stores_leaves_whole_threads_and_the_cursor(
        migrated, inbox, public_inbox, workers):
    # The archive dies once the second thread is downloaded, and a stop is
    # requested as soon as the first thread is stored: whether that was
    # while the archive was awaited or while the threads in hand were
    # stored after its failure, the cycle stops right after it (Stopped,
    # not the archive's error), leaving the cursor where it was.
    inbox.deliver(*INITIAL)
    cfg = with_lore(migrated, inbox)
    cfg = dataclasses.replace(cfg, rules=dataclasses.replace(cfg.rules, workers=workers))
    stop = threading.Event()

    def progress(stats: StoreStats) -> None:
        if stats.messages:
            stop.set()

    hook = _kill_at_second_thread(public_inbox)
    client_log = logging.getLogger("bot.lore.client")
    level = client_log.level
    client_log.setLevel(logging.DEBUG)
    client_log.addHandler(hook)
    database = Database(cfg)
    try:
        with LoreClient(cfg.lore) as client, Checker(cfg) as checker:
            assert (checker.pool is not None) == bool(workers)
            poller = Poller(cfg, database, client, checker=checker, stop=stop,
                            progress=progress)
            with pytest.raises(Stopped):
                poller.cycle()
    finally:
        database.close()
        client_log.removeHandler(hook)
        client_log.setLevel(level)
        public_inbox.start()
    assert hook.fired
    rows = snapshot(cfg)
    assert rows["cursors"] == set() and len(rows["series"]) == 1
    [(mid, *_)] = rows["series"]
    assert rows["messages"] == _THREAD_OF[mid]

    poll(cfg)
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES
    assert {(mid, rev) for mid, rev, _, _ in rows["series"]} == INITIAL_SERIES
    assert count_rows(cfg, Message) == len(INITIAL_MESSAGES)
    assert len(rows["cursors"]) == 1


def test_poller_killed_mid_cycle_loses_and_duplicates_nothing(migrated, inbox, tmp_path):
    inbox.deliver(*INITIAL)
    # Half a second between requests: the poller is killed right after the
    # first thread is stored, well before the next request.
    cfg = with_lore(migrated, inbox, min_interval=0.5)
    proc = _bot(cfg, "-v", "poll")
    _wait_for(proc, ": stored ")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = snapshot(cfg)
    assert partial["cursors"] == set() and 0 < len(partial["series"]) < 3

    fast = dataclasses.replace(cfg, lore=dataclasses.replace(cfg.lore, min_interval=0.0))
    poll(fast)
    rows = snapshot(cfg)
    # What one uninterrupted poll of the same mail stores, in a fresh database.
    reference = dataclasses.replace(fast, database=dataclasses.replace(
        fast.database, url="sqlite:///%s" % (tmp_path / "reference.sqlite3")))
    from bot.store import db
    engine = db.make_engine(reference)
    db.upgrade(engine)
    engine.dispose()
    poll(reference)
    assert rows == snapshot(reference)
    assert count_rows(cfg, Message) == len(INITIAL_MESSAGES)


def test_daemon_polls_until_sigterm_and_survives_a_failing_cycle(inbox, public_inbox,
                                                                 tmp_path):
    from bot.store import db
    cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                      BOT_LORE_URL=inbox.url)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    inbox.deliver(DATA / "poll" / "sp-el0-v1.mbox")
    proc = _bot(cfg, "-v", "daemon", BOT_DAEMON_INTERVAL="1", BOT_DAEMON_MAX_BACKOFF="2")
    try:
        _wait_for(proc, "poll: window from ")
        assert snapshot(cfg)["messages"] == {SP_EL0}
        public_inbox.stop(signal.SIGKILL)
        try:
            _wait_for(proc, "poll failing on the archive: %s unavailable" % inbox.url)
        finally:
            public_inbox.start()
        inbox.deliver(DATA / "poll" / "sp-el0-v1-reviewed-by.mbox")
        deadline = time.monotonic() + 30
        while count_rows(cfg, Trailer) == 0:
            assert time.monotonic() < deadline, "the daemon never caught up"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err and "daemon: stopped" in err
    assert snapshot(cfg)["messages"] == {SP_EL0, REVIEWED_BY}
