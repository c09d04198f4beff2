"""Exit codes: the README's table is the one bot/cli.py documents, every
documented code is reached for real, and every foreseeable problem of the
environment or the configuration is exit 2 (it will not go away by itself)
or 3 (it may), with one line naming what is wrong; never 4, never a
traceback, never a setting quietly ignored."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import cli
from bot.store import db
from tests.conftest import DATA, in_ci, make_config

ROOT = Path(__file__).resolve().parent.parent
PATCH = DATA / "poll" / "sp-el0-v1.mbox"
CLEAN = DATA / "labelled" / "clean-remove-activate-vm.mbox"
QUESTION = DATA / "labelled" / "problem-polarity-drop-fb.mbox"  # one polarity question


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, prefix: tuple = (),
        config: Path | None = DATA / "config" / "test.toml") -> subprocess.CompletedProcess:
    environ = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    if config is not None:
        environ["BOT_CONFIG"] = str(config)
    environ.update(env or {})
    return subprocess.run([*prefix, sys.executable, "-m", "bot", *args], capture_output=True,
                          text=True, env=environ, cwd=tmp_path, timeout=120)


def refused(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bot: error: "), proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def unprivileged() -> tuple[str, ...]:
    """A prefix that makes file modes bind: root reads and writes any file,
    so as root the bot runs without the two capabilities that let it."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        if in_ci():
            pytest.fail("setpriv (util-linux) is needed to drop root's file access")
        pytest.skip("setpriv (util-linux) is needed to drop root's file access")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


# -- the table ------------------------------------------------------------------

def _readme_codes() -> dict[int, str]:
    section = (ROOT / "README.md").read_text().split("### Exit codes", 1)[1]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.+) \|$",
                                                             section.split("\n\n", 2)[1], re.M)}


def _cli_codes() -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\s+(\d+)  (\S.*)$",
                                                             cli.__doc__ or "", re.M)}


def test_the_readme_table_is_the_one_the_cli_documents():
    readme, documented = _readme_codes(), _cli_codes()
    constants = {v for k, v in vars(cli).items() if k.startswith("EXIT_")}
    assert set(readme) == set(documented) == constants == {0, 1, 2, 3, 4, 130}
    assert "Ctrl-C" in readme[130] and "interrupted" in documented[130]
    mapped = {code for _, code in cli._EXIT_FOR}
    assert mapped == {2, 3}  # every error the bot expects is input/config or transient


def test_0_and_1_follow_the_findings(tmp_path):
    assert run(tmp_path, "check", str(CLEAN)).returncode == 0
    assert run(tmp_path, "check", str(QUESTION)).returncode == 0  # a question, not an error
    assert run(tmp_path, "check", "--fail-on", "question", str(QUESTION)).returncode == 1


def test_2_bad_input(tmp_path):
    refused(run(tmp_path, "check", str(tmp_path / "nope.mbox")), 2, "no such file")


def test_3_database_unavailable(tmp_path):
    proc = run(tmp_path, "check", "--store", str(PATCH),
               env={"BOT_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"})
    refused(proc, 3, "unavailable")


