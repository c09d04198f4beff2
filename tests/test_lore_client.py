"""The lore client: politeness, retries, caps and errors; and `bot check`
with a Message-ID or a lore URL against a real public-inbox.

public-inbox never answers 429, 403, an HTML challenge, a slow or truncated
body or a gzip bomb, so those faults come from `FaultServer`, a scripted
HTTP server on 127.0.0.1: a fake, for faults that cannot be caused for real.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import threading
import time
import tracemalloc
import urllib.request
from collections import deque
from collections.abc import Callable

import pytest

from bot import __version__, cli
from bot.config import LoreConfig
from bot.errors import BadInput, NotFound, Transient
from bot.lore.client import LoreClient, Stopped, split_message_url
from tests.conftest import DATA
from tests.pi import free_port, public_inbox  # noqa: F401  (the module's server)

MBOX = (b"From mboxrd@z Thu Jan  1 00:00:00 1970\nMessage-ID: <a@b>\nSubject: x\n\nbody\n")
Reply = Callable[[http.server.BaseHTTPRequestHandler], None]


def answer(status: int = 200, body: bytes = b"", *, ctype: str = "application/gzip",
           headers: dict[str, str] | None = None, delay: float = 0.0) -> Reply:
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        if delay:
            time.sleep(delay)
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout test)
    return reply


def streamed(body: bytes, *, length: int | None = None, cut: bool = False) -> Reply:
    """A body sent in chunks; `length` announces a Content-Length, `cut`
    drops the connection after half of the body."""
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/gzip")
        handler.send_header("Content-Length", str(length if length is not None else len(body)))
        handler.end_headers()
        data = body[:len(body) // 2] if cut else body
        try:
            for start in range(0, len(data), 1 << 16):
                handler.wfile.write(data[start:start + (1 << 16)])
                handler.server.sent += min(1 << 16, len(data) - start)  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):
            handler.server.aborted = True  # type: ignore[attr-defined]
        handler.close_connection = True
    return reply


class FaultServer:
    """Answers each request with the next scripted reply, recording requests."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = deque(replies)
        self.seen: list[tuple[float, str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((time.monotonic(), self.command, self.path,
                                   dict(self.headers)))
                outer.replies.popleft()(self)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.sent = 0  # type: ignore[attr-defined]
        self.httpd.aborted = False  # type: ignore[attr-defined]
        self.url = "http://127.0.0.1:%d/all" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fault():
    servers: list[FaultServer] = []

    def start(*replies: Reply) -> FaultServer:
        servers.append(FaultServer(*replies))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def client(url: str, **lore) -> LoreClient:
    settings = dict(url=url, min_interval=0.0, retries=2, backoff=0.01, connect_timeout=2.0,
                    read_timeout=2.0, max_response_bytes=1 << 20)
    settings.update(lore)
    return LoreClient(LoreConfig(**settings))


def test_user_agent_names_the_bot_and_requests_keep_their_distance(fault):
    server = fault(answer(body=gzip.compress(MBOX)), answer(body=gzip.compress(MBOX)))
    with client(server.url, min_interval=0.3, contact="maintainer@localhost") as c:
        assert c.search("dfn:x").read() == MBOX
        assert c.thread("a@b").read() == MBOX
    (t1, m1, p1, h1), (t2, m2, p2, _) = server.seen
    assert h1["User-Agent"] == "kvm-sysreg-review-bot/%s (+maintainer@localhost)" % __version__
    assert (m1, p1) == ("POST", "/all/?q=dfn%3Ax&x=m") and (m2, p2) == ("GET", "/all/a@b/t.mbox.gz")
    assert t2 - t1 >= 0.3


def test_5xx_is_retried_with_backoff_then_succeeds(fault):
    server = fault(answer(503), answer(502), answer(body=gzip.compress(MBOX)))
    with client(server.url) as c:
        assert c.search("x").read() == MBOX
        assert c.requests_sent == 3


def test_retry_after_is_honoured(fault):
    server = fault(answer(429, headers={"Retry-After": "1"}), answer(body=gzip.compress(MBOX)))
    with client(server.url) as c:
        assert c.search("x").read() == MBOX
    assert server.seen[1][0] - server.seen[0][0] >= 1.0


def test_exhausted_retries_and_long_retry_after_are_transient(fault):
    server = fault(answer(503), answer(503), answer(503))
    with client(server.url) as c, pytest.raises(Transient, match=r"HTTP 503 \(after 3 attempts\)"):
        c.search("x")
    server = fault(answer(429, headers={"Retry-After": "3600"}))
    with client(server.url) as c, pytest.raises(Transient, match="retry after 3600 s"):
        c.search("x")
    assert len(server.seen) == 1


def test_403_and_an_html_challenge_are_clear_transient_errors(fault):
    page = b"<!DOCTYPE html><html><body>Making sure you're not a bot!</body></html>"
    server = fault(answer(403, b"Forbidden", ctype="text/plain"),
                   answer(200, page, ctype="text/html; charset=utf-8"))
    with client(server.url) as c:
        with pytest.raises(Transient, match=r"refused the request \(HTTP 403\)"):
            c.search("x")
        with pytest.raises(Transient, match="HTML page instead of an mbox"):
            c.thread("a@b")
    assert len(server.seen) == 2  # neither is retried at once


def test_timeouts_and_truncated_answers_are_retried(fault):
    body = gzip.compress(MBOX * 200)
    server = fault(answer(body=gzip.compress(MBOX), delay=1.0), streamed(body, cut=True),
                   answer(body=body))
    with client(server.url, read_timeout=0.3) as c:
        assert c.search("x").read() == MBOX * 200
        assert c.requests_sent == 3


def test_not_found(fault):
    server = fault(answer(404, b"No results found", ctype="text/plain"),
                   answer(404, b"Not Found", ctype="text/plain"))
    with client(server.url) as c:
        assert c.search("x") is None
        with pytest.raises(NotFound, match="message a@b not found"):
            c.thread("a@b")


def test_an_answer_past_the_cap_is_refused_without_reading_it(fault):
    # Incompressible: the compressed stream itself passes the 1 MiB cap.
    big = gzip.compress(os.urandom(16 << 20), compresslevel=0)
    server = fault(streamed(big))
    with client(server.url) as c:
        with pytest.raises(BadInput, match="larger than lore.max_response_bytes"):
            c.search("x")
    assert server.httpd.sent < len(big) // 2  # type: ignore[attr-defined]


def test_an_announced_length_past_the_cap_is_refused_before_reading(fault):
    server = fault(streamed(b"\x1f\x8b" + b"\0" * 100, length=2 << 20))
    with client(server.url) as c, pytest.raises(BadInput, match="max_response_bytes"):
        c.thread("a@b")


def test_a_gzip_bomb_is_refused_in_bounded_memory(fault):
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB inflated, ~64 kB on the wire
    server = fault(answer(body=bomb))
    tracemalloc.start()
    try:
        with client(server.url) as c, pytest.raises(BadInput, match="max_response_bytes"):
            c.search("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_gzip_members_and_a_second_encoding_are_inflated(fault):
    two = gzip.compress(MBOX) + gzip.compress(MBOX.replace(b"a@b", b"c@d"))
    server = fault(answer(body=two),
                   answer(body=gzip.compress(gzip.compress(MBOX)),
                          headers={"Content-Encoding": "gzip"}))
    with client(server.url) as c:
        assert c.search("x").read() == MBOX + MBOX.replace(b"a@b", b"c@d")
        assert c.thread("a@b").read() == MBOX


def test_connection_refused_is_transient_and_a_stop_interrupts_waiting():
    url = "http://127.0.0.1:%d/all" % free_port()
    with client(url) as c, pytest.raises(Transient, match="unavailable: search: connection "
                                         "refused \\(after 3 attempts\\)"):
        c.search("x")
    stop = threading.Event()
    stop.set()
    with LoreClient(LoreConfig(url=url), stop=stop) as c, pytest.raises(Stopped):
        c.search("x")


@pytest.mark.parametrize("url, base, msgid", [
    ("https://lore.kernel.org/all/20200425094321.162752-1-maz@kernel.org/",
     "https://lore.kernel.org/all", "20200425094321.162752-1-maz@kernel.org"),
    ("https://lore.kernel.org/kvmarm/20200425094321.162752-1-maz@kernel.org/T/#u",
     "https://lore.kernel.org/kvmarm", "20200425094321.162752-1-maz@kernel.org"),
    ("http://127.0.0.1:8080/all/a%2Fb@c/raw", "http://127.0.0.1:8080/all", "a/b@c"),
])
def test_split_message_url(url, base, msgid):
    assert split_message_url(url) == (base, msgid)


@pytest.mark.parametrize("url", ["https://lore.kernel.org/all/", "ftp://x/y@z/"])
def test_split_message_url_refuses_other_urls(url):
    with pytest.raises(BadInput):
        split_message_url(url)


ACTLR = "20200529150656.7339-1-james.morse@arm.com"


@pytest.fixture(scope="module")
def check_inbox(public_inbox):
    inbox = public_inbox.create()
    inbox.deliver(DATA / "threads" / "series-complete-v2.mbox")
    return inbox


@pytest.fixture
def check_env(check_inbox, monkeypatch, tmp_path):
    inbox = check_inbox
    monkeypatch.setenv("BOT_CONFIG", str(DATA / "config" / "test.toml"))
    monkeypatch.setenv("BOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BOT_LORE_URL", inbox.url)
    return inbox


@pytest.mark.parametrize("form", ["msgid", "<msgid>", "url"])
def test_check_fetches_the_thread_of_a_message_id_or_url(check_env, capsys, form):
    source = {"msgid": ACTLR, "<msgid>": "<%s>" % ACTLR,
              "url": "%s/20200529150656.7339-3-james.morse@arm.com/T/#u" % check_env.url}[form]
    assert cli.main(["check", "--format", "json", "--fail-on", "never", source]) == 0
    doc = json.loads(capsys.readouterr().out)
    [series] = doc["series"]
    assert (series["message_id"], series["revision"]) == (ACTLR, 2)
    assert [p["index"] for p in series["patches"]] == [1, 2, 3]


def test_check_of_an_unknown_message_or_a_stopped_archive(check_env, capsys, monkeypatch):
    assert cli.main(["check", "nobody@127.0.0.1"]) == 2
    assert "message nobody@127.0.0.1 not found" in capsys.readouterr().err
    monkeypatch.setenv("BOT_LORE_URL", "http://127.0.0.1:%d/all" % free_port())
    assert cli.main(["check", ACTLR]) == 3
    assert "unavailable" in capsys.readouterr().err


PULL = "20201112222139.466204-%d-maz@kernel.org"
CSV2_V1 = "20201103171445.271195-%d-maz@kernel.org"


@pytest.mark.parametrize("asked", [PULL % 2, CSV2_V1 % 2])
def test_check_reviews_only_the_thread_asked_for_not_what_shares_its_subject(
        public_inbox, monkeypatch, tmp_path, capsys, asked):
    """public-inbox threads by subject as well as References: the 5.10 fixes
    pull re-posts csv2 v1's 1/3 under its subject, so the thread of either
    1/3 comes back with the other 1/3 and its replies. Only the References
    thread of the message asked for is reviewed: its series, whole, and no
    one-patch series of the other thread."""
    inbox = public_inbox.create()
    inbox.deliver(*(DATA / "poll" / name for name in (
        "csv2-v1.mbox", "csv2-fixes-5.10-take3.mbox")))
    other = (CSV2_V1 if asked == PULL % 2 else PULL) % 2
    with urllib.request.urlopen("%s/%s/t.mbox.gz" % (inbox.url, asked)) as answer:
        assert other.encode() in gzip.decompress(answer.read())  # the archive merges them
    monkeypatch.setenv("BOT_CONFIG", str(DATA / "config" / "test.toml"))
    monkeypatch.setenv("BOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BOT_LORE_URL", inbox.url)
    assert cli.main(["check", "--format", "json", "--fail-on", "never", asked]) == 0
    doc = json.loads(capsys.readouterr().out)
    root = (CSV2_V1 if asked == CSV2_V1 % 2 else PULL) % 1
    assert [(s["message_id"], [p["index"] for p in s["patches"]]) for s in doc["series"]] == [
        (root, [1, 2, 3])]


def test_check_mixes_local_files_and_fetched_threads(check_env, capsys):
    assert cli.main(["check", "--format", "json", "--fail-on", "never",
                     str(DATA / "poll" / "sp-el0-v1.mbox"), ACTLR]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {s["message_id"] for s in doc["series"]} == {
        ACTLR, "20200425094321.162752-1-maz@kernel.org"}



def test_a_404_that_is_not_no_results_names_the_configuration(fault):
    server = fault(answer(404, b"Not Found", ctype="text/plain"))
    with client(server.url) as c, pytest.raises(NotFound, match="check lore.url"):
        c.search("x")
