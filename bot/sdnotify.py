"""systemd's service notification protocol (sd_notify(3)), for `bot daemon`.

When systemd starts the daemon as a Type=notify service it sets
NOTIFY_SOCKET, a unix datagram socket (a path, or an abstract name written
with a leading '@'), and with WatchdogSec= also WATCHDOG_USEC (and
WATCHDOG_PID). The daemon sends ``READY=1`` once it runs, ``WATCHDOG=1``
more often than every WATCHDOG_USEC while its main loop makes progress,
``STATUS=...`` lines shown by `systemctl status`, and ``STOPPING=1``.
Without NOTIFY_SOCKET every call does nothing. The protocol is a few lines,
so no library is needed for it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to the socket named by NOTIFY_SOCKET, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if path.startswith("@"):
            self.address = "\0" + path[1:]
        elif path.startswith("/"):
            self.address = path
        elif path:
            logger.warning("NOTIFY_SOCKET=%s is neither a path nor an abstract name; "
                           "not notifying systemd", path)
        self.watchdog: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 1e6
        self._sock: socket.socket | None = None
        self._last_ping = 0.0
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `fields` (``NAME=value``) as one datagram; False when it cannot."""
        if self.address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            # systemd gone (or restarting): the service goes on without it.
            logger.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", "STATUS=" + status)

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send("STATUS=" + status)

    def alive(self) -> None:
        """The main loop made progress: ping the watchdog, at most every
        quarter of its timeout."""
        if self.watchdog is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog / 4:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def ping_every(self, default: float) -> float:
        """How long the main loop may wait between two `alive` calls."""
        return min(default, self.watchdog / 4) if self.watchdog is not None else default

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", "STATUS=" + status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
