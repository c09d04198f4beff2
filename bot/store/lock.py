"""The poll lock: one active poller (`bot daemon` or `bot poll`) per database.

Two pollers of one database would double the traffic to the archive and
race on what they store, so every poller holds this lock while it polls:

- SQLite: an exclusive `flock` on ``<state_dir>/poller.lock``, which also
  names the holder (command, PID, host, since when). The kernel drops the
  lock when the process dies, however it dies.
- PostgreSQL: a session advisory lock, held by one dedicated connection
  whose ``application_name`` names the holder. The server drops it when that
  connection ends: the process died (even by SIGKILL), its host went away,
  or the server restarted. Other hosts see it too, so a second daemon can
  wait as a standby and take over.

`PollLock.verify` tells whether the lock is still held (a PostgreSQL
restart ends the connection, and the lock with it); the daemon checks it
before each cycle and takes the lock again, or stands by, when it is gone.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from bot.config import Config
from bot.errors import DatabaseUnavailable, Transient

logger = logging.getLogger(__name__)

# The advisory lock's key: a fixed number no other application on the
# database uses, derived from the bot's name; positive, so that pg_locks
# shows it as (classid, objid) = (key >> 32, key & 0xffffffff).
_KEY = int.from_bytes(hashlib.sha256(b"kvm-sysreg-review-bot poll lock").digest()[:8],
                      "big") >> 1
_APP_PREFIX = "kvm-sysreg-review-bot:"
# PostgreSQL keeps the first 63 bytes of application_name.
_APP_MAX = 63


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """Who holds the poll lock."""

    command: str
    pid: int
    host: str
    since: dt.datetime | None = None

    def __str__(self) -> str:
        since = (" since %s" % self.since.strftime("%Y-%m-%d %H:%M:%SZ")
                 if self.since is not None else "")
        return "`%s` (PID %d on %s%s)" % (self.command, self.pid, self.host, since)

    @property
    def is_daemon(self) -> bool:
        return self.command == "bot daemon"


def this_process(command: str) -> Holder:
    return Holder(command=command, pid=os.getpid(), host=socket.gethostname(),
                  since=dt.datetime.now(dt.UTC).replace(microsecond=0))


class LockHeld(Transient):
    """Another poller holds the poll lock."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


def held_message(what: str, holder: Holder | None) -> str:
    if holder is None:
        return "another poller holds the poll lock of %s" % what
    if holder.is_daemon:
        return ("the daemon %s holds the poll lock of %s: it polls this database; "
                "stop it to poll by hand" % (holder, what))
    return "%s holds the poll lock of %s" % (holder, what)


