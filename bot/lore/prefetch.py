"""A poll cycle's threads fetched in a background thread, in order.

One request at a time, as always, so that waiting for the archive overlaps
with checking and storing the threads before (bot.poller). A thread whose
messages all came with an earlier one is not fetched again. Errors reach
the cycle in order, after the threads fetched before them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from bot.data import RawMessage
from bot.lore.client import Stopped

_DONE = object()
# Threads fetched ahead of the checks: enough to keep the archive busy while
# a thread is checked and stored, few enough to bound memory.
_AHEAD = 4

Fetch = Callable[[str], list[RawMessage] | None]


class Prefetcher:
    """Fetches `groups` (the Message-IDs of one thread's hits, per thread)
    with `fetch`, which gives a whole thread, or None when it is not to be
    had this cycle (logged by `fetch`)."""

    def __init__(self, fetch: Fetch, groups: list[list[str]],
                 stop: threading.Event | None = None) -> None:
        self._fetch = fetch
        self._groups = groups
        self._stop = stop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_AHEAD)
        self._cancel = threading.Event()
        self.error: BaseException | None = None   # what the fetch raised, if it did
        self._thread = threading.Thread(target=self._run, name="lore-fetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._cancel.set()
        # A request in flight ends within the client's timeouts; the thread
        # is a daemon, so a stopping process does not wait for it.
        self._thread.join(timeout=1.0)

    def _put(self, item: object) -> None:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        covered: set[str] = set()
        try:
            for group in self._groups:
                for msgid in group:
                    if self._cancel.is_set():
                        return
                    if msgid in covered:
                        continue
                    raws = self._fetch(msgid)
                    if raws is None:
                        self._put(None)
                        break  # the group's thread is not to be had this cycle
                    covered.update(r.message_id for r in raws if r.message_id is not None)
                    self._put((msgid, raws))
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the cycle, which raises it
            self._put(exc)

    def results(self, meanwhile: Callable[[], bool] = lambda: False,
                ) -> Iterator[tuple[str, list[RawMessage]] | None]:
        """The fetched threads in order (None for one skipped), then the
        end, or the fetch's error, raised (and kept in `error`). While no
        thread is waiting, `meanwhile` is called until it says it did
        nothing; a stop request raises Stopped."""
        stop = self._stop
        while True:
            if stop is not None and stop.is_set():
                raise Stopped()
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if meanwhile():
                    continue
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                self.error = item
                raise item
            yield item  # type: ignore[misc]
