"""The dashboard's security, through Flask's test client on a real SQLite
database: logins and their rate limit, sessions, CSRF, redirects, headers,
anonymous access, and mail-derived markup rendered as text everywhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from bot.store.db import Database
from bot.store.models import Draft, DraftState
from bot.web.auth import safe_next
from tests.conftest import DATA, make_config
from tests.web_support import (
    PASSWORD,
    THREADS,
    XSS,
    add_user,
    login,
    make_app,
    post,
    store,
    token,
    web_config,
    xss_thread,
)

MAINT = "maint@example.org"


@pytest.fixture
def cfg(tmp_path, sqlite_url):
    from bot.store import db
    base = make_config(tmp_path, BOT_DATABASE_URL=sqlite_url)
    engine = db.make_engine(base)
    db.upgrade(engine)
    engine.dispose()
    cfg = web_config(base)
    add_user(cfg, MAINT)
    store(cfg, THREADS / "polarity-drop-fb-thread.mbox", xss_thread(tmp_path))
    return cfg


def _draft(cfg) -> Draft:
    database = Database(cfg)
    try:
        with database.transaction() as s:
            return s.scalars(select(Draft).order_by(Draft.id)).first()
    finally:
        database.close()


def test_anonymous_reads_nothing_unless_public_read(cfg):
    client = make_app(cfg).test_client()
    for path in ("/", "/rules", "/status", "/drafts/1"):
        r = client.get(path)
        assert r.status_code == 302 and r.location.startswith("/login?next="), path
    r = client.get("/api/series")
    assert r.status_code == 401 and r.json == {"error": "login required"}
    assert client.get("/healthz").status_code == 200
    public = make_app(web_config(cfg, public_read=True)).test_client()
    assert public.get("/").status_code == 200
    assert public.get("/api/series?state=all").status_code == 200
    assert "Log in" in public.get("/drafts/%d" % _draft(cfg).id).get_data(as_text=True)


@pytest.mark.parametrize("public", [False, True])
def test_anonymous_posts_change_nothing(cfg, public):
    app = make_app(web_config(cfg, public_read=public))
    client = app.test_client()
    d = _draft(cfg)
    for action in ("edit", "approve", "discard", "send"):
        r = post(client, "/drafts/%d/%s" % (d.id, action), {"body": "hijacked\n",
                                                             "version": str(d.version)},
                 page="/login")
        assert r.status_code == 303 and r.location == "/login", action
    r = post(client, "/findings/1/dismiss", {"reason": "x"}, page="/login")
    assert r.status_code == 303 and r.location == "/login"
    after = _draft(cfg)
    assert (after.state, after.body, after.version) == (d.state, d.body, d.version)


def test_login_logout_and_the_next_page(cfg):
    client = make_app(cfg).test_client()
    r = login(client, MAINT, next="/rules")
    assert r.status_code == 303 and r.location == "/rules"
    assert "Marc Maint" in client.get("/rules").get_data(as_text=True)
    r = post(client, "/logout", page="/rules")
    assert r.status_code == 303
    assert client.get("/rules").status_code == 302


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "http:/evil.example",
    "javascript:alert(1)", "/%0d%0aLocation:%20http://evil", "\t//evil.example",
    "evil.example", "/\t/evil.example"])
def test_no_redirect_to_another_host_after_login(cfg, target):
    assert safe_next(target) in ("/", target) and not safe_next(target).startswith("//")
    client = make_app(cfg).test_client()
    r = login(client, MAINT, next=target)
    assert r.status_code == 303
    assert "evil" not in r.location.split("?")[0].replace("/%0d%0aLocation:%20http://evil", "")
    assert r.location.startswith("/") and not r.location.startswith("//")


def test_wrong_password_and_unknown_account_look_the_same(cfg):
    client = make_app(cfg).test_client()
    a = login(client, MAINT, "wrong password!!")
    b = login(client, "nobody@example.org", "wrong password!!")
    assert a.status_code == b.status_code == 403
    assert "Wrong address or password." in a.get_data(as_text=True)
    assert "Wrong address or password." in b.get_data(as_text=True)


def test_login_rate_limited_per_account_and_per_address(cfg):
    limited = web_config(cfg, login_attempts=3)
    client = make_app(limited).test_client()
    for _ in range(3):
        assert login(client, MAINT, "wrong password!!").status_code == 403
    # The right password no longer helps: it is not even checked.
    r = login(client, MAINT)
    assert r.status_code == 429 and "Too many failed logins" in r.get_data(as_text=True)
    # Per address: another account from the same address is refused too.
    add_user(limited, "other@example.org")
    assert login(client, "other@example.org").status_code == 429
    # From another address the account is still limited (per account).
    other_env = make_app(limited).test_client()
    other_env.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    assert login(other_env, MAINT).status_code == 429
    assert login(other_env, "other@example.org").status_code == 303


def test_disabled_account_cannot_log_in_and_its_session_ends(cfg, tmp_path):
    client = make_app(cfg).test_client()
    assert login(client, MAINT).status_code == 303
    assert client.get("/").status_code == 200
    proc = _cli(cfg, tmp_path, "user", "disable", MAINT)
    assert proc.returncode == 0, proc.stderr
    assert client.get("/").status_code == 302  # the open session ended
    r = login(make_app(cfg).test_client(), MAINT)
    assert r.status_code == 403 and "disabled" in r.get_data(as_text=True)
    # A new password enables it again.
    proc = _cli(cfg, tmp_path, "user", "passwd", MAINT, stdin="a new password here\n")
    assert proc.returncode == 0, proc.stderr
    assert login(make_app(cfg).test_client(), MAINT, "a new password here").status_code == 303


def test_a_password_change_ends_other_sessions(cfg, tmp_path):
    client = make_app(cfg).test_client()
    assert login(client, MAINT).status_code == 303
    assert _cli(cfg, tmp_path, "user", "passwd", MAINT,
                stdin="another password 1\n").returncode == 0
    assert client.get("/").status_code == 302


def test_another_users_session_cannot_be_forged(cfg):
    """A session names its account and is signed: a cookie from another
    app (another key), or one edited to name another account, is no login."""
    add_user(cfg, "victim@example.org", name="Victim")
    mine = make_app(cfg).test_client()
    assert login(mine, MAINT).status_code == 303
    cookie = mine.get_cookie("kvmbot_session")
    assert cookie is not None
    # The same cookie under another secret key: refused.
    other = make_app(web_config(cfg, secret_key=type(cfg.web.secret_key)(
        env="X", value="a-completely-different-secret-key"))).test_client()
    other.set_cookie("kvmbot_session", cookie.value)
    assert other.get("/").status_code == 302
    # Edited to name the victim's account: the signature no longer matches.
    payload = cookie.value
    forged = make_app(cfg).test_client()
    forged.set_cookie("kvmbot_session", payload.replace(payload[2:6], "AAAA"))
    assert forged.get("/").status_code == 302
    # Acting as someone else by a form field does not work either: the
    # history names the session's account.
    d = _draft(cfg)
    r = post(mine, "/drafts/%d/edit" % d.id, {
        "body": d.body + "\nThanks.\n", "subject": d.subject, "to": ", ".join(d.to_addrs),
        "cc": ", ".join(d.cc_addrs), "version": str(d.version), "actor": "victim@example.org",
        "email": "victim@example.org"}, page="/drafts/%d" % d.id)
    assert r.status_code == 303
    page = mine.get("/drafts/%d" % d.id).get_data(as_text=True)
    assert "Marc Maint &lt;maint@example.org&gt;" in page
    assert "victim@example.org" not in page


def test_csrf_token_missing_or_wrong_is_refused(cfg):
    client = make_app(cfg).test_client()
    assert login(client, MAINT).status_code == 303
    d = _draft(cfg)
    for form in ({}, {"csrf_token": "forged"}, {"csrf_token": token(client) + "x"}):
        r = client.post("/drafts/%d/approve" % d.id, data=dict(form, version=str(d.version)))
        assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    r = client.post("/login", data={"email": MAINT, "password": PASSWORD})
    assert r.status_code == 400
    assert _draft(cfg).state is DraftState.DRAFT
    # A token of another session does not do either.
    other = make_app(cfg).test_client()
    stolen = token(other)
    r = client.post("/drafts/%d/approve" % d.id, data={"csrf_token": stolen,
                                                       "version": str(d.version)})
    assert r.status_code == 400
    assert _draft(cfg).state is DraftState.DRAFT


def test_headers_and_cookie_flags(cfg):
    client = make_app(cfg).test_client()
    r = client.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in r.get_data(as_text=True).replace(
        '<script src="/static/app.js" defer></script>', "")
    r = login(client, MAINT)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = make_app(web_config(cfg, secure_cookies=True)).test_client()
    r = login(secure, MAINT)
    assert "; Secure" in r.headers["Set-Cookie"]


def test_markup_in_a_subject_is_text_in_every_view_and_the_api(cfg):
    client = make_app(cfg).test_client()
    assert login(client, MAINT).status_code == 303
    series = client.get("/api/series?state=all&q=onerror").json["series"]
    assert len(series) == 1 and XSS in series[0]["subject"]
    mid = series[0]["message_id"]
    detail = client.get("/api/series/" + mid)
    drafts = detail.json["drafts"]
    assert drafts and XSS in drafts[0]["subject"]
    pages = ["/?state=all", "/?state=all&q=script", "/series/" + mid,
             "/drafts/%d" % drafts[0]["id"], "/rules", "/status"]
    for path in pages:
        text = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in text and "<img src=x" not in text, path
    for path in pages[:4]:
        assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in client.get(
            path).get_data(as_text=True), path
    for path in ("/api/series?state=all", "/api/series/" + mid, "/api/drafts",
                 "/api/drafts/%d" % drafts[0]["id"]):
        raw = client.get(path).get_data(as_text=True)
        assert "<script" not in raw and "<img" not in raw, path
        assert any(XSS in text for text in _strings(json.loads(raw))), path


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_serve_refuses_to_start_without_a_secret_key(tmp_path):
    env = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml")}
    subprocess.run([sys.executable, "-m", "bot", "db", "upgrade"], env=env, check=True,
                   capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "bot", "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "web.secret_key" in proc.stderr
    assert "BOT_WEB_SECRET_KEY" in proc.stderr
    short = dict(env, BOT_WEB_SECRET_KEY="short")
    proc = subprocess.run([sys.executable, "-m", "bot", "serve"], env=short,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "shorter than" in proc.stderr


def _cli(cfg, tmp_path, *args, stdin=""):
    env = {"BOT_STATE_DIR": cfg.state_dir, "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml"), "BOT_DATABASE_URL": cfg.database.url}
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_user_commands(cfg, tmp_path):
    proc = _cli(cfg, tmp_path, "user", "add", "new@example.org", "--name", "New One",
                stdin="long enough password\n")
    assert proc.returncode == 0 and proc.stdout == "account new@example.org added\n"
    proc = _cli(cfg, tmp_path, "user", "add", "new@example.org", stdin="long enough password\n")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "exists" in proc.stderr
    proc = _cli(cfg, tmp_path, "user", "add", "x@example.org", stdin="short\n")
    assert proc.returncode == 2 and "at least 10 characters" in proc.stderr
    proc = _cli(cfg, tmp_path, "user", "add", "not an address", stdin="long enough password\n")
    assert proc.returncode == 2 and "not a usable mail address" in proc.stderr
    proc = _cli(cfg, tmp_path, "user", "disable", "ghost@example.org")
    assert proc.returncode == 2 and "no account" in proc.stderr
    proc = _cli(cfg, tmp_path, "user", "list")
    assert proc.stdout.splitlines() == ["maint@example.org  Marc Maint",
                                        "new@example.org  New One"]
    assert re.search(r"argon2", _hash(cfg, "new@example.org"))


def _hash(cfg, email):
    from bot.store import accounts as q
    database = Database(cfg)
    try:
        with database.transaction() as s:
            return q.by_email(s, email).password_hash
    finally:
        database.close()


def test_serve_on_a_port_in_use_or_no_port_is_one_line_exit_2(tmp_path):
    import socket
    env = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
           "BOT_CONFIG": str(DATA / "config" / "test.toml"), "BOT_WEB_SECRET_KEY": "k" * 32}
    subprocess.run([sys.executable, "-m", "bot", "db", "upgrade"], env=env, check=True,
                   capture_output=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "bot", "serve", "--port", str(port)],
                              env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "bot: error: cannot listen on 127.0.0.1:%d: Address already in use\n" \
        % port
    proc = subprocess.run([sys.executable, "-m", "bot", "serve", "--port", "70000"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr == "bot: error: --port 70000: not a TCP port\n"
