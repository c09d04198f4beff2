"""Series assembly with b4: one thread's messages into `Series`.

b4's `LoreMailbox` does what a maintainer's `b4 am` does: it sorts cover
letter, patches 1..N and follow-ups by revision, notices missing patches and
collects follow-up trailers. This module feeds it and converts its objects
into ours at the boundary; nothing of b4 leaks out. b4 is told it has no
network, so assembly never reaches out to lore on its own.

Trailers given to an earlier revision reach the patches of a later one
that b4 finds unchanged (same patch-id), marked with the revision they were
given to: within one thread as b4 assembles it, and from an earlier
revision elsewhere (another thread, a file, the database) through
`carry_trailers`, which gives b4 both in one mailbox.

b4 reads the identity headers of a message as it pleases (it fails on 8-bit
bytes in References or a Date past year 9999, reads a Message-ID such as
`<<x>...>` differently, and its References handling is quadratic), so it is
handed ours instead: the Message-ID, In-Reply-To and capped References,
Date, Subject and From that `bot.parse.mail` read. Odd headers then never
keep a usable patch from being checked, and b4 sees the same message the
rest of the bot does.

So b4 never parses mail: it gets a message built from our `Mail` (those
headers over the decoded body, or the part of it b4 uses), and each message
is parsed by the email library once (`bot.parse.mail`).
"""

from __future__ import annotations

import dataclasses
import email.message
import email.utils
import functools
import hashlib
import logging
import re
from collections.abc import Sequence

from bot.data import Mail, MessageError, Patch, RawMessage, Series, Subject, Thread, Trailer
from bot.lore.deferred import deferred
from bot.parse.diff import split_body
from bot.parse.mail import MailError, parse_mail

# b4 imports dkim (and through it dnspython) and patatt for attestation,
# requests for its HTTP client, smtplib for sending mail and mailbox for
# reading local mail folders when it loads; assembly uses none of them
# (b4.can_network is off below). Deferring them halves b4's load time, which
# every `bot check --format b4` pays (bench/b4check.py); whatever does use
# them loads them on first use.
with deferred({"dkim": (), "patatt": (), "mailbox": (), "requests": ("Session",),
               "smtplib": ("SMTP", "SMTP_SSL")}):
    import b4

logger = logging.getLogger(__name__)

# b4 as a library must not fetch code-review trailers or attestation on its own.
b4.can_network = False
logging.getLogger("b4").setLevel(logging.CRITICAL)


def parse_subject(subject: str) -> Subject:
    """What b4 reads from a subject: revision, n/m, RESEND, RFC, reply."""
    ls = b4.LoreSubject(subject)
    return Subject(text=ls.subject, revision=ls.revision, counter=ls.counter,
                   expected=ls.expected, reply=ls.reply, resend=ls.resend, rfc=ls.rfc,
                   patch=ls.patch, prefixes=tuple(ls.prefixes))


@functools.lru_cache(maxsize=4096)
def _is_reply(subject: str) -> bool:
    """Whether b4 reads `subject` as a reply's (a thread's replies share a
    few subjects: each is read once)."""
    return bool(b4.LoreSubject(subject).reply)


# A line b4 could read as a follow-up trailer: a person's address, a link,
# or Fixes:/Obsoleted-by: (a superset of what b4.LoreMessage.find_trailers
# keeps for replies).
_MAYBE_TRAILER = re.compile(r"^\s*\w\S+:\s+\S.*(@\S+\.|https?://)|^\s*(fixes|obsoleted-by):\s",
                            re.M | re.I)


def _identity_headers(mail: Mail) -> list[tuple[str, str]]:
    """What b4 reads of the headers, as we read it (see above)."""
    values = (
        ("Message-ID", "<%s>" % mail.message_id),
        ("In-Reply-To", "<%s>" % mail.in_reply_to if mail.in_reply_to else None),
        ("References", " ".join("<%s>" % r for r in mail.references) or None),
        ("Date", email.utils.format_datetime(mail.date) if mail.date else None),
        ("Subject", mail.subject),
        ("From", mail.author or None),
    )
    return [(name, value) for name, value in values if value is not None]


