#!/usr/bin/env python3
"""Function attribution at hunk edges: how right, and what it costs.

    bench/attribution.py [MBOX...] [--no-corpus]
    (default: ../shared/corpus/kvmarm-2019-2020.mbox.gz)

1. Real code: the files of tests/attribution_windows.py from linux-source-6.12
   (tests/kernel_source.py fetches it), cut into hunk-shaped windows that
   start and end at every line and cut every function off at either end,
   with the section git would write (default funcname rule, and the kernel's
   `diff=cpp` driver where it differs). Prints, per file, the windows and
   the windows with at least one line attributed to the wrong function
   (tests/test_attribution.py asserts the same, with its known exceptions),
   and the cost per window.
2. The corpus: every hunk side (old and new) of every C or assembly file in
   every patch, attributed as bot/rules/analysis.py does; prints the number
   of hunk sides and the median, p99 and total cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from corpus import ROOT, series_of

sys.path.insert(0, str(ROOT / "tests"))

from bot.data import LineKind
from bot.parse.csource import attribute


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def real_code() -> None:
    from attribution_windows import FILES, check_file, read
    from kernel_source import ensure_kernel_tree
    tree = ensure_kernel_tree()
    windows = bad = 0
    elapsed = 0.0
    for path in FILES:
        text = read(tree, path)
        for cpp in (False, True):
            t0 = time.process_time()
            n, mismatches = check_file(path, text, attribute, cpp=cpp)
            elapsed += time.process_time() - t0
            wrong = len({(m.first, m.last) for m in mismatches})
            windows += n
            bad += wrong
            if n:
                print("  %-42s %-7s %6d windows, %4d wrong (%d lines)" % (
                    path, "cpp" if cpp else "default", n, wrong, len(mismatches)))
    print("real code: %d windows, %d with a line attributed wrongly; "
          "%.1f us CPU per window with the checking" % (windows, bad, elapsed / windows * 1e6))


def corpus(paths: list[str]) -> None:
    sides: list[tuple[list[str], str, str]] = []
    for series in series_of(paths):
        for patch in series.patches:
            for fd in patch.files:
                path = fd.path
                if fd.binary or not path.endswith((".c", ".h", ".S")):
                    continue
                for hunk in fd.hunks:
                    for drop in (LineKind.ADDED, LineKind.REMOVED):
                        side = [ln.text for ln in hunk.lines if ln.kind is not drop]
                        sides.append((side, hunk.section, path))
    # CPU time, not wall time: on a shared machine a preempted call would
    # otherwise count the other processes' time slices.
    costs = []
    for lines, section, path in sides:
        t0 = time.process_time()
        attribute(lines, section, path)
        costs.append(time.process_time() - t0)
    total_lines = sum(len(s[0]) for s in sides)
    print("corpus: %d hunk sides (%.1f lines on average), CPU time: median %.1f us, "
          "p99 %.1f us, total %.2f s" % (len(sides), total_lines / max(1, len(sides)),
                            statistics.median(costs) * 1e6, _pct(costs, 0.99) * 1e6,
                            sum(costs)))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mbox", nargs="*")
    ap.add_argument("--no-corpus", action="store_true")
    args = ap.parse_args(argv)
    real_code()
    if not args.no_corpus:
        corpus(args.mbox)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
