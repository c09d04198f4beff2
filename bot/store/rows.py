"""Writing rows as every supported database accepts them.

Shared by the modules that store pipeline results (`bot.store.queries`,
`bot.store.series`) and the poller's status row: what a column may hold
(text without NUL characters, integers in range), INSERT ... ON CONFLICT
DO NOTHING and upserts in the SQLite and PostgreSQL dialects, and the
count of rows a store operation wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

# The largest value of an INTEGER column on every database we support.
# Numbers read from mail (revisions, patch counters, line numbers) can be
# anything; one past this is refused by PostgreSQL and fails the whole
# transaction, so they are checked before they are written.
INT_MAX = 2**31 - 1


def int_ok(*values: int | None) -> bool:
    return all(v is None or 0 <= v <= INT_MAX for v in values)


@dataclass(slots=True)
class StoreStats:
    """How many rows of each kind a store operation wrote."""

    messages: int = 0
    series: int = 0
    patches: int = 0
    trailers: int = 0
    findings: int = 0
    drafts: int = 0
    quarantined: int = 0

    def __iadd__(self, other: StoreStats) -> StoreStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def column_text(value: str | None, limit: int | None = None) -> str | None:
    """Text as every database accepts it: PostgreSQL refuses NUL characters."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit else value


def insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]],
                  key: list[str]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns the number of new rows."""
    return len(insert_ignore_returning(session, table, rows, key))


def insert_ignore_ids(session: Session, table: Any, rows: list[dict[str, Any]],
                      key: list[str]) -> list[int]:
    """INSERT ... ON CONFLICT DO NOTHING; returns the ids of the new rows."""
    return [r[0] for r in insert_ignore_returning(session, table, rows, key)]


def insert_ignore_returning(session: Session, table: Any, rows: list[dict[str, Any]],
                            key: list[str], *columns: str) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT DO NOTHING; returns `columns` (by default the
    id) of each new row, in no particular order."""
    if not rows:
        return []
    # rowcount of a many-row insert is not reliable across drivers (psycopg
    # reports 0); the rows RETURNING hands back are the rows really inserted.
    stmt = _insert(session, table).on_conflict_do_nothing(index_elements=key).returning(
        *(table.c[c] for c in columns or ("id",)))
    return [tuple(r) for r in session.execute(stmt, rows)]


def insert_missing(session: Session, table: Any, rows: list[dict[str, Any]],
                   key: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, when what was new is not asked:
    one batch for the driver, nothing read back."""
    if rows:
        session.execute(_insert(session, table).on_conflict_do_nothing(index_elements=key), rows)


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def upsert(session: Session, table: Any, row: dict[str, Any], key: list[str],
           update: dict[str, Any]) -> None:
    """INSERT `row`, or on a conflict over `key` UPDATE with `update`, in one
    statement: two sessions doing this at once never fail nor lose an update."""
    stmt = _insert(session, table).values(**row)
    session.execute(stmt.on_conflict_do_update(index_elements=key, set_=update))
