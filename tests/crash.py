"""Crash trials, shared by tests/test_crash.py and bench/crash.py: run a
`bot` command, SIGKILL it at a chosen moment, run it again to the end, and
compare every table with what one clean run stores.

Rows are compared by content, not by their ids: each row becomes a digest
of its columns, a foreign key replaced by the digest of the row it points
to (so a finding is its series' Message-ID, its fingerprint and the rest).
Surrogate ids and the times rows were written are left out; so are the poll
cursor's position and cycle count, the hit each thread was fetched for,
and the poller's status row. Every other table of the models is compared, new ones
included.
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, select, text

from bot import config as botconfig
from bot.store import db
from bot.store.models import Base

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = {"id", "created_at", "updated_at", "sent_at", "seen_at", "superseded_at", "at"}
# The cursor's position and cycle count (a rerun is one more cycle), and
# which hit a thread was fetched for (the rerun may reach it through another).
VOLATILE_IN = {"poll_cursor": {"position", "cycles"}, "poll_seen": {"thread_id"}}
SKIPPED = {"daemon_status", "alembic_version"}

Rows = dict[str, collections.Counter[str]]


def table_rows(engine: Engine) -> Rows:
    """Every compared table as a multiset of row digests."""
    tables = [t for t in Base.metadata.sorted_tables if t.name not in SKIPPED]
    data: dict[str, dict[Any, Any]] = {}
    with engine.connect() as conn:
        for table in tables:
            pk = next(iter(table.primary_key.columns))
            data[table.name] = {row._mapping[pk.name]: row._mapping
                                for row in conn.execute(select(table))}
    memo: dict[tuple[str, Any], str] = {}

    def digest(table: Table, key: Any) -> str:
        if (table.name, key) in memo:
            return memo[(table.name, key)]
        row = data[table.name][key]
        parts = []
        for col in table.columns:
            if col.name in VOLATILE or col.name in VOLATILE_IN.get(table.name, ()):
                continue
            value = row[col.name]
            fks = list(col.foreign_keys)
            if fks and value is not None:
                value = ("->", digest(fks[0].column.table, value))  # type: ignore[arg-type]
            parts.append((col.name, value))
        out = hashlib.sha256(repr(parts).encode()).hexdigest()
        memo[(table.name, key)] = out
        return out

    return {t.name: collections.Counter(digest(t, k) for k in data[t.name]) for t in tables}


def differences(reference: Rows, got: Rows) -> dict[str, tuple[int, int]]:
    """Per table with a difference: (rows lost, rows duplicated or extra)."""
    out = {}
    for name in sorted(set(reference) | set(got)):
        ref = reference.get(name, collections.Counter())
        have = got.get(name, collections.Counter())
        diff = (sum((ref - have).values()), sum((have - ref).values()))
        if diff != (0, 0):
            out[name] = diff
    return out


def compare(reference: Rows, got: Rows) -> tuple[int, int]:
    """(rows lost, rows duplicated or extra) against the reference."""
    diffs = differences(reference, got).values()
    return sum(d[0] for d in diffs), sum(d[1] for d in diffs)


def total(rows: Rows) -> int:
    return sum(sum(c.values()) for c in rows.values())


class Databases:
    """Fresh, migrated databases of one kind: SQLite files, or PostgreSQL
    databases created with the admin URL (dropped by `close`)."""

    def __init__(self, kind: str, workdir: Path, pg_admin: str | None = None) -> None:
        self.kind, self.workdir, self.pg_admin = kind, workdir, pg_admin
        self._made: list[str] = []
        self._n = 0
        self._template: str | None = None

    def _url(self, name: str) -> str:
        if self.kind == "sqlite":
            return "sqlite:///%s" % (self.workdir / ("%s.sqlite3" % name))
        assert self.pg_admin is not None
        return self.pg_admin.rsplit("/", 1)[0] + "/" + name

    def _create(self, name: str, template: str | None) -> None:
        if self.kind == "sqlite":
            if template is not None:
                shutil.copyfile(Path(self._url(template)[len("sqlite:///"):]),
                                Path(self._url(name)[len("sqlite:///"):]))
            return
        admin = create_engine(self.pg_admin or "", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "%s"%s' % (
                name, ' TEMPLATE "%s"' % template if template else "")))
        admin.dispose()
        self._made.append(name)

    def fresh(self, label: str) -> str:
        """A new database at the schema head (a copy of a migrated template)."""
        if self._template is None:
            name = "crash_template_%d" % os.getpid()
            self._create(name, None)
            engine = db.make_engine(botconfig.load(environ={
                "BOT_DATABASE_URL": self._url(name), "BOT_STATE_DIR": str(self.workdir)}))
            db.upgrade(engine)
            engine.dispose()
            self._template = name
        self._n += 1
        name = "crash_%s_%d_%d" % (label, os.getpid(), self._n)
        self._create(name, self._template)
        return self._url(name)

    def rows(self, url: str) -> Rows:
        engine = create_engine(url)
        try:
            return table_rows(engine)
        finally:
            engine.dispose()

    def drop(self, url: str) -> None:
        if self.kind == "sqlite":
            path = Path(url[len("sqlite:///"):])
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            return
        name = url.rsplit("/", 1)[1]
        admin = create_engine(self.pg_admin or "", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name))
        admin.dispose()
        if name in self._made:
            self._made.remove(name)

    def close(self) -> None:
        for name in list(self._made):
            self.drop(self._url(name))
        if self._template is not None and self.kind == "sqlite":
            self.drop(self._url(self._template))


def run(argv: list[str], env: dict[str, str], kill_after: float | None = None,
        timeout: float = 3600) -> tuple[int, float, str]:
    """Run `bot ARGV`; SIGKILL it `kill_after` seconds in if still running.
    (exit code, seconds, stderr)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "bot", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, time.monotonic() - start, err.decode(errors="replace")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trial:
    moment: float
    killed: bool
    partial: bool
    lost: int
    extra: int
    tables: dict[str, tuple[int, int]]


def trial(databases: Databases, argv: list[str], env_for: Any, reference: Rows,
          moment: float, label: str) -> Trial:
    """Kill `bot ARGV` `moment` seconds in on a fresh database, rerun it to
    the end, compare with `reference`."""
    url = databases.fresh(label)
    try:
        code, _, err = run(argv, env_for(url), kill_after=moment)
        killed = code == -signal.SIGKILL
        assert killed or code == 0, "bot %s failed (%d): %s" % (" ".join(argv), code, err)
        stored = total(databases.rows(url))
        code, _, err = run(argv, env_for(url))
        assert code == 0, "the rerun of bot %s failed (%d): %s" % (" ".join(argv), code, err)
        tables = differences(reference, databases.rows(url))
        return Trial(moment=moment, killed=killed, partial=0 < stored < total(reference),
                     lost=sum(d[0] for d in tables.values()),
                     extra=sum(d[1] for d in tables.values()), tables=tables)
    finally:
        databases.drop(url)
