"""Database tables as SQLAlchemy 2.0 typed models.

The Alembic migrations under `migrations/` are the only source of the
schema; these models must agree with them (a test runs autogenerate and
expects no difference). Queries live in `bot.store.queries` as plain
functions taking a `Session`.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.data import Category, RevisionStatus, Severity

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DraftState(enum.StrEnum):
    """draft -> approved -> sending -> sent | failed; any draft not being sent
    can be discarded. An edit sends an approved or failed draft back to
    draft: what is sent is always what was approved."""

    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DISCARDED = "discarded"


class DraftAction(enum.StrEnum):
    """What happened to a draft, in its history."""

    CREATED = "created"
    EDITED = "edited"
    APPROVED = "approved"
    DISCARDED = "discarded"
    SUPERSEDED = "superseded"
    EXPORTED = "exported"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    RELEASED = "released"
    RECOVERED = "recovered"


class PollResult(enum.StrEnum):
    """How the last poll cycle ended (`running` while it runs, or when the
    poller died in it)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    STOPPED = "stopped"


class FindingStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED_IN_SERIES = "resolved-in-series"
    PRE_EXISTING = "pre-existing"
    DISMISSED = "dismissed"


class Verdict(enum.StrEnum):
    """A maintainer's word on a finding: the rule was wrong (dismissed, with
    a reason) or right (confirmed)."""

    DISMISSED = "dismissed"
    CONFIRMED = "confirmed"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)


TZDateTime = DateTime(timezone=True)


class Message(Base):
    __tablename__ = "message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    list_id: Mapped[str | None] = mapped_column(String(255))
    date: Mapped[dt.datetime | None] = mapped_column(TZDateTime, index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_addr: Mapped[str] = mapped_column(String(512), default="")
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    lineage: Mapped[str] = mapped_column(String(128), index=True)
    change_id: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(512))
    revision: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    missing: Mapped[list[int]] = mapped_column(JSON, default=list)
    thread_id: Mapped[str] = mapped_column(String(998), default="")
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"))
    cover_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    date: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    # What the series was last checked against (bot.data.Base): how the base
    # was found (a BaseSource value), its commit and/or kernel version, why.
    base_source: Mapped[str | None] = mapped_column(String(32))
    base_commit: Mapped[str | None] = mapped_column(String(64))
    base_version: Mapped[str | None] = mapped_column(String(32))
    base_detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)

    patches: Mapped[list[Patch]] = relationship(back_populates="series",
                                                order_by="Patch.index")
    findings: Mapped[list[Finding]] = relationship(back_populates="series",
                                                  foreign_keys="Finding.series_id")
    drafts: Mapped[list[Draft]] = relationship(back_populates="series",
                                               foreign_keys="Draft.series_id")


