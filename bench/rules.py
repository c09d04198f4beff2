#!/usr/bin/env python3
"""Cost of the rules per patch, and the same patches through checkpatch.pl.

    bench/rules.py [MBOX...] [--checkpatch-sample N] [--with-repo | --kernel-repo PATH]
    (default: ../shared/corpus/kvmarm-2019-2020.mbox.gz, sample 200)

Times the rules over every series of the archive (assembly excluded: it is
the same for any checker) and prints the per-patch median, p99 and total.
Then runs scripts/checkpatch.pl --no-tree from linux-source-6.12
(tests/kernel_source.py fetches it) over an evenly spaced sample of the same
patches, timing the rules on exactly those patches too, and prints the
ratio of the medians. Targets: the whole corpus in under 15 s on one core;
the median patch at least 100 times faster than checkpatch.pl.

With a kernel repository (`--kernel-repo PATH`, or `--with-repo` for the
test repository tests/kernel_repo.py builds from linux-source-6.12), each
series first gets its base and snapshot as `bot check` does
(`Checker.tree`): it prints what that adds per series (median, p99) and the
whole corpus through base lookup and rules, then the same for series whose
base the repository has (patches made with git against its 6.12 commit,
one per file of the save/restore map), which also apply and read whole
files. Targets: base lookup plus reading the blobs under 100 ms per series
(median); the whole corpus with the repository under 60 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import ROOT, series_of

sys.path.insert(0, str(ROOT / "tests"))

from bot import config as botconfig
from bot.data import Patch, Series
from bot.pipeline import Checker, load_regmodel
from bot.rules import Context, run


def _single(series: Series, patch: Patch) -> Series:
    import dataclasses
    return dataclasses.replace(series, patches=(patch,))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mbox", nargs="*")
    ap.add_argument("--checkpatch-sample", type=int, default=200)
    repo_arg = ap.add_mutually_exclusive_group()
    repo_arg.add_argument("--kernel-repo", metavar="PATH",
                          help="time base lookup and snapshots against this repository")
    repo_arg.add_argument("--with-repo", action="store_true",
                          help="the same against the test repository built from 6.12")
    args = ap.parse_args(argv)
    if args.kernel_repo or args.with_repo:
        return _with_repo(args, list(series_of(args.mbox)))
    cfg = botconfig.Config()
    ctx = Context(regmodel=load_regmodel(cfg))
    all_series = list(series_of(args.mbox))
    # Each series is checked whole (series-aware rules), its time shared out
    # per patch; single patches are timed alone for the checkpatch ratio.
    per_patch: list[float] = []
    total = 0.0
    patches: list[tuple[Series, Patch]] = []
    for series in all_series:
        ctx.memo.clear()
        t0 = time.perf_counter()
        run(series, ctx, cfg.rules)
        dt = time.perf_counter() - t0
        total += dt
        n = max(1, len(series.patches))
        per_patch.extend([dt / n] * n)
        patches.extend((series, p) for p in series.patches)
    print("rules: %d patches in %d series" % (len(per_patch), len(all_series)))
    print("  total %.2f s, per patch median %.1f us, p99 %.1f us, max %.1f ms" % (
        total, statistics.median(per_patch) * 1e6, _pct(per_patch, 0.99) * 1e6,
        max(per_patch) * 1e3))
    print("  target: whole corpus < 15 s: %s" % ("met" if total < 15 else "NOT met"))

    try:
        from kernel_source import ensure_kernel_tree
        tree = ensure_kernel_tree()
    except Exception as exc:  # the comparison needs the package; say so, do not die
        print("checkpatch.pl: not available (%s)" % exc)
        return 0
    checkpatch = tree / "scripts" / "checkpatch.pl"
    step = max(1, len(patches) // max(1, args.checkpatch_sample))
    sample = patches[::step][:args.checkpatch_sample]
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (series, patch) in enumerate(sample):
            one = _single(series, patch)
            ctx.memo.clear()
            t0 = time.perf_counter()
            run(one, ctx, cfg.rules)
            ours.append(time.perf_counter() - t0)
            path = Path(tmp) / ("%d.patch" % i)
            path.write_bytes(patch.mail.raw)
            t0 = time.perf_counter()
            subprocess.run(["perl", str(checkpatch), "--no-tree", "-q", "--no-summary",
                            "--no-signoff", str(path)], cwd=str(tree), capture_output=True,
                           check=False)
            theirs.append(time.perf_counter() - t0)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print("checkpatch.pl --no-tree on %d of the same patches (every %dth):" % (len(sample), step))
    print("  checkpatch median %.1f ms, p99 %.1f ms; rules on the same patches median %.1f us" % (
        m_theirs * 1e3, _pct(theirs, 0.99) * 1e3, m_ours * 1e6))
    ratio = m_theirs / m_ours if m_ours else float("inf")
    print("  median ratio: rules are %.0fx faster (target >= 100x: %s)" % (
        ratio, "met" if ratio >= 100 else "NOT met"))
    return 0


def _timed(checker: Checker, cfg: botconfig.Config, series: list[Series]
           ) -> tuple[list[float], float, int, int]:
    """Per series: seconds for the base and snapshot; total with the rules;
    how many had a base commit, and how many applied there."""
    lookup: list[float] = []
    total = 0.0
    found = applied = 0
    for one in series:
        checker.context.memo.clear()
        t0 = time.perf_counter()
        tree = checker.tree(one)
        t1 = time.perf_counter()
        run(one, dataclasses.replace(checker.context, tree=tree), cfg.rules)
        total += time.perf_counter() - t0
        lookup.append(t1 - t0)
        found += tree.base.commit is not None
        applied += tree.applied
    return lookup, total, found, applied


def _with_repo(args: argparse.Namespace, all_series: list[Series]) -> int:
    from kernel_repo import TLB, build_kernel_repo, make_patch

    with tempfile.TemporaryDirectory() as tmp:
        if args.kernel_repo:
            path = Path(args.kernel_repo)
            made = None
        else:
            made = build_kernel_repo(Path(tmp) / "linux")
            path = made.path
        cfg = botconfig.Config()
        cfg = dataclasses.replace(cfg, kernel=dataclasses.replace(cfg.kernel, repo=str(path)))
        with Checker(cfg, strict_repo=True) as checker:
            lookup, total, found, applied = _timed(checker, cfg, all_series)
            print("with kernel repository %s: %d series" % (path, len(all_series)))
            print("  base lookup + blobs per series: median %.2f ms, p99 %.2f ms, max %.1f ms; "
                  "%d with a base commit, %d applied" % (
                      statistics.median(lookup) * 1e3, _pct(lookup, 0.99) * 1e3,
                      max(lookup) * 1e3, found, applied))
            print("  whole corpus, base lookup and rules: %.2f s" % total)
            print("  targets: median < 100 ms: %s; whole corpus < 60 s: %s" % (
                "met" if statistics.median(lookup) < 0.1 else "NOT met",
                "met" if total < 60 else "NOT met"))
            if made is None:
                return 0
            # Series the repository has the base of: one patch per file of
            # the 6.12 save/restore map, made with git at the 6.12 commit.
            at = made.commits["v6.12"]
            files = [f for f in checker.context.regmodel.snapshot_files("v6.12")
                     if not f.endswith("/") and (path / f).is_file()] or [TLB]
            hits = []
            for i, rel in enumerate(files):
                patch = make_patch(path, at, {rel: lambda t: t + "\n/* bench */\n"},
                                   "KVM: arm64: bench %d" % i, Path(tmp) / ("p%d.patch" % i))
                hits.extend(series_of([str(patch)]))
            lookup, total, found, applied = _timed(checker, cfg, hits)
            print("  series whose base the repository has (%d, one per save/restore file): "
                  "median %.2f ms, p99 %.2f ms; %d with a base commit, %d applied" % (
                      len(hits), statistics.median(lookup) * 1e3, _pct(lookup, 0.99) * 1e3,
                      found, applied))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
