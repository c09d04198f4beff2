"""`bot daemon`, `bot poll` and `bot status` as an operator runs them, against
a real public-inbox (tests/pi.py) and real SQLite and PostgreSQL: one poller
per database (a second daemon refused on SQLite, a standby taking over on
PostgreSQL), concurrent polls, signals, SIGHUP, outages with backoff, a
PostgreSQL restart, the status row, systemd notifications."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.config import Config
from bot.daemon import Backoff, config_changes
from bot.sdnotify import Notifier
from bot.store.db import Database
from bot.store.models import PollResult
from bot.store.queries import advance_cursor, read_cursor
from bot.store.status import daemon_status
from tests.conftest import DATA, make_config
from tests.pi import public_inbox  # noqa: F401  (the module's server)
from tests.proxy import Proxy
from tests.test_poll import (
    ACTLR,
    ANNOTATE_V1,
    INITIAL,
    INITIAL_MESSAGES,
    REVIEWED_BY,
    SP_EL0,
    snapshot,
)

ROOT = Path(__file__).resolve().parent.parent
SP_EL0_MBOX = DATA / "poll" / "sp-el0-v1.mbox"
REVIEW_MBOX = DATA / "poll" / "sp-el0-v1-reviewed-by.mbox"


@pytest.fixture
def inbox(public_inbox):
    return public_inbox.create()


def configured(migrated: Config, url: str) -> Config:
    return dataclasses.replace(migrated, lore=dataclasses.replace(migrated.lore, url=url))


def bot_env(cfg: Config, **env: str | None) -> dict[str, str]:
    """The environment of a `bot` process for `cfg`; None removes a variable."""
    out = dict(os.environ)
    out.pop("NOTIFY_SOCKET", None)
    out.update(BOT_CONFIG=str(DATA / "config" / "test.toml"), BOT_STATE_DIR=cfg.state_dir,
               BOT_DATABASE_URL=cfg.database_url, BOT_LORE_URL=cfg.lore.url,
               BOT_DAEMON_INTERVAL="1", BOT_LOG_LEVEL="info")
    for name, value in env.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def run_bot(cfg: Config, *argv: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *argv], env=bot_env(cfg, **env),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


class Bot:
    """A `bot` process whose stderr is collected line by line."""

    def __init__(self, cfg: Config, *argv: str, **env: str | None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", *argv],
                                     env=bot_env(cfg, **env), cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self.lines.append("")  # end of output
            self._new.notify_all()

    def wait_for(self, needle: str, timeout: float = 30.0, start: int = 0) -> int:
        """Index of the first line from `start` on containing `needle`."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i]:
                        return i
                if (self.lines and self.lines[-1] == "") or time.monotonic() > deadline:
                    raise AssertionError("no %r in:\n%s" % (needle, "".join(self.lines)))
                self._new.wait(0.2)

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.lines)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float]:
        """(exit code, seconds from the signal to the exit)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def bots():
    started: list[Bot] = []

    def start(cfg: Config, *argv: str, **env: str | None) -> Bot:
        bot = Bot(cfg, *argv, **env)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.kill()


def status_of(cfg: Config, check: bool = True):
    database = Database(cfg, check=check)
    try:
        with database.transaction() as session:
            return daemon_status(session)
    finally:
        database.close()


def wait_until(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.1)


# -- one poller per database ------------------------------------------------

def test_concurrent_polls_all_succeed_and_count_every_cycle(migrated, inbox):
    """8 `bot poll` at once: they take turns on the poll lock; none fails,
    every cycle is counted on the cursor, the rows are one clean poll's."""
    inbox.deliver(*INITIAL)
    cfg = configured(migrated, inbox.url)
    procs = [subprocess.Popen([sys.executable, "-m", "bot", "poll"], env=bot_env(cfg),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for p in procs:
        p.stdout.close()  # type: ignore[union-attr]
        p.stderr.close()  # type: ignore[union-attr]
    assert [code for code, _, _ in results] == [0] * 8, results
    rows = snapshot(cfg)
    assert rows["messages"] == INITIAL_MESSAGES
    [(_, cycles)] = rows["cursors"]
    assert cycles == 8
    status = status_of(cfg)
    assert status is not None and status.command == "bot poll"
    assert status.last_result is PollResult.OK and status.stopped_at is not None


def test_concurrent_first_cursor_updates_never_fail_nor_lose_one(migrated):
    """The cursor's insert on a first poll is one statement: sessions racing
    on it (as pollers without the lock would) neither fail nor lose a count."""
    database = Database(migrated)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def advance() -> None:
        try:
            barrier.wait()
            with database.transaction() as session:
                advance_cursor(session, "race", dt_now())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=advance) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with database.transaction() as session:
            row = read_cursor(session, "race")
            assert row is not None and row.cycles == 8
    finally:
        database.close()


def dt_now():
    import datetime as dt
    return dt.datetime.now(dt.UTC)


def test_sqlite_second_daemon_and_a_poll_by_hand_name_the_holder(inbox, tmp_path, bots):
    cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                      BOT_LORE_URL=inbox.url)
    assert run_bot(cfg, "db", "upgrade").returncode == 0
    inbox.deliver(SP_EL0_MBOX)
    first = bots(cfg, "daemon")
    first.wait_for("poll: window from ")
    second = run_bot(cfg, "daemon")
    assert second.returncode == 3
    assert second.stderr.count("\n") == 1, second.stderr
    assert "PID %d on %s" % (first.proc.pid, socket.gethostname()) in second.stderr
    assert "the daemon `bot daemon`" in second.stderr and "poller.lock" in second.stderr
    started = time.monotonic()
    by_hand = run_bot(cfg, "poll")
    assert by_hand.returncode == 3 and time.monotonic() - started < 10
    assert "PID %d" % first.proc.pid in by_hand.stderr and "stop it to poll by hand" in (
        by_hand.stderr)
    assert first.proc.poll() is None
    assert first.stop() [0] == 0


