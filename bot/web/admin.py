"""The rules (explanation, how often each fired, precision from the
maintainers' verdicts), the poller's status with the quarantine, and
/healthz for monitoring."""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, url_for
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from bot.errors import BotError
from bot.rules import REGISTRY
from bot.store import dashboard as q
from bot.store import feedback as fq
from bot.store.lock import poll_lock
from bot.store.models import FindingFeedback, Message, Quarantine, utcnow
from bot.store.status import daemon_status
from bot.web.auth import acting, actor, readable
from bot.web.context import state

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__)


@bp.get("/rules")
@readable
def rules() -> str:
    with state().database.transaction() as s:
        figures = fq.figures(s)
    return render_template("rules.html", title="Rules", rules=list(REGISTRY), figures=figures)


@bp.get("/rules/<rule_id>")
@readable
def rule(rule_id: str) -> str:
    spec = REGISTRY.get(rule_id)
    if spec is None:
        abort(404)
    with state().database.transaction() as s:
        figures = fq.figures(s).get(rule_id)
        verdicts = list(s.scalars(select(FindingFeedback).where(
            FindingFeedback.rule == rule_id).order_by(FindingFeedback.id.desc()).limit(100)))
        return render_template("rule.html", title="Rule %s" % rule_id, spec=spec,
                               figures=figures, verdicts=verdicts)


@bp.get("/status")
@readable
def status() -> str:
    cfg = state().cfg
    database = state().database
    with database.transaction() as s:
        row = daemon_status(s)
        cursors = q.cursors(s)
        items = q.quarantined(s)
        total = q.quarantine_count(s)
    try:
        holder = poll_lock(cfg, database.engine, "bot serve").holder()
    except BotError as exc:
        holder, lock_error = None, str(exc)
    else:
        lock_error = ""
    health = row.health(utcnow(), cfg.daemon.stale_after) if row is not None else None
    return render_template("status.html", title="Status", row=row, health=health,
                           holder=holder, lock_error=lock_error, cursors=cursors,
                           quarantined=items, quarantine_total=total)


@bp.get("/status/quarantine/<int:item_id>")
@readable
def quarantined(item_id: int) -> str:
    with state().database.transaction() as s:
        item = q.quarantine_item(s, item_id)
        if item is None:
            abort(404)
        raw = item.raw.decode("utf-8", "replace")
        return render_template("quarantine.html", title="Quarantined message %d" % item_id,
                               item=item, raw=raw)


@bp.post("/status/quarantine/<int:item_id>/reprocess")
@acting
def reprocess(item_id: int) -> Response:
    """Run the pipeline over the quarantined mail again (after a fix, say);
    once it is stored, it leaves the quarantine."""
    who = actor()
    cfg, database = state().cfg, state().database
    with database.transaction() as s:
        item = q.quarantine_item(s, item_id)
        if item is None:
            abort(404)
        raw, message_id = item.raw, item.message_id
        last = s.scalar(select(func.max(Quarantine.id))) or 0
    from bot.check import run_check
    with tempfile.TemporaryDirectory(prefix="bot-reprocess-") as tmp:
        path = Path(tmp) / "message.eml"
        path.write_bytes(raw)
        try:
            run_check(cfg, [str(path)], out=io.StringIO(), fmt="json", fail_on="never",
                      store=True, quiet=True)
        except BotError as exc:
            flash("Still failing: %s" % exc, "error")
            return redirect(url_for("admin.quarantined", item_id=item_id), code=303)
    with database.transaction() as s:
        stored = message_id is not None and s.scalars(
            select(Message.id).where(Message.message_id == message_id)).first() is not None
        # The same mail failing again is the same item: its new entry (the
        # bytes read back differ, so does the digest) only updates the reason.
        again = list(s.scalars(select(Quarantine).where(
            Quarantine.id > last, Quarantine.message_id.is_(None) if message_id is None
            else Quarantine.message_id == message_id)))
        kept = s.get(Quarantine, item_id)
        for row in again:
            if kept is not None:
                kept.reason = row.reason
            s.delete(row)
        if stored and kept is not None:
            s.delete(kept)
    if stored:
        logger.info("quarantined message %s re-processed and stored by %s", message_id,
                    who.address)
        flash("Re-processed: the message is stored and left the quarantine.", "ok")
        return redirect(url_for("admin.status"), code=303)
    flash("Re-processed, but the message was not stored: it stays in quarantine.", "error")
    return redirect(url_for("admin.quarantined", item_id=item_id), code=303)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """For a load balancer or monitoring: 200 while the database answers;
    the poller's health is reported, not judged (a dashboard without a
    daemon is still up)."""
    cfg = state().cfg
    try:
        with state().database.transaction() as s:
            row = daemon_status(s)
    except BotError as exc:
        return jsonify({"ok": False, "database": str(exc)}), 503
    health = row.health(utcnow(), cfg.daemon.stale_after) if row is not None else None
    return jsonify({"ok": True, "database": "ok",
                    "poller": None if health is None else {"healthy": health.healthy,
                                                           "reason": health.reason}}), 200
