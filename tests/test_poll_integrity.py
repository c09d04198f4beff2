"""Poll integrity: after any interruption a thread is in the database whole
or not at all, and the next cycle finishes the window's work.

The mail is real (kvmarm, November 2020), and public-inbox threads it by
subject as well as by References: the KVM/arm64 fixes pull of 12 November
re-posts v1's patches under the same subjects, so fetching the pull's
thread also returns v1's "[PATCH 1/3]" and the replies to it, but not the
rest of v1. A cycle cut after storing the pull used to leave v1 partly
stored; the next cycle then took v1's only search hit for done, skipped
Will Deacon's Acked-by as a reply to nothing stored, and six messages (v1's
cover letter, patches 2 and 3, three replies), the Acked-by and v2's link
to v1 were lost for good.

The cuts are real: a SIGKILL of `bot poll` at each step where it stores
(placed exactly by a wrapper that kills the process from inside after the
step), and the database made unreachable under `bot daemon` (PostgreSQL
through a TCP proxy the test cuts; SQLite held locked by another writer).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from bot.config import Config
from bot.store import db
from bot.store.models import Base
from tests.conftest import DATA, PG_ADMIN_URL
from tests.pi import public_inbox  # noqa: F401  (the module's server)
from tests.tcpproxy import TcpProxy
from tests.test_poll import poll, snapshot, with_lore

ROOT = Path(__file__).resolve().parent.parent
CSV2 = [DATA / "poll" / "csv2-v1.mbox", DATA / "poll" / "csv2-v2.mbox",
        DATA / "poll" / "csv2-fixes-5.10-take3.mbox"]
V1 = "20201103171445.271195-%d-maz@kernel.org"
V1_THREAD = {V1 % n for n in (1, 2, 3, 4)} | {
    "20201105224442.GD8842@willie-the-truck", "20201105225020.GE8842@willie-the-truck",
    "20201105225041.GF8842@willie-the-truck", "32241e9ee49133df4e9bcc6c8ebd7551@kernel.org",
    "48655b6266c39555edc614274d1d9877@kernel.org"}
V2 = "20201110141308.451654-1-maz@kernel.org"
PULL_1 = "20201112222139.466204-2-maz@kernel.org"
ACKED_V1_3 = ((V1 % 1, 3), "20201105225041.GF8842@willie-the-truck", "Acked-by",
              "Will Deacon <will@kernel.org>")


@pytest.fixture
def inbox(public_inbox):
    inbox = public_inbox.create()
    inbox.deliver(*CSV2)
    return inbox


def _rows(cfg: Config) -> dict[str, set]:
    rows = snapshot(cfg)
    rows.pop("cursors")  # how many cycles ran differs; what they stored must not
    return rows


def _wipe(cfg: Config) -> None:
    database = db.Database(cfg)
    try:
        with database.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                if table.name != "alembic_version":
                    session.execute(delete(table))
    finally:
        database.close()


def _reference(cfg: Config, tmp_path: Path) -> dict[str, set]:
    """What one uninterrupted poll of the same mail stores in a fresh database."""
    ref = dataclasses.replace(cfg, database=dataclasses.replace(
        cfg.database, url="sqlite:///%s" % (tmp_path / "reference.sqlite3")))
    engine = db.make_engine(ref)
    db.upgrade(engine)
    engine.dispose()
    poll(ref)
    return _rows(ref)


def _assert_v1_whole(rows: dict[str, set]) -> None:
    assert rows["messages"] >= V1_THREAD
    series = {mid: prev for mid, _rev, prev, _missing in rows["series"]}
    assert series[V2] == V1 % 1  # v2 is linked to v1
    assert ACKED_V1_3 in rows["trailers"]
    assert {(V1 % 1, n, 3) for n in (1, 2, 3)} <= rows["patches"]


def test_public_inbox_threads_the_pull_with_v1_by_subject(inbox):
    """The premise, checked on the real server: a thread fetch for the
    pull's first patch returns part of v1 (same subject), not all of it."""
    with urllib.request.urlopen("%s/%s/t.mbox.gz" % (inbox.url, PULL_1)) as resp:
        data = gzip.decompress(resp.read())
    got = set(re.findall(rb"^Message-I[dD]: <([^>]+)>", data, re.M))
    assert (V1 % 2).encode() in got and (V1 % 1).encode() not in got


def test_an_uninterrupted_poll_stores_every_thread_whole(migrated, inbox, tmp_path):
    cfg = with_lore(migrated, inbox)
    report = poll(cfg)
    rows = _rows(cfg)
    _assert_v1_whole(rows)
    assert report.threads == 3