def test_postgresql_standby_takes_over_within_an_interval(pg_url, inbox, tmp_path, bots):
    cfg = make_config(tmp_path, BOT_DATABASE_URL=pg_url, BOT_LORE_URL=inbox.url)
    assert run_bot(cfg, "db", "upgrade").returncode == 0
    inbox.deliver(SP_EL0_MBOX)
    active = bots(cfg, "daemon", BOT_DAEMON_INTERVAL="2")
    active.wait_for("poll: window from ")
    standby = bots(cfg, "daemon", BOT_DAEMON_INTERVAL="2")
    standby.wait_for("standing by: `bot daemon` (PID %d" % active.proc.pid)
    polls = active.count("poll: window from ")
    time.sleep(3)  # the active one polls on; the standby never does
    assert active.count("poll: window from ") > polls
    assert standby.count("poll: window from ") == 0
    active.proc.kill()
    killed = time.monotonic()
    active.proc.wait()
    standby.wait_for("taking over", timeout=10)
    assert time.monotonic() - killed < 2 + 1.5  # one interval, and a little
    inbox.deliver(REVIEW_MBOX)
    wait_until(lambda: REVIEWED_BY in snapshot(cfg)["messages"], what="the review stored")
    assert snapshot(cfg)["messages"] == {SP_EL0, REVIEWED_BY}
    status = status_of(cfg)
    assert status is not None and status.pid == standby.proc.pid
    shown = run_bot(cfg, "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "PID %d" % standby.proc.pid in shown.stdout and "holds the poll lock" in shown.stdout
    assert standby.stop()[0] == 0


# -- signals ------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_even_a_stalled_request_within_seconds(sig, inbox, public_inbox,
                                                                   tmp_path, bots):
    proxy = Proxy(public_inbox.port)
    try:
        cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                          BOT_LORE_URL="%s/%s" % (proxy.url, inbox.name))
        assert run_bot(cfg, "db", "upgrade").returncode == 0
        proxy.set("stall")  # the archive accepts the search and never answers
        daemon = bots(cfg, "-v", "daemon", BOT_LORE_READ_TIMEOUT="60")
        daemon.wait_for("bot.poller: search: ")
        time.sleep(0.5)
        code, took = daemon.stop(sig)
        assert code == 0, daemon.log
        assert took < 10, took
        assert "still busy" in daemon.log and "daemon: stopped" in daemon.log
        status = status_of(cfg)
        assert status is not None and status.last_result is PollResult.STOPPED
        assert status.stopped_at is not None
    finally:
        proxy.close()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_sigterm_mid_cycle_leaves_whole_threads_and_exits_0(inbox, tmp_path, bots, workers):
    # With a rules worker the daemon reads threads ahead; a stop still
    # comes between two stored threads, never after the cursor moved.
    cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                      BOT_LORE_URL=inbox.url)
    assert run_bot(cfg, "db", "upgrade").returncode == 0
    inbox.deliver(*INITIAL)
    daemon = bots(cfg, "daemon", BOT_LORE_MIN_INTERVAL="0.5", BOT_RULES_WORKERS=workers)
    daemon.wait_for(": stored ")
    code, took = daemon.stop()
    assert code == 0 and took < 10, daemon.log
    rows = snapshot(cfg)
    assert rows["cursors"] == set() and 0 < len(rows["series"]) < 3
    threads = {ACTLR[0]: set(ACTLR), SP_EL0: {SP_EL0}, ANNOTATE_V1[0]: set(ANNOTATE_V1)}
    # Exactly the messages of the stored series' threads: each one whole.
    assert rows["messages"] == set().union(*(threads[mid] for mid, *_ in rows["series"]))
    assert run_bot(cfg, "poll").returncode == 0
    assert snapshot(cfg)["messages"] == INITIAL_MESSAGES


