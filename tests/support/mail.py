"""In-process SMTP servers for the mail tests: one that receives, one that stays silent.

``smtp_server()`` runs aiosmtpd's ``Controller`` (its own thread and event
loop) on 127.0.0.1 and keeps every received message, parsed, in order.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.waiting import wait_for

REFUSE_RCPT_REPLY = "554 5.7.1 Recipient address rejected"
REFUSE_DATA_REPLY = "451 4.3.0 Temporary failure, try again later"
_SPACED_CODE = re.compile(r"\d(?: \d){5}")


@dataclass(frozen=True)
class Delivery:
    """One accepted message with its envelope and how its session was secured."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    tls: bool
    login: str | None
    mail_options: tuple[str, ...] = ()


@dataclass
class SmtpTestServer:
    """What the server received; ``refusing`` and ``delay`` change its behaviour mid-test.

    ``receiving`` counts the messages whose data has started to arrive (a
    ``delay`` holds them there), ``deliveries`` those fully received.
    ``mail_peers`` is the client's address and port at each MAIL command (one
    per connection it came on); ``hang_up_at_mail`` closes that many
    connections at their next MAIL command, as a relay dropping idle clients.
    """

    host: str
    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    refusing: bool = False
    delay: float = 0.0
    receiving: int = 0
    mail_peers: list[tuple[str, int]] = field(default_factory=list)
    hang_up_at_mail: int = 0

    @property
    def messages(self) -> list[EmailMessage]:
        return [delivery.message for delivery in self.deliveries]

    async def wait_for_messages(self, n: int) -> list[EmailMessage]:
        """Wait until at least ``n`` messages arrived (the server's thread fills the list)."""
        await wait_for(lambda: len(self.deliveries) >= n, what=f"{n} message(s) received")
        return self.messages


@dataclass(frozen=True)
class TlsContexts:
    """A self-signed certificate for 127.0.0.1 as a server context and a client trusting it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


class _Handler:
    def __init__(self, target: SmtpTestServer, refuse_at: str | None, reply: str) -> None:
        self._target = target
        self._refuse_at = refuse_at
        self._reply = reply

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook names are upper case)
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self._target.mail_peers.append(session.peer)
        if self._target.hang_up_at_mail > 0:
            self._target.hang_up_at_mail -= 1
            server.transport.close()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 (same)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._refuse_at == "RCPT":
            return self._reply
        if self._target.refusing:
            return REFUSE_RCPT_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (same)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self._refuse_at == "DATA":
            return self._reply
        self._target.receiving += 1
        if self._target.delay:
            await asyncio.sleep(self._target.delay)
        raw = envelope.original_content or envelope.content
        message = BytesParser(policy=default, _class=EmailMessage).parsebytes(raw)
        login = session.login_data.decode() if session.login_data else None
        # Implicit TLS leaves session.ssl unset: ask the transport instead.
        tls = server.transport.get_extra_info("ssl_object") is not None
        self._target.deliveries.append(
            Delivery(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                tls=tls,
                login=login,
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 Message accepted for delivery"


def _authenticator(username: str, password: str) -> Any:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            username.encode(),
            password.encode(),
        )
        # handled=False: on failure aiosmtpd itself answers 535.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return authenticate


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def smtp_server(
    refuse: bool = False,
    *,
    refuse_at: Literal["RCPT", "DATA"] = "RCPT",
    refuse_reply: str | None = None,
    starttls: TlsContexts | None = None,
    implicit_tls: TlsContexts | None = None,
    credentials: tuple[str, str] | None = None,
    smtputf8: bool = False,
) -> AsyncIterator[SmtpTestServer]:
    """An aiosmtpd server on 127.0.0.1 collecting what it accepts.

    ``refuse`` answers ``refuse_reply`` (554 at RCPT, 451 at DATA by default)
    instead of accepting. ``starttls`` requires STARTTLS before anything else,
    ``implicit_tls`` speaks TLS from the first byte; ``credentials`` requires
    AUTH (over TLS) with that username and password; ``smtputf8`` offers SMTPUTF8
    (8BITMIME is always offered).
    """
    target = SmtpTestServer(host="127.0.0.1", port=free_port())
    default_reply = REFUSE_RCPT_REPLY if refuse_at == "RCPT" else REFUSE_DATA_REPLY
    handler = _Handler(target, refuse_at if refuse else None, refuse_reply or default_reply)
    options: dict[str, Any] = {
        "server_hostname": "smtp.test",
        "ready_timeout": 5.0,
        "enable_SMTPUTF8": smtputf8,
    }
    if starttls is not None:
        options.update(tls_context=starttls.server, require_starttls=True)
    if implicit_tls is not None:
        options.update(ssl_context=implicit_tls.server)
    if credentials is not None:
        options.update(authenticator=_authenticator(*credentials), auth_required=True)
    controller = Controller(handler, hostname=target.host, port=target.port, **options)
    await asyncio.to_thread(controller.start)
    try:
        yield target
    finally:
        await asyncio.to_thread(controller.stop)


class _Silent(asyncio.Protocol):
    """Accepts the connection and never says a word (no SMTP greeting)."""

    def __init__(self, transports: list[asyncio.BaseTransport]) -> None:
        self._transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transports.append(transport)


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts and stays silent; yields its port."""
    transports: list[asyncio.BaseTransport] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Silent(transports), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for transport in transports:
            transport.close()
        server.close()
        await server.wait_closed()


def self_signed_tls(directory: Path) -> TlsContexts:
    """A throw-away certificate for 127.0.0.1, made with the ``openssl`` command.

    ``cryptography`` is not a dependency of the project, so the test that
    needs this is skipped where no ``openssl`` executable is installed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl executable to make a self-signed certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(  # noqa: S603 (fixed arguments, no shell)
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return TlsContexts(server=server, client=client)


def files_in(directory: Path) -> list[Path]:
    """The files of an outbox, sorted by name (so by time)."""
    return sorted(directory.iterdir())


def text_part(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage), "no text/plain part"
    content: str = body.get_content()
    return content


def extract_code(message: EmailMessage) -> str:
    """The security code of the text part: the line "1 2 3 4 5 6" → ``"123456"``."""
    # Lines are matched whole, so "15 minutes" or a date can never pass for the code.
    for line in text_part(message).splitlines():
        if _SPACED_CODE.fullmatch(line.strip()):
            return line.strip().replace(" ", "")
    raise AssertionError("no spaced six-digit code in the text part")
