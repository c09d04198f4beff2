"""Hostile mail against `bot check --store` and the poller, on SQLite and
PostgreSQL: numbers no database column holds, spoofed addresses, a
megabyte of References, odd headers, terminal escapes. Each case is a real
kvmarm patch with one crafted message or header; what must hold is that the
real patch is still checked and stored, nothing the mail says is taken for
what it is not, and nothing vanishes without a reason."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import InputConfig
from bot.data import REFERENCES_KEPT
from bot.lore.assemble import assemble
from bot.parse.mail import parse_mail
from bot.sources import InputSet, thread_headers
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


def test_hunk_numbers_past_a_line_number_leave_the_hunk_out():
    from bot.parse.diff import LINE_MAX, parse_diff
    for new_start in ("2147483647", "99999999999999999999999", "9" * 5000):
        head = "--- a/f\n+++ b/f\n@@ -1,2 +%s,3 @@\n a\n+b\n c\n" % new_start
        (fd,) = parse_diff(head + "@@ -9,1 +10,2 @@\n x\n+y\n")
        assert [(h.new_start, h.new_len) for h in fd.hunks] == [(10, 2)]
    (fd,) = parse_diff("--- a/f\n+++ b/f\n@@ -1,1 +%d,2 @@\n a\n+b\n" % (LINE_MAX - 2))
    assert fd.hunks[0].lines[-1].new_no == LINE_MAX - 1


@pytest.mark.parametrize("new_start", ["2147483647", "99999999999999999999999"])
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



def _real_with(tmp_path: Path, **replace: bytes) -> Path:
    """The real patch with headers (and their continuation lines) replaced
    by the values given, bytes and all (`In_Reply_To` for In-Reply-To);
    a header it does not have is added."""
    head, sep, body = REAL.read_bytes().partition(b"\n\n")
    wanted = {k.replace("_", "-").lower().encode(): v for k, v in replace.items()}
    out: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        name = line.split(b":", 1)[0].lower()
        skipping = name in wanted
        if skipping:
            out.append(name + b": " + wanted.pop(name))
            continue
        out.append(line)
    out.extend(name + b": " + value for name, value in wanted.items())
    path = tmp_path / "real-with.mbox"
    path.write_bytes(b"\n".join(out) + sep + body)
    return path


def _check_json(tmp_path: Path, path: Path, db_url: str | None = None) -> dict:
    env = {"BOT_DATABASE_URL": db_url} if db_url else {}
    args = ["check", "--format", "json"] + (["--store"] if db_url else []) + [str(path)]
    proc = bot(tmp_path, *args, env_extra=env)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


# -- addresses ----------------------------------------------------------------

SPOOFED_FROM = b"=?utf-8?q?maintainer=40kernel=2Eorg?= <attacker@evil.example>"
SPOOFED_TO = (b"=?utf-8?q?list=40lists=2Elinux=2Edev=2C_victim=40corp=2Ecom?= <a@b.example>,"
              b" <kvmarm@lists.cs.columbia.edu>")


def test_an_address_in_a_display_name_is_never_an_address(tmp_path, migrated):
    path = _real_with(tmp_path, From=SPOOFED_FROM, To=SPOOFED_TO)
    doc = _check_json(tmp_path, path, migrated.database_url)
    (series,) = doc["series"]
    assert series["author"] == '"maintainer@kernel.org" <attacker@evil.example>'
    (draft,) = series["drafts"]
    assert draft["to"] == ['"maintainer@kernel.org" <attacker@evil.example>']
    addrs = [a for _, a in email.utils.getaddresses(draft["to"] + draft["cc"])]
    assert "attacker@evil.example" in addrs and "a@b.example" in addrs
    assert not {"maintainer@kernel.org", "list@lists.linux.dev", "victim@corp.com"} & set(addrs)
    database = Database(migrated)
    try:
        with database.transaction() as s:
            stored = [s.scalar(select(Message.from_addr)), s.scalar(select(Series.author))]
    finally:
        database.close()
    assert [email.utils.parseaddr(a)[1] for a in stored] == ["attacker@evil.example"] * 2


@pytest.mark.parametrize("header, expected", [
    ("=?utf-8?q?maintainer=40kernel=2Eorg?= <attacker@evil.example>",
     [("maintainer@kernel.org", "attacker@evil.example")]),
    ('"=?utf-8?q?a=40b=2Ec=2C_d=40e=2Ef?=" <x@y.example>', [("a@b.c, d@e.f", "x@y.example")]),
    ("=?utf-8?b?PGV2aWxAZXZpbC5leGFtcGxlPg==?= <x@y.example>",  # "<evil@evil.example>"
     [("<evil@evil.example>", "x@y.example")]),
    ("=?utf-8?q?broken", []),  # no address at all: none, rather than a wrong one
    ("Jon A. Doe <jon@example.org>, =?utf-8?q?=C3=A9?= <e@example.org>",
     [("Jon A. Doe", "jon@example.org"), ("\u00e9", "e@example.org")]),
])
def test_address_headers_are_parsed_before_names_are_decoded(header, expected):
    raw = ("Message-ID: <a@b>\nFrom: %s\nTo: %s\nCc: %s\n\nbody\n"
           % (header, header, header)).encode()
    mail = parse_mail(raw)
    assert list(mail.to_addrs) == expected and list(mail.cc_addrs) == expected
    assert (mail.from_name, mail.from_email) == (expected[0] if expected else ("", ""))
    for formatted in mail.to + mail.cc + ((mail.author,) if mail.author else ()):
        assert email.utils.getaddresses([formatted])[0][1] in {a for _, a in expected}


# -- odd headers --------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"To": b"=?utf-8?q?a=?= =?utf-8?b?x?= <a@b.example>"},  # a broken encoded word
    {"To": b"=?utf-8?q?broken"},
    {"References": b"<a\xff\xfe@x.example> <\xc3\x28@y.example>"},  # 8-bit bytes
    {"Date": b"Thu, 22 Oct 99999 01:57:09 +9999"},  # past what a datetime holds
    {"Date": b"Thu, 22 Oct 2020 01:57:09 +99999999999999"},
    {"Message_ID": b"<<script>alert(1)</script>@x.example>"},
    {"Subject": b"[RFC] KVM: arm64: Don't force broadcast tlbi \xff\xfe when guest is running"},
], ids=["bad-encoded-word-in-to", "unterminated-encoded-word", "8bit-references",
        "date-year-99999", "date-zone-out-of-range", "message-id-script", "8bit-subject"])
def test_odd_headers_do_not_keep_the_patch_from_being_checked(tmp_path, headers):
    doc = _check_json(tmp_path, _real_with(tmp_path, **headers))
    assert doc["errors"] == []
    (series,) = doc["series"]
    assert [f["rule"] for f in series["findings"]] == ["polarity"]
    assert series["drafts"]


# -- References ---------------------------------------------------------------

def _huge_references(n: int) -> bytes:
    """A message whose References name `n` IDs (about 1 MB for 25,000)."""
    refs = b"\n ".join(b"<ref-%06d@flood.example>" % i for i in range(n))
    return (b"From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: A <a@example.org>\n"
            b"Subject: Re: [RFC] KVM: arm64: Don't force broadcast tlbi\n"
            b"Message-ID: <flood@example.org>\nIn-Reply-To: <%s>\nReferences: %s <%s>\n\n"
            b"Acked-by: A <a@example.org>\n\n" % (REAL_ID.encode(), refs, REAL_ID.encode()))


def test_a_megabyte_of_references_keeps_the_last_hundred(tmp_path, monkeypatch):
    data = _huge_references(40000)
    assert len(data) > 1 << 20
    mail = parse_mail(data.split(b"\n", 1)[1])
    assert len(mail.references) == REFERENCES_KEPT
    assert mail.references[-2:] == ("ref-039999@flood.example", REAL_ID)
    mid, refs = thread_headers(data.split(b"\n", 1)[1])
    assert mid == "flood@example.org" and refs == list(mail.references)

    # b4 is never handed more than that: what it was given, recorded.
    import b4
    handed: list[int] = []
    real_add = b4.LoreMailbox.add_message

    def recording(self, msg):
        handed.append(len(str(msg.get("References", "")).split()))
        return real_add(self, msg)

    monkeypatch.setattr(b4.LoreMailbox, "add_message", recording)
    path = tmp_path / "flood.mbox"
    path.write_bytes(REAL.read_bytes().rstrip(b"\n") + b"\n\n" + data)
    (raws,) = InputSet([str(path)], InputConfig()).threads()
    thread = assemble(raws)
    assert max(handed) <= REFERENCES_KEPT
    (series,) = thread.series
    assert [t.name for t in series.patches[0].trailers] == ["Acked-by"]


def test_a_megabyte_of_references_through_the_command(tmp_path):
    path = tmp_path / "flood.mbox"
    path.write_bytes(REAL.read_bytes().rstrip(b"\n") + b"\n\n" + _huge_references(40000))
    doc = _check_json(tmp_path, path)
    (series,) = doc["series"]
    assert [f["rule"] for f in series["findings"]] == ["polarity"]


def test_check_store_leaves_out_only_the_message_the_database_refuses(tmp_path, migrated,
                                                                       monkeypatch):
    # A fake for a fault no mail can cause any more (numbers and strings are
    # bounded before they are written): the database refusing one row.
    import io

    import bot.store.queries
    from bot.check import run_check
    real = bot.store.queries.save_messages

    def refusing(session, mails):
        mails = list(mails)
        if any(m.message_id == "crafted-hunk@example.org" for m in mails):
            raise ValueError("value out of range")
        return real(session, mails)

    monkeypatch.setattr(bot.store.queries, "save_messages", refusing)
    path = _with_crafted(tmp_path, "60")
    out = io.StringIO()
    assert run_check(migrated, [str(path)], fmt="json", fail_on="never", store=True,
                     kernel_repo=None, out=out) == 0
    rows = _stored(migrated)
    assert rows["messages"] == {REAL_ID}
    assert rows["quarantine"] == {"storing the message failed: ValueError: value out of range"}
    # The real patch is stored, checked, in a series that lacks the other.
    assert rows["patches"] == {REAL_ID} and ("polarity", 78) in rows["findings"]
