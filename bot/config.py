"""Configuration: one TOML file loaded into frozen dataclasses.

The file is the first of: ``--config PATH``; ``$BOT_CONFIG``;
``$XDG_CONFIG_HOME/kvm-sysreg-bot/config.toml`` (``~/.config`` when the
variable is unset) when it exists; ``./config.toml`` when it exists; else
the built-in defaults (which are the values in the shipped ``config.toml``).
The user-wide file is what makes the bot behave the same from any directory,
such as the kernel tree b4 runs its checks in. Every key can be overridden by an
environment variable ``BOT_<SECTION>_<KEY>`` (top-level keys: ``BOT_<KEY>``),
which wins over the file. Unknown keys, wrong types and numbers out of range
(not finite, or past a key's bound in `LIMITS`) are rejected with the dotted
key name and the file; so is any other ``BOT_*`` variable (a misspelt
``BOT_DATABASE_URL`` must not quietly leave the bot on SQLite), and, once the
rules are known (`check_rule_names`), a rules.* setting naming no rule.
`Config.origins` records where each value came from (the file, a
variable, or the default) for `bot config show`.
Secrets are never literal: a secret key takes ``{ env = "NAME" }`` and the
value is read from that variable.

The loaded `Config` is passed down explicitly; there is no module global.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import stat
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
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
    """[lore]: where and how the daemon polls lore, and its HTTP limits."""

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
    """[database]: the SQLAlchemy URL (empty: SQLite in state_dir)."""

    url: str = ""
    echo: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InputConfig:
    """[input]: size limits on what the bot reads."""

    max_inflated_bytes: int = 2 * 1024 * 1024 * 1024
    max_message_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesConfig:
    """[rules]: which rules run, their severities and the paths they apply to."""

    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    severity: dict[str, str] = field(default_factory=dict)
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Worker processes the rules run in beside the main one (0: in the main
    # process). One lets the poller and `bot check` assemble and store one
    # thread while the rules run on another (bot.rulepool), on a machine
    # with a core to spare (with one core it is not started); it starts
    # once a run has checked a few series itself (bot.pipeline.HERE_FIRST),
    # so a short run never waits for it.
    workers: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelConfig:
    """[kernel]: the kernel repository series are applied to, and where bases are looked for."""

    repo: str = ""
    base_range: str = "HEAD"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegmodelConfig:
    """[regmodel]: a kernel tree to take the register layout from."""

    kernel_tree: str = ""


DEFAULT_SIGNATURE = "Drafted by kvm-sysreg-review-bot, checked by the sender before sending."


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftsConfig:
    """[drafts]: who replies, to whom, and how much."""

    # The identity `bot drafts approve` uses when --as is not given (empty:
    # git's user.name/user.email); it becomes the reply's From.
    reviewer_name: str = ""
    reviewer_email: str = ""
    signature: str = DEFAULT_SIGNATURE
    # Draft again, on a new revision, what was drafted on an earlier one and
    # is still there ("Still present since v3."); false: only what is new.
    repeat_still_present: bool = True
    # Noise limits.
    min_severity: str = "question"
    max_per_series: int = 5
    only_lists: tuple[str, ...] = ()
    never_lists: tuple[str, ...] = ()
    never_authors: tuple[str, ...] = ()
    # Who gets a copy: "everyone" (the patch's To and Cc), "lists" (only the
    # mailing lists among them) or "author" (nobody but the author, in To).
    cc: str = "everyone"
    cc_extra: tuple[str, ...] = ()
    list_addresses: tuple[str, ...] = ("*@vger.kernel.org", "*@lists.*")
    cover_summary: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """[smtp]: the server approved replies are sent through."""

    send_enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    implicit_tls: bool = False
    user: str = ""
    password: Secret | None = None
    from_addr: str = ""
    timeout: float = 60.0
    lease: int = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """[daemon]: the polling interval and its time limits."""

    interval: int = 600
    stale_after: int = 3600
    max_backoff: int = 3600
    lock_wait: int = 900


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """[web]: the dashboard's address, sessions and logins."""

    listen: str = "127.0.0.1"
    port: int = 8080
    secret_key: Secret | None = None
    # Where maintainers reach the dashboard (https://host/path); findings
    # link to its rule pages when set.
    public_url: str = ""
    # Anonymous visitors may read (never act); false: everything needs a login.
    public_read: bool = False
    # Session cookies only over HTTPS (set behind a TLS proxy).
    secure_cookies: bool = False
    # A laptop run: a missing secret_key is replaced by a random one per start.
    development: bool = False
    # Failed logins allowed per account and per address within login_window seconds.
    login_attempts: int = 5
    login_window: int = 900
    # Inbox rows per page.
    page_size: int = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration, one section per table of config.toml."""

    state_dir: str = "./var"
    log_level: str = "info"
    lore: LoreConfig = field(default_factory=LoreConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    input: InputConfig = field(default_factory=InputConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    regmodel: RegmodelConfig = field(default_factory=RegmodelConfig)
    drafts: DraftsConfig = field(default_factory=DraftsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    web: WebConfig = field(default_factory=WebConfig)
    source: str = field(default="(defaults)", compare=False)
    # How the file was chosen ("--config", "$BOT_CONFIG", ...; "" for none).
    found_by: str = field(default="", compare=False)
    # Dotted key -> where its value came from: "file", "$BOT_..." or "default".
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite in `state_dir` by default."""
        if self.database.url:
            return self.database.url
        return "sqlite:///" + str(Path(self.state_dir).resolve() / "bot.sqlite3")


