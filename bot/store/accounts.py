"""Dashboard accounts and login attempts: plain functions taking a `Session`.

Hashing passwords is the caller's (`bot.accounts`); the store only keeps
the hash. Login attempts are kept for the rate limit and pruned once they
are older than the window.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bot.store.models import LoginAttempt, WebUser, utcnow


def by_email(session: Session, email: str) -> WebUser | None:
    return session.scalars(select(WebUser).where(
        func.lower(WebUser.email) == email.strip().lower())).first()


def get(session: Session, user_id: int) -> WebUser | None:
    return session.get(WebUser, user_id)


def add(session: Session, *, email: str, name: str, password_hash: str) -> WebUser:
    now = utcnow()
    user = WebUser(email=email.strip(), name=name, password_hash=password_hash,
                   disabled=False, session_epoch=1, created_at=now, updated_at=now)
    session.add(user)
    session.flush()
    return user


def failures(session: Session, *, account: str | None = None, address: str | None = None,
             since: dt.datetime) -> int:
    """Failed attempts since `since` for the account, or from the address."""
    query = select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.at >= since, LoginAttempt.succeeded.is_(False))
    if account is not None:
        query = query.where(LoginAttempt.account == account.strip().lower())
    if address is not None:
        query = query.where(LoginAttempt.address == address)
    return int(session.scalar(query) or 0)


def record_attempt(session: Session, *, account: str, address: str, succeeded: bool,
                   keep_since: dt.datetime) -> None:
    """Note an attempt; attempts from before `keep_since` no longer count
    and are dropped."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.at < keep_since))
    session.add(LoginAttempt(account=account.strip().lower()[:512], address=address[:64],
                             at=utcnow(), succeeded=succeeded))
