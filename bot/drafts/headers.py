"""Header values of a reply, derived from untrusted mail.

Everything that comes from a mail (names, addresses, subjects, Message-IDs,
List-Ids) passes through here before it can reach a header: control
characters (CR, LF, NUL, the Unicode line and paragraph separators) are
removed, white space is collapsed, addresses are parsed and re-serialised by
the email library, and Message-IDs that are not plain printable ASCII
without spaces or angle brackets are dropped. A header can then hold only
what it is meant to hold: no injected header, no second recipient hidden in
a name.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import fnmatch
import functools
import re
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.headerregistry import Address

from bot.config import DraftsConfig
from bot.data import Mail

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators that
# some mail readers treat as line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]")
_MSGID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]{1,900}$")  # printable, no < > or space
_RE = re.compile(r"^(?:re|aw|sv)\s*(?:\[\d+\])?\s*:\s*", re.I)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


def clean(value: str) -> str:
    """`value` as one header-safe line: controls dropped, white space
    collapsed, and no RFC 2047 encoded word left to decode. Python's email
    library decodes "=?charset?q?...?=" in a header value it is given (even
    in an Address's display name or In-Reply-To) and writes what it decoded,
    CR and LF included: a literal encoded word from a mail would become a
    new header line. "= ?" cannot open one."""
    text = " ".join(_CONTROL.sub(" ", value).split())
    while "=?" in text:
        text = text.replace("=?", "= ?")
    return text


def clean_msgid(value: str) -> str | None:
    """A Message-ID without its angle brackets, or None when it is not one
    that can be written into a header as it is."""
    mid = " ".join(_CONTROL.sub(" ", value).split())
    if mid.startswith("<") and mid.endswith(">"):
        mid = mid[1:-1].strip()
    # No encoded word either (see `clean`): such an ID cannot be written as it is.
    return mid if _MSGID.match(mid) and "@" in mid and "=?" not in mid else None


def bracket(msgid: str) -> str:
    return "<%s>" % msgid


def reply_subject(subject: str) -> str:
    """The original subject without any leading Re:/Aw:/Sv: (so never
    "Re: Re:"); the template puts one "Re: " in front."""
    text = clean(subject)
    while True:
        stripped = _RE.sub("", text, count=1)
        if stripped == text:
            return text
        text = stripped


def address(name: str, addr: str) -> str | None:
    """One address re-serialised by the email library, or None when `addr`
    is not a plain addr-spec (user@domain)."""
    name, addr = clean(name), clean(addr)
    if not addr or " " in addr or addr.count("@") != 1 or "?" in addr:
        return None
    try:
        parsed = Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, HeaderParseError):
        return None
    if not parsed.username or not parsed.domain or "." not in parsed.domain:
        return None
    return str(parsed)


# A series' mails repeat the same recipients and List-Id: each is parsed once.
@functools.lru_cache(maxsize=8192)
def bare(addr: str) -> str:
    """The lower-cased addr-spec of an address."""
    return email.utils.parseaddr(addr)[1].lower()


def addresses(values: Iterable[str]) -> tuple[str, ...]:
    """Every usable address in header values, re-serialised, first occurrence
    of each addr-spec kept."""
    out: list[str] = []
    seen: set[str] = set()
    for name, addr in email.utils.getaddresses([clean(v) for v in values]):
        good = address(name, addr)
        if good is not None and bare(good) not in seen:
            seen.add(bare(good))
            out.append(good)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def list_address(list_id: str | None) -> str | None:
    """The posting address a List-Id names ("kvmarm.lists.cs.columbia.edu"
    -> "kvmarm@lists.cs.columbia.edu"), or None."""
    if not list_id:
        return None
    lid = clean(list_id).strip("<>").lower()
    local, dot, domain = lid.partition(".")
    if not dot or not local or "." not in domain:
        return None
    return address("", "%s@%s" % (local, domain))


def is_list(addr: str, mail: Mail, cfg: DraftsConfig) -> bool:
    spec = bare(addr)
    own = list_address(mail.list_id)
    return spec == own or any(fnmatch.fnmatchcase(spec, p.lower()) for p in cfg.list_addresses)


def recipients(mail: Mail, cfg: DraftsConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(To, Cc) of a reply to `mail` under the configured Cc policy."""
    author = address(mail.from_name, mail.from_email)
    to = (author,) if author else ()
    originals = addresses(mail.to + mail.cc)
    if cfg.cc == "author":
        chosen: tuple[str, ...] = ()
    elif cfg.cc == "lists":
        chosen = tuple(a for a in originals if is_list(a, mail, cfg))
    else:
        chosen = originals
    skip = {bare(a) for a in to}
    cc = [a for a in addresses(chosen + tuple(cfg.cc_extra)) if bare(a) not in skip]
    return to, tuple(cc)


def attribution_date(when: dt.datetime) -> str:
    """"Mon, Oct 28, 2019 at 01:05:41PM +0000": the date as mutt's
    attribution writes it, in the sender's own time zone, whatever the
    locale."""
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hour12 = when.hour % 12 or 12
    return "%s, %s %02d, %d at %02d:%02d:%02d%s %s%02d%02d" % (
        _DAYS[when.weekday()], _MONTHS[when.month - 1], when.day, when.year, hour12,
        when.minute, when.second, "AM" if when.hour < 12 else "PM", sign,
        abs(minutes) // 60, abs(minutes) % 60)


def sender_date(mail: Mail) -> dt.datetime | None:
    """When `mail` was written, in the sender's own time zone (as its Date
    header gives it), else as the parse layer normalised it."""
    for name, value in mail.headers:
        if name == "date":
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                break
            if when.tzinfo is not None and 1900 < when.year < 10000:
                return when
            break
    return mail.date


def author_name(mail: Mail) -> str:
    """Who wrote `mail`, as an attribution names them: the display name, or
    the address when there is none."""
    return clean(mail.from_name) or clean(mail.from_email) or "someone"
