#!/usr/bin/env python3
"""How the rules behave on real traffic.

    bench/quality.py [MBOX...]   (default: ../shared/corpus/kvmarm-2019-2020.mbox.gz)

Runs every series of the archive through the rules (with the register
model) and prints findings per category and severity, and open findings
for three kinds of patch, counted apart:
- patches that add or remove a line naming HCR_EL2/MDCR_EL2 or one of their
  macros: at most 5 error/warning findings per 100 of them;
- patches that name neither but change code that runs only at EL2 (the
  world switch, the TLB-switch helpers, hyp init: kvm.toml [[places]]),
  which runs under those registers as KVM switches them, or a line naming
  a guest register KVM switches with them (kvm.toml [ops] vhe_loaded,
  e2h_redirected, dsb_observers); each finding is listed, for a reader to
  judge;
- patches that touch neither: 0 findings at any severity.
Open, resolved-in-series and pre-existing findings are counted apart.
"""

from __future__ import annotations

import sys
from collections import Counter

from corpus import changes_switched_state, series_of, touches_watched

from bot import config as botconfig
from bot.pipeline import load_regmodel
from bot.rules import Context, Severity, Status, run


def main(argv: list[str]) -> int:
    cfg = botconfig.Config()
    model = load_regmodel(cfg)
    ctx = Context(regmodel=model)
    by_cat: Counter[tuple[str, str]] = Counter()
    status: Counter[str] = Counter()
    patches = watched = el2 = 0
    on_watched: Counter[str] = Counter()
    on_el2: Counter[str] = Counter()
    on_other: Counter[str] = Counter()
    el2_list: list[str] = []
    other_list: list[str] = []
    for series in series_of(argv):
        result = run(series, ctx, cfg.rules)
        touching = {p.index for p in series.patches if touches_watched(p.mail.body)}
        in_el2 = {p.index for p in series.patches if p.index not in touching
                  and changes_switched_state(p, model.facts)}
        patches += len(series.patches)
        watched += len(touching)
        el2 += len(in_el2)
        for f in result.findings + result.pre_existing:
            status[str(f.status)] += 1
            if f.status is not Status.OPEN:
                continue
            by_cat[(str(f.category), str(f.severity))] += 1
            line = "%s %s %s:%s %s" % (f.severity, f.rule, f.file, f.line, f.message_id)
            if f.patch in touching:
                on_watched[str(f.severity)] += 1
            elif f.patch in in_el2:
                on_el2[str(f.severity)] += 1
                el2_list.append(line)
            else:
                on_other[str(f.severity)] += 1
                other_list.append(line)
    print("patches: %d, touching HCR_EL2/MDCR_EL2: %d, naming neither but changing "
          "EL2-only code or switched registers: %d" % (patches, watched, el2))
    print("\nopen findings per category and severity:")
    cats = sorted({c for c, _ in by_cat})
    sevs = [str(s) for s in Severity]
    print("  %-18s %s" % ("category", " ".join("%8s" % s for s in sevs)))
    for c in cats:
        print("  %-18s %s" % (c, " ".join("%8d" % by_cat[(c, s)] for s in sevs)))
    print("\nby status: %s" % ", ".join("%s %d" % kv for kv in sorted(status.items())))

    def counts(c: Counter[str]) -> str:
        return ", ".join("%s %d" % (s, c[s]) for s in sevs)

    total = sum(on_watched.values())
    loud = on_watched["error"] + on_watched["warning"]
    print("\nopen findings per 100 patches touching HCR_EL2/MDCR_EL2: %.1f (%s)" % (
        100.0 * total / watched if watched else 0.0, counts(on_watched)))
    print("  error/warning per 100 of them: %.1f (target at most 5)" % (
        100.0 * loud / watched if watched else 0.0))
    print("open findings on patches naming neither that change EL2-only code or switched "
          "registers: %s" % (
        counts(on_el2)))
    for line in el2_list:
        print("    " + line)
    print("open findings on patches touching neither: %s" % counts(on_other))
    print("  in all: %d (target 0)" % sum(on_other.values()))
    for line in other_list[:20]:
        print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
