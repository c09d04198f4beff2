"""One thread through the pipeline: assemble -> rules -> drafts.

`bot check` and the poller both call `Checker.check_thread`; storing the
result is the caller's choice (`bot.store.queries.save_thread`), so the same
path serves `check` without a database and `check --store`.
"""

from __future__ import annotations

import dataclasses
import logging

from bot.config import Config
from bot.data import RawMessage, Series, SeriesResult, ThreadResult
from bot.drafts import render
from bot.lore.assemble import assemble
from bot.regmodel import RegisterModel, load_model
from bot.rules import Context, run

logger = logging.getLogger(__name__)


def load_regmodel(cfg: Config) -> RegisterModel:
    """The register model, loaded once per Checker."""
    return load_model(cfg.regmodel.kernel_tree or None)


class Checker:
    """Holds what every check needs once (config, register model)."""

    def __init__(self, cfg: Config, context: Context | None = None) -> None:
        self.cfg = cfg
        self.context = context if context is not None else Context(regmodel=load_regmodel(cfg))

    def check_series(self, series: Series) -> SeriesResult:
        context = self.context
        if self.cfg.rules.kernel_tree:
            from bot.kernel_tree import snapshot
            context = dataclasses.replace(context, tree=snapshot(self.cfg.rules.kernel_tree,
                                                                 series))
        result = run(series, context, self.cfg.rules)
        drafts = render(series, result.findings, self.cfg.drafts)
        logger.debug("checked %s v%d: %d patches, %d findings, %d drafts",
                    series.message_id, series.revision, len(series.patches),
                    len(result.findings), len(drafts))
        return SeriesResult(series=series, rules=result, drafts=drafts)

    def check_thread(self, raws: list[RawMessage]) -> ThreadResult:
        thread = assemble(raws)
        return ThreadResult(thread=thread,
                            results=tuple(self.check_series(s) for s in thread.series))
