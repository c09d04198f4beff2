"""Re-review on real multi-revision series (tests/data/revisions/, README):
`bot check --compare-to`, a revision in the same thread, and the earlier
revision stored in the database (SQLite and PostgreSQL), with trailers
carried over and dismissals remembered."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import config as botconfig
from bot.check import run_check
from bot.data import RevisionStatus
from bot.store.db import Database
from bot.store.models import Draft, Finding, FindingStatus, Patch, Series, Trailer
from tests.conftest import DATA
from tests.pi import public_inbox  # noqa: F401  (the module's server)

REV = DATA / "revisions"
OPTIN_V1 = REV / "opt-in-nvhe-v1-trimmed.mbox"      # GENMASK(16, 0) into a u16 (patch 23)
OPTIN_V2 = REV / "opt-in-nvhe-v2-trimmed.mbox"      # the helper is gone: resolved
RFC = DATA / "threads" / "always-on-nvhe-rfc-trimmed.mbox"  # HCR_TSC in nVHE flags only
ERRATA_V1 = REV / "errata-1319367-v1.mbox"
ERRATA_V2 = REV / "errata-1319367-v2.mbox"
CONSTRUCTED = REV / "constructed-smc-trap-v2-reply-to-v1.mbox"

OPTIN_V1_MID = "20201109113233.9012-1-dbrazdil@google.com"
OPTIN_V2_MID = "20201116204318.63987-1-dbrazdil@google.com"
C_V1, C_V2 = ("20201110090000.1000-1-dev@example.org", "20201110090000.2000-1-dev@example.org")
C_V2_P1 = "20201110090000.2000-2-dev@example.org"
REVIEW = "20201111100000.GA1@reviewer.example.org"


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
               "BOT_CONFIG": str(DATA / "config" / "test.toml"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot", "check", *args], capture_output=True,
                          text=True, env=environ, cwd=tmp_path)


def check(cfg: botconfig.Config, *sources: Path, compare_to: tuple[Path, ...] = (),
          store: bool = False) -> list[dict]:
    out = io.StringIO()
    run_check(cfg, [str(s) for s in sources], fmt="json", fail_on="never", store=store,
              kernel_repo=None, out=out, compare_to=[str(c) for c in compare_to] or None)
    return json.loads(out.getvalue())["series"]


def plain_config(tmp_path: Path, **drafts: object) -> botconfig.Config:
    cfg = botconfig.load(DATA / "config" / "test.toml",
                         environ={"BOT_STATE_DIR": str(tmp_path / "state")})
    return dataclasses.replace(cfg, drafts=dataclasses.replace(cfg.drafts, **drafts))


def split(path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The constructed thread as two inputs: v1 with its review, then v2."""
    text = path.read_text()
    at = text.index("From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: Example Developer "
                    "<dev@example.org>\nTo: kvmarm@lists.cs.columbia.edu\nCc: Marc Zyngier "
                    "<maz@kernel.org>\nSubject: [PATCH v2 0/3]")
    v1, v2 = tmp_path / "c-v1.mbox", tmp_path / "c-v2.mbox"
    v1.write_text(text[:at])
    v2.write_text(text[at:])
    return v1, v2


def by_rule(series: dict) -> dict[str, dict]:
    return {f["rule"]: f for f in series["findings"]}


# -- without a database -------------------------------------------------------


