"""A real SMTP server for the tests, on 127.0.0.1 (aiosmtpd).

`SmtpServer` runs aiosmtpd's server in a thread on a free loopback port and
records every message it accepts (envelope and bytes). A test can make it
refuse recipients or whole messages with a given reply, hold a session at
RCPT or after DATA until released (to kill a sender right there), require
STARTTLS and AUTH, or speak TLS from the first byte (implicit TLS), with
certificates from trustme.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.pi import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Behaviour:
    rcpt_reply: str | None = None      # e.g. "451 4.3.0 try later"
    data_reply: str | None = None      # e.g. "554 5.7.1 rejected"
    hold_at: str | None = None         # "rcpt" or "data": wait there until released
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def _hold(self, where: str) -> None:
        b = self.server.behaviour
        if b.hold_at == where:
            b.arrived.set()
            while not b.release.is_set():
                await asyncio.sleep(0.02)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        await self._hold("rcpt")
        if self.server.behaviour.rcpt_reply:
            return self.server.behaviour.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.server.behaviour.data_reply:
            return self.server.behaviour.data_reply
        self.server.received.append(Received(mail_from=envelope.mail_from,
                                             rcpt_tos=list(envelope.rcpt_tos),
                                             data=bytes(envelope.original_content)))
        await self._hold("data")
        return "250 2.0.0 Ok: queued as %d" % len(self.server.received)


class SmtpServer:
    def __init__(self, *, tls: str = "none", cert_dir: Path | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.behaviour = Behaviour()
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        self.ca_file: Path | None = None
        if tls != "none":
            import trustme
            assert cert_dir is not None
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(context)
            self.ca_file = cert_dir / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if login is not None:
            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                             data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and \
                    (data.login.decode(), data.password.decode()) == login
                if ok:
                    self.logins.append(data.login.decode())
                return AuthResult(success=ok, handled=False)
            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=tls != "none")
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     server_hostname="localhost", **kwargs)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.behaviour.release.set()
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < end:
            time.sleep(0.02)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()
