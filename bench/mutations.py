#!/usr/bin/env python3
"""Recall of the rules on real code: generated bugs and neutral patches.

    bench/mutations.py [--seed S] [--kind K ...] [--write-mbox DIR] [--no-tree]
                       [--write-fixtures DIR] [--jobs N]

Takes the real functions of the save/restore map from linux-source-6.12
(tests/kernel_source.py fetches it) and generates, deterministically for a
seed, buggy patches of every bug kind a..p of REVIEW-GUIDE section 6 and
semantics-preserving ("neutral") patches, each a `git format-patch` mail
with real `index` lines (bench/mutate/ holds the generators, each with its
justification). Every mail is checked by the bot twice, without a kernel
tree and with one (a git repository of the 6.12 files), and the script
prints recall per bug kind (a finding of the kind's category at question
severity or above, within 3 lines of the mutation), the error/warning
findings on the neutral set with the worst offenders, and last:

    mutations: N buggy, M neutral; recall with tree X%, without tree Y%; loud on neutral Z

--write-mbox DIR writes each mail as DIR/<case>.patch, all of them as
DIR/all.mbox (for `bot check`) and an index (DIR/cases.txt); --json FILE
writes every case's outcome (to compare two runs of the rules engine);
--write-fixtures DIR writes one buggy case and one neutral neighbour per
kind with a cases.toml (tests/data/kinds/ is made this way). The kernel
tree is given to the bot through one configuration key, TREE_KEY in
bench/mutate/measure.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from kernel_source import ensure_kernel_tree  # noqa: E402
from mutate.build import build  # noqa: E402
from mutate.cases import KIND_TITLES, KINDS, Case  # noqa: E402
from mutate.fixtures import write_fixtures  # noqa: E402
from mutate.measure import Outcome  # noqa: E402
from mutate.parallel import Workers  # noqa: E402
from mutate.source import Kernel  # noqa: E402


def _pct(num: int, den: int) -> str:
    return "%.0f%%" % (100.0 * num / den) if den else "-"


def _write_mbox(directory: Path, cases: list[Case], mails: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    index = []
    for case in cases:
        (directory / ("%s.patch" % case.id)).write_text(mails[case.id])
        index.append("%s\t%s\t%s\t%s\n\t%s\n" % (
            case.id, "buggy" if case.buggy else "neutral", case.function,
            " ".join("%s:%d" % a for a in case.anchors), case.justification))
    (directory / "all.mbox").write_text("".join(mails[c.id] for c in cases))
    (directory / "cases.txt").write_text("".join(index))


def _outcome(o: Outcome | None) -> dict[str, object] | None:
    if o is None:
        return None
    return {"caught": o.caught, "elsewhere": o.elsewhere,
            "findings": [dict(f.as_dict(), status=str(f.status)) for f in o.findings]}


def _write_json(path: Path, plain: list[Outcome], tree: list[Outcome] | None) -> None:
    with_tree = {o.case.id: o for o in tree or []}
    doc = [{"id": o.case.id, "kind": o.case.kind, "buggy": o.case.buggy,
            "generator": o.case.generator, "function": o.case.function,
            "subject": o.case.subject, "categories": sorted(o.case.categories),
            "anchors": [list(a) for a in o.case.anchors],
            "without_tree": _outcome(o), "with_tree": _outcome(with_tree.get(o.case.id))}
           for o in plain]
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _report(cases: list[Case], plain: list[Outcome], tree: list[Outcome] | None) -> str:
    lines = ["", "recall per bug kind (caught / buggy cases; +N: the category found elsewhere "
             "in the patch):",
             "  %-4s %-6s %-14s %-14s  %s" % ("kind", "cases", "with tree", "without", "")]
    with_tree = {o.case.id: o for o in tree or []}
    totals = Counter[str]()
    for kind in KINDS:
        mine = [o for o in plain if o.case.buggy and o.case.kind == kind]
        if not mine:
            continue
        n = len(mine)
        no_tree = sum(o.caught for o in mine)
        yes_tree = sum(with_tree[o.case.id].caught for o in mine) if tree else 0
        totals.update(n=n, plain=no_tree, tree=yes_tree)
        near = sum(o.elsewhere for o in mine)
        near_tree = sum(with_tree[o.case.id].elsewhere for o in mine) if tree else 0
        lines.append("  %-4s %-6d %-14s %-14s  %s" % (
            kind, n, "%d (%s) +%d" % (yes_tree, _pct(yes_tree, n), near_tree) if tree else "-",
            "%d (%s) +%d" % (no_tree, _pct(no_tree, n), near), KIND_TITLES[kind]))
    neutral = [o for o in (tree or plain) if not o.case.buggy]
    neutral_plain = [o for o in plain if not o.case.buggy]
    lines.append("")
    lines.append("error/warning findings on %d neutral patches: %s with tree, %d without "
                 "(%d patches)" % (
                     len(neutral_plain), "%d (%d patches)" % (
                         sum(len(o.loud) for o in neutral), sum(bool(o.loud) for o in neutral))
                     if tree else "-", sum(len(o.loud) for o in neutral_plain),
                     sum(bool(o.loud) for o in neutral_plain)))
    by_rule = Counter[str]()
    for o in neutral_plain + (neutral if tree else []):
        by_rule.update("%s/%s" % (f.rule, f.severity) for f in o.loud)
    if by_rule:
        lines.append("  by rule: " + ", ".join("%s %d" % kv for kv in by_rule.most_common()))
    worst = sorted({o.case.id: o for o in neutral_plain + (neutral if tree else [])
                    if o.loud}.values(), key=lambda o: (-len(o.loud), o.case.id))
    for o in worst[:15]:
        f = o.loud[0]
        lines.append("  %-44s %s %s %s:%s %s" % (o.case.id, f.severity, f.rule,
                                                 (f.file or "").rsplit("/", 1)[-1], f.line,
                                                 f.message[:70]))
    return "\n".join(lines)


def _measure(workers: Workers, cases: list[Case], args: argparse.Namespace, t0: float
             ) -> tuple[list[Outcome], list[Outcome] | None, dict[str, str]]:
    mails = workers.mails(cases)
    t1 = time.perf_counter()
    n_buggy = sum(c.buggy for c in cases)
    print("generated %d cases (%d buggy, %d neutral), seed %d, in %.1f s with %d jobs" % (
        len(cases), n_buggy, len(cases) - n_buggy, args.seed, t1 - t0, workers.jobs))
    if args.write_mbox:
        _write_mbox(args.write_mbox, cases, mails)
        print("wrote %d mails to %s" % (len(cases), args.write_mbox))
    plain = workers.check(cases, mails, with_tree=False)
    t2 = time.perf_counter()
    print("checked without a kernel tree in %.1f s" % (t2 - t1))
    tree = None
    if not args.no_tree:
        tree = workers.check(cases, mails, with_tree=True)
        print("checked with a kernel tree (a git repository of the 6.12 files) in %.1f s"
              % (time.perf_counter() - t2))
    return plain, tree, mails


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kind", action="append", default=[],
                    help="only this bug kind (a..p; repeatable); neutral cases of the kind")
    ap.add_argument("--write-mbox", type=Path, metavar="DIR")
    ap.add_argument("--write-fixtures", type=Path, metavar="DIR")
    ap.add_argument("--json", type=Path, metavar="FILE", help="every case's outcome as JSON")
    ap.add_argument("--no-tree", action="store_true", help="skip the run with a kernel tree")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = ap.parse_args(argv)
    kinds = [k for arg in args.kind for k in arg.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        print("mutations: unknown kind %s (kinds are a..p)" % ", ".join(bad), file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    kernel = Kernel(ensure_kernel_tree())
    cases = build(kernel, args.seed, kinds or None)
    if kinds:   # only the neighbours of those kinds, not the general transforms
        cases = [c for c in cases if c.kind in kinds]
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        workers = Workers(kernel.root, Path(tmp), args.seed, max(1, args.jobs))
        try:
            plain, tree, mails = _measure(workers, cases, args, t0)
        finally:
            workers.close()
        if args.write_fixtures:
            write_fixtures(args.write_fixtures, cases, mails, plain, tree, args.seed)
            print("wrote fixtures to %s" % args.write_fixtures)
    print(_report(cases, plain, tree))
    if args.json:
        _write_json(args.json, plain, tree)
    buggy = [o for o in plain if o.case.buggy]
    recall_plain = _pct(sum(o.caught for o in buggy), len(buggy))
    recall_tree = _pct(sum(o.caught for o in tree if o.case.buggy), len(buggy)) if tree else "-"
    # Loud findings on neutral patches, both runs counted (the target is 0 in each).
    loud_neutral = sum(len(o.loud) for o in plain + (tree or []) if not o.case.buggy)
    print("mutations: %d buggy, %d neutral; recall with tree %s, without tree %s; "
          "loud on neutral %d" % (len(buggy), len(cases) - len(buggy), recall_tree,
                                  recall_plain, loud_neutral))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
