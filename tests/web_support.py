"""Helpers for the dashboard tests: a real database filled by the real
pipeline from fixture threads (as `bot check --store` does), accounts, and
a Flask test client that logs in through the login form with its CSRF
token."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from bot import accounts
from bot import config as botconfig
from bot.check import run_check
from bot.store.db import Database
from bot.web import create_app

DATA = Path(__file__).parent / "data"
THREADS = DATA / "threads"
REVISIONS = DATA / "revisions"
PASSWORD = "correct horse battery staple"
SECRET = "s3cret-key-for-the-dashboard-tests-only"
XSS = '<script>alert("xss")</script><img src=x onerror=alert(2)>'
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def web_config(cfg: botconfig.Config, **web: Any) -> botconfig.Config:
    """`cfg` with a secret key and the given web.* settings."""
    values: dict[str, Any] = {"secret_key": botconfig.Secret(env="BOT_WEB_SECRET_KEY",
                                                             value=SECRET)}
    values.update(web)
    return dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, **values))


def store(cfg: botconfig.Config, *paths: Path | str) -> dict[str, Any]:
    """`bot check --store --format json` over the paths; its JSON output."""
    import json
    out = io.StringIO()
    run_check(cfg, [str(p) for p in paths], out=out, fmt="json", fail_on="never", store=True)
    return dict(json.loads(out.getvalue()))


def add_user(cfg: botconfig.Config, email: str, name: str = "Marc Maint",
             password: str = PASSWORD) -> None:
    database = Database(cfg)
    try:
        with database.transaction() as s:
            accounts.add(s, email=email, name=name, password=password)
    finally:
        database.close()


def make_app(cfg: botconfig.Config) -> Flask:
    app = create_app(cfg)
    app.config["TESTING"] = True
    return app


def token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path)
    found = _TOKEN.search(page.get_data(as_text=True))
    assert found, "no CSRF token on %s (%d)" % (path, page.status_code)
    return found.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str) -> Any:
    data = {"email": email, "password": password, "csrf_token": token(client)}
    data.update(extra)
    return client.post("/login", data=data)


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None,
         page: str = "/") -> Any:
    """A form POST with the CSRF token of the session (read from `page`)."""
    form = {"csrf_token": token(client, page)}
    form.update(data or {})
    return client.post(path, data=form)


def xss_thread(tmp_path: Path) -> Path:
    """A real patch mail whose subject carries markup and script."""
    raw = (DATA / "labelled" / "problem-width-genmask-hcr-imm.mbox").read_text()
    head, sep, rest = raw.partition("\nSubject: ")
    line, _, tail = rest.partition("\n")
    path = tmp_path / "xss.mbox"
    path.write_text(head + sep + line.rstrip() + " " + XSS + "\n" + tail)
    return path
