"""Helpers for the drafts tests: the real pipeline over fixture mail."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot import config as botconfig
from bot.data import Draft, SeriesResult
from bot.pipeline import Checker
from bot.sources import InputSet, StreamInput


@lru_cache(maxsize=1)
def checker() -> Checker:
    return Checker(botconfig.Config())


def check(source: Path | bytes, **drafts: Any) -> list[SeriesResult]:
    """The pipeline's results for an mbox file or raw message, with drafts
    rendered under `drafts.*` settings (defaults otherwise)."""
    base = checker()
    cfg = dataclasses.replace(base.cfg, drafts=dataclasses.replace(base.cfg.drafts, **drafts))
    run = Checker(cfg, base.context)
    if isinstance(source, bytes):
        import io
        data = source if source.startswith(b"From ") else b"From x@y Thu Jan  1 00:00:00 1970\n" + source
        specs: list[str | StreamInput] = [StreamInput("raw", io.BytesIO(data))]
    else:
        specs = [str(source)]
    out: list[SeriesResult] = []
    for raws in InputSet(specs, cfg.input).threads():
        out.extend(run.check_thread(raws).results)
    return out


def drafts_of(source: Path | bytes, **drafts: Any) -> list[Draft]:
    return [d for r in check(source, **drafts) for d in r.drafts]


def as_text(d: Draft) -> str:
    """A draft as its golden file shows it: the headers, a blank line, the body."""
    head = ["In-Reply-To: <%s>" % d.in_reply_to,
            "References: %s" % " ".join("<%s>" % r for r in d.references),
            "To: %s" % ", ".join(d.to), "Cc: %s" % ", ".join(d.cc), "Subject: %s" % d.subject]
    return "\n".join(head) + "\n\n" + d.body
