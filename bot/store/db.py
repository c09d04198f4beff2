"""Engine, sessions and migrations.

`upgrade` runs Alembic to head (the only way the schema is made);
`Database` refuses a database whose schema is not at head, telling the
user to run `bot db upgrade`, or, when the database is newer than the code,
saying so; and one whose tables are not all there.

Database errors are sorted once, here (`database_error`): what trying
again may cure (the server down or restarting, a lost connection, SQLite
busy) is `DatabaseUnavailable` (a `Transient`); what it will not (no such database or role, access
refused, a read-only file, a missing table) is `Unusable`.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Config
from bot.errors import BotError, ConfigError, DatabaseUnavailable, SchemaOutdated, Unusable
from bot.store.models import Base

logger = logging.getLogger(__name__)


def migrations_dir() -> str:
    try:
        return str(importlib.resources.files("bot.migrations"))
    except ModuleNotFoundError:  # running from a source tree without installing
        return str(Path(__file__).resolve().parents[2] / "migrations")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets the dashboard read while the daemon writes; foreign keys are
    # off by default in SQLite.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    # pysqlite opens transactions itself, late, and lets a SAVEPOINT begin
    # (and its RELEASE commit) one: hand transactions to SQLAlchemy, which
    # begins them explicitly (`_sqlite_begin`), so that a savepoint inside
    # a transaction rolls back with it.
    dbapi_conn.isolation_level = None


# How a transaction's commit reaches the disk, chosen per transaction
# (`Database.transaction(durable=...)`). Under WAL, FULL syncs the log at
# every commit: once the commit returns, a power loss cannot undo it.
# NORMAL syncs it only at checkpoints: a power loss may undo the last
# commits (never part of one: the database stays whole and consistent, and
# WAL keeps commits in order, so what survives is every commit up to some
# point). A commit costs a fraction of a FULL one (no fsync).
_SYNCHRONOUS = "bot_synchronous"


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # SQLite refuses to change the level inside a transaction: it is set
    # before each one, as the transaction asks (FULL unless told otherwise).
    level = conn.get_execution_options().get(_SYNCHRONOUS, "FULL")
    conn.exec_driver_sql("PRAGMA synchronous=%s" % ("NORMAL" if level == "NORMAL" else "FULL"))
    conn.exec_driver_sql("BEGIN")


def make_engine(cfg: Config) -> Engine:
    url = cfg.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        directory = Path(path[len("file:"):] if path.startswith("file:") else path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            where = "state_dir" if not cfg.database.url else "database.url"
            raise Unusable("%s: %s: cannot create the directory %s for the SQLite database: %s"
                           % (cfg.source, where, directory, exc.strerror or exc)) from None
    try:
        # A server connection may have died while pooled (a restart): it is
        # tested before use. A SQLite file's never does, and the test (a
        # query) would cost about as much as a small transaction.
        engine = create_engine(url, echo=cfg.database.echo,
                               pool_pre_ping=not url.startswith("sqlite"))
    except ArgumentError as exc:
        raise ConfigError("%s: database.url: %s" % (cfg.source, exc)) from None
    except ModuleNotFoundError as exc:
        raise ConfigError("%s: database.url: driver not installed: %s"
                          % (cfg.source, exc.name)) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def alembic_config(engine: Engine) -> AlembicConfig:
    acfg = AlembicConfig()
    acfg.set_main_option("script_location", migrations_dir())
    acfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False)
                         .replace("%", "%%"))
    acfg.attributes["engine"] = engine
    return acfg


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


# PostgreSQL refusing a connection for good: the server answered (FATAL),
# and the answer is about the configuration, not the server's state.
_PG_REFUSED = re.compile(r"FATAL:\s+(database \S+ does not exist|role \S+ does not exist|"
                         r"password authentication failed|no pg_hba\.conf entry|"
                         r"permission denied|.*authentication failed)")
# SQLSTATE classes trying again cures: connection exception, transaction
# rollback (serialization, deadlock), insufficient resources, operator
# intervention (shutdown, restart), lock not available.
_PG_TRANSIENT = ("08", "40", "53", "57", "55P03")
_SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR",
                     "SQLITE_PROTOCOL", "SQLITE_INTERRUPT")


def database_error(engine: Engine, exc: DBAPIError) -> BotError:
    """The bot's error for a database error: `Transient` or `Unusable`."""
    orig = exc.orig
    detail = " ".join(str(orig).split()) if orig is not None else str(exc)
    where = "database %s" % _describe(engine)
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlite_name is not None:
        transient = sqlite_name.startswith(_SQLITE_TRANSIENT)
    elif sqlstate:
        transient = sqlstate.startswith(_PG_TRANSIENT)
    else:  # no code: a connection that failed or was lost
        transient = not _PG_REFUSED.search(detail)
    if transient:
        return DatabaseUnavailable("%s unavailable: %s" % (where, detail))
    return Unusable("%s: %s (check database.url and the database)" % (where, detail))


