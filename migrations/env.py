"""Alembic environment: the bot's models are the target, SQLite runs in batch mode.

Used by `bot db upgrade` (which passes its engine in `config.attributes`)
and by plain `alembic` from the repository (which reads `alembic.ini` and
$BOT_DATABASE_URL / config.toml through the bot's own config loader).
"""

from alembic import context
from sqlalchemy import Engine

from bot.store.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from bot import config as botconfig
    from bot.store.db import make_engine
    return make_engine(botconfig.load())


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with _engine().connect() as conn:
        _run(conn)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
