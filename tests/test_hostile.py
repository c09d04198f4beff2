"""Bad input is refused with one line and exit 2, storing nothing; odd but valid
mail (and the hostile corpus in tests/data/fuzz/) goes through the whole
pipeline without a traceback."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select

from bot.config import InputConfig
from bot.lore.assemble import assemble
from bot.parse.diff import parse_diff, split_body
from bot.parse.mail import MailError, parse_mail
from bot.sources import InputSet
from bot.store import models

DATA = Path(__file__).parent / "data"
FUZZ = DATA / "fuzz"
SERIES = DATA / "threads" / "series-complete-v2.mbox"


def bot(tmp_path, *args, env_extra=None):
    env = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path)


def _stored(url):
    engine = create_engine(url)
    with engine.connect() as conn:
        n = sum(conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (models.Message, models.Series, models.Quarantine))
    engine.dispose()
    return n


def _refused(tmp_path, migrated, path, words, env_extra=None, named=None):
    env = {"BOT_DATABASE_URL": migrated.database_url, **(env_extra or {})}
    proc = bot(tmp_path, "check", "--store", str(SERIES), str(path), env_extra=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(named or path) in proc.stderr and words in proc.stderr
    assert _stored(migrated.database_url) == 0  # the good input before it is not stored either


def test_unreadable_path(tmp_path, migrated):
    _refused(tmp_path, migrated, tmp_path / "nope.mbox", "no such file")


def test_path_through_a_file(tmp_path, migrated):
    _refused(tmp_path, migrated, SERIES / "x", "cannot read")


def test_truncated_mbox(tmp_path, migrated):
    path = tmp_path / "truncated.mbox"
    data = SERIES.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 7])
    _refused(tmp_path, migrated, path, "truncated mbox")


def test_truncated_gzip(tmp_path, migrated):
    path = tmp_path / "truncated.mbox.gz"
    data = gzip.compress(SERIES.read_bytes())
    path.write_bytes(data[: len(data) - 40])
    _refused(tmp_path, migrated, path, "truncated gzip")


def test_corrupt_gzip(tmp_path, migrated):
    path = tmp_path / "corrupt.mbox.gz"
    data = bytearray(gzip.compress(SERIES.read_bytes()))
    data[30:60] = b"\x00" * 30
    path.write_bytes(bytes(data))
    _refused(tmp_path, migrated, path, "gzip")


def test_gzip_over_the_cap_is_refused_without_inflating_it(tmp_path, migrated):
    path = tmp_path / "bomb.mbox.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"From x\n\n")
        chunk = b"\n" * (1 << 20)
        for _ in range(64):  # 64 MiB of newlines, about 64 KiB compressed
            fh.write(chunk)
    _refused(tmp_path, migrated, path, "inflates past input.max_inflated_bytes",
             {"BOT_INPUT_MAX_INFLATED_BYTES": str(1 << 20)})


def test_empty_file(tmp_path, migrated):
    path = tmp_path / "empty.mbox"
    path.write_bytes(b"")
    _refused(tmp_path, migrated, path, "empty")


def test_ten_megabyte_line_is_processed(tmp_path):
    path = tmp_path / "longline.mbox"
    body = b"x" * (10 * 1024 * 1024)
    path.write_bytes(b"From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: a <a@b.c>\n"
                     b"Subject: [PATCH] long line\nMessage-ID: <long@line>\n\n" + body +
                     b"\n---\ndiff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-" + body[:100]
                     + b"\n+y\n\n")
    proc = bot(tmp_path, "check", "--format", "json", str(path))
    assert proc.returncode == 0, proc.stderr
    (series,) = json.loads(proc.stdout)["series"]
    assert series["patches"][0]["files"] == ["f"]


def test_message_over_the_size_cap_is_reported_not_parsed(tmp_path):
    path = tmp_path / "big.mbox"
    path.write_bytes(b"From mboxrd@z Thu Jan  1 00:00:00 1970\nMessage-ID: <big@x>\n\n"
                     + b"y" * 300000 + b"\n\n")
    proc = bot(tmp_path, "check", "--format", "json", str(path),
               env_extra={"BOT_INPUT_MAX_MESSAGE_BYTES": "100000"})
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["series"] == []
    assert len(doc["errors"]) == 1 and "exceeds input.max_message_bytes" in doc["errors"][0]


def _fuzz_files():
    return sorted(FUZZ.glob("*.eml"))


@pytest.mark.parametrize("fmt", ["text", "b4"])
def test_hostile_mail_in_every_format(fmt, tmp_path):
    for path in _fuzz_files():
        proc = bot(tmp_path, "check", "--format", fmt, str(path))
        assert proc.returncode in (0, 1), proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_hostile_mail_is_stored_or_quarantined(tmp_path, migrated):
    env = {"BOT_DATABASE_URL": migrated.database_url}
    files = _fuzz_files()
    proc = bot(tmp_path, "check", "--store", "--format", "json", *map(str, files), env_extra=env)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    for s in doc["series"]:
        for d in s["drafts"]:
            assert "\n" not in d["subject"] and "\r" not in d["subject"]
    engine = create_engine(migrated.database_url)
    with engine.connect() as conn:
        messages = conn.execute(select(func.count()).select_from(models.Message)).scalar_one()
        quarantined = conn.execute(select(models.Quarantine.reason)).scalars().all()
    engine.dispose()
    assert messages == len(files) - 1
    assert quarantined == ["message has no Message-ID"]


def test_fuzz_expectations():
    """What the pipeline makes of each hostile message."""
    threads = {}
    for path in _fuzz_files():
        (raws,) = list(InputSet([str(path)], InputConfig()).threads())
        threads[path.name] = assemble(raws)
    assert threads["no-message-id.eml"].errors[0].reason == "message has no Message-ID"
    assert threads["no-diff.eml"].series == ()
    (binary,) = threads["binary-diff.eml"].series
    (fd,) = binary.patches[0].files
    assert fd.binary and fd.path == "firmware/blob.bin" and fd.hunks == ()
    mail = threads["header-injection.eml"].messages[0]
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.date is None
    uc = threads["undecodable-charset.eml"].messages[0]
    assert "\ufffd" in uc.body and "charset nobody knows" in uc.body
    (lying,) = threads["lying-hunk.eml"].series
    assert lying.patches[0].paths == ("arch/arm64/include/asm/kvm_arm.h",)


def test_deeply_nested_multipart_does_not_crash():
    depth = 300
    head = b"Message-ID: <deep@x>\nSubject: [PATCH] deep\nMIME-Version: 1.0\n"
    parts = []
    for i in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i))
    raw = head + b"".join(parts) + b"Content-Type: text/plain\n\nhello\n"
    try:
        mail = parse_mail(raw)
    except MailError:
        pytest.fail("a deep MIME tree is not a missing Message-ID")
    assert mail.message_id == "deep@x"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_parse_mail_never_raises_unexpectedly(data):
    try:
        parse_mail(b"Message-ID: <p@q>\n" + data)
    except MailError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("+- @\\\nabdif/0123456789,")), max_size=400))
def test_diff_parser_total(text):
    for fd in parse_diff("diff --git a/x b/x\n--- a/x\n+++ b/x\n" + text):
        for hunk in fd.hunks:
            for line in hunk.lines:
                assert line.old_no is not None or line.new_no is not None
    split_body(text)


def test_a_directory_of_junk_is_refused_not_stored(tmp_path, migrated):
    junk = tmp_path / "junk"
    junk.mkdir()
    shutil.copy(SERIES, junk / "0001-real.mbox")
    for name in ("README", "notes.txt", "x.py"):
        (junk / name).write_text("# not mail\nprint('hello')\n")
    (junk / "blob.bin").write_bytes(bytes(range(256)) * 8)
    _refused(tmp_path, migrated, junk, "not a mail message or patch", named=junk / "README")


def test_a_fifo_is_named_as_such(tmp_path, migrated):
    fifo = tmp_path / "patches.fifo"
    os.mkfifo(fifo)
    _refused(tmp_path, migrated, fifo, "is a FIFO")


def test_a_fifo_or_directory_inside_a_directory_is_named_as_such(tmp_path, migrated):
    for name, make in (("a-fifo", os.mkfifo), ("a-directory", os.mkdir)):
        directory = tmp_path / ("with-" + name)
        directory.mkdir()
        shutil.copy(SERIES, directory / "0001.mbox")
        make(directory / name)
        _refused(tmp_path, migrated, directory,
                 "is a FIFO" if name == "a-fifo" else "is a directory", named=directory / name)


def test_a_message_that_cannot_be_checked_fails_the_b4_check(tmp_path):
    proc = bot(tmp_path, "check", "--format", "b4", str(FUZZ / "no-message-id.eml"))
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)
    assert entry["status"] == "fail" and "could not be checked" in entry["summary"]
    assert "message has no Message-ID" in entry["details"]


ESCAPES = ("\x1b", "\x07", "\x9b", "\r")


def test_terminal_escapes_never_reach_the_text_output(tmp_path):
    """A subject (encoded word), a Message-ID and a diff path carrying escape
    sequences: text output drops the control characters, JSON keeps them
    escaped, and so does what is logged."""
    raw = (b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
           b"From: A <a@example.org>\nSubject: [PATCH] =?utf-8?q?=1B=5D0=3Bowned=07?= KVM\n"
           b"Message-ID: <esc\x1b[2J@example.org>\n\nx\n---\n"
           b"diff --git a/arch/arm64/kvm/hyp/\x1b[2Jswitch.c b/arch/arm64/kvm/hyp/\x1b[2Jswitch.c\n"
           b"--- a/arch/arm64/kvm/hyp/\x1b[2Jswitch.c\n+++ b/arch/arm64/kvm/hyp/\x1b[2Jswitch.c\n"
           b"@@ -1,2 +1,3 @@ \x9b31m\n a\n+\twrite_sysreg(HCR_GUEST_FLAGS | BIT(63), hcr_el2);\n"
           b" b\n@@ -1 +99999999999999 @@\n+x\n\n")
    path = tmp_path / "escapes.mbox"
    path.write_bytes(raw)
    text = bot(tmp_path, "-v", "check", "--format", "text", str(path))
    assert text.returncode in (0, 1), text.stderr
    assert "switch.c" in text.stdout or "esc" in text.stdout
    for out in (text.stdout, text.stderr):
        assert not any(c in out for c in ESCAPES), repr(out)
    for fmt in ("json", "b4"):
        proc = bot(tmp_path, "check", "--format", fmt, str(path))
        assert not any(c in proc.stdout for c in ESCAPES), repr(proc.stdout)
        if fmt == "json":
            (series,) = json.loads(proc.stdout)["series"]
            assert series["message_id"] == "esc\x1b[2J@example.org"
            assert series["patches"][0]["files"] == ["arch/arm64/kvm/hyp/\x1b[2Jswitch.c"]
