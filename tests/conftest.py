"""Shared fixtures: configuration, real SQLite and PostgreSQL databases.

With CI=true a skipped test is a failure: CI must never hide a missing
dependency behind a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import config as botconfig

DATA = Path(__file__).parent / "data"
PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite the golden files (tests/data/golden/, "
                     "tests/data/drafts/golden/) from the current "
                     "output instead of comparing with them; review the diff before committing")


@pytest.fixture
def regen_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--regen-golden"))


def compare_golden(path: Path, actual: str, regen: bool) -> None:
    """Compare `actual` with the golden file exactly, or rewrite it with
    --regen-golden. A missing golden file is a failure, not a silent pass."""
    if regen:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), "%s is missing: run pytest --regen-golden and review it" % path
    expected = path.read_text()
    assert actual == expected, ("%s differs from the output (run pytest --regen-golden "
                                "and review the diff)" % path.name)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = "skipped in CI (CI=true forbids skips): %s" % (reason,)


def make_config(tmp_path: Path, **env: str) -> botconfig.Config:
    """A config with state in tmp_path; `env` are BOT_* overrides."""
    environ = {"BOT_STATE_DIR": str(tmp_path / "state")}
    environ.update(env)
    return botconfig.load(DATA / "config" / "test.toml", environ=environ)


@pytest.fixture(scope="session")
def kernel_tree() -> Path:
    """Debian's linux-source-6.12, the files tests/kernel_source.py lists.

    Downloaded with apt-get once per machine into the user's cache. A failed
    download fails the test in CI and skips it elsewhere (no network).
    """
    from tests.kernel_source import KernelSourceError, ensure_kernel_tree

    try:
        return ensure_kernel_tree()
    except KernelSourceError as exc:
        if in_ci():
            pytest.fail("linux-source-6.12 unavailable: %s" % exc)
        pytest.skip("linux-source-6.12 unavailable: %s" % exc)


@pytest.fixture(scope="session")
def kernel_repo(kernel_tree: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A git repository of linux 6.12's arm64 parts and a few later commits
    (tests/kernel_repo.py), built once per session. Tests must not change it."""
    from tests.kernel_repo import build_kernel_repo

    return build_kernel_repo(tmp_path_factory.mktemp("kernel-repo") / "linux", kernel_tree)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return "sqlite:///%s" % (tmp_path / "bot.sqlite3")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = "bot_test_%s" % uuid.uuid4().hex[:12]
    try:
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "%s"' % name))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail("PostgreSQL at %s is not usable: %s" % (PG_ADMIN_URL, exc.orig))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "bot.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def migrated(db_url: str, tmp_path: Path) -> botconfig.Config:
    """A config whose database (SQLite, then PostgreSQL) is at the schema head."""
    from bot.store import db

    cfg = make_config(tmp_path, BOT_DATABASE_URL=db_url)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    return cfg
