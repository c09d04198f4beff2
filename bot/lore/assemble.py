"""Series assembly with b4: one thread's messages into `Series`.

b4's `LoreMailbox` does what a maintainer's `b4 am` does: it sorts cover
letter, patches 1..N and follow-ups by revision, notices missing patches and
collects follow-up trailers. This module feeds it and converts its objects
into ours at the boundary; nothing of b4 leaks out. b4 is told it has no
network, so assembly never reaches out to lore on its own.
"""

from __future__ import annotations

import email.message
import logging
import re

import b4

from bot.data import Mail, MessageError, Patch, RawMessage, Series, Subject, Thread, Trailer
from bot.parse.diff import split_body
from bot.parse.mail import MailError, message_from_bytes, parse_mail

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


# A line b4 could read as a follow-up trailer: a person's address, a link,
# or Fixes:/Obsoleted-by: (a superset of what b4.LoreMessage.find_trailers
# keeps for replies).
_MAYBE_TRAILER = re.compile(r"^\s*\w\S+:\s+\S.*(@\S+\.|https?://)|^\s*(fixes|obsoleted-by):\s",
                            re.M | re.I)


def _add_to_mailbox(lmbox: b4.LoreMailbox, msg: email.message.Message, mail: Mail) -> None:
    if not mail.has_diff and not _MAYBE_TRAILER.search(mail.body) \
            and b4.LoreSubject(mail.subject).reply:
        # A reply that gives no trailer matters to b4 only as a link in the
        # thread; b4 scans every body line for trailers, and review replies
        # are long, so it gets the headers alone.
        msg.set_payload("")
    # b4 annotates EmailMessage but reads only the compat32 Message API.
    lmbox.add_message(msg)  # type: ignore[arg-type]
    lmsg = lmbox.msgid_map.get(mail.message_id)
    if lmsg is not None and lmsg.has_diff and getattr(lmsg, "_git_patch_id", "") is None:
        # b4 matches follow-up trailers to patches across revisions by patch
        # id, which it gets from one `git patch-id` process per patch. Within
        # one mailbox any stable content hash serves; b4's own patchwork hash
        # costs no process.
        lmsg._git_patch_id = b4.LoreMessage.get_patchwork_hash(lmsg.body)


def assemble(raws: list[RawMessage]) -> Thread:
    """Turn one thread's raw messages into mails and series."""
    mails: list[Mail] = []
    errors: list[MessageError] = []
    lmbox = b4.LoreMailbox()
    by_id: dict[str, Mail] = {}
    for raw in raws:
        if raw.error is not None:
            errors.append(MessageError(origin=raw.origin, message_id=raw.message_id,
                                       reason=raw.error, raw=raw.data))
            continue
        try:
            msg = message_from_bytes(raw.data)
            mail = parse_mail(raw.data, msg, raw.message_id)
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
        try:
            _add_to_mailbox(lmbox, msg, mail)
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
        converted = _convert(lser, by_id, thread_id)
        if converted is not None:
            series.append(converted)
    return Thread(messages=tuple(mails), series=tuple(series), errors=tuple(errors))


def _trailers(lmsg: b4.LoreMessage, by_id: dict[str, Mail]) -> tuple[Trailer, ...]:
    out: list[Trailer] = []
    for ltr in lmsg.followup_trailers:
        src = getattr(ltr, "lmsg", None)
        mid = src.msgid if src is not None else ""
        author = by_id[mid].author if mid in by_id else ""
        trailer = Trailer(name=ltr.name, value=ltr.value, message_id=mid, author=author)
        if trailer not in out:
            out.append(trailer)
    return tuple(out)


def _convert(lser: b4.LoreSeries, by_id: dict[str, Mail], thread_id: str) -> Series | None:
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
                             body=split_body(mail.body), trailers=_trailers(lmsg, by_id)))
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
