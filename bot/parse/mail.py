"""One mail message, from raw bytes into a `Mail`: pure, no I/O.

Mail is untrusted input. Headers are decoded with replacement on any
undecodable charset or broken encoded word, folded and stripped of control
characters (a subject with an embedded newline must not become a header of
a reply); the body is the first text/plain or text/x-patch part (a part
holding a diff is preferred), decoded with replacement.

Addresses are parsed from the header as sent, and only then are display
names decoded: an encoded word is text, so `=?utf-8?q?a=40b=2Ec?=
<x@y.z>` is the address x@y.z named "a@b.c", never the address a@b.c.
Message-IDs, In-Reply-To and References are read as sent, never decoded;
of References only the last `REFERENCES_KEPT` IDs are kept (see
`bot.data.thread_refs`). Nothing here raises on odd mail: `MailError` is
raised only when the message has no usable Message-ID.

b4 hands its check commands a message with the original headers over a body
it has already transfer-decoded (`LoreMessage.get_msg_as_bytes`): a base64
or quoted-printable header over plain text, or a multipart header over the
text of the part holding the patch. `message_from_bytes` recognises such a
body and relabels it (8bit, or text/plain), so neither our parser nor b4's
assembly decodes it a second time (which turns base64 into noise and joins
quoted-printable lines ending in "=").
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import functools
import re

from bot.data import MESSAGE_ID_MAX, Mail, thread_refs

_CTRL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]+")
_WS = re.compile(r"\s+")
_MSGID = re.compile(r"<([^<>\s]+)>")
_DIFF_START = re.compile(r"^(diff --git |--- (a/|/dev/null)|Index: )", re.M)

# Headers kept (decoded) in the database beside the raw bytes.
KEPT_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to",
                "references", "list-id", "x-mailing-list")


_WANTED = frozenset(KEPT_HEADERS)
_ADDRESS_HEADERS = ("from", "to", "cc")
# An addr-spec as a reply may use it: local@domain, nothing that would end
# the address or start another.
_ADDR_SPEC = re.compile(r"^[^\s@<>,;:\"()\[\]\\]+@[^\s@<>,;:\"()\[\]\\]+$")


class MailError(ValueError):
    """The message cannot be used at all (no Message-ID)."""


# What a transfer-encoded body cannot hold, so a body holding it was decoded
# already: for base64, anything but its alphabet; for quoted-printable
# (RFC 2045 6.7), an "=" starting neither an escape nor a soft line break,
# an 8-bit byte, a line over 78 characters (76 in the RFC, 77 from Python's
# encoder) or one ending in a space or tab (a diff's blank context line is
# a single space).
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=\s]")
_NOT_QP = re.compile(r"=(?![0-9A-Fa-f]{2}|\r?\n|\Z)|[^\x00-\x7f]|[^\r\n]{79}|[ \t]\r?$",
                     re.M)


# The header fields read from a parsed message: those kept, and those the
# body is decoded by. List mail carries dozens of others (Received:, DKIM,
# ARC, X-...), three quarters of its header bytes, which no stage reads (the
# raw bytes keep them); parsing them cost more than the rest of the message.
PARSED_HEADERS = KEPT_HEADERS + ("content-type", "content-transfer-encoding", "mime-version")
_PARSED_FIELD = re.compile(rb"\n((?:%s):[^\n]*(?:\n[ \t][^\n]*)*)"
                           % b"|".join(re.escape(h.encode()) for h in PARSED_HEADERS), re.I)
# A line of a header block that is neither a field (RFC 5322 name and
# colon, what the email library's header pattern accepts) nor a folded
# continuation: the library ends the header block there.
_NOT_A_FIELD = re.compile(rb"\n(?![ \t])[!-9;-~]*+(?!:)")


def _split_parsed(raw: bytes) -> tuple[bytes, bytes] | None:
    """The fields of `raw`'s header block named in PARSED_HEADERS, and its
    body: parsing them gives for those fields and the body what parsing
    `raw` gives. None for a header block the library would read otherwise
    than field by field (a From_ line, a line that is no field, bare CR
    line ends): that is parsed whole."""
    end = raw.find(b"\n\n")
    if end <= 0:
        return None
    head = b"\n" + raw[:end]
    if b"\r" in head or head[1:2] in (b" ", b"\t") or _NOT_A_FIELD.search(head):
        return None
    return b"\n".join(_PARSED_FIELD.findall(head)), raw[end + 2:]


_HEADER_PARSER = email.parser.BytesParser(policy=email.policy.compat32)


def message_from_bytes(raw: bytes) -> email.message.Message:
    """Parse bytes with the compat32 policy (lenient and fast on real
    lists), relabelling a body b4 already decoded (module docstring).

    Only the header fields in PARSED_HEADERS are parsed. A body of one part
    (nearly every list mail) is not fed through the parser line by line:
    the parser would keep it as it is, so it is set as it is."""
    split = _split_parsed(raw)
    if split is None:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    else:
        head, body = split
        msg = _HEADER_PARSER.parsebytes(head + b"\n\n", headersonly=True)
        if msg.get_content_maintype() in ("multipart", "message"):
            msg = email.message_from_bytes(head + b"\n\n" + body,
                                           policy=email.policy.compat32)
        else:
            msg.set_payload(body.decode("ascii", "surrogateescape"))
    if not msg.is_multipart():
        _relabel_decoded(msg)
    return msg


def _relabel_decoded(msg: email.message.Message) -> None:
    body = msg.get_payload()
    if not isinstance(body, str):
        return
    if msg.get_content_maintype() == "multipart":
        # A multipart header over a body with no boundary line: the text of
        # the part b4 picked, which it always writes as UTF-8.
        del msg["content-type"], msg["content-transfer-encoding"]
        msg["Content-Type"] = 'text/plain; charset="utf-8"'
        msg["Content-Transfer-Encoding"] = "8bit"
        return
    cte = str(msg.get("content-transfer-encoding", "")).strip().lower()
    if (cte == "base64" and _NOT_BASE64.search(body)) or (cte == "quoted-printable"
                                                         and _NOT_QP.search(body)):
        del msg["content-transfer-encoding"]
        msg["Content-Transfer-Encoding"] = "8bit"


def decode_header(value: object) -> str:
    """A header value as one clean line of text, whatever its encoding."""
    if value is None:
        return ""
    if isinstance(value, str) and value.isascii() and value.isprintable() \
            and "=?" not in value:
        # No encoded word and nothing to replace (nearly every header): the
        # white space collapsed, as below.
        return " ".join(value.split())
    raw = value if isinstance(value, email.header.Header) else str(value)
    try:
        pieces = email.header.decode_header(raw)
    except Exception:  # noqa: BLE001 - a broken encoded word: keep the text as sent
        pieces = [(str(raw), None)]
    text = "".join(_decode_chunk(p, cs) if isinstance(p, bytes) else p
                   for p, cs in pieces)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _WS.sub(" ", _CTRL.sub(" ", text)).strip()


def _as_sent(value: str) -> str:
    """A raw header value as text, 8-bit bytes decoded but no encoded word:
    compat32 keeps non-ASCII bytes as surrogate escapes."""
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# One address of the plain shape nearly every list mail has: `Name <a@b>`
# or `a@b`, nothing the full parser would read differently (no quotes,
# comments, groups, escapes or encoded words anywhere in the header).
_PLAIN_ONE = re.compile(r"^\s*(?:([^<>@,]*?)\s*<([^<>\s@]+@[^<>\s@]+)>|([^<>\s@]+@[^<>\s@]+))\s*$")
_NOT_PLAIN = re.compile(r"[\"()\\;:\[\]]|=\?")


@functools.lru_cache(maxsize=1024)
def addresses(value: str) -> tuple[tuple[str, str], ...]:
    """(display name, address) pairs of an address header as sent: parsed
    first, names decoded after; what is not a plain addr-spec is dropped.
    (A thread's messages repeat the same headers: the answer is kept.)"""
    plain = _plain_addresses(value)
    if plain is not None:
        return plain
    out: list[tuple[str, str]] = []
    try:
        pairs = email.utils.getaddresses([_CTRL.sub(" ", value)])
    except Exception:  # noqa: BLE001 - unparsable: no address rather than a wrong one
        return ()
    for name, addr in pairs:
        addr = addr.strip()
        if not _ADDR_SPEC.match(addr) or "=?" in addr:
            continue
        out.append((decode_header(name) if name else "", addr))
    return tuple(out)


def _plain_addresses(value: str) -> tuple[tuple[str, str], ...] | None:
    """The header's addresses when every one has the plain shape; None when
    the full parser must read it."""
    if _NOT_PLAIN.search(value) or not value.isascii():
        return None
    value = _CTRL.sub(" ", value)  # as the full parser is given it (a folded header)
    out: list[tuple[str, str]] = []
    for item in value.split(","):
        if not item.strip():
            continue
        m = _PLAIN_ONE.match(item)
        if m is None:
            return None
        addr = m.group(2) or m.group(3)
        if not _ADDR_SPEC.match(addr):
            return None
        out.append((" ".join((m.group(1) or "").split()), addr))
    return tuple(out)


def _decode_chunk(data: bytes, charset: str | None) -> str:
    charset = (charset or "utf-8").strip().lower()
    if charset in ("unknown-8bit", "x-unknown"):
        # Raw 8-bit bytes in a header: mostly UTF-8, else a legacy 8-bit set.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _clean_msgid(value: str) -> str | None:
    m = _MSGID.search(value)
    if m:
        return m.group(1)
    value = value.strip()
    if value and " " not in value and "@" in value:
        return value.strip("<>")
    return None


def _all_msgids(value: str) -> list[str]:
    return _MSGID.findall(value)


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


def _payload(msg: email.message.Message) -> tuple[str, str]:
    """The body text and its charset; see the module docstring."""
    own = _charset(msg)
    top_charset = own or "utf-8"
    chosen: tuple[str, str] | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if not (ctype == "text/plain" or ctype.endswith("/x-patch")
                or ctype.endswith("/x-diff")):
            continue
        try:
            payload = part.get_payload(decode=True)
        except (ValueError, TypeError, AssertionError):
            payload = None
        if not isinstance(payload, bytes):
            continue
        charset = (own if part is msg else _charset(part)) or top_charset
        text = _decode_chunk(payload, charset)
        if chosen is None or (_DIFF_START.search(text) and not _DIFF_START.search(chosen[0])):
            chosen = (text, charset)
    return chosen if chosen is not None else ("", top_charset)


def _charset(part: email.message.Message) -> str | None:
    try:
        cs = part.get_content_charset()
    except (ValueError, LookupError, TypeError):
        return None
    return cs


def parse_mail(raw: bytes, msg: email.message.Message | None = None,
               message_id: str | None = None) -> Mail:
    """Build a `Mail` from raw bytes. To parse nothing twice, the caller
    passes the parsed message when it has it, and the Message-ID the input
    layer already read from the headers."""
    if msg is None:
        msg = message_from_bytes(raw)
    # One pass over the headers, as sent: a compat32 lookup scans them all
    # each time, and list mail carries dozens of Received: lines.
    found: dict[str, list[str]] = {}
    for name, header in msg.raw_items():
        key = name.lower()
        if key in _WANTED:
            found.setdefault(key, []).append(_as_sent(str(header)))

    def first(name: str) -> str:
        values = found.get(name)
        return decode_header(values[0]) if values else ""

    def ids(name: str) -> str:
        # Message-IDs are never encoded words: read as sent.
        return _CTRL.sub(" ", " ".join(found.get(name, ())))

    if not message_id:
        message_id = _clean_msgid(ids("message-id"))
    if not message_id:
        raise MailError("message has no Message-ID")
    if len(message_id) > MESSAGE_ID_MAX:
        raise MailError("Message-ID longer than %d characters" % MESSAGE_ID_MAX)
    irt = _clean_msgid(ids("in-reply-to")) if "in-reply-to" in found else None
    if irt is not None and len(irt) > MESSAGE_ID_MAX:
        irt = None
    refs = thread_refs(_all_msgids(ids("references")), irt, message_id)
    sender = addresses(found["from"][0]) if "from" in found else ()
    from_name, from_email = sender[0] if sender else ("", "")
    list_id = first("list-id") or None
    if list_id:
        lm = _MSGID.search(list_id)
        list_id = lm.group(1) if lm else list_id
    # References as kept for threading: a megabyte of them is not worth storing.
    headers = tuple((name, decode_header(value) if name != "references"
                     else " ".join("<%s>" % r for r in refs if r != irt))
                    for name in KEPT_HEADERS
                    for value in found.get(name, ())[:1 if name not in ("to", "cc") else None])
    body, charset = _payload(msg)
    return Mail(
        message_id=message_id,
        subject=first("subject"),
        from_name=from_name or from_email,
        from_email=from_email,
        date=_date(first("date")),
        in_reply_to=irt,
        references=refs,
        list_id=list_id,
        headers=headers,
        body=body,
        charset=charset,
        raw=raw,
        to_addrs=tuple(a for v in found.get("to", ()) for a in addresses(v)),
        cc_addrs=tuple(a for v in found.get("cc", ()) for a in addresses(v)),
    )
