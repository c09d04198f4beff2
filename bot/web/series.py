"""A series: its revisions and what changed between them, each patch's diff
with the findings at their lines, trailers, base, drafts; and the actions
on a finding (dismiss as false with a reason, confirm)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from bot import feedback
from bot.errors import BadInput, NotFound
from bot.store import dashboard as q
from bot.store import feedback as fq
from bot.store.models import Finding, FindingStatus, Series
from bot.web.auth import acting, actor, readable
from bot.web.context import state
from bot.web.render import patch_view
from bot.workflow import list_drafts

bp = Blueprint("series", __name__)


def comparison(session: Session, revs: list[Series]) -> dict[int, dict[str, int]]:
    """Per revision: findings new, still present, and resolved (of the
    revision before) in it."""
    ids = [r.id for r in revs]
    out: dict[int, dict[str, int]] = {i: {"new": 0, "still-present": 0, "resolved": 0,
                                           "open": 0} for i in ids}
    for f in q.findings_of(session, ids):
        if f.status is FindingStatus.PRE_EXISTING:
            continue
        if f.status is FindingStatus.OPEN:
            out[f.series_id]["open"] += 1
        if f.status is not FindingStatus.DISMISSED:
            out[f.series_id][str(f.revision_status or "new")] += 1
    for f in q.resolved_in(session, ids):
        if f.resolved_in_id in out:
            out[f.resolved_in_id]["resolved"] += 1
    return out


def series_context(session: Session, row: Series) -> dict[str, Any]:
    revs = q.revisions(session, row)
    findings = q.findings_of(session, [row.id])
    patches = q.patches_of(session, row)
    trailers = q.trailers_of(session, [p.id for p, _ in patches])
    by_patch: dict[int, list[Finding]] = {}
    for f in findings:
        by_patch.setdefault(f.patch_index, []).append(f)
    views = [patch_view(p.index, p.subject, m, by_patch.pop(p.index, [])) for p, m in patches]
    orphans = [f for fs in by_patch.values() for f in fs]  # the cover letter's, or a lost patch's
    verdicts = fq.for_findings(session, [f.id for f in findings])
    reasons = {}
    for f in findings:
        if f.status is FindingStatus.DISMISSED:
            last = fq.latest_for(session, row.lineage, f.fingerprint)
            if last is not None:
                reasons[f.id] = last
    cover = q.message(session, row.cover_id)
    return {"series": row, "revisions": revs, "compared": comparison(session, revs),
            "patches": views, "orphans": orphans, "trailers": {p.index: trailers.get(p.id, [])
                                                              for p, _ in patches},
            "resolved": q.resolved_in(session, [row.id]), "verdicts": verdicts,
            "reasons": reasons, "cover": cover,
            "severities": Counter(str(f.severity) for f in findings
                                  if f.status is FindingStatus.OPEN),
            "drafts": list_drafts(session, series=row.message_id, include_superseded=True),
            "lore": state().cfg.lore.url}


@bp.get("/series/<path:message_id>")
@readable
def show(message_id: str) -> str:
    with state().database.transaction() as s:
        row = q.series_by_message_id(s, message_id)
        if row is None:
            abort(404)
        return render_template("series.html", title=row.subject, **series_context(s, row))


def _back(finding_id: int, message_id: str | None) -> Response:
    if message_id is None:
        return redirect(url_for("inbox.index"), code=303)
    return redirect(url_for("series.show", message_id=message_id) + "#finding-%d" % finding_id,
                    code=303)


def _series_of(finding_id: int) -> str | None:
    with state().database.transaction() as s:
        f = q.finding(s, finding_id)
        return f.series.message_id if f is not None else None


@bp.post("/findings/<int:finding_id>/dismiss")
@acting
def dismiss(finding_id: int) -> Response:
    who = actor()
    message_id = _series_of(finding_id)
    if message_id is None:
        abort(404)
    try:
        with state().database.transaction() as s:
            marked = feedback.dismiss(s, who, finding_id, request.form.get("reason", ""))
        flash("Finding dismissed (%d stored revision%s); it will not be drafted again."
              % (len(marked), "" if len(marked) == 1 else "s"), "ok")
    except (BadInput, NotFound) as exc:
        flash(str(exc), "error")
    return _back(finding_id, message_id)


@bp.post("/findings/<int:finding_id>/confirm")
@acting
def confirm(finding_id: int) -> Response:
    who = actor()
    message_id = _series_of(finding_id)
    if message_id is None:
        abort(404)
    try:
        with state().database.transaction() as s:
            feedback.confirm(s, who, finding_id)
        flash("Finding confirmed.", "ok")
    except (BadInput, NotFound) as exc:
        flash(str(exc), "error")
    return _back(finding_id, message_id)
