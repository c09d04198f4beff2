"""The bot's exception hierarchy.

Every failure the bot expects is one of these; `bot/cli.py` maps them to exit
codes in one place. Library code raises them and never calls ``sys.exit``.
"""


class BotError(Exception):
    """Base of every error the bot reports as one line to the user."""


class ConfigError(BotError):
    """The configuration file or an environment override is invalid."""


class BadInput(BotError):
    """An input (path, mbox, gzip, message, argument) cannot be used."""


class Transient(BotError):
    """A service (lore, the database) is unavailable; trying later may work.
    `retry_after`: seconds the service asked us to wait, when it said."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailable(Transient):
    """The database cannot be reached or dropped the connection."""


class NotFound(BotError):
    """The archive answered, and it does not have what was asked for."""


class SchemaOutdated(BotError):
    """The database schema is not at the migrations' head."""


class Unusable(BotError):
    """A database or directory the configuration names exists, or answers,
    but cannot be used as configured (no such database, access refused,
    read-only, a table missing): unlike `Transient`, trying later will not
    help until someone changes something."""
