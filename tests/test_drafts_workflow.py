"""The draft workflow in the database (SQLite and PostgreSQL): states, the
history of every change, supersession by a newer revision, no second draft
for the same findings, export, the migration of existing drafts, and the
`bot drafts` command line."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import mailbox
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot import config as botconfig
from bot import workflow as wf
from bot.errors import BadInput, NotFound
from bot.pipeline import Checker
from bot.sources import InputSet, StreamInput
from bot.store import db
from bot.store import drafts as q
from bot.store.db import Database
from bot.store.models import Draft, DraftAction, DraftEvent, DraftState
from bot.store.queries import save_thread
from tests.conftest import DATA, make_config
from tests.drafts_support import checker

POLARITY = DATA / "labelled" / "problem-polarity-drop-fb.mbox"
SERIES = DATA / "drafts" / "series-two-findings.mbox"
MAZ = wf.Actor(name="Marc Zyngier", email="maz@kernel.org")
OLIVER = wf.Actor(name="Oliver Upton", email="oliver.upton@linux.dev")


def store(cfg: botconfig.Config, source: Path | bytes) -> None:
    """Check and store mail, as `bot check --store` does."""
    import io
    run = Checker(cfg, checker().context)
    specs: list[str | StreamInput] = [StreamInput("raw", io.BytesIO(source))] \
        if isinstance(source, bytes) else [str(source)]
    database = Database(cfg)
    try:
        for raws in InputSet(specs, cfg.input).threads():
            with database.transaction() as s:
                save_thread(s, run.check_thread(raws))
    finally:
        database.close()


@pytest.fixture
def database(migrated: botconfig.Config):  # type: ignore[no-untyped-def]
    d = Database(migrated)
    yield d
    d.close()


@pytest.fixture
def sqlite_migrated(sqlite_url: str, tmp_path: Path) -> botconfig.Config:
    """For the command-line tests: the workflow behind them runs on both
    databases in the tests above; a process per command is slow enough once."""
    cfg = make_config(tmp_path, BOT_DATABASE_URL=sqlite_url)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    engine.dispose()
    return cfg


@pytest.fixture
def sqlite_database(sqlite_migrated: botconfig.Config):  # type: ignore[no-untyped-def]
    d = Database(sqlite_migrated)
    yield d
    d.close()


def _ids(database: Database) -> list[int]:
    with database.transaction() as s:
        return sorted(v.id for v in wf.list_drafts(s))


def test_states_and_every_change_in_the_history(migrated, database) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    [i] = _ids(database)
    with database.transaction() as s:
        v = wf.show(s, i)
        assert v.state is DraftState.DRAFT and v.from_addr is None and v.fingerprints
        assert [e.action for e in v.events] == [DraftAction.CREATED]
        v = wf.edit(s, OLIVER, i, body=v.body.replace("what makes", "What makes"))
        assert v.state is DraftState.DRAFT
    with database.transaction() as s:
        v = wf.approve(s, MAZ, i)
        assert v.state is DraftState.APPROVED and v.from_addr == "Marc Zyngier <maz@kernel.org>"
        assert v.reply_message_id and v.reply_message_id.endswith("@kernel.org")
        # The approver is not copied on their own reply.
        assert "Marc Zyngier <maz@kernel.org>" not in v.cc and len(v.cc) == 2
        first_id = v.reply_message_id
        with pytest.raises(BadInput, match="is approved: it cannot be approved"):
            wf.approve(s, MAZ, i)
    with database.transaction() as s:
        v = wf.edit(s, MAZ, i, subject="Re: [RFC] KVM: arm64: Keep HCR_FB")
        assert v.state is DraftState.DRAFT and v.reply_message_id is None
        v = wf.approve(s, MAZ, i)
        assert v.reply_message_id and v.reply_message_id != first_id
        v = wf.discard(s, OLIVER, i, reason="covered on the list\nalready")
        assert v.state is DraftState.DISCARDED
    with database.transaction() as s:
        for act in (lambda: wf.approve(s, MAZ, i), lambda: wf.edit(s, MAZ, i, body="x"),
                    lambda: wf.discard(s, MAZ, i)):
            with pytest.raises(BadInput, match="is discarded"):
                act()
        with pytest.raises(NotFound):
            wf.show(s, 9999)
        v = wf.show(s, i)
    assert [(e.action, e.actor, e.state_before, e.state_after) for e in v.events] == [
        (DraftAction.CREATED, q.BOT, None, DraftState.DRAFT),
        (DraftAction.EDITED, "Oliver Upton <oliver.upton@linux.dev>", DraftState.DRAFT,
         DraftState.DRAFT),
        (DraftAction.APPROVED, "Marc Zyngier <maz@kernel.org>", DraftState.DRAFT,
         DraftState.APPROVED),
        (DraftAction.EDITED, "Marc Zyngier <maz@kernel.org>", DraftState.APPROVED,
         DraftState.DRAFT),
        (DraftAction.APPROVED, "Marc Zyngier <maz@kernel.org>", DraftState.DRAFT,
         DraftState.APPROVED),
        (DraftAction.DISCARDED, "Oliver Upton <oliver.upton@linux.dev>", DraftState.APPROVED,
         DraftState.DISCARDED)]
    edit = v.events[1]
    assert "what makes" in (edit.body_before or "") and "What makes" in (edit.body_after or "")
    assert v.events[3].body_before is None and "approval withdrawn" in v.events[3].detail
    assert v.events[5].detail == "covered on the list already"
    assert all(e.at.tzinfo is not None for e in v.events)


def test_bad_edits_are_refused_and_change_nothing(migrated, database) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    [i] = _ids(database)
    with database.transaction() as s:
        before = wf.show(s, i)
    for kwargs, message in [({"body": "  \n"}, "empty body"), ({"subject": "\r\n"}, "subject"),
                            ({"to": ["not an address"]}, "not a mail address"),
                            ({"body": "new", "version": before.version + 1}, "changed since")]:
        with pytest.raises(BadInput, match=message), database.transaction() as s:
            wf.edit(s, MAZ, i, **kwargs)  # type: ignore[arg-type]
    with database.transaction() as s:
        after = wf.show(s, i)
    assert after == before
    with database.transaction() as s:
        v = wf.edit(s, MAZ, i, to=["Shaokun Zhang <zhangshaokun@hisilicon.com>\r\nBcc: x@y.org"],
                    cc=["kvmarm@lists.cs.columbia.edu"])
    assert v.to == ("Shaokun Zhang <zhangshaokun@hisilicon.com>",) or \
        all("\n" not in a for a in v.to)
    assert v.cc == ("kvmarm@lists.cs.columbia.edu",)


def _revision(raw: bytes, version: int) -> bytes:
    return (raw.replace(b"Subject: [RFC] KVM", b"Subject: [RFC v%d] KVM" % version)
               .replace(b"Message-Id: <1603331829-33879-1-git-send-email",
                        b"Message-Id: <v%d-1603331829-33879-1-git-send-email" % version)
               .replace(b"Message-ID: <1603331829-33879-1-git-send-email",
                        b"Message-ID: <v%d-1603331829-33879-1-git-send-email" % version))


def test_a_new_revision_supersedes_the_drafts_of_the_old_one(migrated, database) -> None:  # type: ignore[no-untyped-def]
    raw = POLARITY.read_bytes()
    store(migrated, raw)
    [v1] = _ids(database)
    with database.transaction() as s:
        wf.approve(s, MAZ, v1)
    store(migrated, _revision(raw, 2))
    with database.transaction() as s:
        shown = wf.list_drafts(s)
        assert [v.revision for v in shown] == [2]
        old = wf.show(s, v1)
        assert old.superseded_by and old.superseded_by.startswith("v2-")
        assert old.events[-1].action is DraftAction.SUPERSEDED
        assert old.state is DraftState.APPROVED  # kept as it was, but never sent:
        assert q.due(s) == []
    with database.transaction() as s:
        wf.edit(s, MAZ, v1, body="still relevant?\n")
        with pytest.raises(BadInput, match="older revision"):
            wf.approve(s, MAZ, v1)
        assert len(wf.list_drafts(s, include_superseded=True)) == 2
    # A revision stored after a newer one is superseded at once.
    store(migrated, _revision(raw, 1))
    with database.transaction() as s:
        late = [v for v in wf.list_drafts(s, include_superseded=True) if v.revision == 1
                and v.id != v1]
        assert late and all(v.superseded_by and v.superseded_by.startswith("v2-") for v in late)


def test_never_a_second_draft_for_the_same_findings(migrated, database) -> None:  # type: ignore[no-untyped-def]
    store(migrated, SERIES)
    store(migrated, SERIES)
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Draft)) == 2
        assert s.scalar(select(func.count()).select_from(DraftEvent)) == 2


def test_export_needs_approval_and_hands_the_draft_off(migrated, database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store(migrated, SERIES)
    first, second = _ids(database)
    with pytest.raises(BadInput, match="approve it first"), database.transaction() as s:
        wf.export(s, MAZ, [first])
    with database.transaction() as s:
        wf.approve(s, MAZ, first)
        wf.approve(s, MAZ, second)
        [(v, msg)] = wf.export(s, MAZ, [first])
        assert q.due(s) == [second]  # the outbox leaves the exported one alone
    assert str(msg["From"]) == "Marc Zyngier <maz@kernel.org>"
    assert str(msg["Message-ID"]) == "<%s>" % v.reply_message_id
    assert str(msg["In-Reply-To"]) == "<series-two-findings-1@example.org>"
    # Tampering with the database after approval is caught before export.
    with database.transaction() as s:
        s.execute(text("UPDATE draft SET body = 'changed' WHERE id = :i"), {"i": second})
    with pytest.raises(BadInput, match="changed after it was approved"), \
            database.transaction() as s:
        wf.export(s, MAZ, [second])


def test_migration_turns_pending_drafts_into_drafts(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(tmp_path, BOT_DATABASE_URL=db_url)
    engine = db.make_engine(cfg)
    db.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO series (message_id, lineage, subject, author, revision, "
                          "total, missing, thread_id, created_at, updated_at) VALUES ('s@x', "
                          "'l', 's', 'a', 1, 1, '[]', '', '2020-01-01', '2020-01-01')"))
        conn.execute(text("INSERT INTO draft (series_id, patch_index, in_reply_to, "
                          "\"references\", to_addrs, cc_addrs, subject, body, state, "
                          "created_at, updated_at) SELECT id, 1, 'p@x', '[]', '[]', '[]', "
                          "'Re: s', 'b', 'pending', '2020-01-01', '2020-01-01' FROM series"))
    db.upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT state, version, attempts, fingerprints FROM draft")).one()
    assert (row[0], row[1], row[2], json.loads(row[3]) if isinstance(row[3], str)
            else row[3]) == ("draft", 1, 0, [])
    db.downgrade(engine, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM draft")).scalar() == "pending"
    engine.dispose()


# -- the command line --------------------------------------------------------


def bot(cfg: botconfig.Config, *args: str, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {"BOT_DATABASE_URL": cfg.database_url, "BOT_STATE_DIR": cfg.state_dir,
               "BOT_CONFIG": str(DATA / "config" / "test.toml"), "PATH": "/usr/bin:/bin",
               "HOME": cfg.state_dir}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          env=environ, input=stdin, check=False)


def test_cli_list_show_edit_approve_export(sqlite_migrated, sqlite_database,  # type: ignore[no-untyped-def]
                                           tmp_path) -> None:
    migrated, database = sqlite_migrated, sqlite_database
    store(migrated, SERIES)
    first, second = _ids(database)
    proc = bot(migrated, "drafts", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [d["id"] for d in listed] == [second, first]
    assert {d["state"] for d in listed} == {"draft"}
    show = bot(migrated, "drafts", "show", str(first))
    assert "Subject: Re: [PATCH 1/2]" in show.stdout and "created" in show.stdout
    # $EDITOR edits headers and body; the approval needs an identity.
    script = tmp_path / "editor.py"
    script.write_text("import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
                      "t = p.read_text().replace('use u64.', 'please use u64.')\n"
                      "t = t.replace('Cc: ', 'Cc: Will Deacon <will@kernel.org>, ', 1)\n"
                      "p.write_text(t)\n")
    editor = "%s %s" % (sys.executable, script)
    proc = bot(migrated, "drafts", "edit", str(first), "--as", "Marc Zyngier <maz@kernel.org>",
               env={"EDITOR": editor})
    assert proc.returncode == 0 and "edited" in proc.stdout, proc.stderr
    proc = bot(migrated, "drafts", "approve", str(first))
    assert proc.returncode == 2 and "who is acting" in proc.stderr
    assert proc.stderr.count("\n") == 1
    proc = bot(migrated, "drafts", "approve", str(first), env={
        "BOT_DRAFTS_REVIEWER_NAME": "Marc Zyngier", "BOT_DRAFTS_REVIEWER_EMAIL": "maz@kernel.org"})
    assert proc.returncode == 0 and "approved by Marc Zyngier" in proc.stdout, proc.stderr
    out = tmp_path / "out.mbox"
    proc = bot(migrated, "drafts", "export", str(first), "-o", str(out), "--as", "maz@kernel.org")
    assert proc.returncode == 0, proc.stderr
    [msg] = list(mailbox.mbox(str(out), factory=lambda f: email.message_from_binary_file(
        f, policy=email.policy.default)))
    assert "please use u64." in msg.get_content()
    assert "Will Deacon <will@kernel.org>" in str(msg["Cc"])
    proc = bot(migrated, "drafts", "export", str(second), "--format", "eml", "-o", str(tmp_path),
               "--as", "maz@kernel.org")
    assert proc.returncode == 2 and "is draft" in proc.stderr
    proc = bot(migrated, "drafts", "discard", str(second), "--as", "maz@kernel.org")
    assert proc.returncode == 0
    proc = bot(migrated, "drafts", "show", "12345")
    assert proc.returncode == 2 and "no such draft" in proc.stderr


def test_cli_edit_with_a_failing_editor_changes_nothing(sqlite_migrated,  # type: ignore[no-untyped-def]
                                                        sqlite_database) -> None:
    migrated, database = sqlite_migrated, sqlite_database
    store(migrated, POLARITY)
    [i] = _ids(database)
    with database.transaction() as s:
        before = wf.show(s, i)
    for editor, message in [("false", "exited with 1"), ("/nonexistent/editor", "no such")]:
        proc = bot(migrated, "drafts", "edit", str(i), "--as", "maz@kernel.org",
                   env={"EDITOR": editor})
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    with database.transaction() as s:
        assert wf.show(s, i) == before


def test_edited_text_is_parsed_strictly() -> None:
    from bot.draftcmd import parse_edited
    fields, body = parse_edited("To: a@b.org\nCc: c@d.org,\n e@f.org\nSubject: Re: x\n\nbody\n")
    assert fields == {"to": "a@b.org", "cc": "c@d.org, e@f.org", "subject": "Re: x"}
    assert body == "body\n"
    with pytest.raises(BadInput, match="only To:, Cc: and Subject:"):
        parse_edited("To: a@b.org\nBcc: x@y.org\n\nbody\n")
    with pytest.raises(BadInput, match="a blank line"):
        parse_edited("just a body")


def test_cli_states_match_the_model() -> None:
    from bot.draftcmd import STATES
    assert tuple(str(s) for s in DraftState) == STATES


def test_actor_must_have_a_usable_address() -> None:
    assert wf.Actor.parse("Marc Zyngier <maz@kernel.org>") == MAZ
    for bad in ("nobody", "Eve <eve@>", "<@example.org>"):
        with pytest.raises(BadInput):
            wf.Actor.parse(bad)
    assert "\n" not in wf.Actor.parse("x\r\nBcc: y@z.org").address
    assert dataclasses.replace(MAZ, email="bad").email == "bad"
    with pytest.raises(BadInput):
        dataclasses.replace(MAZ, email="bad").address  # noqa: B018
