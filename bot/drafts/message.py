"""The mail of an approved draft, built by the email library.

Every header value is cleaned again here (`bot.drafts.headers`) and every
address re-parsed into an `Address`, whatever the database holds: the email
library then refuses anything that could still break a header. The same
message serves SMTP (CRLF, `as_smtp`) and export (.eml, mbox, LF).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage

from bot.drafts.headers import address, bracket, clean, clean_msgid

_EXPORT = email.policy.default.clone(linesep="\n")
_SMTP = email.policy.SMTP


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """What an approved draft sends: fixed at approval, checked at sending."""

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    in_reply_to: str
    references: tuple[str, ...]
    message_id: str
    body: str

    def digest(self) -> str:
        """A hash of everything approved, so a change after approval is seen."""
        data = json.dumps([self.sender, self.to, self.cc, self.subject, self.in_reply_to,
                           self.references, self.message_id, self.body], ensure_ascii=False)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    @property
    def envelope_to(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for a in self.to + self.cc:
            spec = email.utils.parseaddr(a)[1]
            if spec:
                seen.setdefault(spec, None)
        return tuple(seen)


def _address(value: str) -> Address | None:
    name, spec = email.utils.parseaddr(clean(value))
    good = address(name, spec)
    if good is None:
        return None
    name, spec = email.utils.parseaddr(good)
    return Address(display_name=name, addr_spec=spec)


def _addresses(values: Iterable[str]) -> list[Address]:
    return [a for a in (_address(v) for v in values) if a is not None]


def _ids(values: Sequence[str]) -> list[str]:
    return [bracket(m) for m in (clean_msgid(v) for v in values) if m]


def build(out: Outgoing, date: dt.datetime) -> EmailMessage:
    """The message, with `date` as its Date header."""
    sender = _address(out.sender)
    if sender is None:
        raise ValueError("not a usable From address: %r" % out.sender)
    msg = EmailMessage(policy=_EXPORT)
    msg["From"] = sender
    to = _addresses(out.to)
    if to:
        msg["To"] = to
    cc = _addresses(out.cc)
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = clean(out.subject)
    msg["Date"] = email.utils.format_datetime(date)
    mid = clean_msgid(out.message_id)
    if mid is None:
        raise ValueError("not a usable Message-ID: %r" % out.message_id)
    msg["Message-ID"] = bracket(mid)
    irt = _ids([out.in_reply_to])
    if irt:
        msg["In-Reply-To"] = irt[0]
    refs = _ids(out.references)
    if refs:
        msg["References"] = " ".join(refs)
    body = out.body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    longest = max((len(ln.encode("utf-8")) for ln in body.split("\n")), default=0)
    if longest > 990:
        cte = "quoted-printable"
    else:
        cte = "7bit" if body.isascii() else "8bit"
    msg.set_content(body, charset="utf-8", cte=cte)
    return msg


def as_export(msg: EmailMessage) -> bytes:
    """The message as an .eml file holds it (LF line ends)."""
    return msg.as_bytes(policy=_EXPORT)


def as_smtp(msg: EmailMessage) -> bytes:
    """The message as SMTP DATA carries it (CRLF line ends)."""
    return msg.as_bytes(policy=_SMTP)


def as_mbox(messages: Iterable[EmailMessage]) -> bytes:
    """An mboxrd file of the messages, as `git send-email` and mail clients read."""
    chunks: list[bytes] = []
    for msg in messages:
        raw = as_export(msg)
        lines = raw.split(b"\n")
        escaped = [b">" + ln if ln.lstrip(b">").startswith(b"From ") else ln for ln in lines]
        chunks.append(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
                      + b"\n".join(escaped).rstrip(b"\n") + b"\n\n")
    return b"".join(chunks)


def new_message_id(sender: str, when: dt.datetime, token: str) -> str:
    """A Message-ID in the approving maintainer's domain, unique by `token`."""
    spec = email.utils.parseaddr(sender)[1]
    domain = spec.rpartition("@")[2] or "localhost"
    return "%s.%s-kvm-sysreg@%s" % (when.strftime("%Y%m%d%H%M%S"), token, domain)
