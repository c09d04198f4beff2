"""Local inputs of `bot check`: mbox (plain or gzip), maildir, `git
format-patch` files or directories of them, and one message on stdin.

Inputs are read twice, both times streaming: the first pass reads only
threading headers, validates the whole input (unreadable paths, truncated
mbox or gzip, gzip past `input.max_inflated_bytes`) and groups messages into
threads; the second pass hands out each thread as soon as its last message
has been read. So a bad input is refused before anything is processed or
stored, and memory holds the open threads, not the input.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bot.config import InputConfig, path_kind
from bot.data import RawMessage
from bot.errors import BadInput
from bot.threads import ThreadIndex, own_thread, threading_ids

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# A field at the start of a line (the block is given a leading newline),
# with its folded continuation lines.
_HDR = re.compile(rb"\n(message-id|in-reply-to|references)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)",
                  re.I)
_FOLD = re.compile(rb"\r?\n[ \t]+")
_MBOXRD = re.compile(rb"^>(>*From )", re.M)
# Messages in an mbox are separated by a blank line followed by a From_ line.
_SEP = b"\n\nFrom "
# The From_ line `git format-patch` writes: the commit id and a fixed date.
_FORMAT_PATCH = re.compile(rb"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001")
# How a file in a directory of messages starts: a header field (RFC 5322
# field name and colon) or a bare diff. Anything else (a README, a binary,
# source code) is not a message, whatever its name.
_MESSAGE_START = re.compile(rb"\A(\xef\xbb\xbf)?([!-9;-~]+:|diff --git |--- |Index: )")


@dataclass(frozen=True, slots=True)
class StreamInput:
    """An input already in hand, such as a thread fetched from lore: a name
    for messages and errors, and a seekable binary file (mbox, plain or gzip).
    With `thread_of`, a thread fetch: only the References thread of that
    Message-ID is read (`bot.threads.own_thread`: public-inbox adds the
    threads that share its subject)."""

    name: str
    file: BinaryIO
    thread_of: str | None = None


class _OverCap(Exception):
    pass


class _CappedGzip:
    """Inflates a gzip stream, refusing to produce more than `cap` bytes."""

    def __init__(self, fh: BinaryIO, cap: int) -> None:
        self._gz = gzip.GzipFile(fileobj=fh, mode="rb")
        self._cap = cap
        self._seen = 0

    def read(self, size: int) -> bytes:
        data = self._gz.read(size)
        self._seen += len(data)
        if self._seen > self._cap:
            raise _OverCap()
        return data

    def close(self) -> None:
        self._gz.close()


def _header_block(data: bytes) -> bytes:
    end = data.find(b"\n\n")
    end_crlf = data.find(b"\r\n\r\n")
    if end < 0 or (0 <= end_crlf < end):
        end = end_crlf
    return data if end < 0 else data[:end]


def _thread_headers(data: bytes) -> tuple[str | None, list[str]]:
    # Only the three fields are unfolded, not the whole header block (list
    # mail carries kilobytes of Received: and DKIM lines).
    block = b"\n" + _header_block(data)
    found = {"message-id": "", "in-reply-to": "", "references": ""}
    for m in _HDR.finditer(block):
        name = m.group(1).decode("ascii").lower()
        if not found[name]:
            found[name] = _FOLD.sub(b" ", m.group(2)).decode("utf-8", "replace")
    if not found["message-id"].strip():
        return None, []
    mid, refs = threading_ids(found["message-id"], found["in-reply-to"], found["references"])
    return mid or None, refs


class _Source:
    """One path (or stdin) as a re-readable sequence of raw messages."""

    def __init__(self, spec: str | StreamInput, cfg: InputConfig,
                 stdin: BinaryIO | None) -> None:
        self.cfg = cfg
        self._stdin_data: bytes | None = None
        self._stream: BinaryIO | None = None
        self.group_id: str | None = None
        self._thread_of: str | None = None
        self._own: list[RawMessage] | None = None
        if isinstance(spec, StreamInput):
            self.spec, self._stream, self._thread_of = spec.name, spec.file, spec.thread_of
            self.files: list[Path] = []
            self.maildir = False
            return
        self.spec = spec
        if spec == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            data = stream.read(cfg.max_message_bytes * 4 + 1)
            if len(data) > cfg.max_message_bytes * 4:
                raise BadInput("-: standard input is larger than input.max_message_bytes allows")
            self._stdin_data = data
            self.files = []
            self.maildir = False
            return
        path = Path(spec)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BadInput("%s: no such file or directory" % spec) from None
        except OSError as exc:
            raise BadInput("%s: cannot read: %s" % (spec, exc.strerror)) from None
        kind = path_kind(st.st_mode)
        if kind is not None and not stat.S_ISDIR(st.st_mode):
            # Read twice, so a stream cannot be: a pipe goes to `bot check -`.
            raise BadInput("%s: is %s, not a file or directory of mail (for a stream, "
                           "use - and standard input)" % (spec, kind))
        is_dir = stat.S_ISDIR(st.st_mode)
        names = {p.name for p in _listing(path)} if is_dir else set()
        self.maildir = bool({"cur", "new"} & names) and (_is_dir(path / "cur")
                                                        or _is_dir(path / "new"))
        if self.maildir:
            self.files = sorted(p for sub in ("new", "cur") if _is_dir(path / sub)
                                for p in _entries(path / sub))
        elif is_dir:
            self.files = _entries(path)
            if not self.files:
                raise BadInput("%s: directory holds no messages or patches" % spec)
        elif st.st_size == 0:
            raise BadInput("%s: empty file" % spec)
        else:
            self.files = [path]
        # A directory of format-patch files is one series: patches without
        # threading headers are tied together so they are assembled as one.
        self.group_id = ("format-patch.%s@bot.invalid"
                         % hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
                         if is_dir and not self.maildir else None)

    def messages(self) -> Iterator[RawMessage]:
        if self._stdin_data is not None:
            yield from self._split(self._stdin_data_stream(), "-")
            return
        if self._stream is not None and self._thread_of is not None:
            yield from self._own_thread(self._stream, self._thread_of)
            return
        if self._stream is not None:
            self._stream.seek(0)
            yield from self._read(self._stream, self.spec)
            return
        for path in self.files:
            name = str(path)
            try:
                fh = open(path, "rb")  # noqa: SIM115 (closed by the with below)
            except OSError as exc:
                raise BadInput("%s: cannot read: %s" % (name, exc.strerror)) from None
            with fh:
                yield from self._read(fh, name)

    def _own_thread(self, stream: BinaryIO, msgid: str) -> list[RawMessage]:
        """The fetched thread of `msgid`, read once (a thread fetch is
        bounded by lore.max_response_bytes)."""
        if self._own is None:
            stream.seek(0)
            raws = list(self._read(stream, self.spec))
            own = own_thread(msgid, raws)
            if own is None:
                logger.warning("%s: the archive's answer does not hold %s; all of it is read",
                               self.spec, msgid)
                own = raws
            elif len(own) < len(raws):
                logger.info("%s: %d messages of other threads with the same subject left out",
                            self.spec, len(raws) - len(own))
            self._own = own
        return self._own

    def _read(self, fh: BinaryIO, name: str) -> Iterator[RawMessage]:
        magic = fh.read(2)
        fh.seek(0)
        reader: object = fh
        if magic == b"\x1f\x8b":
            reader = _CappedGzip(fh, self.cfg.max_inflated_bytes)
        try:
            yield from self._split(reader, name)
        except _OverCap:
            raise BadInput("%s: inflates past input.max_inflated_bytes (%d bytes)"
                           % (name, self.cfg.max_inflated_bytes)) from None
        except EOFError:
            raise BadInput("%s: truncated gzip data" % name) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise BadInput("%s: corrupt gzip data: %s" % (name, exc)) from None
        except OSError as exc:
            raise BadInput("%s: cannot read: %s" % (name, exc.strerror or exc)) from None

    def _stdin_data_stream(self) -> io.BytesIO:
        return io.BytesIO(self._stdin_data or b"")

    def _split(self, reader: object, name: str) -> Iterator[RawMessage]:
        """Cut a stream into messages, a block at a time.

        An mbox (first line "From ") is cut where a blank line is followed by
        a "From " line; anything else is one message. Only the first
        `input.max_message_bytes` of a message are kept.
        """
        read = reader.read  # type: ignore[attr-defined]
        pending = read(_CHUNK)
        if not pending:
            raise BadInput("%s: empty input" % name)
        limit = self.cfg.max_message_bytes
        if (self.maildir or self.group_id) and not pending.startswith(b"From ") \
                and not _MESSAGE_START.match(pending):
            raise BadInput("%s: not a mail message or patch (no header or diff at its start)"
                           % name)
        if not pending.startswith(b"From "):
            whole, size = [pending], len(pending)
            while chunk := read(_CHUNK):
                size += len(chunk)
                if size <= limit:
                    whole.append(chunk)
            yield self._finish(whole, size, name, 0, False)
            return
        keep = len(_SEP) - 1
        count = 0
        last = pending
        # The unread part of the input is pending[pos:]: an offset, so that
        # cutting a message off does not copy the rest of the block.
        pos = 0
        while True:
            # At the start of a From_ line: skip it, remembering its start.
            head = b""
            nl = pending.find(b"\n", pos)
            while nl < 0:
                head = (head + pending[pos:])[:128]
                pending, pos = read(_CHUNK), 0
                if not pending:
                    raise BadInput("%s: truncated mbox: the last message ends mid-line" % name)
                last = pending
                nl = pending.find(b"\n")
            patch_file = _FORMAT_PATCH.match(head + pending[pos:nl]) is not None
            pos = nl + 1
            parts: list[bytes] = []
            size = 0
            while True:
                j = pending.find(_SEP, pos)
                if j >= 0:
                    piece, pos = pending[pos:j + 1], j + 2
                else:
                    more = read(_CHUNK)
                    rest = pending[pos:]
                    if more:
                        last = more
                        piece, pending = rest[:-keep], rest[-keep:] + more
                    else:
                        piece, pending = rest, b""
                    pos = 0
                size += len(piece)
                if size <= limit:
                    parts.append(piece)
                elif not parts:  # too large already: keep its head for the reason's sake
                    parts.append(piece[:1 << 16])
                if j >= 0 or pos >= len(pending):
                    break
            if pos >= len(pending):  # the last message
                if not last.endswith(b"\n"):
                    raise BadInput("%s: truncated mbox: the last message ends mid-line" % name)
                data = b"".join(parts)
                if size <= limit and b"\n\n" not in data and b"\r\n\r\n" not in data \
                        and not data.startswith((b"\n", b"\r\n")):
                    raise BadInput("%s: truncated mbox: the last message has no body" % name)
                if data.endswith(b"\n\n"):  # the blank line that ends every mbox message
                    parts = [data[:-1]]
            yield self._finish(parts, size, name, count, patch_file, mboxrd=True)
            count += 1
            if pos >= len(pending):
                return

    def _finish(self, parts: list[bytes], size: int, name: str, count: int,
                patch_file: bool, mboxrd: bool = False) -> RawMessage:
        origin = "%s#%d" % (name, count + 1) if count or name.endswith((".mbox", ".gz")) \
            else name
        if size > self.cfg.max_message_bytes:
            head = b"".join(parts[:1])[:1 << 16]
            mid, refs = _thread_headers(head)
            return RawMessage(origin=origin, data=head, message_id=mid, refs=tuple(refs),
                              error="message of %d bytes exceeds input.max_message_bytes" % size)
        data = b"".join(parts)
        if mboxrd and b"From " in data:
            data = _MBOXRD.sub(rb"\1", data)
        mid, refs = _thread_headers(data)
        if mid is None and data.strip() and (patch_file or self.group_id):
            # git format-patch writes no Message-ID: derive a stable one.
            fake = "%s@format-patch.bot.invalid" % hashlib.sha1(data).hexdigest()[:24]
            data = b"Message-ID: <%s>\n" % fake.encode() + data
            mid = fake
        if self.group_id and not refs:
            data = b"References: <%s>\n" % self.group_id.encode() + data
            refs = [self.group_id]
        return RawMessage(origin=origin, data=data, message_id=mid, refs=tuple(refs))


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BadInput("%s: cannot read: %s" % (path, exc.strerror or exc)) from None


def _listing(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except OSError as exc:
        raise BadInput("%s: cannot read the directory: %s"
                       % (directory, exc.strerror or exc)) from None


def _entries(directory: Path) -> list[Path]:
    """The files of a directory of messages, sorted; hidden ones skipped,
    anything but a regular file refused by name."""
    files = []
    for entry in _listing(directory):
        if entry.name.startswith("."):
            continue
        try:
            mode = entry.stat().st_mode
        except OSError as exc:
            raise BadInput("%s: cannot read: %s" % (entry, exc.strerror or exc)) from None
        kind = path_kind(mode)
        if kind is not None:
            raise BadInput("%s: is %s, not a message or patch file" % (entry, kind))
        files.append(entry)
    return files


def read_stream(source: StreamInput, cfg: InputConfig) -> Iterator[RawMessage]:
    """The messages of one in-hand input, in order (one pass, no grouping)."""
    return _Source(source, cfg, None).messages()


def thread_headers(data: bytes) -> tuple[str | None, list[str]]:
    """A raw message's Message-ID (None without one) and the IDs it refers to."""
    return _thread_headers(data)


