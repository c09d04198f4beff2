"""Configuration: one TOML file loaded into frozen dataclasses.

The file is chosen by ``--config PATH``, else ``$BOT_CONFIG``, else
``./config.toml`` when it exists, else the built-in defaults (which are the
values in the shipped ``config.toml``). Every key can be overridden by an
environment variable ``BOT_<SECTION>_<KEY>`` (top-level keys: ``BOT_<KEY>``),
which wins over the file. Unknown keys and wrong types are rejected with the
dotted key name and the file. Secrets are never literal: a secret key takes
``{ env = "NAME" }`` and the value is read from that variable.

The loaded `Config` is passed down explicitly; there is no module global.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

# Files where KVM/arm64 defines, saves or restores HCR_EL2/MDCR_EL2, before and
# after the 5.9 move of the hyp code (REVIEW-GUIDE section 4).
DEFAULT_QUERY = (
    "(dfn:arch/arm64/include/asm/kvm_arm.h OR dfn:arch/arm64/tools/sysreg"
    " OR dfn:arch/arm64/include/asm/kvm_host.h OR dfn:arch/arm64/include/asm/kvm_emulate.h"
    " OR dfn:arch/arm64/include/asm/el2_setup.h OR dfn:arch/arm64/kvm/hyp/*"
    " OR dfn:arch/arm64/kvm/debug.c OR dfn:arch/arm64/kvm/arm.c"
    " OR dfn:arch/arm64/kvm/pmu.c OR dfn:arch/arm64/kvm/nested.c"
    " OR dfn:virt/kvm/arm/hyp/* OR dfn:arch/arm64/kernel/head.S"
    " OR dfn:arch/arm64/kernel/hyp-stub.S)"
)


@dataclass(frozen=True, slots=True)
class Secret:
    """A value taken from an environment variable; never printed.

    The variable is read when the config is loaded; a missing one is an error
    only when the secret is used (`reveal`), so commands that need no secret
    run without it.
    """

    env: str
    value: str | None = field(repr=False, default=None)

    def reveal(self) -> str:
        if self.value is None:
            raise ConfigError("environment variable %s (a configured secret) is not set"
                              % self.env)
        return self.value

    def __str__(self) -> str:
        return "<secret from $%s>" % self.env


@dataclass(frozen=True, slots=True, kw_only=True)
class LoreConfig:
    url: str = "https://lore.kernel.org/all"
    query: str = DEFAULT_QUERY
    lists: tuple[str, ...] = ()
    initial_lookback: int = 7
    overlap: int = 3600
    longscan_every: int = 24
    longscan_lookback: int = 3
    followups: bool = True
    min_interval: float = 1.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 2.0
    max_response_bytes: int = 256 * 1024 * 1024
    contact: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    url: str = ""
    echo: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InputConfig:
    max_inflated_bytes: int = 2 * 1024 * 1024 * 1024
    max_message_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesConfig:
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    severity: dict[str, str] = field(default_factory=dict)
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kernel_tree: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegmodelConfig:
    kernel_tree: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftsConfig:
    reviewer_name: str = "KVM sysreg review bot"
    reviewer_email: str = ""
    signature: str = ""
    repeat_still_present: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    user: str = ""
    password: Secret | None = None
    from_addr: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    interval: int = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    listen: str = "127.0.0.1"
    port: int = 8050
    secret_key: Secret | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    state_dir: str = "./var"
    log_level: str = "info"
    lore: LoreConfig = field(default_factory=LoreConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    input: InputConfig = field(default_factory=InputConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    regmodel: RegmodelConfig = field(default_factory=RegmodelConfig)
    drafts: DraftsConfig = field(default_factory=DraftsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    web: WebConfig = field(default_factory=WebConfig)
    source: str = field(default="(defaults)", compare=False)

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite in `state_dir` by default."""
        if self.database.url:
            return self.database.url
        return "sqlite:///" + str(Path(self.state_dir).resolve() / "bot.sqlite3")


_LEVELS = ("debug", "info", "warning", "error")
_SEVERITIES = ("error", "warning", "question", "info")


