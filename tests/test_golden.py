"""What `bot check --format json` says about each real thread of
tests/data/threads/, compared exactly with a golden file.

A change to parsing, assembly, the rules or the drafts shows up here as a
diff of the golden files: run `pytest --regen-golden`, read the diff (it is
what a maintainer would see change), and commit it with the change.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bot import config as botconfig
from bot.check import run_check
from tests.conftest import DATA, compare_golden

THREADS = sorted((DATA / "threads").glob("*.mbox"))
GOLDEN = DATA / "golden"


@pytest.mark.parametrize("thread", THREADS, ids=[p.stem for p in THREADS])
def test_check_json_matches_the_golden_file(thread: Path, tmp_path: Path,
                                            regen_golden: bool) -> None:
    cfg = botconfig.load(DATA / "config" / "test.toml",
                         environ={"BOT_STATE_DIR": str(tmp_path / "state")})
    out = io.StringIO()
    run_check(cfg, [str(thread)], fmt="json", fail_on="never", store=False, kernel_repo=None,
              out=out)
    doc = json.loads(out.getvalue())
    text = json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    compare_golden(GOLDEN / ("check-%s.json" % thread.stem), text, regen_golden)


def test_every_golden_file_has_its_thread() -> None:
    stems = {"check-%s" % p.stem for p in THREADS}
    assert {p.stem for p in GOLDEN.glob("check-*.json")} == stems
