#!/usr/bin/env python3
"""Crash safety over a whole real archive: SIGKILL at random moments, rerun, compare.

    bench/crash.py [--archive MBOX] [--kills N] [--database-url PG_ADMIN_URL]
                   [--only sqlite|postgresql] [--seed N]

Default archive: ../shared/corpus/kvmarm-2019-2020.mbox.gz (all of it),
imported into a public-inbox served on 127.0.0.1 (tests/pi.py). For each
database (SQLite, and PostgreSQL through the admin URL, default the test
server's) and each command:

- `bot poll`: the deployment's default query over the whole archive (one
  window reaching back before its first message);
- `bot check --store`: the archive's mbox file;

one clean run on an empty database is the reference. Then, N times (default
20), the command starts on an empty database and is SIGKILLed at a random
moment (one in each N-th of the clean run's duration), run again to the
end, and every table compared with the reference (tests/crash.py: rows by
content, findings by series and fingerprint, ids and write times left out).
Prints per command and database: kills tried, kills that hit the running
process, kills that left a partial database, rows lost, rows duplicated.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.crash import Databases, run, total, trial  # noqa: E402
from tests.pi import PublicInbox, messages  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz"
PG_ADMIN = os.environ.get("BOT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def env_for(state: Path, lore_url: str):
    def env(url: str) -> dict[str, str]:
        return dict(os.environ, BOT_CONFIG=str(ROOT / "config.toml"), BOT_STATE_DIR=str(state),
                    BOT_DATABASE_URL=url, BOT_LORE_URL=lore_url, BOT_LOG_LEVEL="warning",
                    BOT_LORE_MIN_INTERVAL="0",
                    # The window reaches back before the archive's first message
                    # (2019): ten years, the most lore.initial_lookback takes.
                    BOT_LORE_INITIAL_LOOKBACK="3650")
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, default=DEFAULT)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--database-url", default=PG_ADMIN,
                    help="PostgreSQL admin URL (scratch databases are created and dropped)")
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    ap.add_argument("--command", choices=("poll", "check"),
                    help="only this command (check alone needs no public-inbox)")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    # SIGTERM ends the bench through `finally`, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    raws = list(messages(args.archive))
    print("archive: %s, %d messages; %d kills per command and database (seed %d)"
          % (args.archive, len(raws), args.kills, args.seed), flush=True)
    server = PublicInbox(tmp / "pi")
    commands = [(label, argv) for label, argv in (
        ("bot poll", ["poll"]),
        ("bot check --store", ["check", "--store", "--fail-on", "never", "--format", "json",
                               str(args.archive)]))
        if args.command is None or label.split()[1] == args.command]
    lore_url = "http://127.0.0.1:9/all"  # `bot check` of a file never asks it
    try:
        if args.command != "check":
            server.start()
            inbox = server.create()
            started = time.monotonic()
            inbox.deliver(*raws, fresh=False)
            print("imported into public-inbox on 127.0.0.1 in %.0f s"
                  % (time.monotonic() - started), flush=True)
            lore_url = inbox.url
        env = env_for(tmp / "state", lore_url)
        print()
        print("%-11s %-18s %8s %6s %7s %8s %5s %10s %9s" % (
            "database", "command", "clean s", "kills", "killed", "partial", "lost",
            "duplicated", "trials s"), flush=True)
        lost_all = extra_all = 0
        for kind in ("sqlite", "postgresql"):
            if args.only and kind != args.only:
                continue
            databases = Databases(kind, tmp, args.database_url)
            try:
                for label, argv in commands:
                    reference_url = databases.fresh("ref")
                    code, took, err = run(argv, env(reference_url))
                    if code != 0:
                        raise SystemExit("%s failed: %s" % (label, err))
                    reference = databases.rows(reference_url)
                    databases.drop(reference_url)
                    begun = time.monotonic()
                    trials = []
                    for k in range(args.kills):
                        t = trial(databases, argv, env, reference,
                                  took * (k + rng.random()) / args.kills, label.split()[1])
                        trials.append(t)
                        print("  %s, %s: kill %d/%d at %.1f s: %s%s; lost %d, duplicated %d%s"
                              % (kind, label, k + 1, args.kills, t.moment,
                                 "killed" if t.killed else "had exited",
                                 ", partial database" if t.partial else "", t.lost, t.extra,
                                 " (%s)" % ", ".join("%s -%d +%d" % (name, lost, extra)
                                                     for name, (lost, extra)
                                                     in t.tables.items())
                                 if t.tables else ""), flush=True)
                    lost = sum(t.lost for t in trials)
                    extra = sum(t.extra for t in trials)
                    lost_all += lost
                    extra_all += extra
                    print("%-11s %-18s %8.1f %6d %7d %8d %5d %10d %9.0f" % (
                        kind, label, took, len(trials), sum(t.killed for t in trials),
                        sum(t.partial for t in trials), lost, extra,
                        time.monotonic() - begun), flush=True)
                    print("%-11s %-18s reference: %d rows (%s)" % (
                        "", "", total(reference), ", ".join(
                            "%s %d" % (name, sum(c.values())) for name, c in reference.items()
                            if c)), flush=True)
            finally:
                databases.close()
        print()
        print("rows lost: %d, rows duplicated: %d" % (lost_all, extra_all))
        return 1 if lost_all or extra_all else 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
