#!/usr/bin/env python3
"""Throughput and peak memory of `bot check` over a real archive.

    bench/check.py [--workers N] [--repeat N] [MBOX]
                   (default MBOX: ../shared/corpus/kvmarm-2019-2020.mbox.gz)

Runs `bot check --format json` over the first half of the archive and over
all of it, each in a fresh process, and prints messages per second (of wall
time, and of the CPU time of the process and its rules worker, which a busy
machine disturbs less) and peak resident memory (of the larger of the two
processes). Streaming means the peak does not grow with the input.
`--workers N` sets [rules] workers for the run (default: the configuration's,
1 as shipped: a rules worker beside the main process; 0 keeps the rules in
the main process). `--repeat N` runs each N times and ends with the median
run of each (the wall clock of one run varies by a tenth on a quiet
machine).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ../shared/corpus beside the checkout (or beside a worktree's parent).
DEFAULT = next((d / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz" for d in ROOT.parents
                if (d / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz").exists()),
               ROOT.parent / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz")


def split_half(src: Path, dst: Path) -> int:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as fh:
        data = fh.read()
    marks = []
    pos = data.find(b"From ")
    while pos != -1:
        if pos == 0 or data[pos - 2:pos] == b"\n\n":
            marks.append(pos)
        pos = data.find(b"\nFrom ", pos + 1)
        pos = pos + 1 if pos != -1 else -1
    half = marks[len(marks) // 2]
    dst.write_bytes(data[:half])
    return len(marks) // 2


# Runs one `bot check` and reports its own peak RSS (getrusage of children
# covers only the process it waited for, so each run gets its own wrapper).
_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=open(sys.argv[0] + '.out', 'wb'),
                      stderr=subprocess.PIPE)
sys.stderr.buffer.write(proc.stderr)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
sys.exit(proc.returncode)
"""


def run(path: Path, messages: int, workers: str | None) -> tuple[float, str]:
    env = dict(os.environ, BOT_STATE_DIR=tempfile.mkdtemp(prefix="bench-check-"))
    if workers is not None:
        env["BOT_RULES_WORKERS"] = workers
    out = path.with_suffix(".json")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER.replace("sys.argv[0] + '.out'",
                                                                 repr(str(out))),
                           sys.executable, "-m", "bot", "check", "--format", "json",
                           "--fail-on", "never", str(path)], capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit("bot check failed: %s" % proc.stderr.decode(errors="replace"))
    peak_kib, cpu = proc.stdout.split()[-2:]
    doc = json.loads(out.read_bytes())
    # CPU time too: on a busy machine the wall clock measures the neighbours.
    line = ("%-10s %6d messages %5d series %7.1f s %7.0f msg/s  peak RSS %6.1f MiB  "
            "CPU %6.1f s %5.0f msg/CPU-s"
            % (path.name, messages, len(doc["series"]), elapsed, messages / elapsed,
               int(peak_kib) / 1024, float(cpu), messages / float(cpu)))
    print(line, flush=True)
    return elapsed, line


def median_run(path: Path, messages: int, workers: str | None, repeat: int) -> str:
    """Run `repeat` times; the line of the median run by wall time."""
    runs = sorted((run(path, messages, workers) for _ in range(repeat)), key=lambda r: r[0])
    return runs[len(runs) // 2][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", help="[rules] workers for the run (default: config.toml's)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each N times and end with the median (default: 1)")
    ap.add_argument("mbox", nargs="?", type=Path, default=DEFAULT)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    workers = args.workers
    if workers is not None:
        print("rules workers: %s" % workers)
    src = args.mbox
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / "half.mbox"
        n_half = split_half(src, half)
        full = Path(tmp) / "full.mbox"
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fh:
            full.write_bytes(fh.read())
        n_full = full.read_bytes().count(b"\nFrom mboxrd@z") + 1
        medians = [median_run(half, n_half, workers, args.repeat),
                   median_run(full, n_full, workers, args.repeat)]
        if args.repeat > 1:
            print("median of %d runs:" % args.repeat)
            print("\n".join(medians))


if __name__ == "__main__":
    main()