class Patch(Base):
    __tablename__ = "patch"
    __table_args__ = (UniqueConstraint("series_id", "index", name="uq_patch_series_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(Text)
    files: Mapped[list[str]] = mapped_column(JSON, default=list)

    series: Mapped[Series] = relationship(back_populates="patches")
    message: Mapped[Message] = relationship()
    trailers: Mapped[list[Trailer]] = relationship(back_populates="patch")


class Trailer(Base):
    __tablename__ = "trailer"
    __table_args__ = (UniqueConstraint("patch_id", "message_id", "name", "value",
                                       name="uq_trailer_patch_message_name_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patch_id: Mapped[int] = mapped_column(ForeignKey("patch.id", ondelete="CASCADE"),
                                          index=True)
    message_id: Mapped[str] = mapped_column(String(998))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(998))
    author: Mapped[str] = mapped_column(String(512), default="")
    # The earlier revision it was given to, when b4 carried it over to this
    # unchanged patch; NULL when given to this revision.
    revision: Mapped[int | None] = mapped_column(Integer)

    patch: Mapped[Patch] = relationship(back_populates="trailers")


class Finding(Base):
    """A finding of one revision. `key` identifies it within its series;
    `fingerprint` across revisions (bot.data.Finding). Against the earlier
    revision: `revision_status` (NULL when none was known), `first_seen`
    (the revision where it was first raised), `continues_id` (the earlier
    revision's finding it continues, when stored) and, on the earlier
    revision's finding, `resolved_in_id` (the revision that no longer has
    it). A dismissal carries over to the finding that continues it."""

    __tablename__ = "finding"
    __table_args__ = (UniqueConstraint("series_id", "key", name="uq_finding_series_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"),
                                           index=True)
    patch_index: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    category: Mapped[Category] = mapped_column(_enum(Category, "finding_category"))
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "finding_severity"))
    file: Mapped[str | None] = mapped_column(String(1024))
    line: Mapped[int | None] = mapped_column(Integer)
    register: Mapped[str | None] = mapped_column(String(32))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text, default="")
    key: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    function: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[FindingStatus] = mapped_column(_enum(FindingStatus, "finding_status"),
                                                  default=FindingStatus.OPEN)
    revision_status: Mapped[RevisionStatus | None] = mapped_column(
        _enum(RevisionStatus, "finding_revision_status"))
    first_seen: Mapped[int | None] = mapped_column(Integer)
    continues_id: Mapped[int | None] = mapped_column(
        ForeignKey("finding.id", ondelete="SET NULL"), index=True)
    resolved_in_id: Mapped[int | None] = mapped_column(
        ForeignKey("series.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)

    series: Mapped[Series] = relationship(back_populates="findings",
                                          foreign_keys=[series_id])
    continues: Mapped[Finding | None] = relationship(remote_side=[id])


class Draft(Base):
    __tablename__ = "draft"
    __table_args__ = (UniqueConstraint("series_id", "in_reply_to",
                                       name="uq_draft_series_in_reply_to"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"),
                                           index=True)
    patch_index: Mapped[int] = mapped_column(Integer)
    in_reply_to: Mapped[str] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    to_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[DraftState] = mapped_column(_enum(DraftState, "draft_state"),
                                              default=DraftState.DRAFT, index=True)
    # The findings the draft comments on.
    fingerprints: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)
    # Fixed at approval: who approved (the From), the reply's own Message-ID
    # (the same on every attempt, so a resend is recognisable) and a digest
    # of everything approved (the sender refuses anything else).
    approved_by: Mapped[str | None] = mapped_column(String(512))
    approved_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    approved_digest: Mapped[str | None] = mapped_column(String(64))
    from_addr: Mapped[str | None] = mapped_column(String(512))
    reply_message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    # A newer revision of the series arrived: the draft is about code that
    # is gone and is neither approved nor sent.
    superseded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("series.id", ondelete="SET NULL"))
    superseded_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    # Handed to the maintainer's own mail tool: the outbox leaves it alone.
    exported_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    # The outbox: who holds the draft and until when, whether the message
    # was being handed to the server (from then on a crash leaves it
    # ambiguous), attempts, the server's last reply.
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    handing_over_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    # Bumped by every change, so two maintainers cannot overwrite each
    # other's edits unseen.
    version: Mapped[int] = mapped_column(Integer, default=1)

    series: Mapped[Series] = relationship(back_populates="drafts", foreign_keys=[series_id])
    events: Mapped[list[DraftEvent]] = relationship(back_populates="draft",
                                                    order_by="DraftEvent.id")

    __mapper_args__ = {"version_id_col": version}


class DraftEvent(Base):
    """One thing that happened to a draft: who, when, what, and for an edit
    the text before and after."""

    __tablename__ = "draft_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("draft.id", ondelete="CASCADE"),
                                          index=True)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(512))
    action: Mapped[DraftAction] = mapped_column(_enum(DraftAction, "draft_action"))
    state_before: Mapped[DraftState | None] = mapped_column(_enum(DraftState, "draft_state"))
    state_after: Mapped[DraftState | None] = mapped_column(_enum(DraftState, "draft_state"))
    body_before: Mapped[str | None] = mapped_column(Text)
    body_after: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")

    draft: Mapped[Draft] = relationship(back_populates="events")


class PollCursor(Base):
    __tablename__ = "poll_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(2048), unique=True)
    position: Mapped[dt.datetime] = mapped_column(TZDateTime)
    cycles: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


class PollSeen(Base):
    """A message whose whole thread the poller has stored (or quarantined):
    written in the transaction that stores the thread, so a search hit
    found here needs no fetch, and one not found here is fetched again,
    whatever else the database holds."""

    __tablename__ = "poll_seen"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    # The Message-ID the thread was fetched for.
    thread_id: Mapped[str] = mapped_column(String(998))
    seen_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


class DaemonStatus(Base):
    """The poller's health: one row (id 1), since one poller holds a
    database's poll lock at a time; written by `bot daemon` and `bot poll`,
    read by `bot status` and the dashboard."""

    __tablename__ = "daemon_status"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[dt.datetime] = mapped_column(TZDateTime)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    last_poll_started_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    last_poll_ended_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    last_result: Mapped[PollResult | None] = mapped_column(_enum(PollResult, "poll_result"))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    failing_since: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    messages_stored: Mapped[int] = mapped_column(Integer, default=0)
    series_stored: Mapped[int] = mapped_column(Integer, default=0)
    messages_total: Mapped[int] = mapped_column(BigInteger, default=0)
    series_total: Mapped[int] = mapped_column(BigInteger, default=0)
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


class Quarantine(Base):
    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    origin: Mapped[str] = mapped_column(String(2048), default="")
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


class WebUser(Base):
    """A maintainer who logs in to the dashboard (`bot user add`). The
    address is the From of what they approve. `session_epoch` changes with
    the password or when the account is disabled: older sessions end."""

    __tablename__ = "web_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(512), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    session_epoch: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


class LoginAttempt(Base):
    """A login attempt, kept for the per-account and per-address limits."""

    __tablename__ = "login_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(512), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow, index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class FindingFeedback(Base):
    """A maintainer's verdict on a finding, with the reason: what a rule's
    precision is computed from. The fingerprint and lineage let it be
    counted once however many revisions carry the finding."""

    __tablename__ = "finding_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("finding.id", ondelete="CASCADE"),
                                            index=True)
    lineage: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict, "feedback_verdict"))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(512))
    at: Mapped[dt.datetime] = mapped_column(TZDateTime, default=utcnow)


Index("ix_series_lineage_revision", Series.lineage, Series.revision)
