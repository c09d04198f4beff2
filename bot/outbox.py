"""The outbox: approved drafts mailed over SMTP, each at most once.

`send_due` is one step (the command line runs it once, the daemon may run it
every cycle): a recovery sweep, then for each approved draft

  1. claim it (a conditional UPDATE, committed: state `sending`, this
     sender's id, a lease of `smtp.lease` seconds);
  2. check it is exactly what was approved (the digest), talk to the server
     up to the recipients (nothing is delivered before DATA);
  3. commit "handing over", send DATA;
  4. commit the outcome with the server's reply: `sent`, `failed`, or back to
     `approved` for a temporary refusal.

A sender killed in step 1 or 2 leaves a claim that the next sweep returns to
`approved` (the message never reached the server). Killed in step 3, nobody
can know whether the server took the message: the sweep marks the draft
`failed` and says so, and only a maintainer approving it again sends it
again, with the same Message-ID (fixed at approval) so a duplicate is
recognisable. A claim is swept when its lease ran out, or at once when it
belongs to a dead process on this host.

Sending is off unless `smtp.send_enabled`; credentials come only from the
environment (`smtp.password = { env = ... }`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import os
import smtplib
import socket
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.config import Config, SmtpConfig
from bot.drafts.message import as_smtp, build
from bot.errors import BadInput, ConfigError, Transient
from bot.store import drafts as q
from bot.store.db import Database
from bot.store.models import DraftAction, DraftState, utcnow
from bot.workflow import matches_approval, outgoing

logger = logging.getLogger(__name__)

# Temporary refusals (4xx) are retried on later runs, this many times in all.
MAX_ATTEMPTS = 5


@dataclass(slots=True)
class SendReport:
    """What one run of the outbox did with each draft."""

    sent: list[tuple[int, str]] = field(default_factory=list)       # (draft, server reply)
    failed: list[tuple[int, str]] = field(default_factory=list)     # (draft, why)
    deferred: list[tuple[int, str]] = field(default_factory=list)   # back to approved
    # Swept claims: back to approved (and sent in this run), or failed when
    # the message may have reached the server.
    recovered: list[tuple[int, DraftState, str]] = field(default_factory=list)


def owner_id() -> str:
    """Who holds a claim: host, process and a random part."""
    return "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])


def _dead(owner: str) -> bool:
    """Whether a claim's owner is a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_sendable(database: Database, ids: Sequence[int]) -> None:
    """Refuse, before anything changes, to send drafts that are not approved
    and ready."""
    with database.transaction() as session:
        ready = set(q.due(session, ids))
        for i in ids:
            if i in ready:
                continue
            d = q.get(session, i)
            if d is None:
                raise BadInput("draft %d: no such draft; nothing was sent" % i)
            if d.state is not DraftState.APPROVED:
                raise BadInput("draft %d is %s, not approved: nothing was sent" % (i, d.state))
            why = "superseded by a newer revision" if d.superseded_by_id else \
                "exported for sending with another tool"
            raise BadInput("draft %d is %s: nothing was sent" % (i, why))


def recover(database: Database, *, me: str, now: dt.datetime | None = None) -> list[
        tuple[int, DraftState, str]]:
    """Sweep claims left by senders that died or overran their lease."""
    now = now or utcnow()
    out: list[tuple[int, DraftState, str]] = []
    with database.transaction() as session:
        dead = [o for o in q.sending_owners(session) if o != me and _dead(o)]
        for d in q.stale_claims(session, now, dead):
            owner = d.claimed_by or ""
            if d.handing_over_at is None:
                state, error = DraftState.APPROVED, None
                why = ("sender %s stopped before handing the message to the server; "
                       "it will be sent again" % owner)
            else:
                state = DraftState.FAILED
                why = error = (
                    "sender %s stopped while handing the message to the server; it may have "
                    "been delivered: look for Message-ID <%s> on the list before approving "
                    "it again (a resend keeps that Message-ID)" % (owner, d.reply_message_id))
            if q.finish(session, d.id, owner, state=state, now=now, error=error):
                q.record(session, d, actor=me, action=DraftAction.RECOVERED,
                         before=DraftState.SENDING, after=state, detail=why, at=now)
                logger.warning("draft %d: %s", d.id, why)
                out.append((d.id, state, why))
    return out


