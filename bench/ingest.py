#!/usr/bin/env python3
"""Ingest throughput of the poller against a local public-inbox holding a real archive.

    bench/ingest.py [--archive MBOX] [--database-url URL] [--steady-days N]
                    [--keep DIR] [--polls NAME,...] [--repeat N]
                    [--profile cprofile|py-spy]

Default archive: ../shared/corpus/kvmarm-2019-2020.mbox.gz (all of it).
With --keep, the imported inboxes (and the polls' databases) stay in DIR,
and a later run with the same DIR polls them again without importing:
what a change to the poller is measured with (--polls picks the polls;
--profile runs each under cProfile, or under py-spy when it is installed,
and writes the profile beside its database; --repeat N runs each poll N
times, each from an empty database, and prints the median run after the
runs: one run's wall clock varies by a tenth on a quiet machine). Without --keep, the
temporary directory is removed at the end. The polls run with the shipped
config.toml; BOT_RULES_WORKERS=0 in the environment runs their rules in the
main process instead of the rules worker.

1. Import. The archive is imported into v2 inboxes of one public-inbox-httpd
   on 127.0.0.1 (all state in a temporary directory): one git commit per
   message written with `git fast-import` straight into the inbox's epoch,
   then one `public-inbox-index`. public-inbox-mda on a sample is timed too,
   to show why: it costs a process and an index update per message.
2. Poll from an empty database, each in a fresh `bot poll` process, on half
   of the archive and on all of it, with two queries: one matching every
   message (the whole pipeline on every thread: fetch, parse, rules,
   drafts, storage) and the default query (what a deployment runs). For
   each: messages stored per second end to end, HTTP requests per new
   series, and the process's peak resident memory (half vs all shows
   whether it grows with the archive), and the `bot poll` process's CPU
   time (a busy machine disturbs the wall clock; the archive's server is
   another process, so its work is not counted there).
3. Steady state: the archive minus its last N days is imported and polled
   once; then each of those days is delivered as new mail (fresh Received
   headers) and polled, as the daemon would, counting requests per new series.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bot import config as botconfig  # noqa: E402
from bot.lore.client import LoreClient  # noqa: E402
from bot.poller import Poller  # noqa: E402
from bot.store import db  # noqa: E402
from bot.store.models import Message, Series  # noqa: E402
from tests.pi import Inbox, PublicInbox, messages  # noqa: E402

# ../shared/corpus beside the checkout (or beside a worktree's parent).
DEFAULT = next((d / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz" for d in ROOT.parents
                if (d / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz").exists()),
               ROOT.parent / "shared" / "corpus" / "kvmarm-2019-2020.mbox.gz")
EVERY_MESSAGE = "rt:100000.."  # every message received after 1970-01-02
_DATE = re.compile(rb"^Date:[ \t]*(.*)$", re.M | re.I)
_REQUESTS = re.compile(r"(\d+) requests")


def message_date(raw: bytes) -> dt.datetime | None:
    head = raw.split(b"\n\n", 1)[0]
    m = _DATE.search(head)
    if not m:
        return None
    try:
        when = email.utils.parsedate_to_datetime(m.group(1).decode("ascii", "replace").strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def timed_import(inbox: Inbox, raws: list[bytes], fresh: bool = False) -> float:
    start = time.perf_counter()
    inbox.deliver(*raws, fresh=fresh)
    return time.perf_counter() - start


def mda_rate(server: PublicInbox, raws: list[bytes]) -> float:
    """Messages per second through public-inbox-mda (one process each)."""
    inbox = server.create()
    env = dict(server.env, ORIGINAL_RECIPIENT="%s@127.0.0.1" % inbox.name)
    start = time.perf_counter()
    for raw in raws:
        subprocess.run(["public-inbox-mda", "--no-precheck"], input=raw, env=env, check=True,
                       capture_output=True)
    return len(raws) / (time.perf_counter() - start)


def lookback_days(raws: list[bytes]) -> int:
    """The first poll's window: from now back to the archive's oldest dated
    message, and a day more (lore.initial_lookback takes ten years at most)."""
    oldest = min((d for d in map(message_date, raws) if d is not None), default=None)
    if oldest is None:
        return 1
    days = (dt.datetime.now(dt.UTC) - oldest).days + 1
    if days > 3650:
        raise SystemExit("the archive reaches back %d days, before the ten years a first "
                         "poll can (lore.initial_lookback); give a younger archive" % days)
    return max(days, 1)


def bot_env(state: Path, database_url: str, url: str, query: str | None,
            lookback: int) -> dict[str, str]:
    env = dict(os.environ, BOT_CONFIG=str(ROOT / "config.toml"), BOT_STATE_DIR=str(state),
               BOT_DATABASE_URL=database_url, BOT_LORE_URL=url, BOT_LOG_LEVEL="warning",
               BOT_LORE_INITIAL_LOOKBACK=str(lookback), BOT_LORE_MIN_INTERVAL="0")
    if query is not None:
        # Every thread is wanted: the reply-only filter of lore.followups
        # would skip discussions without patches.
        env["BOT_LORE_QUERY"] = query
        env["BOT_LORE_FOLLOWUPS"] = "false"
    return env


def fresh_database(tmp: Path, template: str | None, label: str) -> str:
    if template is None:
        path = tmp / ("%s.sqlite3" % label)
        for stale in (path, *(path.with_name(path.name + x) for x in ("-wal", "-shm"))):
            stale.unlink(missing_ok=True)  # a kept directory's earlier run
        return "sqlite:///%s" % path
    from sqlalchemy import create_engine, text
    name = "bench_ingest_%s_%d" % (label, os.getpid())
    admin = create_engine(template, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name))
        conn.execute(text('CREATE DATABASE "%s"' % name))
    admin.dispose()
    return template.rsplit("/", 1)[0] + "/" + name


def counts(cfg: botconfig.Config) -> tuple[int, int]:
    database = db.Database(cfg)
    try:
        with database.transaction() as s:
            return (s.scalar(select(func.count()).select_from(Message)),
                    s.scalar(select(func.count()).select_from(Series)))
    finally:
        database.close()


def poll_once(tmp: Path, label: str, url: str, query: str | None,
              template: str | None, lookback: int, profile: str | None = None
              ) -> dict[str, float]:
    state = tmp / ("state-" + label)
    state.mkdir(parents=True, exist_ok=True)
    env = bot_env(state, fresh_database(tmp, template, label), url, query, lookback)
    subprocess.run([sys.executable, "-m", "bot", "db", "upgrade"], env=env, check=True,
                   capture_output=True, cwd=ROOT)
    err_path = state / "poll.err"
    command = [sys.executable, "-m", "bot", "poll"]
    if profile == "cprofile":
        command[1:1] = ["-m", "cProfile", "-o", str(state / "poll.prof")]
    elif profile == "py-spy":  # every thread's stacks, idle ones too, as collapsed stacks
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        command[:0] = [spy, "record", "--threads", "--idle", "--format", "raw",
                       "--output", str(state / "poll.stacks"), "--"]
    with open(err_path, "wb") as err:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *command], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=err)
    if proc.returncode != 0:
        raise SystemExit("bot poll failed: %s" % err_path.read_text(errors="replace"))
    elapsed, usage, output = proc.stdout.decode().split("\n", 2)
    maxrss_kb, cpu = usage.split()
    (state / "poll.out").write_text(output)
    cfg = botconfig.load(ROOT / "config.toml", environ=env)
    stored, series = counts(cfg)
    m = _REQUESTS.search(output)
    return {"messages": stored, "series": series, "seconds": float(elapsed),
            "requests": int(m.group(1)) if m else 0, "rss_mb": int(maxrss_kb) / 1024,
            "cpu": float(cpu)}


# Runs `bot poll` from a small process: a child forked straight from this
# one (which holds the archive) would count our pages in its peak RSS.
_WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
elapsed = time.perf_counter() - start
print(elapsed)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
sys.stdout.write(proc.stdout.decode())
sys.exit(proc.returncode)
"""


