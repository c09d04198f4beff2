"""`make run` and `make demo` as a user meets them: contrib/run-local starts
the daemon and the dashboard on an empty database without an error and
prints the URL; .ci/demo leaves a database the dashboard shows with
findings and drafts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot import config as botconfig
from tests.conftest import DATA
from tests.pi import free_port
from tests.web_support import make_app, web_config

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def _status(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_make_run_serves_the_dashboard_on_an_empty_database(tmp_path):
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VENV": str(VENV),
           "BOT_CONFIG": str(DATA / "config" / "test.toml"),
           "BOT_STATE_DIR": str(tmp_path / "state"), "BOT_WEB_PORT": str(port),
           "BOT_DAEMON_INTERVAL": "3600"}
    proc = subprocess.Popen([str(ROOT / "contrib" / "run-local")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        end = time.monotonic() + 60
        url = None
        while time.monotonic() < end and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"dashboard at (http://\S+)", line)
            url = found.group(1) if found else None
        assert url == "http://127.0.0.1:%d/" % port, "".join(lines)
        for _ in range(100):
            if _status(url + "healthz") == 200:
                break
            time.sleep(0.1)
        assert _status(url + "healthz") == 200
        assert _status(url + "login") == 200
        assert _status(url) == 302
        assert proc.poll() is None, "".join(lines)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        lines.append(out)
    text = "".join(lines)
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "database at 0010_dashboard" in text
    assert "no dashboard account yet" in text


def test_make_demo_leaves_a_database_the_dashboard_shows_with_findings_and_drafts():
    proc = subprocess.run([str(ROOT / ".ci" / "demo")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bot serve" in proc.stdout
    cfg = web_config(botconfig.load(ROOT / "config.toml", environ={
        "BOT_STATE_DIR": str(ROOT / "var" / "demo")}), public_read=True)
    client = make_app(cfg).test_client()
    series = client.get("/api/series?state=all").json
    assert series["total"] >= 5
    assert sum(s["open_findings"] for s in series["series"]) > 0
    assert series["counts"]["drafts"] > 0
    mid = next(s["message_id"] for s in series["series"] if s["open_findings"])
    page = client.get("/series/" + mid).get_data(as_text=True)
    assert 'class="finding' in page
    drafts = client.get("/api/drafts").json["drafts"]
    assert drafts
    assert client.get("/drafts/%d" % drafts[0]["id"]).status_code == 200
