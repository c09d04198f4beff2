"""A real public-inbox server for the tests, on 127.0.0.1.

`PublicInbox` runs Debian's public-inbox-httpd on a free loopback port with
all its state (configuration, inboxes, logs) in one temporary directory, so
nothing in ``~`` is touched. Each test gets an inbox of its own
(`PublicInbox.create`), served at ``http://127.0.0.1:PORT/<name>``, and
loads real mail into it with `Inbox.deliver`.

Delivery writes messages straight into the inbox's git epoch (one commit
per message, as public-inbox-mda would, through ``git fast-import``), runs
``public-inbox-index``, sends SIGHUP to the server so that it reopens its
search index, and waits until a search for the last Message-ID finds it.
Each delivered message gets a fresh ``Received:`` header (the one
public-inbox reads for ``rt:``), so mail copied from the 2019-2020 archive
looks newly arrived; the fixture files themselves are left as they are.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import InputConfig
from bot.sources import StreamInput, read_stream, thread_headers

BINARIES = ("public-inbox-init", "public-inbox-index", "public-inbox-httpd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def messages(path: Path) -> Iterator[bytes]:
    """The raw messages of an mbox file (plain or gzip), mboxrd escaping undone."""
    with open(path, "rb") as fh:
        for raw in read_stream(StreamInput(str(path), fh), InputConfig()):
            yield raw.data


def _received(when: float) -> bytes:
    # public-inbox reads the date only in numeric-zone form ("+0000", not "GMT").
    return ("Received: from 127.0.0.1 by 127.0.0.1 (tests/pi.py); %s\n"
            % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))).encode()


class Inbox:
    """One v2 inbox on the server."""

    def __init__(self, server: PublicInbox, name: str) -> None:
        self.server = server
        self.name = name
        self.dir = server.root / "inboxes" / name
        self.url = "http://127.0.0.1:%d/%s" % (server.port, name)

    def deliver(self, *sources: Path | bytes, received: float | None = None,
                fresh: bool = True) -> list[str]:
        """Add the messages of mbox files (or raw messages) as newly received
        mail (`fresh=False` keeps their own Received headers); returns their
        Message-IDs once the server's search finds them."""
        when = time.time() if received is None else received
        git = self.dir / "git" / "0.git"
        has_tip = subprocess.run(["git", "--git-dir", str(git), "rev-parse", "-q", "--verify",
                                  "refs/heads/master"], capture_output=True).returncode == 0
        proc = subprocess.Popen(["git", "--git-dir", str(git), "fast-import", "--quiet"],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        mids = []
        n = 0
        for source in sources:
            for raw in (messages(source) if isinstance(source, Path) else [source]):
                mid, _ = thread_headers(raw)
                assert mid, "a delivered message needs a Message-ID"
                mids.append(mid)
                data = _received(when) + raw if fresh else raw
                msg = b"delivery\n"
                proc.stdin.write(b"blob\nmark :1\ndata %d\n%s\n"
                                 b"commit refs/heads/master\n"
                                 b"author tests <tests@127.0.0.1> %d +0000\n"
                                 b"committer %s <%s@127.0.0.1> %d +0000\ndata %d\n%s"
                                 % (len(data), data, int(when), self.name.encode(),
                                    self.name.encode(), int(when), len(msg), msg))
                if n == 0 and has_tip:
                    proc.stdin.write(b"from refs/heads/master^0\n")
                proc.stdin.write(b"deleteall\nM 100644 :1 m\n\n")
                n += 1
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode(errors="replace")
        self.server.run("public-inbox-index", str(self.dir))
        self.server.hup()
        if mids:
            self.wait_searchable(mids[-1])
        return mids

    def wait_searchable(self, mid: str, timeout: float = 15.0) -> None:
        query = urllib.parse.quote_plus('m:"%s"' % mid)
        url = "%s/?q=%s&x=m" % (self.url, query)
        deadline = time.monotonic() + timeout
        while True:
            try:
                req = urllib.request.Request(url, data=b"", method="POST")
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("%s never became searchable in %s" % (mid, self.url))
            time.sleep(0.1)


class PublicInbox:
    """public-inbox-httpd on 127.0.0.1 with all state under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.env = dict(os.environ, PI_CONFIG=str(root / "config"), PI_DIR=str(root),
                        PI_EMERGENCY=str(root / "emergency"), HOME=str(root))
        self._count = 0
        (root / "inboxes").mkdir(parents=True, exist_ok=True)
        (root / "config").touch()
        self.git_config("publicinboxmda.spamcheck", "none")
        self.git_config("publicinbox.wwwlisting", "all")

    @property
    def pidfile(self) -> Path:
        return self.root / "httpd.pid"

    def run(self, *argv: str) -> None:
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError("%s failed: %s" % (" ".join(argv), proc.stderr.strip()))

    def git_config(self, key: str, value: str) -> None:
        self.run("git", "config", "-f", str(self.root / "config"), key, value)

    def create(self) -> Inbox:
        """A new empty inbox, served once this returns."""
        self._count += 1
        inbox = Inbox(self, "t%d" % self._count)
        self.run("public-inbox-init", "-V2", "-L", "full", inbox.name, str(inbox.dir),
                 inbox.url, "%s@127.0.0.1" % inbox.name)
        self.git_config("publicinbox.%s.listid" % inbox.name, "%s.127.0.0.1" % inbox.name)
        self.hup()
        self._wait_ready("/%s/_/text/help/" % inbox.name)
        return inbox

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        self.run("public-inbox-httpd", "-W0", "-D", "-P", str(self.pidfile),
                 "-1", str(self.root / "httpd.out"), "-2", str(self.root / "httpd.err"),
                 "-l", "127.0.0.1:%d" % self.port)
        try:
            self._wait_ready("/", any_answer=True)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def hup(self) -> None:
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def stop(self, sig: int = signal.SIGQUIT) -> None:
        """Stop the server (SIGQUIT is graceful; SIGKILL is a crash)."""
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline += 10
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)

    def _wait_ready(self, path: str, any_answer: bool = False, timeout: float = 15.0) -> None:
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError:
                if any_answer:  # the server answers: it is up
                    return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                err = (self.root / "httpd.err")
                raise AssertionError("public-inbox-httpd not ready at %s: %s" % (
                    url, err.read_text()[-2000:] if err.exists() else "(no log)"))
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for an init that may be slow to reap it
    (the server daemonizes, so it is not our child)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def public_inbox(tmp_path_factory: pytest.TempPathFactory):
    """One public-inbox server per test module; each test creates its inbox."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip("public-inbox is not installed (%s); run .ci/system-deps"
                    % ", ".join(missing))
    server = PublicInbox(tmp_path_factory.mktemp("public-inbox"))
    try:
        server.start()
        yield server
    finally:
        server.stop(signal.SIGTERM)  # immediate; SIGQUIT would drain clients

