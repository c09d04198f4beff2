"""Crash safety at small scale (bench/crash.py runs it over the whole
archive): `bot poll` against a real public-inbox and `bot check --store` over
real threads, SIGKILLed at spread random moments on SQLite and PostgreSQL;
after each kill a rerun ends with exactly the rows of one clean run, every
table compared (tests/crash.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.conftest import DATA, PG_ADMIN_URL
from tests.crash import Databases, compare, run, trial
from tests.pi import public_inbox  # noqa: F401  (the module's server)
from tests.test_poll import INITIAL

KILLS = 3
CHECKED = sorted((DATA / "threads").glob("*.mbox"))


def moments(duration: float, n: int, rng: random.Random) -> list[float]:
    """`n` random moments in (0, duration), one in each n-th of it."""
    return [duration * (k + rng.random()) / n for k in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request, tmp_path: Path):
    dbs = Databases(request.param, tmp_path, PG_ADMIN_URL)
    yield dbs
    dbs.close()


def env_for(tmp_path: Path, lore_url: str):
    def env(url: str) -> dict[str, str]:
        return dict(os.environ, BOT_CONFIG=str(DATA / "config" / "test.toml"),
                    BOT_STATE_DIR=str(tmp_path / "state"), BOT_DATABASE_URL=url,
                    BOT_LORE_URL=lore_url, BOT_LORE_MIN_INTERVAL="0.2")
    return env


def check_kills(databases: Databases, argv: list[str], env, label: str) -> None:
    reference_url = databases.fresh(label + "_ref")
    code, took, err = run(argv, env(reference_url))
    assert code == 0, err
    reference = databases.rows(reference_url)
    assert sum(reference["message"].values()) > 0
    rng = random.Random(14)
    trials = [trial(databases, argv, env, reference, moment, label)
              for moment in moments(took, KILLS, rng)]
    assert [(t.lost, t.extra) for t in trials] == [(0, 0)] * KILLS, trials
    assert any(t.killed for t in trials)


def test_poll_killed_anywhere_then_rerun_equals_a_clean_run(databases, public_inbox,
                                                            tmp_path):
    inbox = public_inbox.create()
    inbox.deliver(*INITIAL)
    check_kills(databases, ["poll"], env_for(tmp_path, inbox.url), "poll")


def test_check_store_killed_anywhere_then_rerun_equals_a_clean_run(databases, tmp_path):
    argv = ["check", "--store", "--fail-on", "never", *map(str, CHECKED)]
    check_kills(databases, argv, env_for(tmp_path, "http://127.0.0.1:9/all"), "check")


def test_row_comparison_sees_a_lost_and_a_duplicated_row(tmp_path):
    """The comparison is not blind: one row fewer is lost, a changed one is
    lost and extra."""
    dbs = Databases("sqlite", tmp_path)
    url = dbs.fresh("cmp")
    env = env_for(tmp_path, "http://127.0.0.1:9/all")(url)
    code, _, err = run(["check", "--store", "--fail-on", "never", *map(str, CHECKED)], env)
    assert code == 0, err
    reference = dbs.rows(url)
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM finding WHERE id = (SELECT max(id) FROM finding)"))
        conn.execute(text("UPDATE finding SET message = 'changed' "
                          "WHERE id = (SELECT min(id) FROM finding)"))
    engine.dispose()
    assert compare(reference, dbs.rows(url)) == (2, 1)