# Runs `bot` with Database.transaction wrapped so that the process SIGKILLs
# itself at one exact storing step (a transaction that writes): right after
# the N-th such transaction commits, or inside it, after its work and before
# its commit. The kill is real; only its placement is done from inside.
_KILL_AT = r"""
import contextlib, os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from bot.store import db
when, step = sys.argv[1], int(sys.argv[2])
real = db.Database.transaction
count = 0
wrote = False

@event.listens_for(Engine, "before_cursor_execute")
def _writes(conn, cursor, statement, *args):
    global wrote
    wrote = wrote or statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))

@contextlib.contextmanager
def transaction(self):
    global count, wrote
    wrote = False
    with real(self) as session:
        yield session
        session.flush()
        if wrote:
            count += 1
            if when == "before-commit" and count == step:
                os.kill(os.getpid(), signal.SIGKILL)
    if wrote and when == "after-commit" and count == step:
        os.kill(os.getpid(), signal.SIGKILL)

db.Database.transaction = transaction
from bot.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _env(cfg: Config, **extra: str) -> dict[str, str]:
    env = dict(os.environ, BOT_CONFIG=str(DATA / "config" / "test.toml"),
               BOT_STATE_DIR=cfg.state_dir, BOT_DATABASE_URL=cfg.database_url,
               BOT_LORE_URL=cfg.lore.url)
    env.update(extra)
    return env


def test_a_sigkill_at_each_storing_step_loses_nothing(migrated, inbox, tmp_path):
    cfg = with_lore(migrated, inbox)
    expected = _reference(cfg, tmp_path)
    _assert_v1_whole(expected)
    # The cycle stores three threads (the pull, v2, v1, newest first): it
    # is cut at each, before and after the commit.
    for when in ("after-commit", "before-commit"):
        for step in (1, 2, 3):
            _wipe(cfg)
            proc = subprocess.run([sys.executable, "-c", _KILL_AT, when, str(step), "poll"],
                                  env=_env(cfg), cwd=ROOT, capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == -signal.SIGKILL, (when, step, proc.stderr)
            poll(cfg)  # the next cycle
            assert _rows(cfg) == expected, (when, step)


def _daemon(cfg: Config, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", "-v", "daemon"],
                            env=_env(cfg, BOT_DAEMON_INTERVAL="1",
                                     BOT_LORE_MIN_INTERVAL="0.5", **extra),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _Lines:
    """The daemon's stderr, read in the background; waits for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait(self, pattern: str, after: int = 0, timeout: float = 60.0) -> int:
        """Index of the first line from `after` on matching `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(after, len(self.lines)):
                    if regex.search(self.lines[i]):
                        return i
                left = deadline - time.monotonic()
                assert left > 0, "no line matching %r in:\n%s" % (pattern, "".join(self.lines))
                self._cond.wait(left)


def _run_daemon_through_outage(cfg: Config, env_url: str, cut, restore) -> None:
    proc = _daemon(cfg, BOT_DATABASE_URL=env_url)
    lines = _Lines(proc)
    try:
        # The pull's thread is stored first (the search answers newest
        # first); the database goes away before the next thread is stored.
        first = lines.wait(r"thread %s: stored" % re.escape(PULL_1))
        cut()
        try:
            lines.wait(r"poll failing on the database: database .* unavailable",
                       after=first)
        finally:
            restore()
        lines.wait(r"poll: window from ", after=first)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines.lines)


def test_postgresql_unreachable_mid_cycle_under_the_daemon(pg_url, inbox, tmp_path):
    from tests.conftest import make_config
    cfg = with_lore(make_config(tmp_path, BOT_DATABASE_URL=pg_url), inbox)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    expected = _reference(cfg, tmp_path)
    admin = make_url(PG_ADMIN_URL)
    with TcpProxy((admin.host or "127.0.0.1", admin.port or 5432)) as proxy:
        via_proxy = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
        _run_daemon_through_outage(cfg, via_proxy, proxy.cut, proxy.restore)
    rows = _rows(cfg)
    _assert_v1_whole(rows)
    assert rows == expected


def test_sqlite_locked_mid_cycle_under_the_daemon(tmp_path, inbox):
    from tests.conftest import make_config
    path = tmp_path / "bot.sqlite3"
    cfg = with_lore(make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % path), inbox)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    expected = _reference(cfg, tmp_path)
    holder: list[sqlite3.Connection] = []

    def lock() -> None:  # another writer holds the database past busy_timeout
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        holder.append(conn)

    def unlock() -> None:
        holder.pop().rollback()

    _run_daemon_through_outage(cfg, cfg.database_url, lock, unlock)
    rows = _rows(cfg)
    _assert_v1_whole(rows)
    assert rows == expected


def test_a_message_the_database_refuses_keeps_the_rest_of_its_thread(migrated, inbox,
                                                                       monkeypatch):
    # A fake for a fault no mail can cause any more (every number and
    # string from mail is bounded before it is written): the database
    # refusing one message's row. Only that message is quarantined; its
    # thread, series and Acked-by are stored.
    import bot.store.queries
    real = bot.store.queries.save_messages
    refused = "20201105225020.GE8842@willie-the-truck"  # a reply in v1's thread

    def refusing(session, mails):
        mails = list(mails)
        if any(m.message_id == refused for m in mails):
            raise ValueError("value out of range")
        return real(session, mails)

    monkeypatch.setattr(bot.store.queries, "save_messages", refusing)
    cfg = with_lore(migrated, inbox)
    poll(cfg)
    rows = _rows(cfg)
    assert rows["messages"] >= V1_THREAD - {refused} and refused not in rows["messages"]
    assert rows["quarantine"] == {(refused, "storing the message failed: ValueError: "
                                            "value out of range")}
    _assert_v1_whole(dict(rows, messages=rows["messages"] | {refused}))
