"""A TCP proxy on 127.0.0.1 in front of a real server, for outages the tests
switch on and off: `refuse` (nothing listens: connection refused), `error`
(an HTTP 503 for every request, as an overloaded archive answers),
`ratelimit` (HTTP 429 asking to come back in 900 s), `stall`
(accepts and never answers), and back to `forward`. The server behind it
stays real; only the path to it is cut.
"""

from __future__ import annotations

import socket
import threading

from tests.pi import free_port

_429 = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nRetry-After: 900\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nslow\n")
_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 12\r\nConnection: close\r\n\r\nunavailable\n")


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.mode = "forward"
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def set(self, mode: str) -> None:
        """forward, error, ratelimit, stall or refuse; open connections are cut."""
        self._cut()
        if mode == "refuse":
            if self._listener is not None:
                # shutdown wakes the thread blocked in accept(); close alone
                # would leave the socket listening under it.
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
        elif self._listener is None:
            self.start()
        self.mode = mode

    def close(self) -> None:
        self.set("refuse")

    def _cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.extend(socks)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self._track(conn)
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        if mode == "stall":
            return  # kept open, never answered, until cut
        if mode in ("error", "ratelimit"):
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(_503 if mode == "error" else _429)
            except OSError:
                pass
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            conn.close()
            return
        self._track(upstream)
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