class InputSet:
    """All SOURCE arguments of one `bot check`, read as threads."""

    def __init__(self, specs: list[str | StreamInput], cfg: InputConfig,
                 stdin: BinaryIO | None = None,
                 reading: Callable[[int], None] | None = None) -> None:
        """`reading(n)`, when given, is told how many messages the first
        pass has read so far (for a progress display)."""
        if not specs:
            raise BadInput("no input given")
        self.sources = [_Source(spec, cfg, stdin) for spec in specs]
        self.index = ThreadIndex()
        for source in self.sources:
            for raw in source.messages():
                if reading is not None:
                    reading(len(self.index) + 1)
                if raw.error is None:
                    self.index.add(raw.message_id, list(raw.refs))
                else:
                    self.index.add(None, [])
        self.index.finish()
        logger.debug("input: %d messages in %d threads", len(self.index),
                     self.index.thread_count)

    @property
    def message_count(self) -> int:
        return len(self.index)

    @property
    def thread_count(self) -> int:
        return self.index.thread_count

    def threads(self) -> Iterator[list[RawMessage]]:
        """Each thread's messages, in input order, as soon as it is complete."""
        open_threads: dict[int, list[RawMessage]] = {}
        pos = 0
        for source in self.sources:
            for raw in source.messages():
                thread = self.index.thread_of(pos)
                open_threads.setdefault(thread, []).append(raw)
                for done in self.index.closing_at(pos):
                    yield open_threads.pop(done)
                pos += 1
        if pos != len(self.index):
            raise BadInput("input changed while it was being read")

