"""Storing thread results: counts of new rows are exact and a second store adds none."""

from pathlib import Path

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
