#!/usr/bin/env python3
"""Wall time of one b4 per-patch check, as b4 runs it, next to checkpatch.pl.

    bench/b4check.py [PATCH] [--runs N]

PATCH defaults to a real kvmarm patch with a finding
(tests/data/labelled/problem-width-genmask-hcr-imm.mbox). It is turned into
the exact bytes b4 review hands a check command (b4's own
`LoreMessage.get_msg_as_bytes`), then fed N times (default 20) to each of:

- `bot check --format b4 -` (the console script, a fresh process each time,
  as b4 runs it: what a maintainer waits for per patch; target < 300 ms),
- the same with B4_TRACKING_FILE naming b4's tracking data for the patch's
  thread (a review branch made by b4's own code in a scratch repository),
- `scripts/checkpatch.pl --no-tree -q --terse --no-summary --mailback` from
  linux-source-6.12 (tests/kernel_source.py fetches it), b4's built-in check.

Each command runs once untimed first. The bot's processes get a bytecode
cache of their own in the scratch directory (PYTHONPYCACHEPREFIX, and
PYTHONDONTWRITEBYTECODE dropped), which that first run fills: an installed
bot has its modules compiled, and compiling them again on every run (as a
caller with PYTHONDONTWRITEBYTECODE=1 and no `__pycache__` would) is not
what a maintainer waits for. Likewise the parsed register model
(bot.regmodel.cache) goes to a cache directory of their own
(XDG_CACHE_HOME), filled by that first run as a maintainer's first patch
fills theirs.

It prints the median and the spread of each, in wall and CPU time, with the
load average before and after each command's runs (on a busy machine the
wall times wait for other processes; the CPU times do not), and
`python -X importtime`'s ten most expensive imports of the per-patch path.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
DEFAULT = ROOT / "tests" / "data" / "labelled" / "problem-width-genmask-hcr-imm.mbox"
BOT = Path(sys.executable).parent / "bot"
# Libraries the per-patch path has no use for (tests/test_b4_imports.py).
HEAVY = ("requests", "smtplib", "sqlalchemy", "jinja2", "flask", "alembic")

from b4_support import (  # noqa: E402  (tests/ is on sys.path from here on)
    b4_messages,
    check_input,
    init_tree,
    track_series,
    write_tracking,
)


def b4_bytes(path: Path) -> tuple[bytes, list[object]]:
    """The message as b4 hands it to a check command, and the thread's messages."""
    import b4
    msgs = b4_messages(path.read_bytes())
    patch = next(m for m in msgs if b4.LoreSubject(m.get("subject", "")).patch)
    return check_input(patch), msgs


def tracking_file(msgs: list[object], work: Path) -> Path:
    """b4's tracking data for the thread, made by b4 in a scratch repository."""
    repo = work / "linux"
    repo.mkdir()
    (repo / "README").write_text("base\n")
    init_tree(repo)
    return write_tracking(work / "tracking.json", track_series(repo, msgs))


Times = tuple[list[float], list[float], list[float]]


def timed(cmd: list[str], data: bytes, runs: int, cwd: Path,
          env: dict[str, str]) -> tuple[Times, bytes]:
    """Wall and CPU (user + system) seconds of each run, the 1-minute load
    average before and after them, and the last output."""
    walls, cpus = [], []
    loads = [os.getloadavg()[0]]
    out = subprocess.run(cmd, input=data, capture_output=True, cwd=cwd, env=env,
                         check=False).stdout  # fills caches (bytecode, page cache)
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, input=data, capture_output=True, cwd=cwd, env=env,
                              check=False)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        out = proc.stdout or proc.stderr
    loads.append(os.getloadavg()[0])
    return (walls, cpus, loads), out


def show(name: str, times: Times) -> float:
    """Prints wall and CPU medians; the CPU time says what a busy machine's
    wall time hides (other processes sharing the cores)."""
    walls, cpus, loads = times
    med = statistics.median(walls)
    print("  %-34s median %6.1f ms wall (min %.1f, max %.1f), %6.1f ms CPU (min %.1f);"
          " load %.1f -> %.1f" % (
              name, med * 1e3, min(walls) * 1e3, max(walls) * 1e3,
              statistics.median(cpus) * 1e3, min(cpus) * 1e3, loads[0], loads[-1]))
    return med


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("patch", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    data, msgs = b4_bytes(args.patch)
    work = Path(tempfile.mkdtemp(prefix="bench-b4check-"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BOT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(BOT_CONFIG=str(ROOT / "config.toml"), BOT_STATE_DIR=str(work / "state"),
               PYTHONPYCACHEPREFIX=str(work / "pycache"), XDG_CACHE_HOME=str(work / "cache"))
    print("b4 per-patch check of %s (%d bytes as b4 hands it), %d runs each:"
          % (args.patch.name, len(data), args.runs))
    cmd = [str(BOT), "check", "--format", "b4", "-"]
    ours, out = timed(cmd, data, args.runs, work, env)
    entry = json.loads(out)[0]
    med = show("bot check --format b4 -", ours)
    print("    -> %s: %s" % (entry["status"], entry["summary"]))
    cached = sorted((work / "cache").glob("*/*.pickle"))
    print("    register model cache: %s" % (", ".join(
        "%s (%d KB)" % (p.name, p.stat().st_size // 1024) for p in cached) or "none written"))
    track = tracking_file(msgs, work)
    tenv = dict(env, B4_TRACKING_FILE=str(track))
    with_series, out = timed(cmd, data, args.runs, work / "linux", tenv)
    show("  with B4_TRACKING_FILE", with_series)
    print("    -> %s" % json.loads(out)[0]["summary"])
    print("  target < 300 ms wall: %s (load average %.1f on %d cores)"
          % ("met" if med < 0.3 else "NOT met", os.getloadavg()[0], os.cpu_count() or 1))
    try:
        from kernel_source import ensure_kernel_tree
        tree = ensure_kernel_tree()
    except Exception as exc:  # the comparison needs the package; say so, do not die
        print("checkpatch.pl: not available (%s)" % exc)
    else:
        theirs, _ = timed(["perl", str(tree / "scripts" / "checkpatch.pl"), "--no-tree", "-q",
                           "--terse", "--no-summary", "--mailback"], data, args.runs, tree, env)
        show("checkpatch.pl --no-tree (b4's)", theirs)
    proc = subprocess.run([sys.executable, "-X", "importtime", str(BOT), "check", "--format",
                           "b4", "-"], input=data, capture_output=True, cwd=work, env=env,
                          check=False)
    rows = []
    for line in proc.stderr.decode().splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    names = {name.strip() for _, name in rows}
    heavy = [n for n in HEAVY if n in names]
    print("the per-patch path imports %d modules; of %s: %s" % (
        len(names), ", ".join(HEAVY), ", ".join(heavy) or "none"))
    print("slowest imports of the per-patch path (cumulative):")
    for us, name in sorted(rows, reverse=True)[:10]:
        print("  %7.1f ms %s" % (us / 1e3, name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
