"""Storing thread results: counts of new rows are exact and a second store adds none."""

from pathlib import Path

from sqlalchemy import select, text

from bot.config import InputConfig
from bot.pipeline import Checker
from bot.sources import InputSet
from bot.store.db import Database
from bot.store.queries import save_thread

THREADS = Path(__file__).parent / "data" / "threads"


def _results(cfg):
    checker = Checker(cfg)
    inputs = InputSet([str(THREADS / "revision-v2-reply-to-v1.mbox"),
                       str(THREADS / "series-complete-v2.mbox")], InputConfig())
    return [checker.check_thread(raws) for raws in inputs.threads()]


def test_store_counts_new_rows_exactly(migrated):
    database = Database(migrated)
    results = _results(migrated)
    totals = []
    for _ in range(2):
        stats = []
        for result in results:
            with database.transaction() as session:
                stats.append(save_thread(session, result).as_dict())
        totals.append({k: sum(s[k] for s in stats) for k in stats[0]})
    database.close()
    assert totals[0]["messages"] == 8 + 5
    assert totals[0]["series"] == 3
    assert totals[0]["patches"] == 1 + 1 + 3
    assert totals[0]["trailers"] == 2
    assert all(n == 0 for n in totals[1].values()), totals[1]


ERRATA_V1 = Path(__file__).parent / "data" / "revisions" / "errata-1319367-v1.mbox"
ERRATA_V2 = Path(__file__).parent / "data" / "revisions" / "errata-1319367-v2.mbox"


def _stored_trailers(database):
    from bot.store.models import Patch, Series, Trailer

    with database.transaction() as session:
        return sorted(session.execute(
            select(Series.message_id, Patch.index, Trailer.message_id, Trailer.name,
                   Trailer.value, Trailer.revision)
            .join(Patch, Patch.series_id == Series.id)
            .join(Trailer, Trailer.patch_id == Patch.id)).all())


def _store(cfg, results, carry):
    database = Database(cfg)
    try:
        for result in results:
            with database.transaction(durable=False) as session:
                save_thread(session, result, carry=carry)
        return _stored_trailers(database)
    finally:
        database.close()


def test_the_poller_carries_trailers_from_memory_as_from_stored_mail(migrated, tmp_path,
                                                                     monkeypatch):
    """errata v2 stored before v1, as the poller stores newest mail first:
    storing v1 carries its trailers to v2. The poller's Carrier, which
    remembers v2 as it was checked, stores exactly what assembling v2
    again from its stored mail (`carried`, as `bot check --store` does)
    stores, without assembling anything again."""
    import dataclasses

    import bot.pipeline
    from bot.pipeline import Carrier, carried
    from bot.store import db

    checker = Checker(migrated)
    v2, v1 = (checker.check_thread(raws) for raws in InputSet(
        [str(ERRATA_V2), str(ERRATA_V1)], InputConfig()).threads())
    other = dataclasses.replace(migrated, database=dataclasses.replace(
        migrated.database, url="sqlite:///%s" % (tmp_path / "other.sqlite3")))
    engine = db.make_engine(other)
    db.upgrade(engine)
    engine.dispose()
    from_mail = _store(other, (v2, v1), carried)

    carrier = Carrier()
    for result in (v2, v1):
        carrier.remember(result)

    def assemble(*_args: object) -> None:
        raise AssertionError("assembled again from stored mail")

    monkeypatch.setattr(bot.pipeline, "assemble", assemble)
    from_memory = _store(migrated, (v2, v1), carrier)
    assert from_memory == from_mail
    assert sorted((index, name, revision) for mid, index, _m, name, _v, revision in from_mail
                  if mid == "20191019095521.31722-1-maz@kernel.org" and revision) == [
        (1, "Acked-by", 1), (1, "Reviewed-by", 1), (5, "Acked-by", 1)]


def test_only_what_the_poller_stores_skips_the_sync_to_disk(migrated):
    """A transaction is durable unless asked (SQLite: synchronous FULL, not
    NORMAL; PostgreSQL: synchronous_commit on), and a pooled connection
    that ran a non-durable one is durable again for the next."""
    database = Database(migrated)
    sqlite = database.engine.dialect.name == "sqlite"
    query = text("PRAGMA synchronous" if sqlite else "SHOW synchronous_commit")
    seen = []
    for durable in (True, False, True, False):
        with database.transaction(durable=durable) as session:
            seen.append(str(session.execute(query).scalar()))
    database.close()
    full, normal = ("2", "1") if sqlite else ("on", "off")
    assert seen == [full, normal, full, normal]