def test_compare_to_a_real_earlier_revision_in_another_thread(tmp_path):
    proc = cli(tmp_path, "--compare-to", str(OPTIN_V1), str(OPTIN_V2), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (v2,) = json.loads(proc.stdout)["series"]
    # What v2 still says is only the question on the isbs after the host
    # flags at init (Marc Zyngier on v2: "Why the ISB?"), new in v2.
    assert v2["message_id"] == OPTIN_V2_MID
    assert [(f["rule"], f["file"], f["line"], f["revision_status"]) for f in v2["findings"]] == [
        ("barrier", "arch/arm64/kvm/hyp/nvhe/hyp-init.S", 94, "new"),
        ("barrier", "arch/arm64/kvm/hyp/nvhe/hyp-init.S", 236, "new")]
    assert v2["compared_to"] == {"message_id": OPTIN_V1_MID, "revision": 1,
                                 "source": "compare-to"}
    (gone,) = v2["resolved"]
    assert (gone["rule"], gone["patch"], gone["file"], gone["line"]) == (
        "register-width", 23, "arch/arm64/kvm/arm.c", 1867)
    assert (gone["revision"], gone["first_seen"], gone["resolved_in"]) == (1, 1, 2)
    assert gone["status"] == "open"
    # Nothing is said about what was fixed: the one draft asks about the isbs.
    assert [("register-width" in d["body"], "isb" in d["body"]) for d in v2["drafts"]] == [
        (False, True)]


def test_a_bad_compare_to_source_is_refused_in_one_line(tmp_path):
    proc = cli(tmp_path, "--compare-to", str(tmp_path / "nothing.mbox"), str(OPTIN_V2))
    assert proc.returncode == 2
    assert proc.stderr == "bot: error: %s: no such file or directory\n" % (tmp_path / "nothing.mbox")
    assert proc.stdout == ""


def test_compare_to_the_rfc_whose_subject_changed(tmp_path):
    """RFC "Always-on nVHE hypervisor" -> v1 "Opt-in always-on nVHE hypervisor":
    no common lineage; the one earlier series by the same author is used."""
    (v1,) = check(plain_config(tmp_path), OPTIN_V1, compare_to=(RFC,))
    assert v1["compared_to"]["message_id"] == "20201104183630.27513-1-dbrazdil@google.com"
    width = by_rule(v1)["register-width"]
    assert (width["revision_status"], width["first_seen"]) == ("new", 1)
    # The RFC's isb after the host flags at init is asked about; v1 patches
    # the flags into that mov_q at boot (alternative_cb), a value the
    # barrier rule does not claim to know, so it no longer asks.
    assert [(r["rule"], r["patch"], r["fields"]) for r in v1["resolved"]] == [
        ("host-flags", 25, ["TSC"]), ("barrier", 25, [])]
    assert len(v1["drafts"]) == 1 and "Still present" not in v1["drafts"][0]["body"]


def test_compare_to_an_unrelated_series_compares_nothing(tmp_path):
    (v2,) = check(plain_config(tmp_path), OPTIN_V2, compare_to=(ERRATA_V1,))
    assert v2["compared_to"] is None and v2["resolved"] == []


def test_without_an_earlier_revision_the_statuses_are_null(tmp_path):
    (v1,) = check(plain_config(tmp_path), OPTIN_V1)
    assert v1["compared_to"] is None and v1["resolved"] == []
    assert [(f["revision_status"], f["first_seen"]) for f in v1["findings"]] == [(None, None)]


def test_a_revision_sent_in_reply_to_the_previous_one(tmp_path):
    v1, v2 = check(plain_config(tmp_path), CONSTRUCTED)
    assert (v1["message_id"], v2["message_id"]) == (C_V1, C_V2)
    assert v1["compared_to"] is None
    assert v2["compared_to"] == {"message_id": C_V1, "revision": 1, "source": "thread"}
    found = by_rule(v2)
    # The GENMASK line moved from patch 2 to patch 1, 33 lines down, its
    # neighbours reworded: still the same finding.
    width = found["register-width"]
    assert (width["patch"], width["line"]) == (1, 1900)
    assert (width["revision_status"], width["first_seen"]) == ("still-present", 1)
    assert (found["host-flags"]["revision_status"], found["host-flags"]["first_seen"]) == (
        "new", 2)
    assert v2["resolved"] == []
    drafts = {d["in_reply_to"]: d["body"] for d in v2["drafts"]}
    assert "Still present since v1." in drafts[C_V2_P1]
    assert all("Still present" not in body for mid, body in drafts.items() if mid != C_V2_P1)
    # The unchanged patch (v1 1/2, now v2 2/3) keeps the review given to v1.
    trailers = {p["index"]: p["trailers"] for p in v2["patches"]}
    assert trailers == {1: [], 2: [{"name": "Reviewed-by",
                                    "value": "Example Reviewer <reviewer@example.org>",
                                    "author": "Example Reviewer <reviewer@example.org>",
                                    "message_id": REVIEW, "revision": 1}], 3: []}


def test_still_present_findings_are_not_drafted_again_when_configured(tmp_path):
    _, v2 = check(plain_config(tmp_path, repeat_still_present=False), CONSTRUCTED)
    assert by_rule(v2)["register-width"]["revision_status"] == "still-present"
    assert [d["in_reply_to"] for d in v2["drafts"]] == ["20201110090000.2000-4-dev@example.org"]


def test_text_output_says_since_when(tmp_path):
    # The rules of the findings this reads: text output is under test here.
    rules = {"BOT_RULES_ENABLE": "register-width,host-flags"}
    proc = cli(tmp_path, "-v", str(CONSTRUCTED), env=rules)
    assert proc.returncode == 0, proc.stderr
    v2 = proc.stdout.split("\n== [v2] ")[1]
    assert v2.startswith("KVM: arm64: Trap host SMCs in protected mode "
                         "<20201110090000.2000-1-dev@example.org>: 3 patches, base none: "
                         "findings on the hunks, without the base (as of v5.11), compared "
                         "with v1 (thread, <%s>): 1 new, 1 still present, 0 resolved\n" % C_V1)
    assert "\narch/arm64/kvm/arm.c:1900: warning: [1/3] GENMASK(16, 0) keeps 17 bits of the " \
           "HCR_EL2 value, but imm is a u16: the top 1 bit(s) are lost. [register-width] " \
           "(still present since v1)\n" in v2
    assert "\n[2/3] Reviewed-by: Example Reviewer <reviewer@example.org> (given to v1)\n" in v2
    proc = cli(tmp_path, "--compare-to", str(OPTIN_V1), str(OPTIN_V2), env=rules)
    assert proc.stdout == ("kvm-sysreg: 1 series checked: no findings; 1 fixed since an "
                           "earlier revision, 1 incomplete, 1 without the base (findings on "
                           "the hunks) (-v shows them)\n")
    proc = cli(tmp_path, "-v", "--compare-to", str(OPTIN_V1), str(OPTIN_V2), env=rules)
    assert "\narch/arm64/kvm/arm.c:1867: note: GENMASK(16, 0) keeps 17 bits of the HCR_EL2 " \
           "value, but imm is a u16: the top 1 bit(s) are lost. [register-width] " \
           "(raised on v1, resolved in v2)\n" in proc.stdout


def test_a_real_finding_followed_across_renumbering_and_a_file_move(tmp_path):
    """"Split off nVHE hyp code": v1 09/15 splits hyp/debug-sr.c and moves the
    u32 __kvm_get_mdcr_el2 (pre-existing); in v4 it is 10/15 and the VHE half
    lives in hyp/vhe/debug-sr.c instead of staying in hyp/debug-sr.c."""
    (v4,) = check(plain_config(tmp_path), DATA / "labelled" / "clean-split-debug-sr.mbox",
                  compare_to=(REV / "split-nvhe-v1-debug-sr.mbox",))
    assert v4["compared_to"]["revision"] == 1 and v4["findings"] == []
    assert sorted((f["patch"], f["file"], f["revision_status"], f["first_seen"])
                  for f in v4["pre_existing"]) == [
        (10, "arch/arm64/kvm/hyp/nvhe/debug-sr.c", "still-present", 1),
        (10, "arch/arm64/kvm/hyp/vhe/debug-sr.c", "still-present", 1)]
    assert v4["resolved"] == []  # pre-existing code is never "resolved" by a series


def test_trailers_of_a_real_earlier_revision_carry_to_unchanged_patches(tmp_path):
    """errata 1319367 v1 -> v2, a new thread: patches 1 and 5 are unchanged
    (same patch-id), patch 4 changed, so its v1 Reviewed-by stays behind."""
    (v2,) = check(plain_config(tmp_path), ERRATA_V2, compare_to=(ERRATA_V1,))
    carried = {p["index"]: sorted((t["name"], t["value"], t["revision"]) for t in p["trailers"])
               for p in v2["patches"]}
    assert carried == {
        1: [("Acked-by", "Catalin Marinas <catalin.marinas@arm.com>", 1),
            ("Reviewed-by", "Suzuki K Poulose <suzuki.poulose@arm.com>", 1)],
        2: [], 3: [], 4: [],
        5: [("Acked-by", "Catalin Marinas <catalin.marinas@arm.com>", 1)]}
    (alone,) = check(plain_config(tmp_path), ERRATA_V2)
    assert all(p["trailers"] == [] for p in alone["patches"])


# -- with the database (SQLite and PostgreSQL) ---------------------------------


def rows(cfg: botconfig.Config, model, *where) -> list:
    database = Database(cfg)
    try:
        with database.transaction() as s:
            found = list(s.scalars(select(model).where(*where).order_by(model.id)))
            s.expunge_all()
            return found
    finally:
        database.close()


def series_id(cfg: botconfig.Config, mid: str) -> int:
    (row,) = rows(cfg, Series, Series.message_id == mid)
    return row.id


def test_stored_earlier_revision_in_another_thread(migrated, tmp_path):
    check(migrated, OPTIN_V1, store=True)
    (v2,) = check(migrated, OPTIN_V2, store=True)
    assert v2["compared_to"] == {"message_id": OPTIN_V1_MID, "revision": 1,
                                 "source": "database"}
    assert [r["rule"] for r in v2["resolved"]] == ["register-width"]
    (width,) = rows(migrated, Finding, Finding.series_id == series_id(migrated, OPTIN_V1_MID))
    assert width.resolved_in_id == series_id(migrated, OPTIN_V2_MID)
    assert (width.function, width.revision_status) == ("__gen_mov_hcr_insn", None)


def test_a_dismissal_on_v1_carries_over_and_is_not_drafted_again(migrated, tmp_path):
    v1_file, v2_file = split(CONSTRUCTED, tmp_path)
    check(migrated, v1_file, store=True)
    v1_id = series_id(migrated, C_V1)
    database = Database(migrated)
    with database.transaction() as s:
        (width,) = s.scalars(select(Finding).where(Finding.series_id == v1_id))
        width.status = FindingStatus.DISMISSED  # what the dashboard will do
        dismissed_id = width.id
    database.close()

    # v2 alone: its thread's root (v1) is not in the input; v1 is found stored.
    (v2,) = check(migrated, v2_file, store=True)
    assert v2["compared_to"]["source"] == "database"
    assert by_rule(v2)["register-width"]["revision_status"] == "still-present"
    assert [d["in_reply_to"] for d in v2["drafts"]] == ["20201110090000.2000-4-dev@example.org"]
    v2_id = series_id(migrated, C_V2)
    stored = {f.rule: f for f in rows(migrated, Finding, Finding.series_id == v2_id)}
    width = stored["register-width"]
    assert (width.status, width.revision_status, width.first_seen, width.continues_id) == (
        FindingStatus.DISMISSED, RevisionStatus.STILL_PRESENT, 1, dismissed_id)
    flags = stored["host-flags"]
    assert (flags.status, flags.revision_status, flags.first_seen, flags.continues_id) == (
        FindingStatus.OPEN, RevisionStatus.NEW, 2, None)
    assert [d.patch_index for d in rows(migrated, Draft, Draft.series_id == v2_id)] == [3]
    # The review given to v1 is stored against the unchanged patch of v2.
    (p2,) = rows(migrated, Patch, Patch.series_id == v2_id, Patch.index == 2)
    assert [(t.name, t.message_id, t.revision) for t in
            rows(migrated, Trailer, Trailer.patch_id == p2.id)] == [("Reviewed-by", REVIEW, 1)]

    # Checking both again stores nothing new and changes nothing.
    before = [(f.id, f.status, f.revision_status, f.first_seen, f.continues_id, f.resolved_in_id)
              for f in rows(migrated, Finding)]
    check(migrated, v1_file, v2_file, store=True)
    after = [(f.id, f.status, f.revision_status, f.first_seen, f.continues_id, f.resolved_in_id)
             for f in rows(migrated, Finding)]
    assert after == before
    assert len(rows(migrated, Trailer)) == 2


def test_stored_trailers_carry_to_a_new_thread(migrated, tmp_path):
    check(migrated, ERRATA_V1, store=True)
    (v2,) = check(migrated, ERRATA_V2, store=True)
    assert v2["compared_to"]["source"] == "database"
    v2_id = series_id(migrated, "20191019095521.31722-1-maz@kernel.org")
    patches = {p.id: p.index for p in rows(migrated, Patch, Patch.series_id == v2_id)}
    carried = sorted((patches[t.patch_id], t.name, t.revision)
                     for t in rows(migrated, Trailer, Trailer.patch_id.in_(patches)))
    assert carried == [(1, "Acked-by", 1), (1, "Reviewed-by", 1), (5, "Acked-by", 1)]


def test_a_revision_stored_before_the_one_it_follows_is_compared_when_that_arrives(
        migrated, tmp_path):
    """v2's thread is stored first (in an archive, v1's thread completes
    with its last reply, often after v2 was posted); storing v1 then marks
    v2's findings against it and v1's resolved ones."""
    v1_file, v2_file = split(CONSTRUCTED, tmp_path)
    (v2,) = check(migrated, v2_file, store=True)
    assert v2["compared_to"] is None
    check(migrated, v1_file, store=True)
    v1_id, v2_id = series_id(migrated, C_V1), series_id(migrated, C_V2)
    (v1_width,) = rows(migrated, Finding, Finding.series_id == v1_id)
    stored = {f.rule: f for f in rows(migrated, Finding, Finding.series_id == v2_id)}
    assert (stored["register-width"].revision_status, stored["register-width"].first_seen,
            stored["register-width"].continues_id) == (RevisionStatus.STILL_PRESENT, 1,
                                                       v1_width.id)
    assert (stored["host-flags"].revision_status, stored["host-flags"].first_seen) == (
        RevisionStatus.NEW, 2)
    assert v1_width.resolved_in_id is None
    (v2_row,) = rows(migrated, Series, Series.id == v2_id)
    assert v2_row.previous_id == v1_id

    # The same with a fix in the later revision: v1's finding is resolved in v2.
    check(migrated, OPTIN_V2, store=True)
    check(migrated, OPTIN_V1, store=True)
    (width,) = rows(migrated, Finding, Finding.series_id == series_id(migrated, OPTIN_V1_MID))
    assert width.resolved_in_id == series_id(migrated, OPTIN_V2_MID)


@pytest.mark.parametrize("order", ["v1 first", "same input"])
def test_compare_to_wins_over_the_stored_revision(migrated, tmp_path, order):
    if order == "v1 first":
        check(migrated, OPTIN_V1, store=True)
    (v1,) = check(migrated, OPTIN_V1, compare_to=(RFC,), store=True)
    assert v1["compared_to"]["source"] == "compare-to"
    (width,) = rows(migrated, Finding, Finding.series_id == series_id(migrated, OPTIN_V1_MID))
    assert (width.revision_status, width.first_seen) == (RevisionStatus.NEW, 1)


# -- migration 0005 on rows stored before it ----------------------------------


def test_migration_computes_key_and_fingerprint_of_stored_findings_and_back(db_url, tmp_path):
    import hashlib

    import sqlalchemy as sa

    from bot.data import Category, Severity
    from bot.data import Finding as FindingData
    from bot.store import db
    from tests.conftest import make_config

    engine = db.make_engine(make_config(tmp_path, BOT_DATABASE_URL=db_url))
    db.upgrade(engine, "0001")
    evidence = ["\tu16 imm = (hcr >> shift) & GENMASK(16, 0);", "  x  =  1;"]
    mid = "20201109113233.9012-24-dbrazdil@google.com"
    old = hashlib.sha256("\x1f".join([
        "register-width", "arch/arm64/kvm/arm.c", "HCR_EL2", "",
        "\x1e".join(" ".join(e.split()) for e in evidence), mid]).encode()).hexdigest()[:40]
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    now = sa.func.now()
    with engine.begin() as conn:
        conn.execute(t["message"].insert().values(id=1, message_id=mid, subject="", from_addr="",
                                                  headers={}, raw=b"", created_at=now))
        conn.execute(t["series"].insert().values(
            id=1, message_id="s@x", lineage="l", subject="s", author="a", revision=1, total=24,
            missing=[], thread_id="", created_at=now, updated_at=now))
        conn.execute(t["patch"].insert().values(id=1, series_id=1, message_id=1, index=23,
                                                total=24, subject="", files=[]))
        conn.execute(t["finding"].insert().values(
            id=1, series_id=1, patch_index=23, rule="register-width", category="register-width",
            severity="warning", file="arch/arm64/kvm/arm.c", line=1867, register="HCR_EL2",
            fields=[], message="m", evidence="\n".join(evidence), fingerprint=old,
            status="dismissed", created_at=now))

    db.upgrade(engine)
    same = FindingData(rule="register-width", category=Category.REGISTER_WIDTH,
                       severity=Severity.WARNING, patch=23, file="arch/arm64/kvm/arm.c",
                       line=1867, register="HCR_EL2", fields=(), message="m",
                       evidence=tuple(evidence), message_id=mid)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT key, fingerprint, status, revision_status "
                                   "FROM finding")).one()
    assert tuple(row) == (same.key, same.fingerprint, "dismissed", None)

    db.downgrade(engine, "0001")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT fingerprint FROM finding")).scalar_one() == old
    engine.dispose()


