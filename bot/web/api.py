"""The JSON API under /api/: the dashboard's data for scripts. Read-only;
anonymous callers only when `web.public_read`. Strings are mail-derived
text as stored; `<`, `>` and `&` are written as \\u escapes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from bot import workflow
from bot.errors import NotFound
from bot.rules import REGISTRY
from bot.store import dashboard as q
from bot.store import feedback as fq
from bot.store.models import DraftState, Finding, FindingStatus, Series, utcnow
from bot.store.status import daemon_status
from bot.web.auth import readable
from bot.web.context import state
from bot.web.inbox import parse_filter
from bot.web.render import lore_link

bp = Blueprint("api", __name__, url_prefix="/api")

LIMIT = 500


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def series_json(row: Series) -> dict[str, Any]:
    return {"message_id": row.message_id, "subject": row.subject, "author": row.author,
            "revision": row.revision, "total": row.total, "missing": list(row.missing),
            "date": _iso(row.date), "lineage": row.lineage,
            "base": {"source": row.base_source, "commit": row.base_commit,
                     "version": row.base_version, "detail": row.base_detail},
            "lore": lore_link(state().cfg.lore.url, row.message_id)}


def finding_json(f: Finding) -> dict[str, Any]:
    return {"id": f.id, "series": f.series.message_id, "revision": f.series.revision,
            "patch": f.patch_index, "rule": f.rule, "category": str(f.category),
            "severity": str(f.severity), "file": f.file, "line": f.line,
            "register": f.register, "fields": list(f.fields), "function": f.function,
            "message": f.message, "evidence": f.evidence, "status": str(f.status),
            "revision_status": str(f.revision_status) if f.revision_status else None,
            "first_seen": f.first_seen, "fingerprint": f.fingerprint}


def draft_json(v: workflow.DraftView) -> dict[str, Any]:
    out = {"id": v.id, "state": str(v.state), "series": v.series_message_id,
           "revision": v.revision, "patch": v.patch_index, "subject": v.subject,
           "to": list(v.to), "cc": list(v.cc), "in_reply_to": v.in_reply_to,
           "body": v.body, "approved_by": v.approved_by, "approved_at": _iso(v.approved_at),
           "reply_message_id": v.reply_message_id, "superseded_by": v.superseded_by,
           "sent_at": _iso(v.sent_at), "version": v.version}
    if v.events:
        out["history"] = [{"at": _iso(e.at), "actor": e.actor, "action": str(e.action),
                           "state_before": str(e.state_before) if e.state_before else None,
                           "state_after": str(e.state_after) if e.state_after else None,
                           "detail": e.detail} for e in v.events]
    return out


@bp.get("/series")
@readable
def series_list() -> Response:
    f = parse_filter(request.args, state().cfg.web.page_size)
    with state().database.transaction() as s:
        page = q.inbox(s, f)
        return jsonify({"total": page.total, "page": page.page, "pages": page.pages,
                        "counts": page.counts,
                        "series": [dict(series_json(r.series), open_findings=r.open_findings,
                                        open_by_severity=r.open_by_severity,
                                        new_findings=r.new_findings,
                                        drafts_waiting=r.drafts_waiting,
                                        drafts_approved=r.drafts_approved)
                                   for r in page.rows]})


@bp.get("/series/<path:message_id>")
@readable
def series_one(message_id: str) -> Response:
    with state().database.transaction() as s:
        row = q.series_by_message_id(s, message_id)
        if row is None:
            abort(404)
        return jsonify(dict(
            series_json(row),
            revisions=[{"revision": r.revision, "message_id": r.message_id}
                       for r in q.revisions(s, row)],
            findings=[finding_json(f) for f in q.findings_of(s, [row.id])],
            resolved=[finding_json(f) for f in q.resolved_in(s, [row.id])],
            drafts=[draft_json(v) for v in workflow.list_drafts(
                s, series=row.message_id, include_superseded=True)]))


@bp.get("/findings")
@readable
def findings() -> Response | tuple[Response, int]:
    query = select(Finding).join(Series, Series.id == Finding.series_id)
    if request.args.get("series"):
        query = query.where(Series.message_id == request.args["series"])
    if request.args.get("rule"):
        query = query.where(Finding.rule == request.args["rule"])
    wanted = request.args.get("status")
    if wanted:
        try:
            query = query.where(Finding.status == FindingStatus(wanted))
        except ValueError:
            return jsonify({"error": "status: one of %s" % ", ".join(FindingStatus)}), 400
    with state().database.transaction() as s:
        rows = s.scalars(query.order_by(Finding.id.desc()).limit(LIMIT))
        return jsonify({"findings": [finding_json(f) for f in rows]})


@bp.get("/drafts")
@readable
def drafts() -> Response | tuple[Response, int]:
    states = []
    for value in request.args.getlist("state"):
        try:
            states.append(DraftState(value))
        except ValueError:
            return jsonify({"error": "state: one of %s" % ", ".join(DraftState)}), 400
    with state().database.transaction() as s:
        views = workflow.list_drafts(s, states=states, series=request.args.get("series"),
                                     limit=LIMIT)
    return jsonify({"drafts": [draft_json(v) for v in views]})


@bp.get("/drafts/<int:draft_id>")
@readable
def draft(draft_id: int) -> Response:
    with state().database.transaction() as s:
        try:
            view = workflow.show(s, draft_id)
        except NotFound:
            abort(404)
    return jsonify(draft_json(view))


@bp.get("/rules")
@readable
def rules() -> Response:
    with state().database.transaction() as s:
        figures = fq.figures(s)
    out = []
    for spec in REGISTRY:
        fig = figures.get(spec.id)
        out.append({"id": spec.id, "category": str(spec.category),
                    "severity": str(spec.severity), "summary": spec.summary, "doc": spec.doc,
                    "fired": fig.fired if fig else 0, "dismissed": fig.dismissed if fig else 0,
                    "confirmed": fig.confirmed if fig else 0,
                    "precision": fig.precision if fig else None})
    return jsonify({"rules": out})


@bp.get("/status")
@readable
def status() -> Response:
    cfg = state().cfg
    with state().database.transaction() as s:
        row = daemon_status(s)
        cursors = [{"name": c.name, "position": _iso(c.position), "cycles": c.cycles}
                   for c in q.cursors(s)]
        quarantined = q.quarantine_count(s)
    health = row.health(utcnow(), cfg.daemon.stale_after) if row is not None else None
    return jsonify({"healthy": bool(health and health.healthy),
                    "reason": health.reason if health else "no poller has run yet",
                    "status": row.as_dict() if row is not None else None,
                    "cursors": cursors, "quarantined": quarantined})