# Errors about the database rather than about one statement's values
# (IntegrityError, DataError), which the caller handles.
_DATABASE_ERRORS = (OperationalError, ProgrammingError, InternalError, InterfaceError)


def upgrade(engine: Engine, revision: str = "head") -> None:
    current, _ = current_heads(engine)
    _refuse_newer(engine, current)
    try:
        command.upgrade(alembic_config(engine), revision)
    except _DATABASE_ERRORS as exc:
        raise database_error(engine, exc) from None


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def _script(engine: Engine) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(engine))


def current_heads(engine: Engine) -> tuple[set[str], set[str]]:
    """(revisions the database is at, revisions the code expects)."""
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except DBAPIError as exc:
        raise database_error(engine, exc) from None
    return current, set(_script(engine).get_heads())


def _refuse_newer(engine: Engine, current: set[str]) -> None:
    known = {rev.revision for rev in _script(engine).walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise SchemaOutdated(
            "database %s schema is at %s, which this bot does not know: the code is older "
            "than the database; run the bot version that migrated it, or a newer one"
            % (_describe(engine), ", ".join(unknown)))


def check_schema(engine: Engine) -> None:
    current, heads = current_heads(engine)
    _refuse_newer(engine, current)
    if current != heads:
        state = "empty" if not current else "at %s" % ", ".join(sorted(current))
        raise SchemaOutdated("database %s schema is %s, not at %s: run `bot db upgrade`"
                             % (_describe(engine), state, ", ".join(sorted(heads))))
    try:
        tables = set(inspect(engine).get_table_names())
    except DBAPIError as exc:
        raise database_error(engine, exc) from None
    missing = sorted(set(Base.metadata.tables) - tables)
    if missing:
        raise Unusable("database %s: table %s missing though the schema is at %s: the "
                       "database was changed by hand; restore it from a backup"
                       % (_describe(engine), ", ".join(missing), ", ".join(sorted(heads))))


class Database:
    """An engine plus a session factory, checked to be at the schema head."""

    def __init__(self, cfg: Config, check: bool = True) -> None:
        self.engine = make_engine(cfg)
        if check:
            check_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._undurable = sessionmaker(self.engine.execution_options(**{_SYNCHRONOUS: "NORMAL"}),
                                       expire_on_commit=False)
        # Transactions in progress: a daemon asked to stop lets them finish.
        self.busy = 0

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Session]:
        """A session whose work commits at the end, or rolls back on error.

        A durable transaction is on disk once it has committed. One that is
        not (`durable=False`) commits much faster, but a power loss (not a
        crash of the process) may undo it, together with the other
        non-durable ones committed after the last durable one; never part
        of one. Only what is redone by itself when lost may use it: what
        the poller stores (its cursor goes back with it, so the next cycle
        fetches it again). A maintainer's action and the outbox's marks
        (a sent mail must never be sent again) are durable."""
        self.busy += 1
        try:
            sessions = self._sessions if durable else self._undurable
            with sessions() as session, session.begin():
                if not durable and self.engine.dialect.name == "postgresql":
                    # The same promise as SQLite's NORMAL: a server crash may
                    # lose the last commits, in order, and never corrupts.
                    session.execute(text("SET LOCAL synchronous_commit TO off"))
                yield session
        except _DATABASE_ERRORS as exc:
            raise database_error(self.engine, exc) from None
        finally:
            self.busy -= 1

    def close(self) -> None:
        self.engine.dispose()
