"""Shared by the rules benchmarks: the corpus as assembled series.

Reads mbox files (plain or .gz) with the bot's own input code and b4
assembly, exactly as `bot check` does, and yields every series found.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import config as botconfig  # noqa: E402
from bot.data import Series  # noqa: E402
from bot.lore.assemble import assemble  # noqa: E402
from bot.sources import InputSet  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz"
# A changed line naming either register, one of its fields' macros or its
# flag sets (HCR_TGE, MDCR_EL2_HPMN_MASK, HCR_GUEST_FLAGS...).
_WATCHED_LINE = re.compile(r"(?m)^[+-](?![+-]).*((?i:hcr_el2|mdcr_el2)|\b(HCR|MDCR)_[A-Z0-9_]+)")


def series_of(paths: list[str]) -> Iterator[Series]:
    cfg = botconfig.Config()
    for raws in InputSet(paths or [str(DEFAULT)], cfg.input).threads():
        yield from assemble(raws).series


def touches_watched(body: str) -> bool:
    """The patch adds or removes a line naming HCR_EL2 or MDCR_EL2 (any
    case) or a macro of theirs."""
    return _WATCHED_LINE.search(body) is not None
