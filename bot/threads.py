"""Grouping messages into threads by Message-ID, In-Reply-To and References.

Pure and streaming-friendly: the caller feeds each message's position and
threading headers once (`ThreadIndex.add`), calls `finish`, and can then ask
which thread a position belongs to and which threads are complete once a
given position has been read. Only the identifiers are kept, never bodies,
so a year of a list costs a few megabytes here.
"""

from __future__ import annotations

import re
from collections import defaultdict

from bot.data import MESSAGE_ID_MAX, RawMessage, thread_refs

_MSGID = re.compile(r"<([^<>\s]+)>")


def threading_ids(message_id: str, in_reply_to: str, references: str) -> tuple[str, list[str]]:
    """The clean Message-ID (empty when there is none, or it is too long to
    be one) and the IDs it refers to, from raw header text: the last
    References (`bot.data.thread_refs`) and In-Reply-To."""
    m = _MSGID.search(message_id)
    mid = m.group(1) if m else message_id.strip().strip("<>")
    if len(mid) > MESSAGE_ID_MAX:
        mid = ""
    irt = _MSGID.search(in_reply_to)
    return mid, list(thread_refs(_MSGID.findall(references), irt.group(1) if irt else None,
                                 mid))


class ThreadIndex:
    """Union-find over message identifiers, keyed by position in the input."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._pos_id: list[str] = []
        self._thread_of: list[int] = []
        self._last: dict[int, int] = {}
        self._closing: dict[int, list[int]] = {}

    def _find(self, x: str) -> str:
        parent = self._parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def _node(self, x: str) -> str:
        if x not in self._parent:
            self._parent[x] = x
        return x

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(self._node(a)), self._find(self._node(b))
        if ra != rb:
            self._parent[rb] = ra

    def add(self, message_id: str | None, refs: list[str]) -> int:
        """Record the next message; returns its position."""
        pos = len(self._pos_id)
        # A message without a Message-ID is a thread of its own.
        key = ("\x00pos:%d" % pos) if not message_id else "<%s>" % message_id
        self._node(key)
        for ref in refs:
            self._union(key, "<%s>" % ref)
        self._pos_id.append(key)
        return pos

    def finish(self) -> None:
        numbers: dict[str, int] = {}
        for pos, key in enumerate(self._pos_id):
            root = self._find(key)
            thread = numbers.setdefault(root, len(numbers))
            self._thread_of.append(thread)
            self._last[thread] = pos
        self._parent.clear()
        closing: dict[int, list[int]] = defaultdict(list)
        for thread, pos in self._last.items():
            closing[pos].append(thread)
        self._closing = dict(closing)

    def __len__(self) -> int:
        return len(self._pos_id)

    @property
    def thread_count(self) -> int:
        return len(self._last)

    def thread_of(self, pos: int) -> int:
        return self._thread_of[pos]

    def closing_at(self, pos: int) -> list[int]:
        """Threads whose last message is at this position."""
        return self._closing.get(pos, [])


def own_thread(msgid: str, raws: list[RawMessage]) -> list[RawMessage] | None:
    """The messages of `raws` in the References thread of `msgid` (None
    when it is not among them): what a thread fetch answers, without the
    other threads public-inbox adds for sharing a subject. A message whose
    Message-ID could not be read stays, to be quarantined with the reason."""
    index = ThreadIndex()
    for raw in raws:
        index.add(raw.message_id, list(raw.refs))
    index.finish()
    mine = {index.thread_of(pos) for pos, raw in enumerate(raws) if raw.message_id == msgid}
    if not mine:
        return None
    return [raw for pos, raw in enumerate(raws)
            if index.thread_of(pos) in mine or raw.message_id is None]