_DIFF_LINE = re.compile(r"^(diff --git |--- (a/|/dev/null)|Index: )", re.M)
# What b4 reads from a patch body besides "it has a diff": the series
# trailers b4 itself writes (base-commit:, change-id:, prerequisites).
_SERIES_TRAILER = re.compile(r"^(base-commit|change-id|prerequisite-[\w-]+):.*$", re.M | re.I)
_HUNK_NUMBERS = re.compile(r"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@", re.M)


def _for_b4(mail: Mail, body: str) -> email.message.Message:
    """The message b4 reads: our reading of its identity headers over
    `body` (already decoded), one plain-text part. Built from the `Mail`,
    so nothing is parsed again: b4 decodes it as it is."""
    msg = email.message.Message()
    for name, value in _identity_headers(mail):
        msg[name] = value
    msg["Content-Type"] = 'text/plain; charset="utf-8"'
    msg["Content-Transfer-Encoding"] = "8bit"
    msg.set_payload(body.encode("utf-8"))
    return msg


def _patch_hash(body: str, diff: re.Match[str] | None) -> str:
    """A stable content hash of a patch's diff: what b4 needs to match
    follow-up trailers to patches across revisions within one mailbox (b4
    would run `git patch-id` once per patch for it)."""
    diff_text = _HUNK_NUMBERS.sub("@@", body[diff.start():] if diff else body)
    lines = (ln.rstrip() for ln in diff_text.split("\n") if ln[:1] in ("+", "-", "@", "d"))
    return hashlib.sha256("\n".join(lines).encode("utf-8", "replace")).hexdigest()


def _patch_ids(mails: Sequence[Mail],
               diffs: dict[str, re.Match[str] | None]) -> dict[str, str]:
    """The patch-id b4 is given (`_add_to_mailbox`) for each of `mails`
    that has a diff (`diffs`: where each one's starts), by Message-ID: b4
    matches trailers to patches by it, and a message without a diff has none."""
    return {m.message_id: _patch_hash(m.body, diff) for m in mails
            if (diff := diffs[m.message_id]) is not None}


def _needed_by_b4(mails: list[Mail], replies: dict[str, bool],
                  diffs: dict[str, re.Match[str] | None]) -> set[str]:
    """The messages b4 must see: patches, cover letters and other new
    topics, replies that carry a diff or may give a trailer, and the replies
    between those and the patch they answer (b4 walks In-Reply-To up to the
    patch). A review reply that gives nothing and leads to nothing that does
    is only a cost to b4."""
    by_id = {m.message_id: m for m in mails}
    needed: set[str] = set()
    for mail in mails:
        if not replies[mail.message_id]:
            needed.add(mail.message_id)
            continue
        if diffs[mail.message_id] is None and _MAYBE_TRAILER.search(mail.body) is None:
            continue
        node: Mail | None = mail
        while node is not None and node.message_id not in needed:
            needed.add(node.message_id)
            node = by_id.get(node.in_reply_to) if node.in_reply_to else None
    return needed


def _add_to_mailbox(lmbox: b4.LoreMailbox, mail: Mail, reply: bool,
                    diff: re.Match[str] | None, patch_id: str | None = None) -> None:
    """Hand one message to b4, with only the part of its body b4 uses: b4
    scans every line of a body for trailers, which would cost more than
    the rest of the pipeline. (`diff`: where its diff starts, if it has one;
    `patch_id`: its patch-id, when already known.)"""
    body = mail.body
    if diff is not None and not reply:
        # A patch: b4 needs to know it is one (the first file header of its
        # diff, in whichever form b4 recognises) and the series trailers it
        # reads from its body (base-commit:, change-id:); the commit message
        # and the patch's own trailers are ours to read, not b4's.
        hunk = body.find("\n@@", diff.start())
        first = body[diff.start():hunk if hunk >= 0 else None][:4096]
        tail = "\n".join(m.group(0) for m in _SERIES_TRAILER.finditer(body))
        body = "%s\n\n%s\n" % (first, tail)
    elif diff is None and reply and not _MAYBE_TRAILER.search(body):
        # Only a link in the thread (an ancestor of a trailer): headers do.
        body = ""
    # b4 annotates EmailMessage but reads only the compat32 Message API.
    lmbox.add_message(_for_b4(mail, body))  # type: ignore[arg-type]
    lmsg = lmbox.msgid_map.get(mail.message_id)
    if lmsg is not None and lmsg.has_diff and getattr(lmsg, "_git_patch_id", "") is None:
        lmsg._git_patch_id = patch_id or _patch_hash(mail.body, diff)


