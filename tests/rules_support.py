"""Helpers for the rules tests: the real register model and a plain config."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest

from bot import config as botconfig
from bot.rules import Context


def rules_config() -> botconfig.Config:
    return botconfig.Config()


@lru_cache(maxsize=1)
def real_model() -> Any:
    """The shipped register model (bot.regmodel.load_model)."""
    from bot.regmodel import load_model
    return load_model()


@pytest.fixture
def rules_ctx() -> Context:
    """A rules context with the real register model (loaded once per run)."""
    try:
        model = real_model()
    except ImportError as exc:
        pytest.skip("register model not available: %s" % exc)
    return Context(regmodel=model)
