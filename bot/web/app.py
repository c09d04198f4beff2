"""The dashboard's Flask application: built by `create_app` from the one
config object, with its security settings in one place.

- The secret key signing session cookies comes from `web.secret_key` (an
  environment variable); without it the app refuses to start unless
  `web.development` is set, when a random key is made per start.
- Session cookies are HttpOnly and SameSite=Lax, and Secure when
  `web.secure_cookies`; a session names the account and its session epoch,
  so a changed password or a disabled account ends older sessions.
- Every POST carries a CSRF token (Flask-WTF's CSRFProtect).
- Every response carries a Content-Security-Policy without inline script
  or style, and Jinja autoescapes every template: mail-derived text is
  text.
- Reading needs a login unless `web.public_read`; acting always does.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, render_template, request, session
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import FileSystemLoader, StrictUndefined

from bot.config import Config
from bot.errors import ConfigError
from bot.store import accounts
from bot.store.db import Database
from bot.web.context import BotState, state
from bot.workflow import Actor

logger = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MIN_SECRET = 16


def _template_dir() -> str:
    try:
        return str(importlib.resources.files("bot.templates") / "web")
    except ModuleNotFoundError:  # a source tree that is not installed
        return str(Path(__file__).resolve().parents[2] / "templates" / "web")


def secret_key(cfg: Config) -> str:
    secret = cfg.web.secret_key
    value = secret.value if secret is not None else None
    if value is None:
        if cfg.web.development:
            logger.warning("web.secret_key is not set: a random key for this run "
                           "(web.development); sessions end when the dashboard restarts")
            return secrets.token_hex(32)
        raise ConfigError("%s: web.secret_key: set $%s to a long random string (or "
                          "web.development = true on a laptop)" % (
                              cfg.source, secret.env if secret else "BOT_WEB_SECRET_KEY"))
    if len(value) < MIN_SECRET:
        raise ConfigError("%s: web.secret_key: $%s is shorter than %d characters"
                          % (cfg.source, secret.env if secret else "?", MIN_SECRET))
    return value


class _SafeJSON(DefaultJSONProvider):
    """JSON whose strings cannot close a <script> or open a tag when some
    client pastes them into HTML."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        text = json.dumps(obj, default=self.default, ensure_ascii=False,
                          sort_keys=False, **kwargs)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def create_app(cfg: Config, database: Database | None = None) -> Flask:
    app = Flask(__name__, static_folder="static", template_folder=_template_dir())
    app.json = _SafeJSON(app)
    app.config.update(
        SECRET_KEY=secret_key(cfg),
        SESSION_COOKIE_NAME="kvmbot_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(days=14),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.jinja_env.loader = FileSystemLoader(_template_dir())
    app.jinja_env.undefined = StrictUndefined
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.extensions["bot"] = BotState(cfg=cfg, database=database or Database(cfg))
    # Before the CSRF check: a refused form's page still knows who is logged in.
    app.before_request(_load_user)
    CSRFProtect(app)

    from bot.web import admin, api, auth, drafts, inbox, series
    for module in (auth, inbox, series, drafts, admin, api):
        app.register_blueprint(module.bp)
    from bot.web.render import register_filters
    register_filters(app)

    app.after_request(_headers)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        return render_template("error.html", title="Form refused",
                               message="The form's CSRF token is missing or wrong: reload the "
                               "page and try again."), 400

    @app.errorhandler(404)
    def _missing(exc: Exception) -> tuple[str, int]:
        return render_template("error.html", title="Not found",
                               message="Nothing here."), 404

    return app


def _load_user() -> None:
    g.user = None
    user_id, epoch = session.get("uid"), session.get("epoch")
    if not isinstance(user_id, int) or not isinstance(epoch, int):
        return
    with state().database.transaction() as s:
        user = accounts.get(s, user_id)
        if user is None or user.disabled or user.session_epoch != epoch:
            session.clear()
            return
        g.user = Actor(name=user.name, email=user.email)
        g.user_id = user.id


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.path.startswith("/api/") or g.get("user") is not None:
        response.headers["Cache-Control"] = "no-store"
    return response