def assemble(raws: list[RawMessage]) -> Thread:
    """Turn one thread's raw messages into mails and series."""
    mails: list[Mail] = []
    errors: list[MessageError] = []
    lmbox = b4.LoreMailbox()
    by_id: dict[str, Mail] = {}
    parsed: list[tuple[RawMessage, Mail]] = []
    for raw in raws:
        if raw.error is not None:
            errors.append(MessageError(origin=raw.origin, message_id=raw.message_id,
                                       reason=raw.error, raw=raw.data))
            continue
        try:
            mail = parse_mail(raw.data, message_id=raw.message_id)
        except MailError as exc:
            errors.append(MessageError(origin=raw.origin, message_id=None,
                                       reason=str(exc), raw=raw.data))
            continue
        except Exception as exc:  # noqa: BLE001 - untrusted mail: any parser failure is this message's
            logger.warning("%s: unparsable message: %s", raw.origin, exc)
            errors.append(MessageError(origin=raw.origin, message_id=None,
                                       reason="unparsable message: %s" % exc, raw=raw.data))
            continue
        if mail.message_id in by_id:
            continue
        by_id[mail.message_id] = mail
        mails.append(mail)
        parsed.append((raw, mail))
    replies = {m.message_id: _is_reply(m.subject) for m in mails}
    diffs = {m.message_id: _DIFF_LINE.search(m.body) for m in mails}
    needed = _needed_by_b4(mails, replies, diffs)
    for raw, mail in parsed:
        if mail.message_id not in needed:
            continue
        try:
            _add_to_mailbox(lmbox, mail, replies[mail.message_id], diffs[mail.message_id])
        except Exception as exc:  # noqa: BLE001 - b4 chokes on it: keep the mail, report the failure
            logger.warning("%s: b4 could not read %s: %s", raw.origin, mail.message_id, exc)
            errors.append(MessageError(origin=raw.origin, message_id=mail.message_id,
                                       reason="b4 could not read the message: %s" % exc,
                                       raw=raw.data))
    series: list[Series] = []
    thread_id = mails[0].message_id if mails else ""
    for revision in sorted(lmbox.series):
        try:
            lser = lmbox.get_series(revision, reroll=False, codereview_trailers=False)
        except Exception as exc:  # noqa: BLE001 - one revision b4 cannot assemble
            logger.warning("thread %s: b4 could not assemble v%d: %s", thread_id, revision, exc)
            continue
        if lser is None:
            continue
        converted = _convert(lser, lmbox, by_id, thread_id)
        if converted is not None:
            series.append(converted)
    return Thread(messages=tuple(mails), series=tuple(series), errors=tuple(errors))


def _answered_revision(lmbox: b4.LoreMailbox, msgid: str) -> int | None:
    """The revision of the patch a reply (or a reply to a reply) answers."""
    seen: set[str] = set()
    lmsg = lmbox.msgid_map.get(msgid)
    while lmsg is not None and lmsg.msgid not in seen:
        seen.add(lmsg.msgid)
        if lmsg.has_diff and not lmsg.reply:
            return int(lmsg.revision)
        lmsg = lmbox.msgid_map.get(lmsg.in_reply_to) if lmsg.in_reply_to else None
    return None


def _trailers(lmsg: b4.LoreMessage, lmbox: b4.LoreMailbox, by_id: dict[str, Mail],
              revision: int) -> tuple[Trailer, ...]:
    out: list[Trailer] = []
    for ltr in lmsg.followup_trailers:
        src = getattr(ltr, "lmsg", None)
        mid = src.msgid if src is not None else ""
        given = _answered_revision(lmbox, mid) if mid else None
        if given is not None and given > revision:
            # b4 carries trailers between revisions both ways; one given to
            # a later revision says nothing about this one.
            continue
        author = by_id[mid].author if mid in by_id else ""
        trailer = Trailer(name=ltr.name, value=ltr.value, message_id=mid, author=author,
                          revision=given if given is not None and given < revision else None)
        if trailer not in out:
            out.append(trailer)
    return tuple(out)


