"""Configuration: the shipped file, unknown keys, wrong types, secrets, env overrides."""

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot import config as botconfig
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config.toml"


def _keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if f.name in botconfig.META_FIELDS:
            continue
        hint = cls.__dataclass_fields__[f.name].type
        sub = getattr(botconfig, hint, None) if isinstance(hint, str) else hint
        if dataclasses.is_dataclass(sub):
            yield from _keys(sub, prefix + f.name + ".")
        else:
            yield prefix + f.name


def _flatten(data, prefix=""):
    for k, v in data.items():
        if isinstance(v, dict) and k not in ("severity", "paths") and set(v) != {"env"}:
            yield from _flatten(v, prefix + k + ".")
        else:
            yield prefix + k


def test_shipped_file_has_every_key_and_matches_defaults():
    data = tomllib.loads(SHIPPED.read_text())
    assert set(_flatten(data)) == set(_keys(botconfig.Config))
    loaded = botconfig.load(SHIPPED, environ={})
    defaults = botconfig.Config()
    for section in ("lore", "database", "input", "rules", "regmodel", "drafts", "daemon"):
        assert getattr(loaded, section) == getattr(defaults, section), section
    assert loaded.state_dir == defaults.state_dir
    assert loaded.smtp.password == botconfig.Secret(env="BOT_SMTP_PASSWORD")


def test_every_shipped_key_is_commented():
    lines = SHIPPED.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            above = lines[max(0, i - 12):i]
            block = []
            for prev in reversed(above):
                if not prev.strip() or prev.startswith("["):
                    break
                block.append(prev)
            assert any(p.startswith("#") for p in block), "key without a comment: " + line


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_unknown_key_names_dotted_key_and_file(tmp_path):
    path = _write(tmp_path, '[lore]\nurll = "http://x"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key lore\.urll"):
        botconfig.load(path, environ={})


def test_a_moved_key_names_its_new_place(tmp_path):
    path = _write(tmp_path, '[rules]\nkernel_tree = "/src/linux"\n')
    with pytest.raises(ConfigError, match=r"unknown key rules\.kernel_tree \(now kernel\.repo\)"):
        botconfig.load(path, environ={})


def test_kernel_section(tmp_path):
    cfg = botconfig.load(_write(tmp_path, '[kernel]\nrepo = "/src/linux"\n'),
                         environ={"BOT_KERNEL_BASE_RANGE": "v6.6..HEAD"})
    assert (cfg.kernel.repo, cfg.kernel.base_range) == ("/src/linux", "v6.6..HEAD")
    assert botconfig.Config().kernel.base_range == "HEAD"


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key lorre"):
        botconfig.load(_write(tmp_path, "[lorre]\n"), environ={})


def test_wrong_type(tmp_path):
    path = _write(tmp_path, "[lore]\nretries = \"five\"\n")
    with pytest.raises(ConfigError, match=r"c\.toml: lore\.retries: expected an integer, got string"):
        botconfig.load(path, environ={})


def test_wrong_type_in_list(tmp_path):
    with pytest.raises(ConfigError, match=r"rules\.disable: expected an array of strings"):
        botconfig.load(_write(tmp_path, "[rules]\ndisable = [1]\n"), environ={})


def test_bad_severity_override(tmp_path):
    with pytest.raises(ConfigError, match=r"rules\.severity\.barrier"):
        botconfig.load(_write(tmp_path, '[rules]\nseverity = { barrier = "fatal" }\n'), environ={})


def test_secret_from_environment(tmp_path):
    path = _write(tmp_path, '[smtp]\npassword = { env = "MY_SMTP_PW" }\n')
    cfg = botconfig.load(path, environ={"MY_SMTP_PW": "hunter2"})
    assert cfg.smtp.password.reveal() == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.smtp.password)


def test_secret_unset_fails_only_when_used(tmp_path):
    cfg = botconfig.load(_write(tmp_path, '[smtp]\npassword = { env = "NOPE_UNSET" }\n'), environ={})
    with pytest.raises(ConfigError, match="NOPE_UNSET"):
        cfg.smtp.password.reveal()


def test_literal_secret_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"smtp\.password: a secret must be written"):
        botconfig.load(_write(tmp_path, '[smtp]\npassword = "hunter2"\n'), environ={})


def test_environment_overrides_file(tmp_path):
    path = _write(tmp_path, '[lore]\nurl = "http://127.0.0.1:1/all"\nretries = 1\n')
    cfg = botconfig.load(path, environ={
        "BOT_LORE_URL": "http://127.0.0.1:2/all", "BOT_LORE_RETRIES": "7",
        "BOT_STATE_DIR": str(tmp_path / "s"), "BOT_RULES_DISABLE": "barrier, polarity",
        "BOT_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1/db"})
    assert cfg.lore.url == "http://127.0.0.1:2/all"
    assert cfg.lore.retries == 7
    assert cfg.state_dir == str(tmp_path / "s")
    assert cfg.rules.disable == ("barrier", "polarity")
    assert cfg.database_url == "postgresql+psycopg://u@127.0.0.1/db"


def test_default_database_is_sqlite_in_state_dir(tmp_path):
    cfg = botconfig.load(_write(tmp_path, 'state_dir = "%s"\n' % (tmp_path / "st")), environ={})
    assert cfg.database_url == "sqlite:///%s" % (tmp_path / "st" / "bot.sqlite3")


def test_bad_environment_value(tmp_path):
    with pytest.raises(ConfigError, match=r"BOT_LORE_RETRIES"):
        botconfig.load(_write(tmp_path, ""), environ={"BOT_LORE_RETRIES": "many"})


def test_bot_config_selects_file(tmp_path):
    path = _write(tmp_path, '[lore]\nurl = "http://127.0.0.1:3/all"\n')
    assert botconfig.load(environ={"BOT_CONFIG": str(path)}).lore.url == "http://127.0.0.1:3/all"


def test_cli_bad_config_is_one_line_exit_2(tmp_path):
    path = _write(tmp_path, "[lore]\nretries = \"x\"\n")
    proc = subprocess.run([sys.executable, "-m", "bot", "--config", str(path), "db", "status"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "lore.retries" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_config_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bot", "--config", str(tmp_path / "none.toml"),
                           "db", "status"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "none.toml: no such configuration file" in proc.stderr
