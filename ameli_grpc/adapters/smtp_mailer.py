"""``Mailer`` over SMTP (aiosmtplib): one connection per email, bounded by one timeout.

Whatever goes wrong on the way (connection, TLS, authentication, a refusal
of the sender, the recipient or the data, a silent server) becomes
``DependencyUnavailable``, so the code is never counted as sent.
"""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib
import structlog

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.security_code_email import build_security_code_email
from ameli_grpc.adapters.tracing import span
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.masking import mask_email

_log = structlog.get_logger(__name__)


class SmtpMailer:
    """Send the security-code email through an SMTP relay.

    ``starttls`` upgrades a plain connection (port 587), ``use_tls`` speaks
    TLS from the first byte (port 465); with neither, nothing is encrypted.
    ``timeout`` bounds the whole send, from connecting to the server's
    answer to the data. ``tls_context`` replaces the default (system CAs).
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool,
        use_tls: bool,
        username: str | None,
        password: str | None,
        timeout: float,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if timeout <= 0:
            raise ValueError("the SMTP timeout must be positive")
        self._host = host
        self._port = port
        self._sender = sender
        self._envelope_sender = parseaddr(sender)[1]
        self._starttls = starttls
        self._use_tls = use_tls
        self._username = username or None
        self._password = password if self._username else None
        self._timeout = timeout
        self._tls_context = tls_context
        if self._username and not (starttls or use_tls):
            _log.warning("smtp_credentials_without_tls", host=host, port=port)

    async def send_security_code(self, to: str, code: str, valid_minutes: int) -> None:
        message = build_security_code_email(self._sender, to, code, valid_minutes)
        recipient = message["To"].addresses[0].addr_spec
        try:
            # OSError covers refused connections and TLS errors (ssl.SSLError is one);
            # TimeoutError the overall bound. The error's text may quote the address: not logged.
            with map_outages("smtp", (aiosmtplib.SMTPException, OSError, TimeoutError)):
                await self._send(message, recipient)
        except DependencyUnavailable as error:
            _log.warning(
                "security_code_email_failed",
                dependency="smtp",
                transport="smtp",
                to=mask_email(to),
                error=error.detail,
            )
            raise
        _log.info("security_code_email_sent", transport="smtp", to=mask_email(to))

    async def _send(self, message: EmailMessage, recipient: str) -> None:
        where: dict[str, str | int] = {"server.address": self._host, "server.port": self._port}
        with span("smtp send", where):
            async with asyncio.timeout(self._timeout):
                refused, _ = await aiosmtplib.send(
                    message,
                    sender=self._envelope_sender,
                    recipients=[recipient],
                    hostname=self._host,
                    port=self._port,
                    username=self._username,
                    password=self._password,
                    use_tls=self._use_tls,
                    start_tls=self._starttls,
                    tls_context=self._tls_context,
                    timeout=self._timeout,
                )
        if refused:
            raise DependencyUnavailable("smtp", "SMTPRecipientsRefused")
