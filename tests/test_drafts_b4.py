"""`bot drafts b4`: the review files b4 reads, checked with b4's own reader.

A git tree holds a real patch (the kvmarm mail, applied with `git am`) under
a b4 review tracking commit written with b4's own helper; the bot writes its
draft's remarks into .git/b4-review/<tip>/, and b4 0.16's
`_integrate_agent_reviews` reads them back into its review data, where b4's
editor shows each remark under the line it is about.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import b4
import b4.review
import pytest

from bot import workflow as wf
from bot.drafts.b4review import patch_file, remarks
from bot.drafts.quote import sentence
from bot.parse.diff import split_body
from bot.parse.mail import parse_mail
from bot.store.db import Database
from tests.conftest import DATA
from tests.drafts_support import check
from tests.pi import messages
from tests.test_drafts_workflow import (  # noqa: F401  (fixture)
    MAZ,
    POLARITY,
    bot,
    sqlite_migrated,
    store,
)

TWO_HUNKS = DATA / "rules" / "host-restore-trigger-stale-caller.patch"


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().strip()


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                        "XDG_CACHE_HOME": str(tmp_path / "cache"),
                        "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Tester",
                        "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "Tester",
                        "GIT_COMMITTER_EMAIL": "t@example.org"}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "home").mkdir()


def review_branch(repo: Path, mbox: Path) -> tuple[str, str]:
    """A tree where the patch of `mbox` applies, the patch applied with
    `git am`, and a b4 review tracking commit on top. Returns (patch commit,
    tip)."""
    [raw] = list(messages(mbox))
    mail = parse_mail(raw)
    body = split_body(mail.body)
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "b4/review/test")
    for fd in body.files:
        hunk = fd.hunks[0]
        old = [ln.text for ln in hunk.lines if ln.kind != "+"]
        path = repo / (fd.old_path or fd.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join("/* line %d */\n" % n for n in range(1, hunk.old_start))
                        + "\n".join(old) + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "am", "-q", stdin=raw)
    patch = _git(repo, "rev-parse", "HEAD")
    tracking = {
        "series": {"identifier": "test", "status": "reviewing", "revision": 1,
                   "change-id": "test", "subject": mail.subject, "fromname": mail.from_name,
                   "fromemail": mail.from_email, "expected": 1, "complete": True,
                   "base-commit": base, "prerequisite-commits": [],
                   "first-patch-commit": patch,
                   "header-info": {"msgid": mail.message_id}},
        "followups": [],
        "patches": [{"title": mail.subject, "header-info": {"msgid": mail.message_id}}],
    }
    message = mail.subject + "\n\n" + b4.review.make_review_magic_json(tracking)
    _git(repo, "commit", "-q", "--allow-empty", "-F", "-", stdin=message.encode())
    return patch, _git(repo, "rev-parse", "HEAD")


def test_b4_reads_the_remarks_under_their_lines(migrated, tmp_path, git_env) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    database = Database(migrated)
    with database.transaction() as s:
        [v] = wf.list_drafts(s)
        # A maintainer's edit is what b4 gets.
        wf.edit(s, MAZ, v.id, body=v.body.replace("Dropping FB", "Hmm. Dropping FB"))
    database.close()
    repo = tmp_path / "linux"
    patch, tip = review_branch(repo, POLARITY)
    proc = bot(migrated, "drafts", "b4", "--repo", str(repo), "--as",
               "Marc Zyngier <maz@kernel.org>", env={"HOME": os.environ["HOME"]})
    assert proc.returncode == 0, proc.stderr
    written = repo / ".git" / "b4-review" / tip
    assert sorted(p.name for p in written.iterdir()) == ["0001.txt", "identity.txt"]
    assert (written / "identity.txt").read_text() == "Marc Zyngier <maz@kernel.org>\n"

    cover_text, tracking = b4.review.load_tracking(str(repo), "HEAD")
    patches = tracking["patches"]
    assert b4.review._integrate_agent_reviews(str(repo), cover_text, tracking, [patch],
                                              patches)
    [comment] = patches[0]["reviews"]["maz@kernel.org"]["comments"]
    assert comment["path"].endswith("arch/arm64/include/asm/kvm_arm.h")
    assert comment["line"] == 78  # the new-file line of `+ HCR_BSU_IS | HCR_TAC | \`
    assert comment["text"].startswith("Hmm. Dropping FB from HCR_GUEST_FLAGS")
    assert comment["text"].endswith("what makes that safe for all of them?")
    assert not written.exists()  # b4 consumes the directory
    # b4's editor shows the remark under the line it is about.
    diff = _git(repo, "diff", patch + "~1", patch)
    shown = b4.review._render_quoted_diff_with_comments(diff, patches[0]["reviews"],
                                                       "maz@kernel.org")
    lines = shown.splitlines()
    at = lines.index("> +\t\t\t HCR_BSU_IS | HCR_TAC | \\")
    assert lines[at + 1] == "" and lines[at + 2].startswith("Hmm. Dropping FB")


def test_b4_refuses_a_tree_that_is_not_a_review_branch(sqlite_migrated, tmp_path,  # type: ignore[no-untyped-def]
                                                       git_env) -> None:
    migrated = sqlite_migrated
    store(migrated, POLARITY)
    repo = tmp_path / "plain"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "x")
    proc = bot(migrated, "drafts", "b4", "--repo", str(repo), "--as", "maz@kernel.org",
               env={"HOME": os.environ["HOME"]})
    assert proc.returncode == 2 and "not a b4 review branch" in proc.stderr
    proc = bot(migrated, "drafts", "b4", "--repo", str(tmp_path / "none"), "--as",
               "maz@kernel.org")
    assert proc.returncode == 2 and "not a directory" in proc.stderr


def test_every_remark_of_a_reply_lands_under_its_line() -> None:
    [result] = check(TWO_HUNKS)
    [draft] = result.drafts
    found = remarks(draft.body)
    # One remark per quoted line (remarks on the same line are one block).
    assert len(found) == 2
    for f in result.rules.findings:
        assert any(" ".join(sentence(f.message).split()[:5]) in " ".join(r.text.split())
                   for r in found)
    assert all(r.path == "arch/arm64/kvm/hyp/nvhe/switch.c" for r in found)
    [patch] = result.series.patches
    text = patch_file(patch.body, found)
    assert text.startswith("\n> diff --git a/arch/arm64/kvm/hyp/nvhe/switch.c")
    lines = text.split("\n")
    for r in found:
        at = lines.index(r.text.split("\n")[0])
        assert lines[at - 1] == "" and lines[at - 2].rstrip() == "> " + r.line
    # b4's reader finds both, at the new-file lines of the lines they are under.
    got = b4.review._extract_comments_from_quoted_reply(text)
    assert [c["text"] for c in got] == [r.text for r in found]
    assert sorted(c["line"] for c in got) == [146, 335]


def test_remarks_about_lines_the_patch_lacks_become_notes() -> None:
    [result] = check(POLARITY)
    [draft] = result.drafts
    body = draft.body.replace("> +\t\t\t HCR_BSU_IS | HCR_TAC | \\", "> +\tedited quote")
    [patch] = result.series.patches
    text = patch_file(patch.body, remarks(body))
    note, _, diff = text.partition("\n> diff --git ")
    assert "Dropping FB" in note and "Dropping FB" not in diff
