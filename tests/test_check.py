"""`bot check` end to end through the command line: the JSON contract, formats,
exit codes, and idempotent storing."""

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select

from bot.store import models

DATA = Path(__file__).parent / "data"
THREADS = DATA / "threads"


def bot(tmp_path, *args, db_url=None, stdin=None):
    env = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml")}
    if db_url:
        env["BOT_DATABASE_URL"] = db_url
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True,
                          env=env, input=stdin, cwd=tmp_path,
                          text=not isinstance(stdin, bytes))


def test_json_contract(tmp_path):
    proc = bot(tmp_path, "check", "--format", "json", str(THREADS / "series-complete-v2.mbox"),
               str(THREADS / "missing-patches-autosel.mbox"), str(THREADS / "replies-only.mbox"),
               str(THREADS / "polarity-drop-fb-thread.mbox"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"series", "errors"}
    assert doc["errors"] == []
    assert len(doc["series"]) == 3
    s = doc["series"][0]
    assert set(s) >= {"message_id", "subject", "revision", "author", "patches", "missing",
                      "findings", "pre_existing", "drafts"}
    assert s["message_id"] == "20200529150656.7339-1-james.morse@arm.com"
    assert s["revision"] == 2
    assert s["author"] == "James Morse <james.morse@arm.com>"
    assert [p["index"] for p in s["patches"]] == [1, 2, 3]
    p1 = s["patches"][0]
    assert set(p1) == {"index", "total", "message_id", "subject", "files", "trailers"}
    assert p1["total"] == 3
    assert p1["files"] == ["arch/arm64/kvm/sys_regs.c"]
    assert s["missing"] == []
    assert s["findings"] == [] and s["drafts"] == []
    assert doc["series"][1]["missing"] == [1, 2, 3, 4, 6, 7, 8]
    # The real patch dropping HCR_FB from the guest flags (Marc Zyngier:
    # "This breaks uniprocessor semantics for I-cache invalidation").
    fb = doc["series"][2]
    assert fb["message_id"] == "1603331829-33879-1-git-send-email-zhangshaokun@hisilicon.com"
    assert fb["findings"], "the FB patch must draw a finding"
    for f in fb["findings"]:
        assert set(f) >= {"rule", "category", "severity", "patch", "file", "line", "register",
                          "fields", "message", "evidence", "status"}
        assert f["severity"] in ("error", "warning", "question", "info")
    polarity = [f for f in fb["findings"] if f["category"] == "polarity"]
    assert polarity and polarity[0]["file"] == "arch/arm64/include/asm/kvm_arm.h"
    assert polarity[0]["register"] == "HCR_EL2" and "FB" in polarity[0]["fields"]
    (draft,) = fb["drafts"]
    assert set(draft) == {"in_reply_to", "to", "cc", "subject", "body"}
    assert draft["in_reply_to"] == fb["message_id"]
    assert draft["subject"] == ("Re: [RFC] KVM: arm64: Don't force broadcast tlbi when guest "
                                "is running")
    # The draft quotes the removed line of the hunk the finding was made on.
    assert ">  #define HCR_GUEST_FLAGS" in draft["body"]
    assert "> -\t\t\t HCR_BSU_IS | HCR_FB | HCR_TAC | \\" in draft["body"]


def test_same_messages_in_two_inputs_are_checked_once(tmp_path):
    proc = bot(tmp_path, "check", "--format", "json", str(THREADS / "series-complete-v2.mbox"),
               str(THREADS / "series-missing-patch-2.mbox"))
    (series,) = json.loads(proc.stdout)["series"]
    assert [p["index"] for p in series["patches"]] == [1, 2, 3]


def test_text_format_lists_series_and_missing(tmp_path):
    proc = bot(tmp_path, "check", str(THREADS / "series-missing-patch-2.mbox"))
    assert proc.returncode == 0
    # A series without findings is counted, not listed...
    assert proc.stdout == ("kvm-sysreg: 1 series checked: no findings; 1 incomplete, "
                           "1 without the base (findings on the hunks)\n")
    # ...unless asked, with -v before or after the subcommand.
    for args in (("-v", "check"), ("check", "-v")):
        proc = bot(tmp_path, *args, str(THREADS / "series-missing-patch-2.mbox"))
        assert proc.stdout.splitlines()[0] == (
            "== [v2] KVM: arm64: aarch32 ACTLR accesses "
            "<20200529150656.7339-1-james.morse@arm.com>: 2 of 3 patches (missing 2), "
            "base none: findings on the hunks, without the base (as of v5.8), no findings")


def test_b4_format_reads_one_message_from_stdin(tmp_path):
    mbox = (THREADS / "missing-patches-autosel.mbox").read_bytes()
    proc = bot(tmp_path, "check", "--format", "b4", "-", stdin=mbox)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert isinstance(results, list) and len(results) == 1
    assert results[0]["tool"] == "kvm-sysreg"
    assert results[0]["status"] in ("pass", "warn", "fail")
    assert isinstance(results[0]["summary"], str)
    assert not (tmp_path / "state").exists()  # no database, nothing written


def test_b4_format_cover_letter_alone(tmp_path):
    """b4 never sends a cover letter to a per-patch check; if someone does,
    the answer says there was nothing to check, not a silent []. A series
    check of the cover alone could check nothing: a failure saying why."""
    text = (THREADS / "series-complete-v2.mbox").read_text()
    cover = text.split("\nFrom mboxrd@z")[0] + "\n"
    proc = bot(tmp_path, "check", "--format", "b4", "-", stdin=cover)
    assert proc.returncode == 0
    [entry] = json.loads(proc.stdout)
    assert entry["status"] == "pass" and entry["summary"].startswith("cover letter: no diff")
    proc = bot(tmp_path, "check", "--format", "b4-series", "-", stdin=cover)
    [entry] = json.loads(proc.stdout)
    assert entry["status"] == "fail"
    assert "cover letter alone has no diff" in entry["summary"]


def test_format_patch_directory(tmp_path):
    """A directory of `git format-patch` output (no Message-IDs) is one series."""
    text = (THREADS / "series-complete-v2.mbox").read_text()
    msgs = ["From mboxrd@z" + m for m in text.split("From mboxrd@z")[1:]]
    outdir = tmp_path / "patches"
    outdir.mkdir()
    for n, msg in enumerate(msgs[:4]):
        lines = [ln for ln in msg.splitlines(keepends=True)
                 if not ln.lower().startswith(("message-id:", "in-reply-to:", "references:"))]
        (outdir / ("%04d-x.patch" % n)).write_text("".join(lines))
    proc = bot(tmp_path, "check", "--format", "json", str(outdir))
    assert proc.returncode == 0, proc.stderr
    (series,) = json.loads(proc.stdout)["series"]
    assert [p["index"] for p in series["patches"]] == [1, 2, 3]
    assert series["missing"] == []


def _counts(db_url):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = {t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
               for t in (models.Message, models.Series, models.Patch, models.Trailer,
                         models.Finding, models.Draft, models.Quarantine)}
    engine.dispose()
    return out


def test_store_is_idempotent_and_links_revisions(migrated, tmp_path):
    url = migrated.database_url
    files = [str(p) for p in sorted(THREADS.glob("*.mbox"))]
    proc = bot(tmp_path, "check", "--store", *files, db_url=url)
    assert proc.returncode == 0, proc.stderr
    first = _counts(url)
    # always-on-nvhe (5), missing-patches (1), polarity-drop-fb (6), replies-only
    # (2), revision-v2-reply-to-v1 (8), series-complete-v2 (5); the
    # missing-patch thread is a subset of the complete one.
    assert first["message"] == 5 + 1 + 6 + 2 + 8 + 5 == 27
    assert first["series"] == 1 + 1 + 1 + 2 + 1
    assert first["patch"] == 3 + 1 + 1 + 2 + 3
    assert first["trailer"] == 2
    assert first["finding"] >= 2 and first["draft"] == 2  # FB polarity, host SMC trap
    proc = bot(tmp_path, "check", "--store", *files, db_url=url)
    assert proc.returncode == 0
    assert _counts(url) == first
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(models.Series.revision, models.Series.previous_id,
                                   models.Series.id, models.Series.message_id)
                            .order_by(models.Series.id)).all()
    engine.dispose()
    by_mid = {r.message_id: r for r in rows}
    v1 = by_mid["20191016165953.o6ogh4fdmsjmd2sw@linutronix.de"]
    v2 = by_mid["20191128195805.c2pryug4ohmcoqwd@linutronix.de"]
    assert v2.previous_id == v1.id and v1.previous_id is None


def test_fail_on_never_and_exit_codes(tmp_path):
    proc = bot(tmp_path, "check", "--fail-on", "never", str(THREADS / "replies-only.mbox"))
    assert proc.returncode == 0
    proc = bot(tmp_path, "check", "--fail-on", "sometimes", str(THREADS / "replies-only.mbox"))
    assert proc.returncode == 2