class PollLock:
    """The interface both kinds of lock share."""

    #: What is locked, for messages: the lock file or the database.
    what: str

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def verify(self) -> bool:
        """Whether this process still holds the lock."""
        raise NotImplementedError

    def holder(self) -> Holder | None:
        """Who holds the lock now (None: nobody, or not known)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def acquire(self, wait: float, stop: threading.Event | None = None,
                give_up_on_daemon: bool = True,
                waiting: Callable[[], None] | None = None) -> None:
        """Take the lock, waiting up to `wait` seconds for another `bot poll`;
        raises LockHeld when it is still held then, or at once when the holder
        is a daemon (it holds the lock for good) and `give_up_on_daemon`.
        `waiting` is called while it waits (the daemon feeds its watchdog)."""
        deadline = time.monotonic() + wait
        logged = False
        while not self.try_acquire():
            if waiting is not None:
                waiting()
            holder = self.holder()
            if (holder is not None and holder.is_daemon and give_up_on_daemon) or (
                    time.monotonic() >= deadline):
                raise LockHeld(held_message(self.what, holder), holder)
            if not logged:
                logger.info("waiting up to %d s for %s", max(deadline - time.monotonic(), 0),
                            held_message(self.what, holder))
                logged = True
            if stop is not None:
                if stop.wait(min(0.5, max(deadline - time.monotonic(), 0.01))):
                    raise LockHeld("stopped while waiting: " + held_message(self.what, holder),
                                   holder)
            else:
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))

    def __enter__(self) -> PollLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class FileLock(PollLock):
    """`flock` on a file in `state_dir` (SQLite: one host by nature)."""

    def __init__(self, path: Path, me: Holder) -> None:
        self.path = path
        self.what = str(path)
        self._me = me
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        me = self._me
        record = json.dumps({"command": me.command, "pid": me.pid, "host": me.host,
                             "since": me.since.isoformat() if me.since else None})
        os.ftruncate(fd, 0)
        os.pwrite(fd, (record + "\n").encode(), 0)
        self._fd = fd
        return True

    def verify(self) -> bool:
        return self._fd is not None

    def holder(self) -> Holder | None:
        if self._fd is not None:
            return self._me
        try:
            record = json.loads(self.path.read_text())
            since = record.get("since")
            holder = Holder(command=str(record["command"]), pid=int(record["pid"]),
                            host=str(record["host"]),
                            since=dt.datetime.fromisoformat(since) if since else None)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # never written, or being rewritten right now
        if not self._locked_by_someone():
            return None  # a record left by a poller that has exited
        return holder

    def _locked_by_someone(self) -> bool:
        # A shared lock succeeds only while no one holds the exclusive one;
        # it is dropped at once.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class AdvisoryLock(PollLock):
    """A PostgreSQL session advisory lock on a connection of its own."""

    def __init__(self, engine: Engine, me: Holder) -> None:
        self.engine = engine
        self.what = "database %s" % engine.url.render_as_string(hide_password=True)
        self._me = me
        self._conn: Connection | None = None
        self._held = False

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self.engine.connect()
            try:
                name = "%s %s %d@%s" % (_APP_PREFIX, self._me.command, self._me.pid,
                                        self._me.host)
                conn.execute(text("SELECT set_config('application_name', :n, false)"),
                             {"n": name[:_APP_MAX]})
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except DBAPIError:
                pass

    def _unavailable(self, exc: DBAPIError) -> DatabaseUnavailable:
        self._drop()
        return DatabaseUnavailable("%s unavailable: %s" % (self.what,
                                                           str(exc.orig).strip()))

    def try_acquire(self) -> bool:
        if self._held and self.verify():
            return True
        try:
            conn = self._connection()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": _KEY}).scalar())
            conn.commit()  # the lock is the session's, not the transaction's
        except DBAPIError as exc:
            raise self._unavailable(exc) from None
        self._held = got
        return got

    def verify(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            held = bool(self._conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid() AND granted AND objsubid = 1"
                " AND classid = (:k >> 32)::oid AND objid = (:k & 4294967295)::oid"),
                {"k": _KEY}).scalar())
            self._conn.commit()
        except DBAPIError:
            logger.warning("the poll lock's connection to %s is gone", self.what)
            self._drop()
            return False
        self._held = held
        return held

    def holder(self) -> Holder | None:
        if self._held:
            return self._me
        try:
            with self.engine.connect() as conn:
                row = conn.execute(text(
                    "SELECT a.application_name, a.backend_start FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "                   WHERE datname = current_database())"
                    " AND l.classid = (:k >> 32)::oid AND l.objid = (:k & 4294967295)::oid"),
                    {"k": _KEY}).first()
        except DBAPIError as exc:
            raise DatabaseUnavailable("%s unavailable: %s" % (
                self.what, str(exc.orig).strip())) from None
        if row is None:
            return None
        return parse_application_name(row[0] or "", row[1])

    def release(self) -> None:
        if self._conn is not None and self._held:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _KEY})
                self._conn.commit()
            except DBAPIError:
                pass  # the connection is gone, and the lock with it
        self._held = False
        if self._conn is not None:
            try:
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None


def parse_application_name(name: str, since: dt.datetime | None) -> Holder | None:
    """The holder an advisory lock connection's application_name names."""
    if not name.startswith(_APP_PREFIX):
        return None
    rest = name[len(_APP_PREFIX):].strip()
    command, _, who = rest.rpartition(" ")
    pid, _, host = who.partition("@")
    if not command or not pid.isdigit():
        return None
    return Holder(command=command, pid=int(pid), host=host or "?", since=since)


def poll_lock(cfg: Config, engine: Engine, command: str) -> PollLock:
    """The poll lock of the configured database, for a process running `command`."""
    me = this_process(command)
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, me)
    return FileLock(Path(cfg.state_dir) / "poller.lock", me)
