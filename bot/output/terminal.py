"""What writing to a terminal needs: mail-derived text without control
characters, and a progress line on stderr for long inputs.

A subject, an author or a Message-ID comes from untrusted mail: an escape
sequence in it must not move the cursor, retitle the window or hide the
lines around it when `bot check` prints it. `clean` keeps one line of
printable text.
"""

from __future__ import annotations

import re
import time
from typing import TextIO

# C0 controls (tab and newline included: output is line-oriented), DEL, C1
# controls, and the Unicode bidirectional overrides that reorder what a
# terminal shows ("Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def clean(text: object) -> str:
    """`text` as one line of printable characters (controls become a space)."""
    return _CONTROL.sub(" ", str(text)).strip()


class Progress:
    """"reading the input: N messages", then "checked N of M messages, S
    series, R msg/s" on one rewritten stderr line, at most a few times a
    second and only once a run has taken more than a moment; nothing at all
    when `stream` is not a terminal (a log file or a pipe gets no carriage
    returns)."""

    _EVERY = 0.25

    def __init__(self, stream: TextIO | None, total: int = 0) -> None:
        self.stream = stream if stream is not None and _is_tty(stream) else None
        self.total = total
        self.messages = 0
        self.series = 0
        self._start = time.monotonic()
        self._last = self._start  # nothing for inputs checked in a blink
        self._shown = False

    def reading(self, messages: int) -> None:
        """The first pass over the input has read `messages` so far."""
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self._last < self._EVERY:
            return
        self._last = now
        self.stream.write("\r\x1b[Kreading the input: %d messages" % messages)
        self.stream.flush()
        self._shown = True

    def start(self, total: int) -> None:
        """The first pass is done: `total` messages are to be checked."""
        self.total = total
        self._start = time.monotonic()

    def advance(self, messages: int, series: int) -> None:
        self.messages += messages
        self.series += series
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self._last < self._EVERY:
            return
        self._last = now
        self._show(now)

    def _show(self, now: float) -> None:
        assert self.stream is not None
        elapsed = max(now - self._start, 1e-6)
        of = " of %d" % self.total if self.total else ""
        self.stream.write("\r\x1b[Kchecked %d%s messages, %d series, %.0f msg/s"
                          % (self.messages, of, self.series, self.messages / elapsed))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the progress line (before output to the same terminal); the
        next `advance` draws it again."""
        if self.stream is not None and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    done = clear


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
