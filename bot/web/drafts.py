"""A draft: the rendered reply, edited in place, approved, discarded or
sent, and its history. Every action goes through `bot.workflow` (and
`bot.outbox` for sending), as `bot drafts` does."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from bot import outbox, workflow
from bot.errors import BadInput, ConfigError, NotFound, Transient
from bot.web.auth import acting, actor, readable
from bot.web.context import state

bp = Blueprint("drafts", __name__)


@bp.get("/drafts/<int:draft_id>")
@readable
def show(draft_id: int) -> str:
    with state().database.transaction() as s:
        try:
            view = workflow.show(s, draft_id)
        except NotFound:
            abort(404)
    changes = {i: "".join(difflib.unified_diff(
        e.body_before.splitlines(keepends=True), e.body_after.splitlines(keepends=True),
        "before", "after")) for i, e in enumerate(view.events)
        if e.body_before is not None and e.body_after is not None}
    return render_template("draft.html", title="Draft %d" % draft_id, d=view, changes=changes,
                           editable=view.state in workflow.EDITABLE,
                           approvable=view.state in workflow.APPROVABLE
                           and view.superseded_by is None,
                           discardable=view.state in workflow.DISCARDABLE,
                           sendable=state().cfg.smtp.send_enabled
                           and str(view.state) == "approved" and view.superseded_by is None
                           and view.exported_at is None)


def _version() -> int | None:
    try:
        return int(request.form.get("version", ""))
    except ValueError:
        return None


def _lines(field: str) -> list[str]:
    return [a.strip() for a in request.form.get(field, "").replace("\n", ",").split(",")
            if a.strip()]


def _done(draft_id: int) -> Response:
    return redirect(url_for("drafts.show", draft_id=draft_id), code=303)


def _act(draft_id: int, action: Callable[[Session, workflow.Actor], str]) -> Response:
    """Run one workflow action for the logged-in maintainer in a transaction:
    its message on success, the refusal's on bad input, 404 when the draft
    does not exist; back to the draft either way."""
    who = actor()
    try:
        with state().database.transaction() as s:
            message = action(s, who)
        flash(message, "ok")
    except NotFound:
        abort(404)
    except BadInput as exc:
        flash(str(exc), "error")
    return _done(draft_id)


@bp.post("/drafts/<int:draft_id>/edit")
@acting
def edit(draft_id: int) -> Response:
    def run(s: Session, who: workflow.Actor) -> str:
        workflow.edit(s, who, draft_id, body=request.form.get("body"),
                      subject=request.form.get("subject"), to=_lines("to"),
                      cc=_lines("cc"), version=_version())
        return "Draft saved."
    return _act(draft_id, run)


@bp.post("/drafts/<int:draft_id>/approve")
@acting
def approve(draft_id: int) -> Response:
    def run(s: Session, who: workflow.Actor) -> str:
        view = workflow.approve(s, who, draft_id, version=_version())
        return "Approved as %s; Message-ID <%s>." % (view.approved_by, view.reply_message_id)
    return _act(draft_id, run)


@bp.post("/drafts/<int:draft_id>/discard")
@acting
def discard(draft_id: int) -> Response:
    def run(s: Session, who: workflow.Actor) -> str:
        workflow.discard(s, who, draft_id, reason=request.form.get("reason", "")[:2000],
                         version=_version())
        return "Draft discarded."
    return _act(draft_id, run)


@bp.post("/drafts/<int:draft_id>/send")
@acting
def send(draft_id: int) -> Response:
    actor()
    cfg = state().cfg
    if not cfg.smtp.send_enabled:
        flash("Sending is disabled (smtp.send_enabled = false).", "error")
        return _done(draft_id)
    try:
        report = outbox.send_due(cfg, state().database, ids=[draft_id])
    except (BadInput, ConfigError, Transient) as exc:
        flash(str(exc), "error")
        return _done(draft_id)
    for _id, reply in report.sent:
        flash("Sent: %s" % reply, "ok")
    for _id, why in report.failed + report.deferred:
        flash("Not sent: %s" % why, "error")
    return _done(draft_id)