def test_4_internal_error(tmp_path, monkeypatch, capsys):
    # A fake for what cannot be caused on purpose: a bug. In-process, with
    # the check raising what no code path expects.
    import bot.check

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug \x1b[2J")

    monkeypatch.setattr(bot.check, "run_check", broken)
    monkeypatch.setenv("BOT_CONFIG", str(DATA / "config" / "test.toml"))
    monkeypatch.setenv("BOT_STATE_DIR", str(tmp_path))
    assert cli.main(["check", str(PATCH)]) == 4
    err = capsys.readouterr().err
    assert err == "bot: internal error: RuntimeError: a bug ?[2J (run with -v for details)\n"


def _syscall_is_read(pid: int) -> bool:
    read = {"x86_64": 0, "aarch64": 63}.get(os.uname().machine)
    try:
        fields = Path("/proc/%d/syscall" % pid).read_text().split()
    except OSError:
        return False
    return read is not None and bool(fields) and fields[0] == str(read)


def test_130_on_ctrl_c(tmp_path):
    env = {"BOT_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "check", "-"], env=env, cwd=tmp_path,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _syscall_is_read(proc.pid):  # waiting for the message on stdin
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and err == "bot: interrupted\n"


# -- configuration ------------------------------------------------------------------

@pytest.mark.parametrize("toml, env, words", [
    ('[rules]\nenable = ["no-such-rule"]\n', {}, ("rules.enable", "'no-such-rule'")),
    ("", {"BOT_RULES_DISABLE": "polarty"}, ("rules.disable", "did you mean 'polarity'")),
    ('[rules]\nseverity = { "host-restor" = "error" }\n', {}, ("rules.severity",)),
    ('[rules]\npaths = { nope = ["arch/*"] }\n', {}, ("rules.paths", "'nope'")),
    ("", {"BOT_DATABSE_URL": "postgresql+psycopg://x@127.0.0.1/y"},
     ("$BOT_DATABSE_URL", "did you mean $BOT_DATABASE_URL")),
    ("", {"BOT_LORE_MIN_INTERVAL": "inf"}, ("BOT_LORE_MIN_INTERVAL", "finite")),
    ("", {"BOT_LORE_READ_TIMEOUT": "nan"}, ("BOT_LORE_READ_TIMEOUT", "finite")),
    ("[lore]\nconnect_timeout = 1e300\n", {}, ("lore.connect_timeout", "between")),
    ("[daemon]\ninterval = 100000000000000000000000\n", {}, ("daemon.interval",)),
    ("", {"BOT_INPUT_MAX_MESSAGE_BYTES": "99999999999999999999"},
     ("BOT_INPUT_MAX_MESSAGE_BYTES", "between")),
], ids=["unknown-rule", "unknown-category-env", "severity-key", "paths-key", "unknown-variable",
        "inf", "nan", "huge-float", "huge-interval", "huge-bytes"])
def test_a_setting_that_would_switch_the_bot_off_or_aside_is_refused(tmp_path, toml, env,
                                                                     words):
    config = tmp_path / "config.toml"
    config.write_text('[lore]\nurl = "http://127.0.0.1:9/all"\n' + toml
                      if "[lore]" not in toml else toml)
    refused(run(tmp_path, "regmodel", "show", "HCR_EL2.TGE", env=env, config=config), 2,
            *words)


def test_rule_ids_categories_and_secrets_in_bot_variables_are_accepted(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[rules]\nenable = ["polarity", "host-restore"]\n'
                      'severity = { polarity = "error" }\n'
                      '[smtp]\npassword = { env = "BOT_MAIL_SECRET" }\n')
    proc = run(tmp_path, "check", "--fail-on", "error", str(QUESTION), config=config,
               env={"BOT_MAIL_SECRET": "x", "BOT_RULES_DISABLE": "host-restore"})
    assert proc.returncode == 1, proc.stderr  # polarity raised to error, the rest off
    assert "polarity" in proc.stdout


def test_a_config_file_that_is_not_utf8_a_fifo_or_a_directory(tmp_path):
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b'log_level = "info"\n# caf\xe9\n')
    refused(run(tmp_path, "db", "status", config=latin), 2, str(latin), "not UTF-8")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    refused(run(tmp_path, "db", "status", config=fifo), 2, str(fifo), "is a FIFO")
    refused(run(tmp_path, "db", "status", config=tmp_path), 2, str(tmp_path), "is a directory")


# -- environment ----------------------------------------------------------------

def test_a_state_dir_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run(tmp_path, "check", "--store", str(PATCH),
               env={"BOT_STATE_DIR": str(blocker / "state")})
    refused(proc, 2, "state_dir", str(blocker / "state"))
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o555)
    proc = run(tmp_path, "db", "upgrade", env={"BOT_STATE_DIR": str(locked / "state")},
               prefix=unprivileged())
    refused(proc, 2, "state_dir", "Permission denied")


def test_an_unreadable_directory_or_maildir(tmp_path):
    directory = tmp_path / "patches"
    directory.mkdir()
    shutil.copy(PATCH, directory / "0001.patch")
    directory.chmod(0)
    maildir = tmp_path / "maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    shutil.copy(PATCH, maildir / "cur" / "1:2,S")
    (maildir / "cur").chmod(0)
    try:
        refused(run(tmp_path, "check", str(directory), prefix=unprivileged()), 2,
                str(directory), "cannot read")
        refused(run(tmp_path, "check", str(maildir), prefix=unprivileged()), 2,
                str(maildir / "cur"), "cannot read")
    finally:
        directory.chmod(0o755)
        (maildir / "cur").chmod(0o755)


def test_a_read_only_sqlite_file(tmp_path):
    path = tmp_path / "bot.sqlite3"
    url = "sqlite:///%s" % path
    assert run(tmp_path, "db", "upgrade", env={"BOT_DATABASE_URL": url}).returncode == 0
    path.chmod(0o444)
    tmp_path.chmod(0o555)  # nor can SQLite make its -wal and -shm files
    try:
        proc = run(tmp_path, "check", "--store", str(PATCH), env={"BOT_DATABASE_URL": url},
                   prefix=unprivileged())
    finally:
        tmp_path.chmod(0o755)
    refused(proc, 2, "readonly database")


def test_a_postgresql_database_or_role_that_does_not_exist(tmp_path):
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/no_such_db_for_bot"
    refused(run(tmp_path, "check", "--store", str(PATCH), env={"BOT_DATABASE_URL": url}),
            2, 'database "no_such_db_for_bot" does not exist', "check database.url")
    url = "postgresql+psycopg://no_such_role@127.0.0.1:5432/test"
    refused(run(tmp_path, "db", "upgrade", env={"BOT_DATABASE_URL": url}), 2,
            'role "no_such_role" does not exist', "check database.url")


def _migrated(db_url: str, tmp_path: Path):
    engine = db.make_engine(make_config(tmp_path, BOT_DATABASE_URL=db_url))
    db.upgrade(engine)
    return engine


def test_a_schema_newer_than_the_code(db_url, tmp_path):
    engine = _migrated(db_url, tmp_path)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    env = {"BOT_DATABASE_URL": db_url}
    for args in (("db", "upgrade"), ("check", "--store", str(PATCH)), ("poll",)):
        refused(run(tmp_path, *args, env=env), 2, "0099_from_the_future",
                "the code is older than the database")


def test_a_dropped_table(db_url, tmp_path):
    engine = _migrated(db_url, tmp_path)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE poll_cursor"))
    engine.dispose()
    refused(run(tmp_path, "poll", env={"BOT_DATABASE_URL": db_url}), 2,
            "table poll_cursor missing")

