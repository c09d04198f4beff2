"""What every view reads: the config and the database of the running app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from bot.config import Config
from bot.store.db import Database


@dataclass(frozen=True, slots=True)
class BotState:
    """What every request of the dashboard needs: the configuration and the database."""

    cfg: Config
    database: Database


def state() -> BotState:
    found: BotState = current_app.extensions["bot"]
    return found
