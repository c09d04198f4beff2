"""Each message is parsed once, and only as far as the bot reads it.

`bot.parse.mail.message_from_bytes` parses only the header fields the bot
and b4 read (PARSED_HEADERS) and sets a one-part body as it is; b4 gets a
message built from our `Mail` (`bot.lore.assemble`). What must hold: for
every field the bot reads and for the body, the result is what the email
library's full parse gives, on every real message of the fixtures and on
header blocks the library reads otherwise than field by field.
"""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest

import bot.parse.mail as mail_mod
from bot.config import InputConfig
from bot.parse.mail import PARSED_HEADERS, message_from_bytes, parse_mail
from bot.sources import StreamInput, read_stream, thread_headers
from tests.conftest import DATA


def _full(raw: bytes) -> email.message.Message:
    """The library's own parse of all of `raw`, relabelled as ours is."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not msg.is_multipart():
        mail_mod._relabel_decoded(msg)
    return msg


def _shape(msg: email.message.Message) -> list[object]:
    """What the bot can read of a parsed message: the fields it reads (as
    sent), each part's type and decoded payload."""
    fields = [(name, [str(v) for v in msg.get_all(name, [])]) for name in PARSED_HEADERS]
    parts = [(part.get_content_type(), part.get_content_charset(),
              part.get_payload(decode=True) if not part.is_multipart() else None)
             for part in msg.walk()]
    return [fields, parts]


def _fixture_messages() -> list[bytes]:
    out = []
    for path in sorted(DATA.rglob("*.mbox*")):
        with open(path, "rb") as fh:
            out += [raw.data for raw in read_stream(StreamInput(str(path), fh), InputConfig())]
    return out


REAL = _fixture_messages()

ODD = {
    "from-line": b"From someone Thu Jan  1 00:00:00 1970\nMessage-ID: <a@b>\n"
                 b"Subject: s\n\nbody\n",
    "not-a-field": b"Message-ID: <a@b>\nthis is no field\nSubject: s\nTo: t@x.example\n\n"
                   b"body\n",
    "space-before-colon": b"Message-ID: <a@b>\nSubject : s\nX-A: b\n\nbody\n",
    "crlf": b"Message-ID: <a@b>\r\nSubject: s\r\nReceived: x\r\n\r\nbody\r\n",
    "leading-continuation": b" folded\nMessage-ID: <a@b>\n\nbody\n",
    "folded-wanted": b"Received: from a\n\tby b\nTo: A <a@x.example>,\n\tB <b@x.example>\n"
                     b"Message-ID:\n <a@b>\nSUBJECT: s\n  more\nX-B: c\n\nbody\n",
    "no-wanted-field": b"Received: x\nX-A: b\n\nbody\n",
    "no-body": b"Message-ID: <a@b>\nSubject: s\n",
    "empty-first-line": b"\nMessage-ID: <a@b>\n\nbody\n",
    "8bit-header": b"Message-ID: <a@b>\nSubject: caf\xc3\xa9 \xff\nX-\xff: y\n\nbody \xe9\n",
    "base64": b"Message-ID: <a@b>\nContent-Transfer-Encoding: base64\n"
              b"Content-Type: text/plain; charset=utf-8\n\naGVsbG8K\n",
    "multipart": b"Message-ID: <a@b>\nReceived: x\nMIME-Version: 1.0\n"
                 b"Content-Type: multipart/mixed; boundary=XX\n\npreamble\n--XX\n"
                 b"Content-Type: text/plain\n\ntext\n--XX\nContent-Type: text/x-patch\n\n"
                 b"diff --git a/f b/f\n--XX--\n",
    "rfc822": b"Message-ID: <a@b>\nContent-Type: message/rfc822\n\n"
              b"Subject: inner\nMessage-ID: <c@d>\n\ninner body\n",
}


@pytest.mark.parametrize("raw", REAL, ids=[str(i) for i in range(len(REAL))])
def test_real_mail_reads_as_the_full_parse(raw):
    assert _shape(message_from_bytes(raw)) == _shape(_full(raw))
    assert parse_mail(raw) == parse_mail(raw, _full(raw))


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_header_blocks_read_as_the_full_parse(name):
    raw = ODD[name]
    assert _shape(message_from_bytes(raw)) == _shape(_full(raw))
    try:
        expected: object = parse_mail(raw, _full(raw))
    except mail_mod.MailError as exc:
        expected = str(exc)
    try:
        got: object = parse_mail(raw)
    except mail_mod.MailError as exc:
        got = str(exc)
    assert got == expected


def test_only_the_fields_read_are_parsed():
    msg = message_from_bytes(ODD["folded-wanted"])
    assert [k.lower() for k in msg] == ["to", "message-id", "subject"]
    # ... and a block the library reads otherwise is parsed whole: the
    # header block ends at the line that is no field, as the library says.
    odd = message_from_bytes(ODD["not-a-field"])
    assert odd.get_payload().startswith("this is no field\nSubject: s\n")


def test_threading_headers_read_from_folded_fields():
    raw = (b"Received: from a\n\tMessage-ID: <not-this@x>\nmessage-id:\n <m@x>\n"
           b"In-Reply-To: <p@x>\nReferences: <r1@x>\n\t<r2@x>\n <p@x>\n\nbody\n")
    assert thread_headers(raw) == ("m@x", ["r1@x", "r2@x", "p@x"])
    crlf = raw.replace(b"\n", b"\r\n")
    assert thread_headers(crlf) == ("m@x", ["r1@x", "r2@x", "p@x"])


def test_the_comparison_covers_the_fixtures():
    # The comparison above runs over every real fixture message.
    assert len(REAL) > 100