# -- the poller ----------------------------------------------------------------


@pytest.mark.parametrize("polls", ["v1 then v2", "both in one poll"])
def test_the_poller_compares_a_new_revision_with_the_stored_one(migrated, public_inbox, polls):
    """Real mail through a real public-inbox: opt-in v1 in one poll, its v2
    (a new thread) in the next; or both in one poll, in whatever order the
    archive hands them over."""
    from bot.lore.client import LoreClient
    from bot.poller import Poller

    inbox = public_inbox.create()
    cfg = dataclasses.replace(migrated, lore=dataclasses.replace(migrated.lore, url=inbox.url))

    def poll() -> None:
        database = Database(cfg)
        try:
            with LoreClient(cfg.lore) as client:
                Poller(cfg, database, client).cycle()
        finally:
            database.close()

    def width_finding() -> Finding:
        # v2 also gets the barrier questions on its isbs after the host flags.
        (found,) = [f for f in rows(cfg, Finding) if f.rule == "register-width"]
        return found

    inbox.deliver(OPTIN_V1)
    if polls == "v1 then v2":
        poll()
        assert width_finding().resolved_in_id is None
    inbox.deliver(OPTIN_V2)
    poll()
    assert width_finding().resolved_in_id == series_id(cfg, OPTIN_V2_MID)


