"""The bot's only HTTP client: public-inbox requests to lore (or a mirror).

Three requests are all the bot needs, and they are issued here directly
with one `requests.Session`:

- a search, ``POST <base>/?q=QUERY&x=m`` with an empty body, which answers
  a gzip mboxrd of the matching messages only (a body of ``x=m`` would
  expand every hit to its whole thread); 404 means no hits;
- a whole thread, ``GET <base>/<message-id>/t.mbox.gz``; 404 means the
  archive does not have that message.

liblore is not used for them: it reads every answer into memory
(``gzip.decompress(resp.content)``), so it cannot refuse an oversized one
before reading it, and on errors it falls back to upstream archives
(lore.kernel.org is built in), which an offline deployment or a test must
never reach.

Politeness and robustness, all from `LoreConfig`: a User-Agent naming the
bot, its version and a contact; connect and read timeouts; at least
`min_interval` seconds between two requests; retries with exponential
backoff and jitter on 429, 5xx, timeouts and dropped connections, honouring
Retry-After; answers streamed to a spooled temporary file and refused as
soon as they pass `max_response_bytes`, compressed or inflated (each gzip
member too), so an oversized answer is never held in memory. A 403, an
HTML page where an mbox was expected (an anti-bot challenge) and exhausted
retries are `Transient` errors with a clear message.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import tempfile
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable
from typing import IO, Any

import requests
import urllib3

from bot import __version__
from bot.config import LoreConfig
from bot.errors import BadInput, NotFound, Transient

logger = logging.getLogger(__name__)

AGENT = "kvm-sysreg-review-bot"

_CHUNK = 1 << 16
# Small answers (a thread, a quiet window) stay in memory; bigger ones go to disk.
_SPOOL_MEMORY = 8 << 20
# A Retry-After longer than this is not waited for inside one cycle: the
# archive is telling us to come back much later, so the cycle fails and
# the next one tries again.
_MAX_RETRY_AFTER = 600.0
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REFUSED_STATUS = frozenset({401, 403, 407, 451})
_GZIP_MAGIC = b"\x1f\x8b"
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
# public-inbox escapes every character of a Message-ID outside this set.
_MID_SAFE = "-._~!$&'()*+,;=:@"


class Stopped(Exception):
    """A stop was requested (SIGTERM/SIGINT in the daemon) while waiting."""


class _TooLarge(Exception):
    pass


class _Missing(Exception):
    """HTTP 404; the start of the body says whether it is public-inbox's
    "No results found" or something else."""

    def __init__(self, body: bytes) -> None:
        super().__init__("HTTP 404")
        self.body = body


class _Retry(Exception):
    """A failure worth another attempt; `after` is the server's Retry-After."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


def user_agent(cfg: LoreConfig) -> str:
    agent = "%s/%s" % (AGENT, __version__)
    return "%s (+%s)" % (agent, cfg.contact) if cfg.contact else agent


def message_path(msgid: str) -> str:
    """A Message-ID as public-inbox spells it in a URL."""
    return urllib.parse.quote(msgid.strip().strip("<>"), safe=_MID_SAFE)


