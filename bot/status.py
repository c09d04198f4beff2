"""`bot status`: the poller's health, from the `daemon_status` row and the
poll lock, for an operator or a monitoring check.

Healthy (exit 0) while the last successful poll is at most
`daemon.stale_after` seconds old; otherwise exit 3. The row is the one the
dashboard's status page and /healthz read (`bot.store.status`).
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from bot.config import Config
from bot.store.db import Database
from bot.store.lock import Holder, poll_lock
from bot.store.models import utcnow
from bot.store.status import PollerStatus, daemon_status, duration


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def _running(row: PollerStatus, holder: Holder | None) -> str:
    if holder is not None and (holder.pid, holder.host) == (row.pid, row.host):
        return "running, holds the poll lock"
    if holder is not None:
        return "not running; the poll lock is held by %s" % holder
    if row.stopped_at is not None:
        return "exited at %s" % _when(row.stopped_at)
    return "gone without stopping (killed?); nobody holds the poll lock"


def describe(row: PollerStatus, holder: Holder | None, cfg: Config) -> list[str]:
    now = utcnow()
    lines = ["poller: `%s` (PID %d on %s), started %s; %s" % (
        row.command, row.pid, row.host, _when(row.started_at), _running(row, holder))]
    if row.last_poll_started_at is not None:
        took = ""
        started, ended = row.last_poll_started_at, row.last_poll_ended_at
        if ended is not None and ended >= started:
            took = ", ended %s (%s)" % (_when(ended), duration((ended - started)
                                                               .total_seconds()))
        lines.append("last poll: started %s%s: %s; stored %d messages, %d series" % (
            _when(row.last_poll_started_at), took, row.last_result or "-",
            row.messages_stored, row.series_stored))
    lines.append("stored since start: %d messages, %d series"
                 % (row.messages_total, row.series_total))
    if row.last_success_at is not None:
        lines.append("last success: %s (%s ago)" % (
            _when(row.last_success_at), duration((now - row.last_success_at).total_seconds())))
    else:
        lines.append("last success: never")
    if row.consecutive_failures:
        since = (" since %s (%s)" % (_when(row.failing_since), duration(
            (now - row.failing_since).total_seconds())) if row.failing_since else "")
        lines.append("failing%s: %d cycles in a row; last error: %s"
                     % (since, row.consecutive_failures, row.last_error or "-"))
    if row.next_poll_at is not None:
        lines.append("next poll: %s" % _when(row.next_poll_at))
    health = row.health(now, cfg.daemon.stale_after)
    lines.append("health: %s: %s" % ("ok" if health.healthy else "STALE", health.reason))
    return lines


def run_status(cfg: Config, fmt: str, out: TextIO) -> bool:
    """Print the status; True when healthy."""
    database = Database(cfg)
    try:
        with database.transaction() as session:
            row = daemon_status(session)
        holder = poll_lock(cfg, database.engine, "bot status").holder()
    finally:
        database.close()
    if row is None:
        healthy, reason = False, "no poller has run against this database yet"
    else:
        health = row.health(utcnow(), cfg.daemon.stale_after)
        healthy, reason = health.healthy, health.reason
    if fmt == "json":
        json.dump({"healthy": healthy, "reason": reason,
                   "stale_after": cfg.daemon.stale_after,
                   "lock_holder": None if holder is None else {
                       "command": holder.command, "pid": holder.pid, "host": holder.host},
                   "status": None if row is None else row.as_dict()}, out, indent=2)
        out.write("\n")
    elif row is None:
        out.write("poller: none has run yet\nhealth: STALE: %s\n" % reason)
    else:
        out.write("\n".join(describe(row, holder, cfg)) + "\n")
    return healthy
