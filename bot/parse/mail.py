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
from dataclasses import dataclass

_CTRL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
_WS = re.compile(r"\s+")
_MSGID = re.compile(r"<([^<>\s]+)>")
_DIFF_START = re.compile(r"^(diff --git |--- (a/|/dev/null)|Index: )", re.M)

# Headers kept (decoded) in the database beside the raw bytes.
KEPT_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to",
                "references", "list-id", "x-mailing-list")


class MailError(ValueError):
    """The message cannot be used at all (no Message-ID)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    message_id: str
    subject: str
    from_name: str
    from_email: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: dt.datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    list_id: str | None
    headers: tuple[tuple[str, str], ...]
    body: str
    charset: str
    raw: bytes

    @property
    def author(self) -> str:
        if self.from_name and self.from_name != self.from_email:
            return "%s <%s>" % (self.from_name, self.from_email)
        return self.from_email

    @property
    def has_diff(self) -> bool:
        return _DIFF_START.search(self.body) is not None


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


def _addresses(values: list[str]) -> tuple[str, ...]:
    out = []
    for name, addr in email.utils.getaddresses(values):
        if not addr:
            continue
        out.append(email.utils.formataddr((name, addr)) if name else addr)
    return tuple(out)


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return parsed.astimezone(dt.timezone.utc)
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
        if chosen is None:
            chosen = (text, charset)
        elif _DIFF_START.search(text) and not _DIFF_START.search(chosen[0]):
            chosen = (text, charset)
    return chosen if chosen is not None else ("", top_charset)


def _charset(part: email.message.Message) -> str | None:
    try:
        cs = part.get_content_charset()
    except (ValueError, LookupError, TypeError):
        return None
    return cs


def parse_mail(raw: bytes, msg: email.message.Message | None = None) -> Mail:
    """Build a `Mail` from raw bytes (and, to avoid parsing twice, the parsed
    message when the caller already has it)."""
    if msg is None:
        msg = message_from_bytes(raw)
    message_id = _clean_msgid(decode_header(msg.get("Message-ID")))
    if not message_id:
        raise MailError("message has no Message-ID")
    irt = _clean_msgid(decode_header(msg.get("In-Reply-To"))) if msg.get("In-Reply-To") else None
    refs: list[str] = []
    for value in msg.get_all("References", []) or []:
        for ref in _all_msgids(decode_header(value)):
            if ref not in refs and ref != message_id:
                refs.append(ref)
    if irt and irt not in refs:
        refs.append(irt)
    from_values = [decode_header(v) for v in msg.get_all("From", []) or []]
    from_name, from_email = email.utils.parseaddr(from_values[0]) if from_values else ("", "")
    list_id = decode_header(msg.get("List-Id")) or None
    if list_id:
        lm = _MSGID.search(list_id)
        list_id = lm.group(1) if lm else list_id
    headers = tuple((name, decode_header(msg.get(name)))
                    for name in KEPT_HEADERS if msg.get(name) is not None)
    body, charset = _payload(msg)
    return Mail(
        message_id=message_id,
        subject=decode_header(msg.get("Subject")),
        from_name=from_name or from_email,
        from_email=from_email,
        to=_addresses([decode_header(v) for v in msg.get_all("To", []) or []]),
        cc=_addresses([decode_header(v) for v in msg.get_all("Cc", []) or []]),
        date=_date(decode_header(msg.get("Date"))),
        in_reply_to=irt,
        references=tuple(refs),
        list_id=list_id,
        headers=headers,
        body=body,
        charset=charset,
        raw=raw,
    )