def split_message_url(url: str) -> tuple[str, str]:
    """(archive base URL, Message-ID) of a lore message or thread URL such
    as ``https://lore.kernel.org/all/<msgid>/`` (any view: ``T/``, ``raw``,
    ``t.mbox.gz``, ``#r``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput("%s: not an http(s) URL" % url)
    segments = parts.path.split("/")
    for i, seg in enumerate(segments):
        mid = urllib.parse.unquote(seg)
        if "@" in mid and i > 0:
            base = urllib.parse.urlunsplit((parts.scheme, parts.netloc,
                                            "/".join(segments[:i]), "", ""))
            return base.rstrip("/"), mid.strip("<>")
    raise BadInput("%s: not a lore message URL (no Message-ID in its path)" % url)


def _short(exc: BaseException) -> str:
    """A one-line reason for a requests/urllib3 failure."""
    text = str(exc)
    m = _ERRNO.search(text)
    if m:
        return m.group(1).strip().lower()
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return "timed out"
    return type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class _Inflater:
    """Inflates a gzip stream (of one or more members) into `sink`, refusing
    to produce more than `cap` bytes; memory use is bounded by `_CHUNK`."""

    def __init__(self, sink: Callable[[bytes], Any], cap: int) -> None:
        self._sink = sink
        self._cap = cap
        self._size = 0
        self._new_member()

    def _new_member(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._started = False

    def feed(self, data: bytes) -> None:
        while data:
            if not self._started and not data.strip(b"\0"):
                return  # zero padding after the last member
            self._started = True
            try:
                chunk = self._d.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise _Retry("corrupt gzip data: %s" % exc) from None
            self._size += len(chunk)
            if self._size > self._cap:
                raise _TooLarge()
            if chunk:
                self._sink(chunk)
            if self._d.eof:
                data = self._d.unused_data
                self._new_member()
            else:
                data = self._d.unconsumed_tail

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise _Retry("truncated gzip data")


class _Body:
    """The gzip mbox an answer carries: checked to be one before inflating."""

    def __init__(self, out: IO[bytes], cap: int, ctype: str, base: str, what: str) -> None:
        self._inflater = _Inflater(out.write, cap)
        self._head: bytes | None = b""
        self._ctype, self._base, self._what = ctype, base, what

    def feed(self, data: bytes) -> None:
        if self._head is not None:
            self._head += data
            if len(self._head) < len(_GZIP_MAGIC):
                return
            data, self._head = self._head, None
            self._check(data)
        self._inflater.feed(data)

    def finish(self) -> None:
        if self._head is not None:
            if self._head:
                self._check(self._head)
            raise _Retry("empty answer")
        self._inflater.finish()

    def _check(self, head: bytes) -> None:
        if head.startswith(_GZIP_MAGIC):
            return
        start = head.lstrip()[:64].lower()
        if self._ctype in ("text/html", "application/xhtml+xml") or start.startswith(
                (b"<!doctype html", b"<html")):
            raise Transient("%s answered an HTML page instead of an mbox for %s (an "
                            "anti-bot challenge?)" % (self._base, self._what))
        raise Transient("%s answered %s instead of a gzip mbox for %s"
                        % (self._base, self._ctype or "an unknown type", self._what))


class LoreClient:
    """Requests to one public-inbox archive, counted in `requests_sent`."""

    def __init__(self, cfg: LoreConfig, *, base_url: str | None = None,
                 stop: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.base = (base_url or cfg.url).rstrip("/")
        self.requests_sent = 0
        self._stop = stop
        self._last: float | None = None
        self._session = requests.Session()
        # Answers are gzip files already; a second encoding only costs CPU
        # and would escape the inflated-size cap.
        self._session.headers.update({"User-Agent": user_agent(cfg),
                                      "Accept-Encoding": "identity"})

    def __enter__(self) -> LoreClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def search(self, query: str) -> IO[bytes] | None:
        """The mbox of the messages matching `query`, or None for no hits."""
        url = "%s/?q=%s&x=m" % (self.base, urllib.parse.quote_plus(query))
        try:
            # An empty body: only the hits, not their whole threads.
            return self._fetch("POST", url, "search")
        except _Missing as exc:
            if b"no results" in exc.body.lower():
                return None
            raise NotFound("%s: HTTP 404 for a search: not a public-inbox archive? "
                           "(check lore.url)" % self.base) from None

    def thread(self, msgid: str) -> IO[bytes]:
        """The mbox of the whole thread holding `msgid`."""
        url = "%s/%s/t.mbox.gz" % (self.base, message_path(msgid))
        try:
            return self._fetch("GET", url, "thread %s" % msgid)
        except _Missing:
            raise NotFound("%s: message %s not found" % (self.base, msgid)) from None

    def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            if self._stop is not None and self._stop.is_set():
                raise Stopped()
            return
        if self._stop is None:
            time.sleep(seconds)
        elif self._stop.wait(seconds):
            raise Stopped()

    def _pace(self) -> None:
        # The interval runs from the end of the previous request, so the
        # archive sees at least that much quiet between two of ours.
        if self._last is not None:
            self._wait(self.cfg.min_interval - (time.monotonic() - self._last))
        else:
            self._wait(0)

    def _fetch(self, method: str, url: str, what: str) -> IO[bytes]:
        attempts = self.cfg.retries + 1
        for attempt in range(attempts):
            self._pace()
            try:
                return self._attempt(method, url, what)
            except _Retry as exc:
                if attempt + 1 >= attempts:
                    raise Transient("%s unavailable: %s: %s (after %d attempts)"
                                    % (self.base, what, exc, attempts)) from None
                delay = self.cfg.backoff * (2 ** attempt) * (1 + random.random() / 2)
                if exc.after is not None:
                    if exc.after > _MAX_RETRY_AFTER:
                        raise Transient("%s: %s: %s, asked to retry after %d s"
                                        % (self.base, what, exc, exc.after),
                                        retry_after=exc.after) from None
                    delay = max(delay, exc.after)
                logger.debug("%s: %s: %s; retrying in %.1f s", self.base, what, exc, delay)
                self._wait(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, method: str, url: str, what: str) -> IO[bytes]:
        try:
            return self._exchange(method, url, what)
        finally:
            self._last = time.monotonic()

    def _exchange(self, method: str, url: str, what: str) -> IO[bytes]:
        self.requests_sent += 1
        started = time.monotonic()
        try:
            resp = self._session.request(
                method, url, data=b"" if method == "POST" else None, stream=True,
                timeout=(self.cfg.connect_timeout, self.cfg.read_timeout),
                allow_redirects=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(_short(exc)) from None
        except requests.RequestException as exc:
            raise Transient("%s: %s: %s" % (self.base, what, _short(exc))) from None
        with resp:
            status = resp.status_code
            logger.debug("%s %s -> %d", method, url, status)
            if status == 404:
                try:
                    body = resp.raw.read(1024, decode_content=True) or b""
                except (urllib3.exceptions.HTTPError, OSError):
                    body = b""
                raise _Missing(body)
            if status in _RETRY_STATUS:
                raise _Retry("HTTP %d" % status, _retry_after(resp.headers.get("Retry-After")))
            if status in _REFUSED_STATUS:
                raise Transient("%s refused the request (HTTP %d) for %s: the archive may "
                                "be blocking automated clients; set lore.contact and "
                                "lore.min_interval, or ask its admins"
                                % (self.base, status, what))
            if status >= 500:
                raise _Retry("HTTP %d" % status)
            if status != 200:
                raise BadInput("%s: HTTP %d for %s" % (self.base, status, what))
            out = self._download(resp, what)
        logger.debug("%s: %s: %d bytes in %.2f s", self.base, what,
                     out.seek(0, 2), time.monotonic() - started)
        out.seek(0)
        return out

    def _download(self, resp: requests.Response, what: str) -> IO[bytes]:
        cap = self.cfg.max_response_bytes
        too_large = BadInput("%s: %s: the answer is larger than lore.max_response_bytes "
                             "(%d bytes); refused" % (self.base, what, cap))
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > cap:
            raise too_large
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        # Handed to the caller open; closed here only when reading fails.
        out = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        try:
            self._inflate(resp, out, cap, ctype, encoding, what)
        except _TooLarge:
            out.close()
            raise too_large from None
        except BaseException:
            out.close()
            raise
        return out

    def _inflate(self, resp: requests.Response, out: IO[bytes], cap: int, ctype: str,
                 encoding: str, what: str) -> None:
        body = _Body(out, cap, ctype, self.base, what)
        outer: _Inflater | None = None
        if encoding in ("gzip", "x-gzip"):
            # A server that gzips the gzip file anyway: one more layer, same cap.
            outer = _Inflater(body.feed, cap)
        elif encoding not in ("", "identity"):
            raise Transient("%s answered with Content-Encoding %s for %s"
                            % (self.base, encoding, what))
        sink = outer.feed if outer is not None else body.feed
        received = 0
        try:
            while True:
                data = resp.raw.read(_CHUNK, decode_content=False)
                if not data:
                    break
                received += len(data)
                if received > cap:
                    raise _TooLarge()
                sink(data)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retry("connection lost while reading: %s" % _short(exc)) from None
        if outer is not None:
            outer.finish()
        body.finish()
