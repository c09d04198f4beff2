"""`bot config show`: the effective configuration, as TOML that loads back
to the same values, each key annotated with where its value came from (the
file, an environment variable or the default). Secrets show the variable
they are read from, never their value."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bot.config import META_FIELDS, Config, Secret


def _toml(value: Any) -> str:
    if isinstance(value, Secret):
        return '{ env = %s }' % json.dumps(value.env)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(_toml(v) for v in value)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s = %s" % (json.dumps(str(k)), _toml(v))
                                  for k, v in value.items())
    raise TypeError("no TOML for %r" % (value,))  # pragma: no cover - config types only


def _origin(cfg: Config, dotted: str, value: Any) -> str:
    origin = cfg.origins.get(dotted, "default")
    if origin == "file":
        origin = cfg.source
    if isinstance(value, Secret):
        state = "$%s %s" % (value.env, "set" if value.value is not None else "not set")
        origin = state if origin == "$" + value.env else "%s, %s" % (origin, state)
    return origin


def _row(cfg: Config, key: str, dotted: str, value: Any) -> tuple[str, str]:
    if value is None:  # an unset secret: TOML has no null, so the key stays out
        return "# %s (not set)" % key, _origin(cfg, dotted, value)
    return "%s = %s" % (key, _toml(value)), _origin(cfg, dotted, value)


def show(cfg: Config) -> str:
    if cfg.found_by:
        head = "# configuration file: %s (found by %s)" % (cfg.source, cfg.found_by)
    else:
        head = ("# no configuration file (looked for --config, $BOT_CONFIG, "
                "$XDG_CONFIG_HOME/kvm-sysreg-bot/config.toml, ./config.toml): defaults")
    lines = [head]
    tables: list[tuple[str, Any]] = []
    rows: list[tuple[str, str]] = []
    for f in dataclasses.fields(cfg):
        if f.name in META_FIELDS:
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            tables.append((f.name, value))
        else:
            rows.append(_row(cfg, f.name, f.name, value))
    for name, table in tables:
        rows.append(("", ""))
        rows.append(("[%s]" % name, ""))
        for f in dataclasses.fields(table):
            value = getattr(table, f.name)
            rows.append(_row(cfg, f.name, "%s.%s" % (name, f.name), value))
    width = min(max(len(r[0]) for r in rows if r[1]), 48)
    for text, origin in rows:
        lines.append("%s  # %s" % (text.ljust(width), origin) if origin else text)
    lines.append("")
    lines.append("# database in use: %s" % _database(cfg))
    return "\n".join(lines) + "\n"


def _database(cfg: Config) -> str:
    url = cfg.database_url
    if "@" in url and "://" in url:  # never print a password written in the URL
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        url = "%s://%s@%s" % (scheme, creds.split(":", 1)[0], host)
    return url