_LEVELS = ("debug", "info", "warning", "error")
# Keys that moved: the old name is refused with the new one.
_MOVED = {"rules.kernel_tree": "kernel.repo"}
_SEVERITIES = ("error", "warning", "question", "info")
_CC_POLICIES = ("everyone", "lists", "author")
_DAY = 86400
# (least, greatest) value of each number: a timeout of inf, an interval of
# 1e30 s or a byte cap past what a read can ask for fails at run time, far
# from the setting; a port is a port.
LIMITS: dict[str, tuple[float, float]] = {
    "lore.initial_lookback": (0, 3650),
    "lore.overlap": (0, 30 * _DAY),
    "lore.longscan_every": (0, 1_000_000),
    "lore.longscan_lookback": (0, 3650),
    "lore.min_interval": (0, 3600),
    "lore.connect_timeout": (0.001, 3600),
    "lore.read_timeout": (0.001, 3600),
    "lore.retries": (0, 100),
    "lore.backoff": (0, 3600),
    "lore.max_response_bytes": (1, 1 << 40),
    "input.max_inflated_bytes": (1, 1 << 44),
    "input.max_message_bytes": (1, 1 << 30),
    "smtp.port": (1, 65535),
    "smtp.timeout": (0.001, 3600),
    "smtp.lease": (30, _DAY),
    "drafts.max_per_series": (0, 10_000),
    "daemon.interval": (1, 7 * _DAY),
    "web.port": (1, 65535),
    "web.login_attempts": (1, 1000),
    "web.login_window": (1, _DAY),
    "web.page_size": (1, 500),
}


APP_DIR = "kvm-sysreg-bot"


def find_file(path: str | os.PathLike[str] | None,
              env: Mapping[str, str]) -> tuple[str | None, str]:
    """The configuration file to read and how it was chosen (module
    docstring); (None, "") when there is none and the defaults apply."""
    if path is not None:
        return str(path), "--config"
    if env.get("BOT_CONFIG"):
        return env["BOT_CONFIG"], "$BOT_CONFIG"
    if env.get("XDG_CONFIG_HOME"):
        user, how = Path(env["XDG_CONFIG_HOME"]), "$XDG_CONFIG_HOME"
    elif env.get("HOME"):
        user, how = Path(env["HOME"]) / ".config", "~/.config"
    else:
        user, how = None, ""
    if user is not None and (user / APP_DIR / "config.toml").is_file():
        return str(user / APP_DIR / "config.toml"), how
    if Path("config.toml").is_file():
        return "config.toml", "./config.toml"
    return None, ""