def _connect(cfg: SmtpConfig) -> smtplib.SMTP:
    if cfg.user and cfg.password is None:
        raise ConfigError("smtp.user is set but smtp.password is not")
    # Read before connecting: a missing variable is a configuration error.
    password = cfg.password.reveal() if cfg.user and cfg.password is not None else ""
    context = ssl.create_default_context()
    conn: smtplib.SMTP | None = None
    try:
        if cfg.implicit_tls:
            conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        conn.ehlo()
        if cfg.starttls:
            conn.starttls(context=context)
            conn.ehlo()
        if cfg.user:
            conn.login(cfg.user, password)
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


def _open(cfg: SmtpConfig) -> smtplib.SMTP:
    try:
        return _connect(cfg)
    except smtplib.SMTPAuthenticationError as exc:
        raise ConfigError("SMTP server %s:%d refused the login of smtp.user %s: %s"
                          % (cfg.host, cfg.port, cfg.user, _reply(exc.smtp_code,
                                                                  exc.smtp_error))) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise Transient("SMTP server %s:%d unavailable: %s"
                        % (cfg.host, cfg.port, exc)) from None


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "%d %s" % (code, " ".join(text.split()))


class _Session:
    """One SMTP connection, opened on the first message that needs it."""

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self.conn: smtplib.SMTP | None = None

    def get(self) -> smtplib.SMTP:
        if self.conn is None:
            self.conn = _open(self.cfg)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                self.conn.close()
            self.conn = None


def _finish(database: Database, d_id: int, me: str, state: DraftState, *, reply: str | None,
            error: str | None, detail: str, action: DraftAction) -> None:
    now = utcnow()
    with database.transaction() as session:
        if q.finish(session, d_id, me, state=state, now=now, reply=reply, error=error,
                    sent_at=now if state is DraftState.SENT else None):
            d = q.get(session, d_id)
            assert d is not None
            q.record(session, d, actor=me, action=action, before=DraftState.SENDING,
                     after=state, detail=detail, at=now)
        else:
            logger.warning("draft %d: the claim was taken over before the outcome (%s) "
                           "could be recorded", d_id, detail)


