"""Hostile mail against `bot check --store` and the poller, on SQLite and
PostgreSQL: numbers no database column holds, spoofed addresses, a
megabyte of References, odd headers, terminal escapes. Each case is a real
kvmarm patch with one crafted message or header; what must hold is that the
real patch is still checked and stored, nothing the mail says is taken for
what it is not, and nothing vanishes without a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.store.db import Database
from bot.store.models import Finding, Message, Patch, Quarantine, Series
from tests.conftest import DATA
from tests.pi import public_inbox  # noqa: F401  (the module's server)
from tests.test_poll import poll, with_lore

ROOT = Path(__file__).resolve().parent.parent
# A real patch with a finding: it drops HCR_FB from HCR_GUEST_FLAGS.
REAL = DATA / "labelled" / "problem-polarity-drop-fb.mbox"
REAL_ID = "1603331829-33879-1-git-send-email-zhangshaokun@hisilicon.com"


def bot(tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True,
                          env=env, cwd=tmp_path, input=stdin, text=False) \
        if stdin is not None else subprocess.run(
            [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env,
            cwd=tmp_path)


def crafted_patch_reply(new_start: str) -> bytes:
    """A patch sent in reply to the real one, whose hunk header claims a
    new-file line number no file has; its added line is one a rule flags,
    so the number would reach the finding's `line` column."""
    return b"""From mboxrd@z Thu Jan  1 00:00:00 1970
From: Someone <someone@example.org>
To: Shaokun Zhang <zhangshaokun@hisilicon.com>
Subject: [PATCH] KVM: arm64: nVHE: Trap SPE while flushing
Date: Fri, 23 Oct 2020 10:00:00 +0100
Message-Id: <crafted-hunk@example.org>
In-Reply-To: <%s>
References: <%s>

Keep the sampling controls trapped.

---
diff --git a/arch/arm64/kvm/hyp/nvhe/switch.c b/arch/arm64/kvm/hyp/nvhe/switch.c
--- a/arch/arm64/kvm/hyp/nvhe/switch.c
+++ b/arch/arm64/kvm/hyp/nvhe/switch.c
@@ -58,2 +%s,3 @@ static void __activate_traps(struct kvm_vcpu *vcpu)
 \t___activate_traps(vcpu, vcpu->arch.hcr_el2);
+\twrite_sysreg(MDCR_EL2_TPMS | BIT_ULL(52), mdcr_el2);
 \t__activate_traps_common(vcpu);

""" % (REAL_ID.encode(), REAL_ID.encode(), new_start.encode())


def _with_crafted(tmp_path: Path, new_start: str) -> Path:
    path = tmp_path / "crafted.mbox"
    path.write_bytes(REAL.read_bytes().rstrip(b"\n") + b"\n\n" + crafted_patch_reply(new_start))
    return path


def _stored(cfg) -> dict[str, object]:
    database = Database(cfg)
    try:
        with database.transaction() as s:
            return {
                "messages": set(s.scalars(select(Message.message_id))),
                "patches": set(s.scalars(select(Message.message_id).join(
                    Patch, Patch.message_id == Message.id))),
                "findings": {(f.rule, f.line) for f in s.scalars(select(Finding))},
                "series": len(s.scalars(select(Series)).all()),
                "quarantine": set(s.scalars(select(Quarantine.reason))),
            }
    finally:
        database.close()


@pytest.mark.parametrize("new_start", ["2147483647", "99999999999999999999999", "9" * 5000])
def test_a_hunk_header_past_any_line_number_is_dropped_and_the_patch_stored(
        tmp_path, migrated, new_start):
    path = _with_crafted(tmp_path, new_start)
    env = {"BOT_DATABASE_URL": migrated.database_url}
    for _ in range(2):  # and a rerun stores nothing new, without failing
        proc = bot(tmp_path, "check", "--store", "--format", "json", str(path), env_extra=env)
        assert proc.returncode in (0, 1), proc.stderr
        assert "line numbers out of range; hunk left out" in proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["errors"] == []
    rows = _stored(migrated)
    assert rows["messages"] == {REAL_ID, "crafted-hunk@example.org"}
    assert REAL_ID in rows["patches"]
    assert ("polarity", 78) in rows["findings"]  # the real patch was checked
    assert all(line is None or line < 2**31 for _, line in rows["findings"])
    assert rows["quarantine"] == set()


@pytest.fixture
def inbox(public_inbox):
    return public_inbox.create()


def test_a_hostile_reply_does_not_keep_the_patch_out_of_the_poll(migrated, inbox):
    inbox.deliver(REAL, crafted_patch_reply("99999999999999999999999"))
    cfg = with_lore(migrated, inbox)
    report = poll(cfg)
    rows = _stored(cfg)
    assert rows["messages"] == {REAL_ID, "crafted-hunk@example.org"}
    assert REAL_ID in rows["patches"] and ("polarity", 78) in rows["findings"]
    assert rows["quarantine"] == set() and report.stats.quarantined == 0