ERRATA_V2_MID = "20191019095521.31722-1-maz@kernel.org"
ERRATA_CARRIED = [(1, "Acked-by", 1), (1, "Reviewed-by", 1), (5, "Acked-by", 1)]


def carried_to_errata_v2(cfg: botconfig.Config) -> list[tuple[int, str, int | None]]:
    v2_id = series_id(cfg, ERRATA_V2_MID)
    patches = {p.id: p.index for p in rows(cfg, Patch, Patch.series_id == v2_id)}
    return sorted((patches[t.patch_id], t.name, t.revision)
                  for t in rows(cfg, Trailer, Trailer.patch_id.in_(patches)))


def test_trailers_carry_whatever_order_the_revisions_are_stored_in(migrated, tmp_path):
    """errata v2's thread stored before v1's (as when v1's thread ends after
    v2 was posted): storing v1 hands v2 the trailers it would have carried
    had v1 come first, and storing both again, in either order, adds no
    trailer (a rerun after a crash ends as one clean run)."""
    check(migrated, ERRATA_V2, store=True)
    assert carried_to_errata_v2(migrated) == []
    check(migrated, ERRATA_V1, store=True)
    assert carried_to_errata_v2(migrated) == ERRATA_CARRIED
    stored = len(rows(migrated, Trailer))
    check(migrated, ERRATA_V2, ERRATA_V1, store=True)
    check(migrated, ERRATA_V1, ERRATA_V2, store=True)
    assert len(rows(migrated, Trailer)) == stored
    assert carried_to_errata_v2(migrated) == ERRATA_CARRIED


def test_trailers_given_to_v1_after_v2_was_stored_carry_to_v2(migrated, tmp_path):
    """v1's reviews arrive after v2 is stored: storing v1's thread again
    with them carries them to v2's unchanged patches, once."""
    text = ERRATA_V1.read_text()
    at = text.index("From mboxrd@z", text.index("Message-Id: <20190925111941.88103-6-maz"))
    patches_only = tmp_path / "errata-v1-patches.mbox"
    patches_only.write_text(text[:at])
    check(migrated, patches_only, store=True)
    check(migrated, ERRATA_V2, store=True)
    assert carried_to_errata_v2(migrated) == []
    check(migrated, ERRATA_V1, store=True)
    assert carried_to_errata_v2(migrated) == ERRATA_CARRIED
    stored = len(rows(migrated, Trailer))
    check(migrated, ERRATA_V1, ERRATA_V2, store=True)
    assert len(rows(migrated, Trailer)) == stored
