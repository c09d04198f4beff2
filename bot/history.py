"""Where the earlier revision of a series comes from, outside its thread.

- `CompareTo`: the revisions in the inputs of `bot check --compare-to
  SOURCE`, checked first. A series is compared with the latest of them in
  its lineage (change-id, else author and subject); when none shares its
  lineage (the subject changed between revisions, as from an RFC to v1),
  with the one series there from the same author, if there is exactly one.
- `stored_lookup`: the revision stored before it in the database.

Both hand the pipeline `EarlierRevision`s (bot.pipeline.Lookup). Each keeps
the mail b4 needs to carry the earlier revision's trailers over: its
patches that received trailers and the replies that gave them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bot.data import (
    EarlierRevision,
    EarlierSource,
    Mail,
    RawMessage,
    Series,
    SeriesResult,
    ThreadResult,
)
from bot.pipeline import Lookup
from bot.revisions import as_earlier

if TYPE_CHECKING:
    from bot.store.db import Database

logger = logging.getLogger(__name__)

# How far up a reply chain a trailer is followed to its patch.
_MAX_DEPTH = 50


def trailer_mail(result: SeriesResult, messages: tuple[Mail, ...]) -> tuple[RawMessage, ...]:
    """The patches of `result` that received trailers on that revision, and
    the messages from each trailer's reply up to the patch."""
    by_id = {m.message_id: m for m in messages}
    wanted: dict[str, Mail] = {}
    for patch in result.series.patches:
        given = [t for t in patch.trailers if t.revision is None]
        if not given:
            continue
        wanted[patch.message_id] = patch.mail
        for trailer in given:
            mid: str | None = trailer.message_id
            for _ in range(_MAX_DEPTH):
                if mid is None or mid in wanted or mid not in by_id:
                    break
                wanted[mid] = by_id[mid]
                mid = by_id[mid].in_reply_to
    return tuple(RawMessage(origin="compare-to", data=m.raw, message_id=m.message_id)
                 for m in wanted.values())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Known:
    """An earlier revision of a series, found by its lineage and author."""

    lineage: str
    author_email: str
    earlier: EarlierRevision


class CompareTo:
    """The series given with --compare-to, as earlier revisions."""

    def __init__(self, results: Iterator[ThreadResult]) -> None:
        self._known: list[_Known] = []
        for thread in results:
            for res in thread.results:
                earlier = dataclasses.replace(
                    as_earlier(res, EarlierSource.COMPARE_TO),
                    messages=trailer_mail(res, thread.thread.messages))
                self._known.append(_Known(lineage=res.series.lineage,
                                          author_email=res.series.author_email.lower(),
                                          earlier=earlier))

    def __len__(self) -> int:
        return len(self._known)

    def earlier(self, series: Series) -> list[EarlierRevision | None]:
        others = [k for k in self._known if k.earlier.message_id != series.message_id]
        same = [k for k in others if k.lineage == series.lineage]
        if not same:
            author = [k for k in others if k.author_email == series.author_email.lower()]
            if len({k.lineage for k in author}) == 1:
                same = author
        if not same:
            logger.info("compare-to: no earlier revision of %s v%d (%s) there",
                        series.message_id, series.revision, series.subject)
            return []
        before = [k for k in same if k.earlier.revision < series.revision] or same
        chosen = max(before, key=lambda k: k.earlier.revision)
        return [chosen.earlier]


def stored_lookup(database: Database) -> Lookup:
    """A lookup of the revision stored before a series, each in its own
    short transaction (read-only: nothing for the disk to keep, so it asks
    for none, and SQLite does not switch to synchronous commits for it)."""
    from bot.store.revisions import stored_earlier

    def lookup(series: Series) -> list[EarlierRevision | None]:
        with database.transaction(durable=False) as session:
            return [stored_earlier(session, series)]

    return lookup


def combined(*lookups: Lookup) -> Lookup:
    """Every lookup's candidates (bot.revisions.choose picks one)."""
    def lookup(series: Series) -> list[EarlierRevision | None]:
        return [found for each in lookups for found in each(series)]
    return lookup