def load(path: str | os.PathLike[str] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration; see the module docstring for the order."""
    env = os.environ if environ is None else environ
    chosen = str(path) if path is not None else env.get("BOT_CONFIG") or None
    data: dict[str, Any] = {}
    source = "(defaults)"
    if chosen is None and Path("config.toml").is_file():
        chosen = "config.toml"
    if chosen is not None:
        source = chosen
        try:
            with open(chosen, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("%s: no such configuration file" % chosen) from None
        except OSError as exc:
            raise ConfigError("%s: cannot read: %s" % (chosen, exc.strerror)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("%s: not valid TOML: %s" % (chosen, exc)) from None
    cfg: Config = _build(Config, data, "", source, env)
    cfg = dataclasses.replace(cfg, source=source)
    _validate(cfg)
    return cfg


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str,
           env: Mapping[str, str]) -> Any:
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    for key in data:
        if key not in known:
            raise ConfigError("%s: unknown key %s%s" % (source, prefix, key))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        hint = hints[f.name]
        dotted = prefix + f.name
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            sub = data.get(f.name, {})
            if not isinstance(sub, dict):
                raise ConfigError("%s: %s: expected a table" % (source, dotted))
            values[f.name] = _build(hint, sub, dotted + ".", source, env)
            continue
        var = "BOT_" + dotted.replace(".", "_").upper()
        if var in env:
            values[f.name] = _from_env(hint, env[var], var, env)
        elif f.name in data:
            values[f.name] = _coerce(hint, data[f.name], dotted, source, env)
    return cls(**values)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "array", dict: "table"}.get(type(value), type(value).__name__)


def _coerce(hint: Any, value: Any, dotted: str, source: str,
            env: Mapping[str, str]) -> Any:
    where = "%s: %s" % (source, dotted)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and Secret in args:
        if not (isinstance(value, dict) and set(value) == {"env"}
                and isinstance(value["env"], str)):
            raise ConfigError('%s: a secret must be written { env = "NAME" }' % where)
        name = value["env"]
        return Secret(env=name, value=env.get(name))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError("%s: expected a boolean, got %s" % (where, _type_name(value)))
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("%s: expected an integer, got %s" % (where, _type_name(value)))
        if value < 0:
            raise ConfigError("%s: must not be negative" % where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("%s: expected a number, got %s" % (where, _type_name(value)))
        if value < 0:
            raise ConfigError("%s: must not be negative" % where)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError("%s: expected a string, got %s" % (where, _type_name(value)))
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError("%s: expected an array of strings" % where)
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError("%s: expected a table, got %s" % (where, _type_name(value)))
        inner = args[1]
        return {str(k): _coerce(inner, v, "%s.%s" % (dotted, k), source, env)
                for k, v in value.items()}
    raise ConfigError("%s: unsupported setting" % where)  # pragma: no cover


def _from_env(hint: Any, raw: str, var: str, env: Mapping[str, str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and Secret in args:
        return Secret(env=var, value=raw)
    if hint is str:
        return raw
    if origin is tuple and not raw.lstrip().startswith("["):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    try:
        value = tomllib.loads("v = " + raw)["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError("$%s: not a valid value: %r" % (var, raw)) from None
    return _coerce(hint, value, var, "environment", env)


def _validate(cfg: Config) -> None:
    where = cfg.source
    if cfg.log_level not in _LEVELS:
        raise ConfigError("%s: log_level: must be one of %s" % (where, ", ".join(_LEVELS)))
    for rule, sev in cfg.rules.severity.items():
        if sev not in _SEVERITIES:
            raise ConfigError("%s: rules.severity.%s: must be one of %s"
                              % (where, rule, ", ".join(_SEVERITIES)))
    if not cfg.lore.url.startswith(("http://", "https://")):
        raise ConfigError("%s: lore.url: must be an http(s) URL" % where)
    url = cfg.database.url
    if url and not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError("%s: database.url: must be a sqlite:// or "
                          "postgresql+psycopg:// URL" % where)
