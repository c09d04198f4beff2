"""Alembic is the only schema source: upgrade, no drift from the models, downgrade."""

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.store import db
from bot.store.models import Base
from tests.conftest import make_config


def _engine(db_url, tmp_path):
    return db.make_engine(make_config(tmp_path, BOT_DATABASE_URL=db_url))


def test_upgrade_head_and_models_do_not_drift(db_url, tmp_path):
    engine = _engine(db_url, tmp_path)
    db.upgrade(engine)
    db.check_schema(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert {"message", "series", "patch", "trailer", "finding", "draft", "poll_cursor",
            "quarantine", "daemon_status"} <= tables
    engine.dispose()


def test_downgrade_to_base_then_upgrade(db_url, tmp_path):
    engine = _engine(db_url, tmp_path)
    db.upgrade(engine)
    db.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    current, heads = db.current_heads(engine)
    assert current == set() and heads
    db.upgrade(engine)
    db.check_schema(engine)
    engine.dispose()


def _bot(tmp_path, db_url, *args, stdin=None):
    env = {"BOT_DATABASE_URL": db_url, "BOT_STATE_DIR": str(tmp_path / "state"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True,
                          text=True, env=env, input=stdin, cwd=tmp_path)


def test_outdated_schema_is_refused_with_a_hint(db_url, tmp_path):
    proc = _bot(tmp_path, db_url, "check", "--store",
                str(__import__("pathlib").Path(__file__).parent / "data/threads/replies-only.mbox"))
    assert proc.returncode == 2
    assert "bot db upgrade" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_cli_db_upgrade_and_status(db_url, tmp_path):
    proc = _bot(tmp_path, db_url, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    engine = _engine(db_url, tmp_path)
    _, heads = db.current_heads(engine)
    engine.dispose()
    assert proc.stdout == "database at %s\n" % ", ".join(sorted(heads))
    proc = _bot(tmp_path, db_url, "db", "status")
    assert proc.returncode == 0
    assert "run `bot db upgrade`" not in proc.stdout


def test_database_unavailable_is_transient(tmp_path):
    proc = _bot(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none", "db", "upgrade")
    assert proc.returncode == 3
    assert "unavailable" in proc.stderr and proc.stderr.count("\n") == 1
