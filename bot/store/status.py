"""The poller's health row (`daemon_status`): written by the poller, read by
`bot status` and the dashboard's status page and /healthz.

One row (id 1): the poll lock lets one poller at a time run against a
database, and that poller owns the row. `daemon_status(session)` is the
reading side, a frozen snapshot; `PollerStatus.health` is the one place that
decides healthy or stale.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.store.models import DaemonStatus, PollResult, utcnow
from bot.store.rows import upsert

_ROW = 1


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """Whether the daemon is healthy, and why (the age of the last successful poll)."""

    healthy: bool
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PollerStatus:
    """The `daemon_status` row as read at one moment."""

    command: str
    pid: int
    host: str
    started_at: dt.datetime
    stopped_at: dt.datetime | None
    last_poll_started_at: dt.datetime | None
    last_poll_ended_at: dt.datetime | None
    last_result: PollResult | None
    last_error: str | None
    last_success_at: dt.datetime | None
    failing_since: dt.datetime | None
    consecutive_failures: int
    messages_stored: int
    series_stored: int
    messages_total: int
    series_total: int
    next_poll_at: dt.datetime | None
    updated_at: dt.datetime

    def health(self, now: dt.datetime, stale_after: int) -> Health:
        """Healthy while the last successful poll is at most `stale_after`
        seconds old."""
        if self.last_success_at is None:
            return Health(healthy=False, reason="no poll has succeeded yet")
        age = (now - self.last_success_at).total_seconds()
        if age > stale_after:
            return Health(healthy=False, reason="the last successful poll is %s old "
                          "(daemon.stale_after is %s)" % (duration(age), duration(stale_after)))
        return Health(healthy=True, reason="the last successful poll is %s old" % duration(age))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, dt.datetime) else (
                str(value) if isinstance(value, PollResult) else value)
        return out


def duration(seconds: float) -> str:
    """`seconds` as an operator reads it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return "%d s" % seconds
    minutes = seconds // 60
    if minutes < 120:
        return "%d min" % minutes
    hours = minutes // 60
    if hours < 48:
        return "%d h %d min" % (hours, minutes % 60)
    return "%d d %d h" % (hours // 24, hours % 24)


def daemon_status(session: Session) -> PollerStatus | None:
    """The poller's status row, or None when no poller has run yet."""
    row = session.get(DaemonStatus, _ROW, populate_existing=True)
    if row is None:
        return None
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(PollerStatus)}
    for name, value in values.items():
        if isinstance(value, dt.datetime):
            values[name] = _aware(value)
    return PollerStatus(**values)


def last_poll_started(session: Session) -> dt.datetime | None:
    """When the last poll started, to keep the interval across a takeover."""
    return _aware(session.scalar(select(DaemonStatus.last_poll_started_at)
                                 .where(DaemonStatus.id == _ROW)))


def record_started(session: Session, *, command: str, pid: int, host: str,
                   started_at: dt.datetime) -> None:
    """A poller took the poll lock: it owns the row now (the last poll's
    outcome and the failure count stay, they describe the archive)."""
    now = utcnow()
    holder = {"command": command, "pid": pid, "host": host, "started_at": started_at,
              "stopped_at": None, "messages_total": 0, "series_total": 0,
              "next_poll_at": None, "updated_at": now}
    upsert(session, DaemonStatus.__table__,
           dict(holder, id=_ROW, consecutive_failures=0, messages_stored=0,
                series_stored=0), ["id"], holder)


def _update(session: Session, **values: Any) -> None:
    session.execute(update(DaemonStatus).where(DaemonStatus.id == _ROW)
                    .values(updated_at=utcnow(), **values))


def record_poll_started(session: Session, when: dt.datetime) -> None:
    _update(session, last_poll_started_at=when, last_result=PollResult.RUNNING,
            next_poll_at=None)


def record_progress(session: Session, messages: int, series: int) -> None:
    """Rows stored by the running cycle, counted as they are committed."""
    _update(session, messages_total=DaemonStatus.messages_total + messages,
            series_total=DaemonStatus.series_total + series)


def record_poll_ended(session: Session, *, when: dt.datetime, result: PollResult,
                      error: str | None, messages: int, series: int,
                      next_poll_at: dt.datetime | None) -> None:
    values: dict[str, Any] = {"last_poll_ended_at": when, "last_result": result,
                              "last_error": error, "messages_stored": messages,
                              "series_stored": series, "next_poll_at": next_poll_at}
    if result is PollResult.OK:
        values.update(last_success_at=when, consecutive_failures=0, failing_since=None)
    elif result is PollResult.FAILED:
        values.update(consecutive_failures=DaemonStatus.consecutive_failures + 1)
        row = session.get(DaemonStatus, _ROW)
        if row is not None and row.failing_since is None:
            values["failing_since"] = when
    _update(session, **values)


def record_next_poll(session: Session, when: dt.datetime | None) -> None:
    _update(session, next_poll_at=when)


def record_stopped(session: Session, when: dt.datetime) -> None:
    _update(session, stopped_at=when, next_poll_at=None)
