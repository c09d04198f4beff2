"""One mail message, from raw bytes into a `Mail`: pure, no I/O.

Mail is untrusted input. Headers are decoded with replacement on any
undecodable charset, folded and stripped of control characters (a subject
with an embedded newline must not become a header of a reply); the body is
the first text/plain or text/x-patch part (a part holding a diff is
preferred), decoded with replacement. Nothing here raises on odd mail:
`MailError` is raised only when the message has no usable Message-ID.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.message
import email.policy
import email.utils
import re

from bot.data import Mail

_CTRL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
_WS = re.compile(r"\s+")
_MSGID = re.compile(r"<([^<>\s]+)>")
_DIFF_START = re.compile(r"^(diff --git |--- (a/|/dev/null)|Index: )", re.M)

# Headers kept (decoded) in the database beside the raw bytes.
KEPT_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to",
                "references", "list-id", "x-mailing-list")


_WANTED = frozenset(KEPT_HEADERS)


class MailError(ValueError):
    """The message cannot be used at all (no Message-ID)."""


def message_from_bytes(raw: bytes) -> email.message.Message:
    """Parse bytes with the compat32 policy: lenient and fast on real lists."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def decode_header(value: object) -> str:
    """A header value as one clean line of text, whatever its encoding."""
    if value is None:
        return ""
    raw = value if isinstance(value, email.header.Header) else str(value)
    try:
        pieces = email.header.decode_header(raw)
    except (ValueError, LookupError, AssertionError, TypeError):
        pieces = [(str(raw), None)]
    text = "".join(_decode_chunk(p, cs) if isinstance(p, bytes) else p
                   for p, cs in pieces)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _WS.sub(" ", _CTRL.sub(" ", text)).strip()


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
    top_charset = _charset(msg) or "utf-8"
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
        charset = _charset(part) or top_charset
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
    # One pass over the headers: a compat32 lookup scans them all each time,
    # and list mail carries dozens of Received: lines.
    found: dict[str, list[object]] = {}
    for name, header in msg.items():
        key = name.lower()
        if key in _WANTED:
            found.setdefault(key, []).append(header)

    def first(name: str) -> str:
        values = found.get(name)
        return decode_header(values[0]) if values else ""

    if not message_id:
        message_id = _clean_msgid(first("message-id"))
    if not message_id:
        raise MailError("message has no Message-ID")
    irt = _clean_msgid(first("in-reply-to")) if "in-reply-to" in found else None
    refs: list[str] = []
    for value in found.get("references", []):
        for ref in _all_msgids(decode_header(value)):
            if ref not in refs and ref != message_id:
                refs.append(ref)
    if irt and irt not in refs:
        refs.append(irt)
    from_name, from_email = email.utils.parseaddr(first("from")) if "from" in found \
        else ("", "")
    list_id = first("list-id") or None
    if list_id:
        lm = _MSGID.search(list_id)
        list_id = lm.group(1) if lm else list_id
    headers = tuple((name, decode_header(value)) for name in KEPT_HEADERS
                    for value in found.get(name, ())[:1 if name not in ("to", "cc") else None])
    body, charset = _payload(msg)
    return Mail(
        message_id=message_id,
        subject=first("subject"),
        from_name=from_name or from_email,
        from_email=from_email,
        date=_date(first("date")),
        in_reply_to=irt,
        references=tuple(refs),
        list_id=list_id,
        headers=headers,
        body=body,
        charset=charset,
        raw=raw,
    )
