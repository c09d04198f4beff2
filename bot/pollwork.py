"""Work the poller does ahead of storing: fetching threads, preparing them.

`Fetcher` fetches the cycle's threads in a background thread, one request
at a time, so that waiting for the archive overlaps with checking and
storing the thread before.

`Preparer` runs what checking a thread does without the database
(`Checker.prepare`: b4's assembly, each series' base and rules) in a
process of its own, as soon as a thread is fetched, while the poller
reviews and stores the threads before it (`Checker.review` against the
stored revisions, then the store, in order, as always). It is started for
a cycle with many threads, and is only ever a head start: a thread it has
not prepared (it is still starting, it failed, it died) is prepared by the
poller itself, so what is stored does not depend on it. Its log records
are handed back with each thread and logged by the poller.

The process speaks length-prefixed pickles over two pipes of its own (its
standard output may be written to by libraries): a setup (config, log
levels), then a thread's raw messages in, the prepared thread out.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from bot.config import Config
from bot.data import RawMessage
from bot.lore.client import Stopped
from bot.pipeline import Checker, Prepared

logger = logging.getLogger(__name__)

_DONE = object()
# Threads fetched ahead of the checks: enough to keep the archive (and the
# preparer) busy while a thread is checked and stored, few enough to bound
# memory.
_AHEAD = 4
_FRAME = struct.Struct("!Q")
# Threads handed to the preparer and not yet taken back: more would only
# wait there while the poller itself is idle.
_BACKLOG = 2


class Fetcher:
    """Fetches the cycle's threads (`fetch`: a Message-ID's thread, or None
    when it is not to be had) in a background thread, one request at a
    time, handing each to `preparer` too. A thread whose hits all came with
    an earlier one is not fetched again. Errors reach the cycle in order."""

    def __init__(self, fetch: Callable[[str], list[RawMessage] | None],
                 groups: list[list[str]], stop: threading.Event | None,
                 preparer: Preparer | None = None) -> None:
        self._fetch = fetch
        self._groups = groups
        self._stop = stop
        self._preparer = preparer
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_AHEAD)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lore-fetch", daemon=True)

    def __enter__(self) -> Fetcher:
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
                    ticket = self._preparer.submit(raws) if self._preparer is not None else None
                    self._put((msgid, raws, ticket))
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the cycle, which raises it
            self._put(exc)

    def results(self) -> Iterator[tuple[str, list[RawMessage], int | None] | None]:
        """(Message-ID asked for, its thread, the preparer's ticket or None)
        in order; None for a thread that is not to be had."""
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Stopped()
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]


def _write(fh: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_FRAME.pack(len(data)) + data)
    fh.flush()


def _read(fh: IO[bytes]) -> bytes | None:
    head = fh.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    data = fh.read(size)
    return data if len(data) == size else None


def _levels() -> dict[str, int]:
    """The log levels set in this process, by logger ("" for the root)."""
    levels = {"": logging.getLogger().level}
    for name, each in logging.root.manager.loggerDict.items():
        if isinstance(each, logging.Logger) and each.level:
            levels[name] = each.level
    return levels


class Preparer:
    """`Checker.prepare` in a process of its own (see the module's docstring)."""

    def __init__(self, cfg: Config) -> None:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from bot.pollwork import serve; serve(%d, %d)"
             % (to_child, from_child)],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(), env=env)
        os.close(to_child)
        os.close(from_child)
        self._out = os.fdopen(from_parent, "wb")
        self._in = os.fdopen(to_parent, "rb")
        _write(self._out, (cfg, _levels()))
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._results: dict[int, bytes] = {}
        self._ready = False
        self._dead = False
        self._next = 0
        self._taken = 0
        threading.Thread(target=self._collect, name="preparer", daemon=True).start()

    def _collect(self) -> None:
        while True:
            try:
                data = _read(self._in)
            except (OSError, ValueError):
                data = None
            with self._done:
                if data is None:
                    self._dead = True
                    self._done.notify_all()
                    return
                if not self._ready:
                    self._ready = True  # the first frame says the process is ready
                    continue
                (ticket,) = _FRAME.unpack(data[:_FRAME.size])
                self._results[ticket] = data[_FRAME.size:]
                self._done.notify_all()

    def submit(self, raws: list[RawMessage]) -> int | None:
        """Hand a thread over; its ticket, or None when the process cannot
        take it (not ready yet, gone, or busy enough: a thread it does not
        take, the poller prepares itself meanwhile)."""
        with self._lock:
            if not self._ready or self._dead or self._next - self._taken >= _BACKLOG:
                return None
            ticket = self._next
            self._next += 1
            try:
                _write(self._out, (ticket, raws))
            except (OSError, ValueError):
                self._dead = True
                return None
            return ticket

    def result(self, ticket: int, stop: threading.Event | None) -> Prepared | None:
        """The prepared thread of `ticket`, with its log records logged; None
        when the process failed on it or is gone (prepare it here)."""
        with self._done:
            while ticket not in self._results and not self._dead:
                if stop is not None and stop.is_set():
                    raise Stopped()
                self._done.wait(0.1)
            data = self._results.pop(ticket, None)
            self._taken += 1
        if data is None:
            return None
        prepared, records = pickle.loads(data)
        if prepared is not None:
            for record in records:
                logging.getLogger(record["name"]).handle(logging.makeLogRecord(record))
        return prepared  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self._out.close()  # the process ends at the end of its input
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._in.close()

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Records(logging.Handler):
    """Keeps the log records of one thread's preparation, as plain data."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        data = dict(record.__dict__)
        data["msg"], data["args"] = record.getMessage(), None
        if record.exc_info:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        data["exc_info"] = None
        self.records.append(data)


def serve(read_fd: int, write_fd: int) -> None:
    """The preparer process: threads in, prepared threads out, until the
    end of its input."""
    inp, out = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    setup = _read(inp)
    if setup is None:
        return
    cfg, levels = pickle.loads(setup)
    capture = _Records()
    root = logging.getLogger()
    root.handlers = [capture]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    checker = Checker(cfg)
    # Threads are read as they come, so the poller never waits to hand one over.
    waiting: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=lambda: _drain(inp, waiting), daemon=True).start()
    try:
        out.write(_FRAME.pack(0))  # ready
        out.flush()
        while (data := waiting.get()) is not None:
            ticket, raws = pickle.loads(data)
            capture.records = []
            try:
                prepared: Prepared | None = checker.prepare(raws)
            except Exception:  # noqa: BLE001 - the poller prepares it again, and reports
                prepared = None
            try:
                answer = pickle.dumps((prepared, capture.records),
                                      protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - unpicklable: the poller prepares it again
                answer = pickle.dumps((None, []), protocol=pickle.HIGHEST_PROTOCOL)
            out.write(_FRAME.pack(_FRAME.size + len(answer)) + _FRAME.pack(ticket) + answer)
            out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the poller is gone or stopping
    finally:
        checker.close()


def _drain(inp: IO[bytes], waiting: queue.Queue[bytes | None]) -> None:
    try:
        while (data := _read(inp)) is not None:
            waiting.put(data)
    finally:
        waiting.put(None)
