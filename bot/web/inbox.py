"""The inbox: series needing attention, filtered, searched and paginated."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from werkzeug.datastructures import MultiDict

from bot.data import Category, Severity
from bot.store import dashboard as q
from bot.web.auth import readable
from bot.web.context import state

bp = Blueprint("inbox", __name__)


def _choice(value: str | None, enum: Any) -> Any:
    try:
        return enum(value) if value else None
    except ValueError:
        return None


def parse_filter(args: MultiDict[str, str], page_size: int) -> q.InboxFilter:
    """The inbox filter from query arguments; a value that is not one of the
    choices is ignored, not an error."""
    try:
        page = int(args.get("page", "1"))
    except ValueError:
        page = 1
    return q.InboxFilter(
        state=_choice(args.get("state"), q.InboxState) or q.InboxState.ATTENTION,
        list_id=args.get("list", "")[:255].strip(), author=args.get("author", "")[:255].strip(),
        category=_choice(args.get("category"), Category),
        severity=_choice(args.get("severity"), Severity),
        search=args.get("q", "")[:998].strip(), page=max(1, min(page, 1_000_000)),
        page_size=page_size)


def filter_args(f: q.InboxFilter) -> dict[str, str]:
    """The filter as query arguments (for links to other pages of it)."""
    out = {"state": str(f.state), "list": f.list_id, "author": f.author,
           "category": str(f.category or ""), "severity": str(f.severity or ""), "q": f.search}
    return {k: v for k, v in out.items() if v}


@bp.get("/")
@readable
def index() -> str:
    f = parse_filter(request.args, state().cfg.web.page_size)
    with state().database.transaction() as s:
        page = q.inbox(s, f)
        lists = q.list_ids(s)
        return render_template("inbox.html", title="Inbox", page=page, f=f, lists=lists,
                               args=filter_args(f), states=list(q.InboxState),
                               categories=list(Category), severities=list(Severity))
