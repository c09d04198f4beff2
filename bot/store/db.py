"""Engine, sessions and migrations.

`upgrade` runs Alembic to head (the only way the schema is made);
`open_database` refuses a database whose schema is not at head, telling the
user to run `bot db upgrade`. Connection failures become `Transient`.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Config
from bot.errors import ConfigError, SchemaOutdated, Transient

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


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    conn.exec_driver_sql("BEGIN")


def make_engine(cfg: Config) -> Engine:
    url = cfg.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, echo=cfg.database.echo, pool_pre_ping=True)
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


def upgrade(engine: Engine, revision: str = "head") -> None:
    try:
        command.upgrade(alembic_config(engine), revision)
    except OperationalError as exc:
        raise Transient("database %s unavailable: %s" % (_describe(engine),
                                                         str(exc.orig).strip())) from None


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def current_heads(engine: Engine) -> tuple[set[str], set[str]]:
    """(revisions the database is at, revisions the code expects)."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except (OperationalError, DBAPIError) as exc:
        raise Transient("database %s unavailable: %s" % (_describe(engine),
                                                         str(exc.orig).strip())) from None
    return current, set(script.get_heads())


def check_schema(engine: Engine) -> None:
    current, heads = current_heads(engine)
    if current != heads:
        state = "empty" if not current else "at %s" % ", ".join(sorted(current))
        raise SchemaOutdated("database %s schema is %s, not at %s: run `bot db upgrade`"
                             % (_describe(engine), state, ", ".join(sorted(heads))))


class Database:
    """An engine plus a session factory, checked to be at the schema head."""

    def __init__(self, cfg: Config, check: bool = True) -> None:
        self.engine = make_engine(cfg)
        if check:
            check_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end, or rolls back on error."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise Transient("database %s unavailable: %s" % (_describe(self.engine),
                                                             str(exc.orig).strip())) from None

    def close(self) -> None:
        self.engine.dispose()
