"""b4's side of a review, made with b4's own code: the message it hands a
check command, and the tracking data of a series it reviews.

Used by tests/test_b4.py and bench/b4check.py (with tests/ on sys.path).
Nothing here imports pytest.
"""

from __future__ import annotations

import email.message
import email.policy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

MBOXRD_FROM = b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"


def as_sent(path: Path, encoding: str) -> bytes:
    """The patch in `path` (a format-patch file or a one-message mbox) as a
    mailer sends it with `encoding`: 7bit, 8bit, quoted-printable, base64,
    or multipart (a short note and the patch as a text/x-patch attachment,
    which Python's mailer base64-encodes). "as-sent" keeps the file's own bytes."""
    raw = path.read_bytes()
    if encoding == "as-sent":
        return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw
    src = email.message_from_bytes(raw, policy=email.policy.default)
    body = src.get_content()
    msg = email.message.EmailMessage()
    for name in ("From", "Date", "Subject", "Message-Id"):
        msg[name] = str(src[name])
    if encoding == "multipart":
        msg.set_content("The patch is attached.\n")
        msg.add_attachment(body.encode("utf-8"), maintype="text", subtype="x-patch",
                           filename="0001.patch")
    else:
        msg.set_content(body, cte=encoding)
    return msg.as_bytes()


def b4_messages(mbox: bytes) -> list[Any]:
    """Messages as b4 review holds them (liblore parses the thread b4 stores)."""
    import liblore.utils
    return list(liblore.utils.split_mbox(mbox))


def mboxrd(*messages: bytes) -> bytes:
    return b"".join(MBOXRD_FROM + m.replace(b"\nFrom ", b"\n>From ").rstrip(b"\n") + b"\n\n"
                    for m in messages)


def check_input(msg: Any) -> bytes:
    """The exact bytes b4 writes to a check command's stdin for `msg`."""
    import b4
    return bytes(b4.LoreMessage.get_msg_as_bytes(msg))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def init_tree(repo: Path) -> str:
    """A git repository with one commit; returns its id."""
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "reviewer@example.org")
    git(repo, "config", "user.name", "Reviewer")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base", "--allow-empty")
    return git(repo, "rev-parse", "HEAD")


def track_series(repo: Path, messages: list[Any]) -> dict[str, Any]:
    """Have b4 track the series in `messages` for review in `repo`, as `b4
    review` does: a review branch with its tracking commit, and the thread
    stored as a git blob (`series.thread-blob`). Returns the tracking data
    b4 writes to B4_TRACKING_FILE.

    b4 runs git with the current directory as the work tree, so this runs
    inside `repo`. The series' commits are stood in for by one commit
    (b4 cherry-picks whatever FETCH_HEAD holds; the bot never reads them).
    """
    import b4
    import b4.review._review as review
    import b4.review.tracking as tracking
    old = os.getcwd()
    os.chdir(repo)
    try:
        base = git(repo, "rev-parse", "HEAD")
        git(repo, "checkout", "-q", "--detach")
        (repo / "series-applied").write_text("the series, applied\n")
        git(repo, "add", "series-applied")
        git(repo, "commit", "-qm", "the series")
        (repo / ".git" / "FETCH_HEAD").write_text(git(repo, "rev-parse", "HEAD") + "\n")
        git(repo, "checkout", "-q", base)
        b4._setup_main_config(topdir=str(repo))
        lmbox = b4.LoreMailbox()
        for msg in messages:
            lmbox.add_message(msg)
        lser = lmbox.get_series(codereview_trailers=False)
        assert lser is not None, "b4 found no series"
        change_id = lser.change_id or "kvm-sysreg-test"
        branch = "b4/review/" + change_id
        review.create_review_branch(str(repo), branch, base, lser,
                                    "https://lore.invalid/r/", "https://lore.invalid/r/%s")
        assert tracking._store_thread_blob(str(repo), change_id, messages)
        _cover, data = review.load_tracking(str(repo), branch)
    finally:
        os.chdir(old)
    return dict(data)


def write_tracking(path: Path, data: dict[str, Any]) -> Path:
    """The file b4 review writes for its check commands (json.dump, indent 2)."""
    path.write_text(json.dumps(data, indent=2))
    return path
