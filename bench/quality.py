#!/usr/bin/env python3
"""How the rules behave on real traffic.

    bench/quality.py [MBOX...]   (default: ../shared/corpus/kvmarm-2019-2020.mbox.gz)

Runs every series of the archive through the rules (with the register
model) and prints findings per category and severity, findings per 100
patches that add or remove HCR_EL2/MDCR_EL2 lines, and findings on patches
that touch neither, which should be 0 at error or warning. Open,
resolved-in-series and pre-existing findings are counted apart.
"""

from __future__ import annotations

import sys
from collections import Counter

from corpus import series_of, touches_watched

from bot import config as botconfig
from bot.pipeline import load_regmodel
from bot.rules import Context, Severity, Status, run


def main(argv: list[str]) -> int:
    cfg = botconfig.Config()
    ctx = Context(regmodel=load_regmodel(cfg))
    by_cat: Counter[tuple[str, str]] = Counter()
    status: Counter[str] = Counter()
    patches = watched = 0
    on_watched: Counter[str] = Counter()
    on_other: Counter[str] = Counter()
    loud: list[str] = []
    for series in series_of(argv):
        result = run(series, ctx, cfg.rules)
        touching = {p.index for p in series.patches if touches_watched(p.mail.body)}
        patches += len(series.patches)
        watched += len(touching)
        for f in result.findings + result.pre_existing:
            status[str(f.status)] += 1
            if f.status is not Status.OPEN:
                continue
            by_cat[(str(f.category), str(f.severity))] += 1
            if f.patch in touching:
                on_watched[str(f.severity)] += 1
            else:
                on_other[str(f.severity)] += 1
                if f.severity.rank >= Severity.WARNING.rank:
                    loud.append("%s %s %s:%s %s" % (f.severity, f.rule, f.file, f.line,
                                                    f.message_id))
    print("patches: %d, touching HCR_EL2/MDCR_EL2: %d" % (patches, watched))
    print("model: %s" % ("loaded" if ctx.regmodel is not None else "NOT AVAILABLE"))
    print("\nopen findings per category and severity:")
    cats = sorted({c for c, _ in by_cat})
    sevs = [str(s) for s in Severity]
    print("  %-18s %s" % ("category", " ".join("%8s" % s for s in sevs)))
    for c in cats:
        print("  %-18s %s" % (c, " ".join("%8d" % by_cat[(c, s)] for s in sevs)))
    print("\nby status: %s" % ", ".join("%s %d" % kv for kv in sorted(status.items())))
    total = sum(on_watched.values())
    print("\nopen findings per 100 patches touching HCR_EL2/MDCR_EL2: %.1f (%s)" % (
        100.0 * total / watched if watched else 0.0,
        ", ".join("%s %d" % (s, on_watched[s]) for s in sevs)))
    print("open findings on patches touching neither: %s" % (
        ", ".join("%s %d" % (s, on_other[s]) for s in sevs)))
    bad = on_other["error"] + on_other["warning"]
    print("  at error or warning: %d (target 0)" % bad)
    for line in loud[:20]:
        print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