def test_sighup_applies_a_good_configuration_and_refuses_a_bad_one(inbox, tmp_path, bots):
    config = tmp_path / "config.toml"
    database = "sqlite:///%s" % (tmp_path / "d.sqlite3")
    base = (DATA / "config" / "test.toml").read_text().replace(
        'url = "http://127.0.0.1:9/all"', 'url = "%s"' % inbox.url)
    base = base.replace('state_dir = "./var/test"', 'state_dir = "%s"' % (tmp_path / "state"))
    base += '\n[database]\nurl = "%s"\n' % database
    config.write_text(base + "\n[daemon]\ninterval = 1\n")
    cfg = make_config(tmp_path, BOT_DATABASE_URL=database, BOT_LORE_URL=inbox.url)
    assert run_bot(cfg, "db", "upgrade").returncode == 0
    daemon = bots(cfg, "daemon", BOT_CONFIG=str(config), BOT_DAEMON_INTERVAL=None,
                  BOT_DATABASE_URL=None, BOT_LORE_URL=None, BOT_STATE_DIR=None)
    daemon.wait_for("poll: window from ")

    config.write_text(base.replace("min_interval = 0.0", "min_interval = 0.1")
                      + "\n[daemon]\ninterval = 2\n")
    daemon.send(signal.SIGHUP)
    at = daemon.wait_for("SIGHUP: configuration re-read from %s" % config)
    assert "daemon.interval: 1 -> 2" in daemon.lines[at]
    assert "lore.min_interval: 0.0 -> 0.1" in daemon.lines[at]

    config.write_text(base + "\n[daemon]\ninterval = 2\nbogus = 1\n")
    daemon.send(signal.SIGHUP)
    at = daemon.wait_for("SIGHUP: new configuration refused, the old one stays", start=at)
    assert "unknown key daemon.bogus" in daemon.lines[at]

    config.write_text(base.replace(database, "sqlite:///%s" % (tmp_path / "other.sqlite3"))
                      + "\n[daemon]\ninterval = 2\n")
    daemon.send(signal.SIGHUP)
    at = daemon.wait_for("SIGHUP: new configuration refused", start=at + 1)
    assert "database.url cannot change while the daemon runs" in daemon.lines[at]

    daemon.wait_for("poll: window from ", start=at + 1, timeout=10)  # still polling
    assert daemon.proc.poll() is None
    assert daemon.stop()[0] == 0
    assert not (tmp_path / "other.sqlite3").exists()


def test_config_changes_name_each_key_and_never_show_a_secret(tmp_path):
    old = make_config(tmp_path)
    new = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "other.sqlite3"),
                      BOT_SMTP_PASSWORD="hunter2")
    changes = dict(config_changes(old, new))
    assert list(changes) == ["database.url", "smtp.password"]
    assert changes["smtp.password"] == "changed (a secret)"
    assert "other.sqlite3" in changes["database.url"]


# -- outages ------------------------------------------------------------------

