"""Series, patches and trailers: the pipeline's view of a posted patch set.

These are built at the b4 boundary (`bot.lore.assemble`) and read by rules,
drafts and storage. `lineage` links revisions of one series: the change-id
b4 puts in the cover letter when there is one, else the author's address and
the subject with its prefixes, revision and counters removed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property

from bot.parse.diff import FileDiff, PatchBody, split_body
from bot.parse.mail import Mail

_PREFIX = re.compile(r"^\s*(\w{2,3}:\s*)*(\[[^\]]*\]\s*)+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """What a patch subject says about its place in a series."""

    text: str
    revision: int
    counter: int
    expected: int
    reply: bool
    resend: bool
    rfc: bool
    patch: bool
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trailer:
    """A trailer (Reviewed-by, Acked-by, Tested-by, ...) given in a reply."""

    name: str
    value: str
    message_id: str
    author: str


@dataclass(frozen=True, kw_only=True)
class Patch:
    index: int
    total: int
    mail: Mail
    subject: str
    trailers: tuple[Trailer, ...] = ()
    _body: PatchBody | None = field(default=None, compare=False, repr=False)

    @property
    def message_id(self) -> str:
        return self.mail.message_id

    @cached_property
    def body(self) -> PatchBody:
        return self._body if self._body is not None else split_body(self.mail.body)

    @property
    def files(self) -> tuple[FileDiff, ...]:
        return self.body.files

    @property
    def paths(self) -> tuple[str, ...]:
        seen: list[str] = []
        for fd in self.files:
            if fd.path and fd.path not in seen:
                seen.append(fd.path)
        return tuple(seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    message_id: str
    subject: str
    revision: int
    author: str
    author_email: str
    total: int
    cover: Mail | None
    patches: tuple[Patch, ...]
    missing: tuple[int, ...]
    change_id: str | None = None
    thread_id: str = ""
    rfc: bool = False

    @property
    def lineage(self) -> str:
        return lineage_key(self.change_id, self.author_email, self.subject)

    @property
    def messages(self) -> tuple[Mail, ...]:
        head = (self.cover,) if self.cover is not None else ()
        return head + tuple(p.mail for p in self.patches)


def normalize_subject(subject: str) -> str:
    """A subject without Re:, [PATCH vN n/m]-style prefixes or case and spacing."""
    return re.sub(r"\s+", " ", _PREFIX.sub("", subject)).strip().lower()


def lineage_key(change_id: str | None, author_email: str, subject: str) -> str:
    if change_id:
        return "change-id:" + change_id
    digest = hashlib.sha256(("%s\n%s" % (author_email.lower(), normalize_subject(subject)))
                            .encode("utf-8", "replace")).hexdigest()[:32]
    return "subject:" + digest
