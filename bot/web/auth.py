"""Logging in and out, and the guards every view uses: `readable` (a login,
or `web.public_read`) and `acting` (always a login)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from bot.accounts import LoginResult, login
from bot.web.context import state
from bot.workflow import Actor

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another host
    (`//evil`, `/\\evil`, `https://evil` and control characters are refused)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def actor() -> Actor:
    user: Actor | None = g.get("user")
    if user is None:
        abort(403)
    return user


def readable(view: F) -> F:
    """A page or API call: anonymous visitors only when web.public_read."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None and not state().cfg.web.public_read:
            if request.path.startswith("/api/"):
                return jsonify({"error": "login required"}), 401
            return redirect(url_for("auth.login_form", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return cast(F, wrapper)


def acting(view: F) -> F:
    """An action: a logged-in maintainer, always."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            if request.path.startswith("/api/"):
                return jsonify({"error": "login required"}), 401
            return redirect(url_for("auth.login_form"), code=303)
        return view(*args, **kwargs)
    return cast(F, wrapper)


@bp.get("/login")
def login_form() -> str:
    return render_template("login.html", title="Log in",
                           next=safe_next(request.args.get("next")), email="")


_MESSAGES = {
    LoginResult.REFUSED: "Wrong address or password.",
    LoginResult.DISABLED: "This account is disabled.",
    LoginResult.LIMITED: "Too many failed logins: wait a while and try again.",
}


@bp.post("/login")
def login_post() -> Response | tuple[str, int]:
    email = request.form.get("email", "")[:512]
    password = request.form.get("password", "")[:4096]
    target = safe_next(request.form.get("next"))
    address = request.remote_addr or "?"
    with state().database.transaction() as s:
        result = login(s, state().cfg.web, email=email, password=password, address=address)
        user = result.user
        if user is not None:
            uid, epoch = user.id, user.session_epoch
    if result.result is not LoginResult.OK:
        logger.info("login for %r from %s: %s", email, address, result.result)
        code = 429 if result.result is LoginResult.LIMITED else 403
        flash(_MESSAGES[result.result], "error")
        return render_template("login.html", title="Log in", next=target, email=email), code
    session.clear()
    session["uid"], session["epoch"] = uid, epoch
    session.permanent = True
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login_form"), code=303)
