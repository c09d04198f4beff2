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
from bot.data import Patch, Series  # noqa: E402
from bot.lore.assemble import assemble  # noqa: E402
from bot.regmodel.facts import KvmFacts  # noqa: E402
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


def changes_switched_state(patch: Patch, facts: KvmFacts) -> bool:
    """The patch changes a file whose code runs only at EL2 (kvm.toml
    [[places]]: the hyp objects, the world switch, the TLB-switch helpers,
    the EL2 boot code), which runs under HCR_EL2/MDCR_EL2 as they are
    switched between host and guest, or adds or removes a line naming a
    register KVM switches with them (kvm.toml [ops] vhe_loaded,
    e2h_redirected, dsb_observers: the guest's EL1 state; the guest's PC
    and PSTATE the world switch saves from ELR_EL2/SPSR_EL2,
    [[late_saved]]), or the vcpu's copies of them by another name (the
    accessors of [ops] memory_copy and loaded_aware, the AArch32 names of
    [regvalues] aliases, the guest SPSR writers of [regvalues] writers),
    even where its lines name neither."""
    if any(all(c.el == 2 for c in facts.contexts_of(p)) for p in patch.paths):
        return True
    regs = set().union(*(facts.ops.get(k, frozenset())
                         for k in ("vhe_loaded", "e2h_redirected", "dsb_observers")))
    regs |= {r.register for r in facts.late_saved}
    copies = set().union(*(facts.ops.get(k, frozenset()) for k in ("memory_copy",
                                                                   "loaded_aware")))
    copies |= {n for r in facts.late_saved for n in r.names}
    copies |= set(facts.regvalues.aliases) | set(facts.regvalues.writers)
    copies -= {n for n in copies if n.startswith("write_sysreg")}   # any register's
    words = regs | {r.lower() for r in regs} | copies
    names = re.compile(r"(?m)^[+-](?![+-]).*\b(SYS_)?(%s)\b" % "|".join(
        sorted(words, key=len, reverse=True)))
    return names.search(patch.mail.body) is not None