def header() -> None:
    print("%-26s %9s %7s %8s %7s %9s %8s %8s %7s %9s" % (
        "poll from empty", "messages", "series", "seconds", "msg/s", "requests", "req/ser",
        "peak MB", "CPU s", "msg/CPU-s"), flush=True)


def show_poll(label: str, r: dict[str, float]) -> None:
    print("%-26s %9d %7d %8.1f %7.0f %9d %8.2f %8.0f %7.1f %9.0f" % (
        label, r["messages"], r["series"], r["seconds"], r["messages"] / r["seconds"],
        r["requests"], r["requests"] / max(r["series"], 1), r["rss_mb"], r["cpu"],
        r["messages"] / max(r["cpu"], 1e-9)), flush=True)


POLLS = ("every-half", "default-half", "every-all", "default-all")


def polls(tmp: Path, inbox: Inbox, label: str, args: argparse.Namespace,
          lookback: int) -> None:
    for qlabel, query in (("every message", EVERY_MESSAGE), ("default query", None)):
        name = "%s-%s" % (qlabel.split()[0], label)
        if name not in args.polls:
            continue
        runs = []
        for _ in range(args.repeat):
            runs.append(poll_once(tmp, name, inbox.url, query, args.database_url, lookback,
                                  args.profile))
            show_poll("%s, %s" % (qlabel, label), runs[-1])
        if args.repeat > 1:
            show_poll("  median of %d" % args.repeat,
                      sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2])


def poll_names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLLS]
    if unknown:
        raise argparse.ArgumentTypeError("unknown poll %s (of %s)"
                                         % (", ".join(unknown), ", ".join(POLLS)))
    return names


