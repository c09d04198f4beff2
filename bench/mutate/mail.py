"""Cases as `git format-patch` mails, made with git against the 6.12 files.

`BaseRepo` is a scratch git repository holding the 6.12 subset in one
commit (fixed author, dates and the kernel's own `.gitattributes` diff
drivers, so `@@` lines carry the function context git would write). A
case's post-image files are staged there, `git diff --cached --stat
--summary -p` gives the diffstat and a diff with the real `index
<old>..<new> 100644` blob ids, and the tree is reset. The same repository
serves as the kernel tree the bot applies patches to.

Mails are byte-identical for the same cases: dates, authors, the `From
<sha>` line and the Message-ID derive from the case, never from the clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from mutate.cases import Case
from mutate.source import Kernel

GIT_VERSION = "2.39.5"
_ENV = {
    "GIT_AUTHOR_NAME": "Kernel Base", "GIT_AUTHOR_EMAIL": "base@example.org",
    "GIT_COMMITTER_NAME": "Kernel Base", "GIT_COMMITTER_EMAIL": "base@example.org",
    "GIT_AUTHOR_DATE": "2024-11-17T12:00:00+0000",
    "GIT_COMMITTER_DATE": "2024-11-17T12:00:00+0000",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}
# The kernel's top-level .gitattributes (diff drivers for C and headers).
GITATTRIBUTES = "*.c   diff=cpp\n*.h   diff=cpp\n*.dtsi diff=dts\n*.dts  diff=dts\n"

AUTHORS = (
    ("Alex Rivera", "alex.rivera@example.org"),
    ("Mina Okafor", "mina.okafor@example.org"),
    ("Jonas Lindqvist", "jonas.lindqvist@example.org"),
    ("Priya Raman", "priya.raman@example.org"),
    ("Tomasz Nowicki", "tomasz.nowicki@example.org"),
    ("Claire Dubois", "claire.dubois@example.org"),
    ("Kenji Sato", "kenji.sato@example.org"),
    ("Rosa Martins", "rosa.martins@example.org"),
)
_EPOCH = dt.datetime(2024, 12, 2, 9, 0, tzinfo=dt.UTC)


class GitError(RuntimeError):
    pass


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    env = dict(os.environ)
    env.update(_ENV)
    proc = subprocess.run(["git", "-C", str(repo), *args], input=stdin, env=env,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise GitError("git %s: %s" % (" ".join(args[:2]),
                                       proc.stderr.decode(errors="replace").strip()))
    return proc.stdout.decode("utf-8", "surrogateescape")


class BaseRepo:
    """A git repository of the 6.12 subset in one commit."""

    def __init__(self, kernel: Kernel, path: Path) -> None:
        self.kernel = kernel
        self.path = path
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        for rel in kernel.files():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kernel.root / rel, path / rel)
        (path / ".gitattributes").write_text(GITATTRIBUTES)
        git(path, "init", "-q", "-b", "master")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "Linux 6.12 (the files the bot watches)")
        self.head = git(path, "rev-parse", "HEAD").strip()

    def diff(self, files: tuple[tuple[str, str], ...]) -> str:
        """Diffstat, summary and diff of `files` against the base."""
        try:
            for rel, text in files:
                target = self.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            git(self.path, "add", "-A")
            return git(self.path, "-c", "core.abbrev=12", "diff", "--cached", "--stat=72",
                       "--summary", "-p")
        finally:
            git(self.path, "reset", "-q", "--hard", "HEAD")
            git(self.path, "clean", "-qfd")


def message_id(case: Case, seed: int) -> str:
    return "<20241202-mutation-%s-s%d@kvm-sysreg-bot.example.org>" % (case.id, seed)


def render(case: Case, diff: str, index: int, seed: int) -> str:
    """The case as a `git format-patch` mail."""
    digest = hashlib.sha256(("%d\x00%s\x00%s" % (seed, case.id, diff)).encode()).digest()
    name, addr = AUTHORS[digest[0] % len(AUTHORS)]
    date = _EPOCH + dt.timedelta(minutes=47 * index + digest[1] % 40)
    sha = hashlib.sha1(digest).hexdigest()
    body = case.message.strip("\n")
    return ("From %s Mon Sep 17 00:00:00 2001\n"
            "From: %s <%s>\n"
            "Date: %s\n"
            "Subject: [PATCH] %s\n"
            "Message-ID: %s\n"
            "\n"
            "%s\n"
            "\n"
            "Signed-off-by: %s <%s>\n"
            "---\n"
            "%s"
            "-- \n"
            "%s\n"
            "\n") % (sha, name, addr, email.utils.format_datetime(date), case.subject,
                     message_id(case, seed), body, name, addr, diff, GIT_VERSION)
