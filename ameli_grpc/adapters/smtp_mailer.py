"""``Mailer`` over SMTP (aiosmtplib): connections kept for the next emails, one timeout.

Whatever goes wrong on the way (connection, TLS, authentication, a refusal
of the sender, the recipient or the data, a silent server) becomes
``DependencyUnavailable``, so the code is never counted as sent.

A connection that delivered an email is kept, idle, for the next one (at most
``KEEP_IDLE`` of them, for ``IDLE_SECONDS``): a new connection per email costs
a TCP and TLS handshake, the greeting, EHLO and the login, several times the
CPU of the email itself. Each connection carries one email at a time. One
that failed in any way is closed, never reused. A kept connection the relay
closed meanwhile is noticed when it is taken, or by the failure of its first
command: the email then goes once more, on a new connection (a relay that
dropped the connection has not accepted the email; in the narrow case where
it accepted it and dropped the connection before answering, the person
receives the same code twice).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from email.utils import parseaddr

import aiosmtplib
import structlog

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.security_code_email import OutgoingEmail, SecurityCodeEmails
from ameli_grpc.adapters.tracing import span
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.masking import mask_email

_log = structlog.get_logger(__name__)

KEEP_IDLE = 8  # idle connections kept at most; a burst opens more and closes the extra ones
# Relays drop an idle client after a few minutes (RFC 5321 §4.5.3.2.7: at least 5); well
# before that, a kept connection is closed rather than found closed.
IDLE_SECONDS = 30.0


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
        self._emails = SecurityCodeEmails(sender)
        self._envelope_sender = parseaddr(sender)[1]
        self._starttls = starttls
        self._use_tls = use_tls
        self._username = username or None
        self._password = password if self._username else None
        self._timeout = timeout
        self._tls_context = tls_context
        if self._username and not (starttls or use_tls):
            _log.warning("smtp_credentials_without_tls", host=host, port=port)
        # Our name in EHLO: looked up once (in a thread, it may query DNS), not per connection.
        self._local_hostname: str | None = None
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # with when each became idle

    async def send_security_code(self, to: str, code: str, valid_minutes: int) -> None:
        email = self._emails.email(to, code, valid_minutes)
        try:
            # OSError covers refused connections and TLS errors (ssl.SSLError is one);
            # TimeoutError the overall bound. The error's text may quote the address: not logged.
            with map_outages("smtp", (aiosmtplib.SMTPException, OSError, TimeoutError)):
                await self._send(email)
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

    async def _send(self, email: OutgoingEmail) -> None:
        where: dict[str, str | int] = {"server.address": self._host, "server.port": self._port}
        with span("smtp send", where):
            async with asyncio.timeout(self._timeout):
                kept = self._take_idle()
                if kept is not None:
                    try:
                        await self._deliver(kept, email)
                        return
                    except aiosmtplib.SMTPServerDisconnected:
                        pass  # closed by the relay while idle: once more, on a new connection
                await self._deliver(await self._connect(), email)

    async def _deliver(self, client: aiosmtplib.SMTP, email: OutgoingEmail) -> None:
        """One email on ``client``, kept for the next one if all went well, else closed.

        As aiosmtplib's ``send_message`` would: 8-bit bodies only for a relay that
        offers 8BITMIME, SMTPUTF8 asked for a non-ASCII address (refused by a relay
        that does not offer it)."""
        try:
            options: list[str] = []
            if email.smtputf8:
                if not client.supports_extension("smtputf8"):
                    raise aiosmtplib.SMTPNotSupported("the relay does not offer SMTPUTF8")
                options.append("SMTPUTF8")
            eight_bit = client.supports_extension("8bitmime")
            if eight_bit:
                options.append("BODY=8BITMIME")
            refused, _ = await client.sendmail(
                self._envelope_sender,
                [email.recipient],
                email.data(eight_bit=eight_bit),
                mail_options=options,
            )
        except BaseException:
            client.close()
            raise
        if refused:
            client.close()
            raise DependencyUnavailable("smtp", "SMTPRecipientsRefused")
        if len(self._idle) < KEEP_IDLE and client.is_connected:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        """The most recently used idle connection still open; the stale ones are closed."""
        fresh_since = time.monotonic() - IDLE_SECONDS
        while self._idle:
            client, since = self._idle.pop()
            if since >= fresh_since and client.is_connected:
                return client
            client.close()
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            local_hostname=self._local_hostname,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            start_tls=self._starttls,
            tls_context=self._tls_context,
            timeout=self._timeout,
        )
        try:
            await client.connect()  # with STARTTLS and the login, when configured
            if client.is_ehlo_or_helo_needed:  # the relay's extensions decide the email's form
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except BaseException:
            client.close()
            raise
        return client

    async def check(self) -> str:
        """Connect as a send would (TLS or STARTTLS, the login), say EHLO: what answered.

        For ``check-config --connect``; the connection is not kept.
        """
        client = await self._connect()
        try:
            await client.ehlo()
            return "EHLO answered, login accepted" if self._username else "EHLO answered"
        finally:
            client.close()

    async def aclose(self) -> None:
        """Say QUIT on the idle connections (the server stops)."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                async with asyncio.timeout(1.0):
                    await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
