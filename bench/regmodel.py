#!/usr/bin/env python3
"""How long loading the register model takes.

    .venv/bin/python bench/regmodel.py [--runs N] [--no-tree]

Cold: a fresh interpreter imports bot.regmodel and calls load_model() once
(the import is reported apart; interpreter start-up is not counted).
Warm: load_model() again in the same process, which returns the cached
model; and a rebuild with the cache cleared (parsing both data files again).
With the linux-source-6.12 cache of tests/kernel_source.py (fetched if
absent), also the model loaded from that kernel tree and `regmodel diff`.
Target: a cold load under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 50.0

_CHILD = """
import json, time
t0 = time.perf_counter()
import bot.regmodel
t1 = time.perf_counter()
bot.regmodel.load_model()
t2 = time.perf_counter()
print(json.dumps({"import": (t1 - t0) * 1e3, "load": (t2 - t1) * 1e3}))
"""


def cold(runs: int) -> tuple[list[float], list[float]]:
    imports, loads = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout
        got = json.loads(out)
        imports.append(got["import"])
        loads.append(got["load"])
    return imports, loads


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def line(label: str, ms: list[float]) -> str:
    return "%-44s median %8.3f ms   min %8.3f ms   max %8.3f ms   (%d runs)" % (
        label, statistics.median(ms), min(ms), max(ms), len(ms))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-tree", action="store_true",
                        help="skip the kernel-tree figures (no linux-source-6.12 needed)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bot.regmodel import load, load_model
    from bot.regmodel.diff import diff_tree

    imports, loads = cold(args.runs)
    print(line("cold: import bot.regmodel", imports))
    print(line("cold: first load_model() (shipped files)", loads))
    load_model()
    print(line("warm: load_model() (cached)", timed(load_model, 1000)))

    def rebuild() -> None:
        load.shipped_parts.cache_clear()
        load._shipped_model.cache_clear()
        load_model()

    print(line("warm: rebuild from the shipped files", timed(rebuild, args.runs)))
    if not args.no_tree:
        sys.path.insert(0, str(ROOT / "tests"))
        from kernel_source import ensure_kernel_tree

        tree = str(ensure_kernel_tree())
        print(line("load_model(linux 6.12 tree)", timed(lambda: load_model(tree), args.runs)))
        shipped = load_model()
        print(line("regmodel diff against linux 6.12",
                   timed(lambda: diff_tree(shipped, tree), args.runs)))
    worst = statistics.median(loads)
    print("cold load median %.1f ms: %s (target < %.0f ms)" % (
        worst, "ok" if worst < TARGET_MS else "OVER TARGET", TARGET_MS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