def _send_one(database: Database, cfg: Config, smtp: _Session, d_id: int, me: str,
              report: SendReport) -> None:
    now = utcnow()
    with database.transaction() as session:
        if not q.claim(session, d_id, me, now, now + dt.timedelta(seconds=cfg.smtp.lease)):
            return  # sent, taken or changed since it was listed
        d = q.get(session, d_id)
        assert d is not None
        q.record(session, d, actor=me, action=DraftAction.CLAIMED,
                 before=DraftState.APPROVED, after=DraftState.SENDING,
                 detail="attempt %d" % d.attempts, at=now)
        intact = matches_approval(d)
        attempts = d.attempts
        out = outgoing(d) if intact else None
    if out is None:
        why = "changed after it was approved: not sent; approve it again"
        _finish(database, d_id, me, DraftState.FAILED, reply=None, error=why, detail=why,
                action=DraftAction.FAILED)
        report.failed.append((d_id, why))
        return
    msg = build(out, utcnow())
    envelope_from = cfg.smtp.from_addr or email.utils.parseaddr(out.sender)[1]
    try:
        conn = smtp.get()
    except BaseException:
        _finish(database, d_id, me, DraftState.APPROVED, reply=None, error=None,
                detail="SMTP server unavailable; released", action=DraftAction.RELEASED)
        raise
    try:
        code, text = conn.mail(envelope_from)
        if code != 250:
            raise _Refused(_reply(code, text), code)
        refused: list[str] = []
        codes: list[int] = []
        for rcpt in out.envelope_to:
            code, text = conn.rcpt(rcpt)
            if code not in (250, 251):
                refused.append("%s: %s" % (rcpt, _reply(code, text)))
                codes.append(code)
        if len(refused) == len(out.envelope_to):
            # Permanent if any refusal was: retrying will not help that one.
            raise _Refused("every recipient refused: " + "; ".join(refused), max(codes))
    except _Refused as exc:
        _rset(conn)
        _outcome_refused(database, d_id, me, str(exc), exc.code, attempts, report)
        return
    except (OSError, smtplib.SMTPException) as exc:
        smtp.close()
        _finish(database, d_id, me, DraftState.APPROVED, reply=None, error=str(exc),
                detail="connection lost before the message was handed over: %s" % exc,
                action=DraftAction.RELEASED)
        report.deferred.append((d_id, str(exc)))
        return
    with database.transaction() as session:
        ours = q.handing_over(session, d_id, me, utcnow())
    if not ours:
        # Another sender swept this claim (the lease ran out): it is theirs now.
        _rset(conn)
        logger.warning("draft %d: claim lost before sending; left to its new holder", d_id)
        return
    try:
        code, text = conn.data(as_smtp(msg))
    except (OSError, smtplib.SMTPException) as exc:
        smtp.close()
        why = ("connection lost while handing the message over (%s): it may have been "
               "delivered; look for Message-ID <%s> before approving it again"
               % (exc, out.message_id))
        _finish(database, d_id, me, DraftState.FAILED, reply=None, error=why, detail=why,
                action=DraftAction.FAILED)
        report.failed.append((d_id, why))
        return
    reply = _reply(code, text) + ("; refused: " + "; ".join(refused) if refused else "")
    if code == 250:
        _finish(database, d_id, me, DraftState.SENT, reply=reply, error=None,
                detail=reply, action=DraftAction.SENT)
        report.sent.append((d_id, reply))
        logger.info("draft %d sent as <%s>: %s", d_id, out.message_id, reply)
    else:
        _rset(conn)
        _outcome_refused(database, d_id, me, reply, code, attempts, report)


class _Refused(Exception):
    def __init__(self, text: str, code: int) -> None:
        super().__init__(text)
        self.code = code


def _rset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except (OSError, smtplib.SMTPException):
        pass


def _outcome_refused(database: Database, d_id: int, me: str, reply: str, code: int,
                     attempts: int, report: SendReport) -> None:
    if 400 <= code < 500 and attempts < MAX_ATTEMPTS:
        _finish(database, d_id, me, DraftState.APPROVED, reply=reply, error=reply,
                detail="temporarily refused, will retry: " + reply, action=DraftAction.RELEASED)
        report.deferred.append((d_id, reply))
    else:
        _finish(database, d_id, me, DraftState.FAILED, reply=reply, error=reply,
                detail="refused: " + reply, action=DraftAction.FAILED)
        report.failed.append((d_id, reply))


def send_due(cfg: Config, database: Database, *, ids: Sequence[int] | None = None) -> SendReport:
    """One run of the outbox: sweep, then send every approved draft (or only
    `ids`, which must all be approved and ready)."""
    if not cfg.smtp.send_enabled:
        raise ConfigError("sending is disabled (smtp.send_enabled = false): nothing was sent; "
                          "`bot drafts export` writes approved drafts for git send-email")
    if ids is not None:
        check_sendable(database, ids)
    me = owner_id()
    report = SendReport(recovered=recover(database, me=me))
    with database.transaction() as session:
        todo = q.due(session, ids)
    smtp = _Session(cfg.smtp)
    try:
        for d_id in todo:
            _send_one(database, cfg, smtp, d_id, me, report)
    finally:
        smtp.close()
    return report

