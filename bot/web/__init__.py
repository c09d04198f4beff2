"""The maintainer dashboard: a Flask app (`create_app`) over the store and
the draft workflow, served by `bot serve`. Nothing below it imports it."""

from bot.web.app import create_app

__all__ = ["create_app"]
