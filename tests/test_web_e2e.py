"""The dashboard end to end in a real browser: Playwright driving Debian's
Chromium (/usr/bin/chromium, never a downloaded browser) against `bot
serve` on 127.0.0.1, over a database filled by `bot check --store` from
real threads. Screenshots of each main view at laptop (1366x768) and phone
(390x844) width go to var/screenshots/.

In CI (CI=true) a missing Chromium or Playwright fails these tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DATA, in_ci
from tests.pi import free_port
from tests.test_rereview import C_V1, C_V2, CONSTRUCTED, split
from tests.web_support import PASSWORD, SECRET, THREADS, XSS, xss_thread

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "var" / "screenshots"
MAINT = "maint@example.org"
SIZES = ((1366, 768), (390, 844))


def _chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium"
                                         if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        why = "Debian's chromium is not installed (.ci/system-deps installs it)"
        if in_ci():
            pytest.fail(why)
        pytest.skip(why)
    return found


class Served:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp),
                    "BOT_CONFIG": str(DATA / "config" / "test.toml"),
                    "BOT_STATE_DIR": str(tmp / "state"), "BOT_WEB_SECRET_KEY": SECRET}
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc: subprocess.Popen[str] | None = None

    def bot(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "bot", *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=600, cwd=self.tmp)
        assert proc.returncode in (0, 1), proc.stderr
        return proc

    def start(self) -> None:
        self.log = open(self.tmp / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port",
             str(self.port)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            text=True, cwd=self.tmp)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert self.proc.poll() is None, (self.tmp / "serve.log").read_text()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("bot serve did not answer: %s" % (self.tmp / "serve.log").read_text())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("served")
    s = Served(tmp)
    v1, v2 = split(CONSTRUCTED, tmp)
    s.v2 = v2
    s.bot("db", "upgrade")
    s.bot("check", "--store", "--fail-on", "never", str(THREADS / "polarity-drop-fb-thread.mbox"),
          str(THREADS / "series-complete-v2.mbox"), str(xss_thread(tmp)), str(v1))
    s.bot("user", "add", MAINT, "--name", "Marc Maint", stdin=PASSWORD + "\n")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser(served):  # type: ignore[no-untyped-def]
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        if in_ci():
            pytest.fail("playwright is not installed: %s" % exc)
        pytest.skip("playwright is not installed: %s" % exc)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, served):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    pg.set_default_timeout(20000)
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.dialogs, pg.console_errors = dialogs, errors
    log_in(pg, served)
    yield pg
    assert dialogs == [], "a script ran: %s" % dialogs
    context.close()


def log_in(pg, served) -> None:  # type: ignore[no-untyped-def]
    pg.goto(served.url + "/")
    assert "/login" in pg.url
    pg.fill("input[name=email]", MAINT)
    pg.fill("input[name=password]", PASSWORD)
    pg.click("form.login button[type=submit]")
    pg.wait_for_url(served.url + "/")
    assert pg.inner_text("header .me") == "Marc Maint"


def test_log_in_filter_the_inbox_and_open_a_series_with_the_keyboard(page, served):
    rows = page.locator("table.inbox tr.row")
    everything = rows.count()
    assert everything >= 3
    page.select_option("select[name=severity]", "question")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*severity=question.*"))
    fewer = page.locator("table.inbox tr.row").count()
    assert 1 <= fewer <= everything
    page.fill("input[name=q]", "NO-SUCH-SUBJECT-ANYWHERE")
    page.click("form.filters button[type=submit]")
    assert page.locator("table.inbox tr.row").count() == 0
    page.goto(served.url + "/?state=all&q=" + C_V1)
    assert page.locator("table.inbox tr.row").count() == 1
    page.keyboard.press("j")
    assert "selected" in page.locator("table.inbox tr.row").first.get_attribute("class")
    page.keyboard.press("o")
    page.wait_for_url(re.compile(r".*/series/.*"))
    assert C_V1 in page.url
    # The finding sits right under its line of the diff, its number shown.
    finding = page.locator("tr.inline .finding").first
    assert finding.is_visible()
    fid = finding.get_attribute("id")
    line_row = page.locator("tr.flagged").first
    new_no = line_row.locator("td.no").nth(1).inner_text()
    api = page.request.get(served.url + "/api/findings?series=" + C_V1).json()["findings"]
    (f,) = [x for x in api if "finding-%d" % x["id"] == fid]
    assert str(f["line"]) == new_no
    assert f["message"].split("\n")[0][:40] in finding.inner_text()
    assert page.console_errors == []


def test_edit_and_approve_a_draft(page, served):
    drafts = page.request.get(served.url + "/api/drafts?state=draft").json()["drafts"]
    d = next(x for x in drafts if "onerror" not in x["subject"])
    page.goto(served.url + "/drafts/%d" % d["id"])
    body = page.input_value("textarea[name=body]")
    page.fill("textarea[name=body]", body + "\nThanks for the fix.\n")
    page.click("form.draft button[type=submit]")
    page.wait_for_load_state()
    assert "Draft saved." in page.inner_text(".flash")
    assert "Thanks for the fix." in page.input_value("textarea[name=body]")
    page.click("text=Approve as %s" % MAINT)
    page.wait_for_load_state()
    assert page.inner_text("h1 .pill") == "approved"
    history = page.inner_text("table.history")
    assert "edited" in history and "approved" in history and "Marc Maint" in history
    got = page.request.get(served.url + "/api/drafts/%d" % d["id"]).json()
    assert got["state"] == "approved" and got["body"].endswith("Thanks for the fix.\n")


def _precision(page, served, rule):  # type: ignore[no-untyped-def]
    page.goto(served.url + "/rules")
    return page.inner_text("#rule-%s td.precision" % rule)


def test_dismiss_a_finding_see_it_gone_in_the_next_revision_and_precision_change(page, served):
    api = page.request.get(served.url + "/api/findings?series=" + C_V1).json()["findings"]
    f = next(x for x in api if x["status"] == "open")
    before = _precision(page, served, f["rule"])
    page.goto(served.url + "/series/" + C_V1)
    box = page.locator("#finding-%d" % f["id"])
    box.locator("summary").click()
    box.locator("input[name=reason]").fill("the value is a GENMASK of the field: it fits")
    box.locator("form.dismiss button").click()
    page.wait_for_load_state()
    assert "dismissed" in page.inner_text(".flash")
    after = _precision(page, served, f["rule"])
    assert after != before and int(after.rstrip("%")) < int(before.rstrip("%"))
    served.bot("check", "--store", "--fail-on", "never", str(served.v2))
    page.goto(served.url + "/series/" + C_V2)
    diff_ids = page.locator("tr.inline .finding").evaluate_all("els => els.map(e => e.id)")
    dismissed = page.locator("details.apart.dismissed")
    dismissed.locator("summary").click()
    text = dismissed.inner_text()
    assert f["rule"] in text and "the value is a GENMASK of the field: it fits" in text
    carried = page.request.get(served.url + "/api/findings?series=" + C_V2).json()["findings"]
    (same,) = [x for x in carried if x["fingerprint"] == f["fingerprint"]]
    assert same["status"] == "dismissed" and "finding-%d" % same["id"] not in diff_ids
    drafts = page.request.get(served.url + "/api/series/" + C_V2).json()["drafts"]
    assert all(f["rule"] not in d["body"] or same["message"] not in d["body"] for d in drafts)


def test_markup_in_a_subject_is_text(page, served):
    page.goto(served.url + "/?state=all&q=onerror")
    link = page.locator("table.inbox a.open")
    assert XSS in link.inner_text()
    assert page.locator("table.inbox script, table.inbox img").count() == 0
    link.click()
    page.wait_for_url(re.compile(r".*/series/.*"))
    assert XSS in page.inner_text("h1")
    assert page.locator("main script, main img").count() == 0
    drafts = page.request.get(served.url + "/api/drafts").json()["drafts"]
    d = next(x for x in drafts if "onerror" in x["subject"])
    page.goto(served.url + "/drafts/%d" % d["id"])
    assert XSS in page.input_value("input[name=subject]")
    assert page.locator("main script, main img").count() == 0
    assert page.dialogs == []


def test_screenshots_of_each_main_view_at_laptop_and_phone_width(browser, served):
    SHOTS.mkdir(parents=True, exist_ok=True)
    drafts = browser_request(served, "/api/drafts?state=approved")
    views = {"inbox": "/?state=all", "series": "/series/" + C_V2,
             "draft": "/drafts/%d" % drafts[0]["id"] if drafts else "/drafts/1",
             "rules": "/rules", "status": "/status"}
    for width, height in SIZES:
        context = browser.new_context(viewport={"width": width, "height": height})
        pg = context.new_page()
        pg.goto(served.url + "/login")
        pg.screenshot(path=str(SHOTS / ("login-%dx%d.png" % (width, height))))
        log_in(pg, served)
        for name, path in views.items():
            pg.goto(served.url + path)
            pg.wait_for_load_state("networkidle")
            target = SHOTS / ("%s-%dx%d.png" % (name, width, height))
            pg.screenshot(path=str(target))
            assert target.stat().st_size > 5000
            # Usable at this width: the page itself never scrolls sideways
            # (wide diffs scroll inside their own box).
            overflow = pg.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width + 1, (name, width, overflow)
            if name == "series":  # and a finding where it sits in the diff
                pg.locator("tr.flagged").first.scroll_into_view_if_needed()
                pg.evaluate("window.scrollBy(0, -80)")
                pg.screenshot(path=str(SHOTS / ("finding-%dx%d.png" % (width, height))))
        context.close()


def browser_request(served, path):  # type: ignore[no-untyped-def]
    import http.cookiejar
    import json
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_page = opener.open(served.url + "/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    data = urllib.parse.urlencode({"email": MAINT, "password": PASSWORD,
                                   "csrf_token": token, "next": "/"}).encode()
    opener.open(served.url + "/login", data=data).read()
    return json.loads(opener.open(served.url + path).read())["drafts"]