def split_days(raws: list[bytes], days: int) -> tuple[list[bytes], list[list[bytes]]]:
    """The archive before its last `days` days, and each of those days."""
    dated = [(message_date(r), r) for r in raws]
    last = max(d for d, _ in dated if d is not None)
    cut = (last - dt.timedelta(days=days)).date()
    older: list[bytes] = []
    recent: dict[dt.date, list[bytes]] = {}
    for when, raw in dated:
        if when is None or when.date() <= cut:
            older.append(raw)
        else:
            recent.setdefault(when.date(), []).append(raw)
    return older, [recent[d] for d in sorted(recent)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, default=DEFAULT)
    ap.add_argument("--database-url", help="a PostgreSQL admin URL (a scratch database is "
                    "created per poll); default: SQLite files")
    ap.add_argument("--steady-days", type=int, default=30)
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the imported inboxes and the databases in DIR; a later run "
                    "with the same DIR (and archive) reuses the inboxes: no import, no "
                    "steady state")
    ap.add_argument("--polls", type=poll_names, default=list(POLLS),
                    help="the polls to run, comma-separated (default: %s)" % ",".join(POLLS))
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each poll N times and print the median run too (default: 1)")
    ap.add_argument("--profile", choices=("cprofile", "py-spy"),
                    help="run each poll under cProfile (STATE/poll.prof beside its database) "
                    "or py-spy (STATE/poll.stacks: collapsed stacks of every thread); slower")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    print("rules workers: %s" % os.environ.get("BOT_RULES_WORKERS", "as config.toml says"))

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        tmp = args.keep.resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    raws = list(messages(args.archive))
    print("archive: %s, %d messages (%.1f MB)" % (args.archive, len(raws),
                                                 sum(map(len, raws)) / 1e6), flush=True)
    lookback = lookback_days(raws)
    server = PublicInbox(tmp / "pi")
    server.start()
    try:
        if (tmp / _IMPORTED).exists():
            print("(inboxes imported by an earlier run in %s)" % tmp, flush=True)
            header()
            polls(tmp, kept_inbox(server, _HALF), "half", args, lookback)
            polls(tmp, kept_inbox(server, (tmp / _IMPORTED).read_text().strip()), "all",
                  args, lookback)
        else:
            imported(server, raws, tmp, args, lookback)
    finally:
        server.stop()
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


# In a kept directory: the name of the inbox holding the whole archive, once
# imported; and the copy of it holding the first half.
_IMPORTED = "imported"
_HALF = "half"


def kept_inbox(server: PublicInbox, name: str) -> Inbox:
    inbox = Inbox(server, name)
    if name == _HALF:  # a copy of an inbox's directory, served under its own name
        server.git_config("publicinbox.%s.inboxdir" % name, str(inbox.dir))
        server.git_config("publicinbox.%s.address" % name, "%s@127.0.0.1" % name)
        server.git_config("publicinbox.%s.url" % name, inbox.url)
        server.git_config("publicinbox.%s.indexlevel" % name, "full")
        server.git_config("publicinbox.%s.listid" % name, "%s.127.0.0.1" % name)
        server.hup()
    deadline = time.monotonic() + 15
    while True:  # served once the server has read its configuration again
        try:
            with urllib.request.urlopen("%s/_/text/help/" % inbox.url, timeout=2):
                return inbox
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def imported(server: PublicInbox, raws: list[bytes], tmp: Path, args: argparse.Namespace,
             lookback: int) -> None:
    """Import the archive, polling it at half and whole, with the steady state between."""
    half = len(raws) // 2
    older, days = split_days(raws[half:], args.steady_days)
    print("public-inbox-mda: %.1f msg/s (one process and index update per message)"
          % mda_rate(server, raws[:20]), flush=True)
    inbox = server.create()
    seconds = timed_import(inbox, raws[:half])
    print("import of the first half: %d messages, fast-import + public-inbox-index "
          "%.1f s (%.0f msg/s)" % (half, seconds, half / seconds), flush=True)
    if args.keep is not None:
        shutil.copytree(inbox.dir, server.root / "inboxes" / _HALF, symlinks=True)
    print()
    header()
    polls(tmp, inbox, "half", args, lookback)
    seconds = timed_import(inbox, older)
    print("(import of %d more messages: %.1f s)" % (len(older), seconds), flush=True)
    steady(inbox, days, tmp, args, lookback)
    polls(tmp, inbox, "all", args, lookback)
    if args.keep is not None:
        (tmp / _IMPORTED).write_text(inbox.name + "\n")


def steady(inbox: Inbox, days: list[list[bytes]], tmp: Path, args: argparse.Namespace,
           lookback: int) -> None:
    """Catch up once, then one poll per day of new mail, as the daemon would."""
    env = bot_env(tmp / "state-steady", fresh_database(tmp, args.database_url, "steady"),
                  inbox.url, None, lookback)
    cfg = botconfig.load(ROOT / "config.toml", environ=env)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    database = db.Database(cfg)
    requests = series = new = 0
    try:
        with LoreClient(cfg.lore) as client:
            poller = Poller(cfg, database, client)
            poller.cycle()
            for day in days:
                inbox.deliver(*day)  # fresh Received headers: new mail
                report = poller.cycle()
                requests += report.requests
                series += report.stats.series
                new += len(day)
    finally:
        database.close()
    print("steady state, default query: %d polls (one per day of mail), %d new messages, "
          "%d new series; %d requests: %d searches (one per poll) and %d thread fetches; "
          "%.2f requests, %.2f thread fetches per new series"
          % (len(days), new, series, requests, len(days), requests - len(days),
             requests / max(series, 1), (requests - len(days)) / max(series, 1)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
