"""One thread through the pipeline: assemble -> rules -> re-review -> drafts.

`bot check` and the poller both call `Checker.check_thread`; storing the
result is the caller's choice (`bot.store.queries.save_thread`), so the same
path serves `check` without a database and `check --store`.

Re-review: each series is compared with its earlier revision when one is
known (`bot.revisions.choose`): an earlier revision in the same thread, or
one the caller's `lookup` finds (given with --compare-to, or stored). Its
findings are then marked new or still present, the earlier revision's
trailers are carried over to the unchanged patches, and the drafts leave out
what a maintainer dismissed before.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable

from bot.config import Config
from bot.data import (
    Draft,
    EarlierRevision,
    EarlierSource,
    RawMessage,
    Series,
    SeriesResult,
    ThreadResult,
)
from bot.lore.assemble import assemble, carry_trailers
from bot.regmodel import RegisterModel, load_model
from bot.revisions import as_earlier, choose, compare, drafted
from bot.rules import Context, run

logger = logging.getLogger(__name__)

# Earlier revisions of a series known outside its thread (given with
# --compare-to, stored in the database).
Lookup = Callable[[Series], Iterable[EarlierRevision | None]]


def load_regmodel(cfg: Config) -> RegisterModel:
    """The register model, loaded once per Checker."""
    return load_model(cfg.regmodel.kernel_tree or None)


class Checker:
    """Holds what every check needs once (config, register model). With
    `drafts=False` no reply is rendered (and jinja2 is never imported): for
    outputs that show no drafts, such as b4's checks."""

    def __init__(self, cfg: Config, context: Context | None = None, *,
                 drafts: bool = True) -> None:
        self.cfg = cfg
        self.context = context if context is not None else Context(regmodel=load_regmodel(cfg))
        self.drafts = drafts

    def check_series(self, series: Series, earlier: EarlierRevision | None = None) -> SeriesResult:
        context = self.context
        if self.cfg.rules.kernel_tree:
            from bot.kernel_tree import snapshot
            context = dataclasses.replace(context, tree=snapshot(self.cfg.rules.kernel_tree,
                                                                 series))
        result = run(series, context, self.cfg.rules)
        comparison = None
        if earlier is not None:
            if earlier.messages:
                series = carry_trailers(series, earlier.messages)
            result, comparison = compare(result, earlier, series.revision)
        drafts: tuple[Draft, ...] = ()
        if self.drafts:
            from bot.drafts import render
            drafts = render(series, drafted(result.findings, comparison,
                                            self.cfg.drafts.repeat_still_present),
                            self.cfg.drafts)
        logger.debug("checked %s v%d: %d patches, %d findings, %d drafts%s",
                     series.message_id, series.revision, len(series.patches),
                     len(result.findings), len(drafts),
                     "" if comparison is None else "; against v%d (%s), %d resolved" % (
                         comparison.earlier.revision, comparison.earlier.source,
                         len(comparison.resolved)))
        return SeriesResult(series=series, rules=result, drafts=drafts, comparison=comparison)

    def check_thread(self, raws: list[RawMessage], lookup: Lookup | None = None) -> ThreadResult:
        thread = assemble(raws)
        results: list[SeriesResult] = []
        for series in thread.series:  # b4 hands revisions over in order
            in_thread = max((r for r in results if r.series.revision < series.revision),
                            key=lambda r: r.series.revision, default=None)
            candidates = list(lookup(series)) if lookup is not None else []
            if in_thread is not None:
                candidates.append(as_earlier(in_thread, EarlierSource.THREAD))
            results.append(self.check_series(series, choose(series.revision, candidates)))
        return ThreadResult(thread=thread, results=tuple(results))