def test_archive_outage_backs_off_logs_state_changes_and_catches_up(inbox, public_inbox,
                                                                    tmp_path, bots):
    proxy = Proxy(public_inbox.port)
    try:
        cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                          BOT_LORE_URL="%s/%s" % (proxy.url, inbox.name))
        assert run_bot(cfg, "db", "upgrade").returncode == 0
        inbox.deliver(SP_EL0_MBOX)
        daemon = bots(cfg, "daemon", BOT_DAEMON_MAX_BACKOFF="2")
        daemon.wait_for("poll: window from ")
        proxy.set("error")  # HTTP 503 for everything
        wait_until(lambda: (status_of(cfg) or _none).consecutive_failures >= 2,
                   what="two failed cycles")
        inbox.deliver(REVIEW_MBOX)  # arrives while the archive is unreachable
        proxy.set("refuse")
        failures = status_of(cfg).consecutive_failures
        wait_until(lambda: status_of(cfg).consecutive_failures >= failures + 2,
                   what="two more failed cycles")
        status = status_of(cfg)
        assert status.failing_since is not None and "unavailable" in status.last_error
        shown = run_bot(cfg, "status", BOT_DAEMON_STALE_AFTER="0")
        assert shown.returncode == 3 and "failing since" in shown.stdout
        proxy.set("forward")
        at = daemon.wait_for("poll recovered after ", timeout=15)
        wait_until(lambda: REVIEWED_BY in snapshot(cfg)["messages"], what="catching up")
        assert snapshot(cfg)["messages"] == {SP_EL0, REVIEWED_BY}
        # One line when it started failing, none per failed cycle or retry.
        assert daemon.count("poll failing on the archive") == 1, daemon.log
        assert daemon.count("retrying in") == 0 and daemon.count("failed again") == 0
        assert int(daemon.lines[at].split("after ")[1].split()[0]) >= 4
        assert status_of(cfg).consecutive_failures == 0
        assert daemon.stop()[0] == 0
    finally:
        proxy.close()


def test_a_long_retry_after_is_honoured_across_cycles(inbox, public_inbox, tmp_path, bots):
    proxy = Proxy(public_inbox.port)
    try:
        cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                          BOT_LORE_URL="%s/%s" % (proxy.url, inbox.name))
        assert run_bot(cfg, "db", "upgrade").returncode == 0
        daemon = bots(cfg, "daemon", BOT_DAEMON_MAX_BACKOFF="2")
        daemon.wait_for("poll: window from ")
        proxy.set("ratelimit")  # 429, Retry-After: 900
        daemon.wait_for("poll failing on the archive")
        assert "asked to retry after 900 s" in daemon.log
        wait_until(lambda: status_of(cfg).next_poll_at is not None, what="the next poll")
        status = status_of(cfg)
        assert (status.next_poll_at - status.last_poll_ended_at).total_seconds() >= 899
        assert daemon.stop()[0] == 0
    finally:
        proxy.close()


def _has_message(engine, msgid: str) -> bool:
    """One query (the daemon writes meanwhile; `snapshot` reads table after
    table)."""
    with engine.begin() as conn:
        return conn.execute(text("SELECT count(*) FROM message WHERE message_id = :m"),
                            {"m": msgid}).scalar() == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_made_unusable_mid_run_is_one_line_and_the_daemon_carries_on(
        kind, inbox, tmp_path, bots, request):
    """A table renamed away under the running daemon (the database changed
    by hand): each cycle fails with `Unusable`, which trying later does not
    fix; the daemon logs it once, without a traceback, keeps running and
    backing off, and polls again (storing what arrived meanwhile) once the
    table is back."""
    url = ("sqlite:///%s" % (tmp_path / "d.sqlite3") if kind == "sqlite"
           else request.getfixturevalue("pg_url"))
    cfg = make_config(tmp_path, BOT_DATABASE_URL=url, BOT_LORE_URL=inbox.url)
    assert run_bot(cfg, "db", "upgrade").returncode == 0
    inbox.deliver(SP_EL0_MBOX)
    daemon = bots(cfg, "daemon", BOT_DAEMON_MAX_BACKOFF="2")
    engine = create_engine(url, connect_args={"timeout": 30} if kind == "sqlite" else {})
    try:
        wait_until(lambda: _has_message(engine, SP_EL0), what="the first poll")
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE poll_seen RENAME TO poll_seen_away"))
        inbox.deliver(REVIEW_MBOX)
        at = daemon.wait_for("poll failing on an error")
        assert "poll_seen" in daemon.lines[at] and "Traceback" not in daemon.log
        wait_until(lambda: status_of(cfg, check=False).consecutive_failures >= 3,
                   what="failed cycles")
        assert daemon.proc.poll() is None
        assert daemon.count("poll failing on") == 1, daemon.log
        assert not _has_message(engine, REVIEWED_BY)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE poll_seen_away RENAME TO poll_seen"))
        daemon.wait_for("poll recovered after ", start=at, timeout=30)
        wait_until(lambda: _has_message(engine, REVIEWED_BY), what="catching up")
    finally:
        engine.dispose()
    assert status_of(cfg).consecutive_failures == 0
    assert "Traceback" not in daemon.log
    assert daemon.stop()[0] == 0


class _None:
    consecutive_failures = 0


_none = _None()


