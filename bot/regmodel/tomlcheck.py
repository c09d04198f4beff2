"""Typed, checked access to one table of a TOML data file: a problem raises
ConfigError naming the file and the dotted key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.errors import ConfigError


class TomlTable:
    """Typed access to one table of kvm.toml; errors name the dotted key."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError("%s: %s: expected a table" % (source, where))
        self.data, self.where, self.source = data, where, source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError("%s: %s.%s: %s" % (self.source, self.where, key, problem))

    def only(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                raise self.fail(key, "unknown key")

    def text(self, key: str, default: str | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise self.fail(key, "missing")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, "expected a string")
        return value

    def texts(self, key: str, required: bool = False) -> tuple[str, ...]:
        if key not in self.data:
            if required:
                raise self.fail(key, "missing")
            return ()
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected an array of strings")
        return tuple(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.fail(key, "must be one of %s, not %r" % (", ".join(choices), value))
        return value

    def sources(self, key: str, known: Mapping[str, str], required: bool = True) -> str:
        value = self.text(key, None if required else "")
        for sid in value.split():
            if sid not in known:
                raise self.fail(key, "unknown source id %r (add it to [sources])" % sid)
        return value

    def era(self, key: str, required: bool, parse: Callable[[str], object]) -> str:
        """A kernel era string, checked by `parse` (which raises ValueError)."""
        value = self.text(key, None if required else "")
        if value:
            try:
                parse(value)
            except ValueError as exc:
                raise self.fail(key, str(exc)) from None
        return value