def carry_trailers(series: Series, earlier: Sequence[RawMessage]) -> Series:
    """`series` with the trailers given to an earlier revision (`earlier`:
    its patches and the replies giving the trailers) added to the patches
    b4 finds unchanged, the way `b4 am` carries them: by patch-id."""
    if not earlier or not series.patches:
        return series
    by_id: dict[str, Mail] = {}
    current = {p.message_id for p in series.patches}
    given: list[tuple[RawMessage, Mail, bool]] = []
    for raw in earlier:
        if raw.error is not None or raw.message_id in current:
            continue
        try:
            mail = parse_mail(raw.data, message_id=raw.message_id)
            subject = b4.LoreSubject(mail.subject)
            if mail.has_diff and not subject.reply and subject.revision >= series.revision:
                continue  # not an earlier revision: b4 would mix it into this one
        except Exception as exc:  # noqa: BLE001 - untrusted mail: this message is skipped
            logger.debug("%s: not used for trailers: %s", raw.origin, exc)
            continue
        given.append((raw, mail, bool(subject.reply)))
    # b4 carries a trailer to a patch whose patch-id is that of the earlier
    # patch it was given to (b4.LoreMailbox.get_series): with none in
    # common, it carries nothing, and is not asked.
    earlier_mails = [m for _r, m, _reply in given]
    diffs = {m.message_id: _DIFF_LINE.search(m.body)
             for m in (*earlier_mails, *series.messages)}
    ids = _patch_ids(earlier_mails, diffs)
    later = _patch_ids(series.messages, diffs)
    if not set(ids.values()) & set(later.values()):
        return series
    ids.update(later)
    lmbox = b4.LoreMailbox()
    for raw, mail, reply in given:
        try:
            by_id[mail.message_id] = mail
            _add_to_mailbox(lmbox, mail, reply, diffs[mail.message_id],
                            ids.get(mail.message_id))
        except Exception as exc:  # noqa: BLE001 - untrusted mail: this message is skipped
            logger.debug("%s: not used for trailers: %s", raw.origin, exc)
    for mail in series.messages:
        by_id[mail.message_id] = mail
        _add_to_mailbox(lmbox, mail, b4.LoreSubject(mail.subject).reply,
                        diffs[mail.message_id], ids.get(mail.message_id))
    try:
        lser = lmbox.get_series(series.revision, reroll=False, codereview_trailers=False)
    except Exception as exc:  # noqa: BLE001 - b4 cannot assemble it: no trailers carried
        logger.warning("%s: b4 could not carry trailers over: %s", series.message_id, exc)
        return series
    if lser is None:
        return series
    carried: dict[str, tuple[Trailer, ...]] = {}
    for lmsg in lser.patches[1:]:
        if lmsg is not None and lmsg.msgid in current:
            carried[lmsg.msgid] = tuple(t for t in _trailers(lmsg, lmbox, by_id,
                                                             series.revision)
                                        if t.revision is not None)
    patches = []
    for p in series.patches:
        known = {(t.name, t.value, t.message_id) for t in p.trailers}
        more = tuple(t for t in carried.get(p.message_id, ())
                     if (t.name, t.value, t.message_id) not in known)
        patches.append(dataclasses.replace(p, trailers=p.trailers + more) if more else p)
    return dataclasses.replace(series, patches=tuple(patches))


def _convert(lser: b4.LoreSeries, lmbox: b4.LoreMailbox, by_id: dict[str, Mail],
             thread_id: str) -> Series | None:
    patches: list[Patch] = []
    missing: list[int] = []
    total = max(len(lser.patches) - 1, 0)
    for index, lmsg in enumerate(lser.patches):
        if index == 0:
            continue
        if lmsg is None:
            missing.append(index)
            continue
        mail = by_id.get(lmsg.msgid)
        if mail is None:
            continue
        patches.append(Patch(index=index, total=total, mail=mail, subject=mail.subject,
                             body=split_body(mail.body),
                             trailers=_trailers(lmsg, lmbox, by_id, lser.revision)))
    if not patches:
        return None
    cover_l = lser.patches[0] if lser.patches else None
    cover = by_id.get(cover_l.msgid) if cover_l is not None else None
    head = cover if cover is not None else patches[0].mail
    subject = b4.LoreSubject(head.subject)
    return Series(
        message_id=head.message_id,
        subject=subject.subject,
        revision=lser.revision,
        author=head.author,
        author_email=head.from_email,
        total=total,
        cover=cover,
        patches=tuple(patches),
        missing=tuple(missing),
        change_id=lser.change_id,
        thread_id=thread_id,
        rfc=subject.rfc,
    )