def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(10, 100, rng=random.Random(1))
    assert backoff.next_delay(False) == 10
    delays = [backoff.next_delay(True) for _ in range(8)]
    for n, delay in enumerate(delays):
        base = min(10 * 2 ** n, 100)
        assert 0.75 * base <= delay <= min(1.25 * base, 100)
    assert delays[-1] <= 100 and len(set(delays[:4])) == 4  # jittered, not fixed steps
    assert backoff.next_delay(False) == 10 and backoff.failures == 0


def test_postgresql_restart_is_ridden_out(pg_url, inbox, tmp_path, bots):
    cfg = make_config(tmp_path, BOT_DATABASE_URL=pg_url, BOT_LORE_URL=inbox.url)
    assert run_bot(cfg, "db", "upgrade").returncode == 0
    inbox.deliver(SP_EL0_MBOX)
    daemon = bots(cfg, "daemon")
    daemon.wait_for("poll: window from ")
    # What a server restart does to its clients: every connection to the
    # database is ended by the server.
    name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM "
                                  "pg_stat_activity WHERE datname = :d AND pid <> "
                                  "pg_backend_pid()"), {"d": name}).scalar()
    admin.dispose()
    assert ended >= 1  # at least the lock's connection
    at = daemon.wait_for("was lost", timeout=15)
    inbox.deliver(REVIEW_MBOX)
    wait_until(lambda: REVIEWED_BY in snapshot(cfg)["messages"], what="polling again")
    daemon.wait_for("poll: window from ", start=at)
    assert daemon.proc.poll() is None
    assert status_of(cfg).pid == daemon.proc.pid
    assert daemon.stop()[0] == 0


# -- status -----------------------------------------------------------------------

def test_bot_status_healthy_stale_and_json(migrated, inbox):
    cfg = configured(migrated, inbox.url)
    never = run_bot(cfg, "status")
    assert never.returncode == 3 and "no poller has run" in never.stdout
    inbox.deliver(SP_EL0_MBOX)
    assert run_bot(cfg, "poll").returncode == 0
    ok = run_bot(cfg, "status")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "poller: `bot poll` (PID" in ok.stdout and "exited at" in ok.stdout
    assert "stored 1 messages, 1 series" in ok.stdout and "health: ok" in ok.stdout
    stale = run_bot(cfg, "status", "--format", "json", BOT_DAEMON_STALE_AFTER="0")
    assert stale.returncode == 3
    data = json.loads(stale.stdout)
    assert data["healthy"] is False and "daemon.stale_after" in data["reason"]
    assert data["status"]["last_result"] == "ok" and data["status"]["messages_stored"] == 1
    assert data["lock_holder"] is None


# -- systemd ----------------------------------------------------------------------

def test_sd_notify_ready_watchdog_and_stopping_on_a_real_socket(inbox, tmp_path, bots):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    got: list[str] = []

    def receive() -> None:
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    threading.Thread(target=receive, daemon=True).start()
    try:
        cfg = make_config(tmp_path, BOT_DATABASE_URL="sqlite:///%s" % (tmp_path / "d.sqlite3"),
                          BOT_LORE_URL=inbox.url)
        assert run_bot(cfg, "db", "upgrade").returncode == 0
        daemon = bots(cfg, "daemon", BOT_DAEMON_INTERVAL="30", NOTIFY_SOCKET=str(path),
                      WATCHDOG_USEC="400000")
        wait_until(lambda: any("READY=1" in g for g in got), what="READY=1")
        daemon.wait_for("poll: window from ")
        pings = sum(g == "WATCHDOG=1" for g in got)
        time.sleep(1.5)  # idle between two polls, the watchdog is still fed
        assert sum(g == "WATCHDOG=1" for g in got) >= pings + 3
        assert any(g.startswith("STATUS=last poll ok; next poll in ") for g in got), got
        assert daemon.stop()[0] == 0
        wait_until(lambda: any(g.startswith("STOPPING=1") for g in got), what="STOPPING=1")
    finally:
        sock.close()


def test_notifier_speaks_to_an_abstract_socket_and_is_silent_without_one():
    name = "bot-test-%d-%d" % (os.getpid(), random.randrange(1 << 30))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "8000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog == 8.0 and notifier.ping_every(60) == 2.0
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()
    finally:
        sock.close()
    quiet = Notifier({"WATCHDOG_USEC": "8000000", "WATCHDOG_PID": "1"})
    assert not quiet.enabled and quiet.watchdog is None and not quiet.send("READY=1")