def load(path: str | os.PathLike[str] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration; see the module docstring for the order."""
    env = os.environ if environ is None else environ
    chosen, found_by = find_file(path, env)
    data: dict[str, Any] = {}
    source = "(defaults)"
    if chosen is not None:
        source = chosen
        data = _read_file(chosen)
    origins: dict[str, str] = {}
    cfg: Config = _build(Config, data, "", source, env, origins)
    cfg = dataclasses.replace(cfg, source=source, found_by=found_by, origins=origins)
    _validate(cfg)
    _refuse_unknown_variables(cfg, env)
    return cfg


def path_kind(mode: int) -> str | None:
    """What a path that is not a regular file is, in words ("a FIFO")."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return None


def _read_file(chosen: str) -> dict[str, Any]:
    try:
        kind = path_kind(os.stat(chosen).st_mode)
        if kind is not None:  # opening a FIFO would wait for a writer
            raise ConfigError("%s: is %s, not a configuration file" % (chosen, kind))
        with open(chosen, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("%s: no such configuration file" % chosen) from None
    except OSError as exc:
        raise ConfigError("%s: cannot read: %s" % (chosen, exc.strerror)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: not UTF-8 text (byte %d)" % (chosen, exc.start)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("%s: not valid TOML: %s" % (chosen, exc)) from None


def variables(cls: type = Config, prefix: str = "") -> dict[str, str]:
    """Every BOT_* variable the configuration reads, with its dotted key."""
    out: dict[str, str] = {"BOT_CONFIG": "(the configuration file)"} if not prefix else {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in META_FIELDS:
            continue
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out.update(variables(hint, prefix + f.name + "."))
        else:
            out["BOT_" + (prefix + f.name).replace(".", "_").upper()] = prefix + f.name
    return out


def _refuse_unknown_variables(cfg: Config, env: Mapping[str, str]) -> None:
    known = set(variables())
    # A secret may be read from a BOT_* variable of the user's choosing.
    known.update(getattr(getattr(cfg, section), key).env
                 for section, key in (("smtp", "password"), ("web", "secret_key"))
                 if getattr(getattr(cfg, section), key) is not None)
    for name in sorted(env):
        if name.startswith("BOT_") and name not in known:
            close = _closest(name, known)
            raise ConfigError("$%s: not a setting of the bot%s" % (
                name, " (did you mean $%s?)" % close[0] if close else ""))


def _closest(name: str, known: Iterable[str]) -> list[str]:
    """The likely intended name, for a refusal (difflib only then)."""
    import difflib
    return difflib.get_close_matches(name, sorted(known), n=1)


def check_rule_names(cfg: Config, known: Iterable[str]) -> None:
    """Refuse rules.enable, .disable, .severity or .paths naming something
    that is neither a rule id nor a category: a typo there would silently
    turn every rule off, or a setting into nothing."""
    names = set(known)
    rules = cfg.rules
    for key, values in (("enable", rules.enable), ("disable", rules.disable),
                        ("severity", tuple(rules.severity)), ("paths", tuple(rules.paths))):
        for value in values:
            if value not in names:
                close = _closest(value, names)
                raise ConfigError("%s: rules.%s: %r is not a rule id or category%s" % (
                    cfg.source, key, value,
                    " (did you mean %r?)" % close[0] if close else ""))


@functools.cache   # load() and variables() both ask; the strings are evaluated once
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# Fields of `Config` that say where it came from; no file sets them.
META_FIELDS = ("source", "found_by", "origins")


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str,
           env: Mapping[str, str], origins: dict[str, str]) -> Any:
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name not in META_FIELDS}
    for key in data:
        if key not in known:
            moved = _MOVED.get(prefix + key)
            raise ConfigError("%s: unknown key %s%s%s" % (
                source, prefix, key, " (now %s)" % moved if moved else ""))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in META_FIELDS:
            continue
        hint = hints[f.name]
        dotted = prefix + f.name
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            sub = data.get(f.name, {})
            if not isinstance(sub, dict):
                raise ConfigError("%s: %s: expected a table" % (source, dotted))
            values[f.name] = _build(hint, sub, dotted + ".", source, env, origins)
            continue
        var = "BOT_" + dotted.replace(".", "_").upper()
        if var in env:
            values[f.name] = _from_env(hint, env[var], var, env, dotted)
            origins[dotted] = "$" + var
        elif f.name in data:
            values[f.name] = _coerce(hint, data[f.name], dotted, source, env)
            origins[dotted] = "file"
        else:
            origins[dotted] = "default"
    return cls(**values)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "array", dict: "table"}.get(type(value), type(value).__name__)


def _coerce(hint: Any, value: Any, dotted: str, source: str,
            env: Mapping[str, str], key: str | None = None) -> Any:
    where = "%s: %s" % (source, dotted)
    limits = LIMITS.get(key or dotted)
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
        return _bounded(value, limits, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("%s: expected a number, got %s" % (where, _type_name(value)))
        if not math.isfinite(value):
            raise ConfigError("%s: must be a finite number, not %s" % (where, value))
        if value < 0:
            raise ConfigError("%s: must not be negative" % where)
        return float(_bounded(value, limits, where))
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


def _bounded(value: int | float, limits: tuple[float, float] | None, where: str) -> int | float:
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise ConfigError("%s: must be between %s and %s, not %s"
                          % (where, _num(limits[0]), _num(limits[1]), value))
    return value


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _from_env(hint: Any, raw: str, var: str, env: Mapping[str, str], dotted: str) -> Any:
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
    return _coerce(hint, value, var, "environment", env, key=dotted)


def _validate(cfg: Config) -> None:
    where = cfg.source
    if cfg.log_level not in _LEVELS:
        raise ConfigError("%s: log_level: must be one of %s" % (where, ", ".join(_LEVELS)))
    for rule, sev in cfg.rules.severity.items():
        if sev not in _SEVERITIES:
            raise ConfigError("%s: rules.severity.%s: must be one of %s"
                              % (where, rule, ", ".join(_SEVERITIES)))
    if cfg.web.public_url and not cfg.web.public_url.startswith(("http://", "https://")):
        raise ConfigError("%s: web.public_url: must be an http(s) URL" % where)
    if not cfg.lore.url.startswith(("http://", "https://")):
        raise ConfigError("%s: lore.url: must be an http(s) URL" % where)
    if cfg.drafts.min_severity not in _SEVERITIES:
        raise ConfigError("%s: drafts.min_severity: must be one of %s"
                          % (where, ", ".join(_SEVERITIES)))
    if cfg.drafts.cc not in _CC_POLICIES:
        raise ConfigError("%s: drafts.cc: must be one of %s" % (where, ", ".join(_CC_POLICIES)))
    if cfg.smtp.starttls and cfg.smtp.implicit_tls:
        raise ConfigError("%s: smtp.starttls and smtp.implicit_tls: choose one" % where)
    if not 0 <= cfg.rules.workers <= 8:
        raise ConfigError("%s: rules.workers: must be 0 (the main process) to 8" % where)
    if cfg.daemon.interval < 1:
        raise ConfigError("%s: daemon.interval: must be at least 1 second" % where)
    url = cfg.database.url
    if url and not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError("%s: database.url: must be a sqlite:// or "
                          "postgresql+psycopg:// URL" % where)
