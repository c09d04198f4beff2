"""`bot drafts b4`: a series' drafts as the review files `b4 review` reads.

b4 review (0.16) keeps each series on a review branch whose tip is a
tracking commit: the cover text, a ``--- b4-review-tracking ---`` line and a
JSON document listing the patches (``patches[i]["header-info"]["msgid"]``)
in the branch's order. Files written under
``<top>/.git/b4-review/<tip sha>/`` are read back by b4 when its review
agent finishes (`_integrate_agent_reviews`): ``identity.txt``, ``series.txt``
and ``NNNN.txt`` for the N-th patch of that list. The text of the files is
`bot.drafts.b4review`'s; this module finds the branch, matches drafts to its
patches by Message-ID and writes them.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.drafts.b4review import patch_file, remarks
from bot.errors import BadInput
from bot.parse.diff import split_body
from bot.parse.mail import MailError, parse_mail
from bot.store import drafts as q
from bot.store.models import Draft, DraftAction, DraftState, Message, utcnow
from bot.workflow import Actor

logger = logging.getLogger(__name__)

MARKER = "--- b4-review-tracking ---"


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """What an export wrote: the directory, its files and the drafts they hold."""

    directory: Path
    files: tuple[str, ...]
    drafts: tuple[int, ...]


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise BadInput("git is not installed") from None
    except NotADirectoryError:
        raise BadInput("%s: not a directory" % repo) from None
    if proc.returncode != 0:
        raise BadInput("%s: git %s: %s" % (repo, " ".join(args),
                                            " ".join(proc.stderr.split()) or "failed"))
    return proc.stdout


def tracking(repo: Path, ref: str) -> tuple[Path, str, dict[str, Any]]:
    """(top directory, tip sha, tracking data) of a b4 review branch."""
    if not repo.is_dir():
        raise BadInput("%s: not a directory" % repo)
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    sha = _git(top, "rev-parse", "--verify", ref + "^{commit}").strip()
    text = _git(top, "log", "-1", "--format=%B", sha)
    if MARKER not in text:
        raise BadInput("%s: %s is not a b4 review branch (no tracking commit at its tip)"
                       % (top, ref))
    raw = "\n".join(ln for ln in text.split(MARKER, 1)[1].strip().splitlines()
                    if not ln.startswith("#"))
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInput("%s: %s: unreadable b4 tracking data: %s" % (top, ref, exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("patches"), list):
        raise BadInput("%s: %s: b4 tracking data without a patch list" % (top, ref))
    return top, sha, data


def _msgid(meta: Any) -> str:
    if isinstance(meta, dict):
        info = meta.get("header-info")
        mid = info.get("msgid") if isinstance(info, dict) else None
        if isinstance(mid, str):
            return mid.strip().strip("<>")
    return ""


def write(session: Session, actor: Actor, repo: Path, ref: str = "HEAD") -> Written:
    """Write the drafts replying to the patches of the review branch `ref`."""
    top, sha, data = tracking(repo, ref)
    patches = [_msgid(p) for p in data["patches"]]
    cover = _msgid(data.get("series"))
    wanted = [m for m in patches + [cover] if m]
    found = {d.in_reply_to: d for d in session.scalars(
        select(Draft).where(Draft.in_reply_to.in_(wanted),
                            Draft.state != DraftState.DISCARDED).order_by(Draft.id))}
    if not found:
        raise BadInput("%s: no draft replies to the patches of %s (series %s)"
                       % (top, ref, cover or "unknown"))
    directory = top / ".git" / "b4-review" / sha
    directory.mkdir(parents=True, exist_ok=True)
    files = {"identity.txt": actor.address + "\n"}
    used: list[Draft] = []
    for number, mid in enumerate(patches, start=1):
        d = found.get(mid)
        if d is None:
            continue
        raw = session.scalars(select(Message.raw).where(Message.message_id == mid)).first()
        if raw is None:
            continue
        try:
            body = split_body(parse_mail(raw).body)
        except MailError as exc:
            logger.warning("draft %d: patch %s unreadable: %s", d.id, mid, exc)
            continue
        files["%04d.txt" % number] = patch_file(body, remarks(d.body))
        used.append(d)
    d = found.get(cover)
    if d is not None and cover not in patches:
        files["series.txt"] = "\n\n".join(r.text for r in remarks(d.body)) + "\n"
        used.append(d)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    now = utcnow()
    for d in used:
        q.record(session, d, actor=actor.address, action=DraftAction.EXPORTED, before=d.state,
                 after=d.state, detail="b4 review files in %s" % directory, at=now)
    return Written(directory=directory, files=tuple(sorted(files)),
                   drafts=tuple(d.id for d in used))
