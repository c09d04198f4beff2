"""Maintainers' dashboard accounts: creating them, changing a password,
disabling one, and checking a login against the rate limit.

Passwords are hashed with argon2id (argon2-cffi's defaults, which follow
RFC 9106's recommendations); the hash's own parameters are checked at each
login and an outdated hash is replaced. A changed password or a disabled
account moves the account's session epoch: sessions opened before end.
Logins are limited per account and per client address (`web.login_attempts`
failures within `web.login_window` seconds); past the limit the password is
not even checked, so guessing cannot go faster than the limit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from bot.config import WebConfig
from bot.drafts import headers
from bot.errors import BadInput, NotFound
from bot.store import accounts as q
from bot.store.models import WebUser, utcnow

logger = logging.getLogger(__name__)

MIN_PASSWORD = 10
_HASHER = PasswordHasher()
# Verified against when the account does not exist, so that an unknown
# account takes as long to refuse as a wrong password.
_DUMMY = _HASHER.hash("not a password of anyone")


class LoginResult(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"        # unknown account or wrong password (not told apart)
    DISABLED = "disabled"
    LIMITED = "limited"        # too many failures: the password was not checked


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    """The outcome of a login attempt, and the user when it succeeded."""

    result: LoginResult
    user: WebUser | None = None


def _password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadInput("a password needs at least %d characters" % MIN_PASSWORD)
    return _HASHER.hash(password)


def _address(email: str, name: str) -> str:
    email = headers.clean(email)
    if headers.address(name, email) is None or "@" not in email:
        raise BadInput("%r is not a usable mail address (it becomes the From of what the "
                       "maintainer approves)" % email)
    return email


def add(session: Session, *, email: str, name: str, password: str) -> WebUser:
    email = _address(email, name)
    if q.by_email(session, email) is not None:
        raise BadInput("account %s exists already (bot user passwd changes its password)"
                       % email)
    return q.add(session, email=email, name=headers.clean(name), password_hash=_password(
        password))


def _existing(session: Session, email: str) -> WebUser:
    user = q.by_email(session, email)
    if user is None:
        raise NotFound("no account %s (bot user add creates one)" % email)
    return user


def set_password(session: Session, *, email: str, password: str) -> WebUser:
    user = _existing(session, email)
    user.password_hash = _password(password)
    user.disabled = False
    user.session_epoch += 1
    user.updated_at = utcnow()
    return user


def disable(session: Session, *, email: str) -> WebUser:
    user = _existing(session, email)
    user.disabled = True
    user.session_epoch += 1
    user.updated_at = utcnow()
    return user


def login(session: Session, cfg: WebConfig, *, email: str, password: str,
          address: str) -> Login:
    """Check a login; every attempt is recorded for the limit."""
    now = utcnow()
    since = now - dt.timedelta(seconds=cfg.login_window)
    account = email.strip().lower()
    if (q.failures(session, account=account, since=since) >= cfg.login_attempts
            or q.failures(session, address=address, since=since) >= cfg.login_attempts):
        q.record_attempt(session, account=account, address=address, succeeded=False,
                         keep_since=since)
        logger.warning("login for %s from %s refused: too many failed attempts", account,
                       address)
        return Login(result=LoginResult.LIMITED)
    user = q.by_email(session, account)
    ok = _verify(user.password_hash if user is not None else _DUMMY, password)
    if user is not None and ok and not user.disabled:
        if _HASHER.check_needs_rehash(user.password_hash):
            user.password_hash = _HASHER.hash(password)
        q.record_attempt(session, account=account, address=address, succeeded=True,
                         keep_since=since)
        return Login(result=LoginResult.OK, user=user)
    q.record_attempt(session, account=account, address=address, succeeded=False,
                     keep_since=since)
    if user is not None and ok:
        return Login(result=LoginResult.DISABLED)
    return Login(result=LoginResult.REFUSED)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
