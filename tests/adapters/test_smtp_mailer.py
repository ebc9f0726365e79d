"""The SMTP mailer against an in-process aiosmtpd server, and every way a send can fail."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from ameli_grpc.adapters import smtp_mailer
from ameli_grpc.adapters.smtp_mailer import SmtpMailer
from ameli_grpc.domain.errors import DependencyUnavailable
from tests.support.mail import (
    SmtpTestServer,
    TlsContexts,
    extract_code,
    free_port,
    self_signed_tls,
    silent_server,
    smtp_server,
    text_part,
)

SENDER = "Votre Assurance Maladie <ne-pas-repondre@app.assurance-maladie.fr>"
TO = "toto@test.com"
CODE = "654321"
CREDENTIALS = ("relay-user", "relay-secret")


def mailer(port: int, **overrides: Any) -> SmtpMailer:
    options: dict[str, Any] = {
        "starttls": False,
        "use_tls": False,
        "username": None,
        "password": None,
        "timeout": 5.0,
    }
    options.update(overrides)
    return SmtpMailer("127.0.0.1", port, SENDER, **options)


def starttls_mailer(port: int, tls: TlsContexts, password: str = CREDENTIALS[1]) -> SmtpMailer:
    """STARTTLS with the relay's credentials (or another password), trusting its certificate."""
    return mailer(
        port, starttls=True, username=CREDENTIALS[0], password=password, tls_context=tls.client
    )


@contextmanager
def fails_within(seconds: float) -> Iterator[pytest.ExceptionInfo[DependencyUnavailable]]:
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        yield raised
    assert time.monotonic() - started < seconds
    assert raised.value.__cause__ is not None


@pytest.fixture
def tls(tmp_path: Path) -> TlsContexts:
    return self_signed_tls(tmp_path)


@pytest.fixture
async def server() -> AsyncIterator[SmtpTestServer]:
    async with smtp_server() as running:
        yield running


async def test_delivers_the_email_to_the_relay(server: SmtpTestServer) -> None:
    """The SMTP mailer hands the step-2 email to the relay, from the bare sender address."""
    await mailer(server.port).send_security_code(TO, CODE, 15)

    (message,) = await server.wait_for_messages(1)
    delivery = server.deliveries[0]
    assert delivery.mail_from == "ne-pas-repondre@app.assurance-maladie.fr"
    assert delivery.rcpt_tos == (TO,)
    assert message["Subject"] == "Votre code de sécurité pour votre compte ameli"
    assert message.get_content_type() == "multipart/alternative"
    assert extract_code(message) == CODE
    assert "valable seulement 15 minutes" in text_part(message)


async def test_a_plain_address_gets_the_prepared_email_with_8bit_bodies(
    server: SmtpTestServer,
) -> None:
    """The usual email: prepared bytes (none of the email package's work per email), sent
    with BODY=8BITMIME to a relay that offers it, parsed by the relay as the full email."""
    sender = mailer(server.port)
    await sender.send_security_code(TO, CODE, 15)
    await sender.send_security_code("autre@test.com", "123456", 15)

    first, second = server.deliveries
    assert (first.rcpt_tos, second.rcpt_tos) == ((TO,), ("autre@test.com",))
    assert "BODY=8BITMIME" in first.mail_options
    assert (extract_code(first.message), extract_code(second.message)) == (CODE, "123456")
    assert first.message["Message-ID"] != second.message["Message-ID"]
    assert (first.message["To"], second.message["To"]) == (TO, "autre@test.com")
    await sender.aclose()


async def test_a_non_ascii_address_is_sent_with_smtputf8() -> None:
    """An internationalised address (RFC 6531) goes through the email package and asks
    for SMTPUTF8; a relay that does not offer it refuses it: unavailable, nothing sent."""
    async with smtp_server(smtputf8=True) as server:
        await mailer(server.port).send_security_code("assure@exémple.fr", CODE, 15)
        (delivery,) = server.deliveries
        assert delivery.rcpt_tos == ("assure@exémple.fr",)
        assert {"SMTPUTF8", "BODY=8BITMIME"} <= set(delivery.mail_options)
        assert delivery.message["To"] == "assure@exémple.fr"
        assert extract_code(delivery.message) == CODE
    async with smtp_server() as server:
        with fails_within(5):
            await mailer(server.port).send_security_code("assure@exémple.fr", CODE, 15)
        assert server.deliveries == []


async def test_a_sender_named_in_utf8_needs_no_smtputf8(server: SmtpTestServer) -> None:
    """A display name with accents is encoded in its header (RFC 2047), as aiosmtplib did:
    ASCII addresses need no SMTPUTF8, so a relay without it takes the email."""
    named = "Assurance Maladie – ameli <ne-pas-repondre@app.assurance-maladie.fr>"
    await SmtpMailer(
        "127.0.0.1",
        server.port,
        named,
        starttls=False,
        use_tls=False,
        username=None,
        password=None,
        timeout=5.0,
    ).send_security_code(TO, CODE, 15)

    (delivery,) = server.deliveries
    assert "SMTPUTF8" not in delivery.mail_options
    assert delivery.message["From"] == named
    assert extract_code(delivery.message) == CODE


async def test_logs_the_masked_address_only(server: SmtpTestServer) -> None:
    """A sent email is logged with the masked address, never the code or the address."""
    with capture_logs() as logs:
        await mailer(server.port).send_security_code(TO, CODE, 15)

    assert [entry["to"] for entry in logs] == ["t***@t***.com"]
    assert CODE not in repr(logs)
    assert TO not in repr(logs)


@pytest.mark.parametrize("refuse_at", ["RCPT", "DATA"])
async def test_refusal_is_unavailable(refuse_at: Any) -> None:
    """A relay answering 554 to the recipient or 451 to the data makes the mailer unavailable."""
    async with smtp_server(refuse=True, refuse_at=refuse_at) as refusing:
        with capture_logs() as logs, fails_within(5):
            await mailer(refusing.port).send_security_code(TO, CODE, 15)
        assert refusing.deliveries == []
    assert [entry["to"] for entry in logs] == ["t***@t***.com"]
    assert TO not in repr(logs)


async def test_consecutive_emails_share_one_connection(tls: TlsContexts) -> None:
    """The connection of an email carries the next ones: one TLS handshake and one login."""
    async with smtp_server(starttls=tls, credentials=CREDENTIALS) as secure:
        relay = starttls_mailer(secure.port, tls)
        for _ in range(3):
            await relay.send_security_code(TO, CODE, 15)
        assert len(set(secure.mail_peers)) == 1
        assert [(d.tls, d.login) for d in secure.deliveries] == [(True, CREDENTIALS[0])] * 3


async def test_concurrent_emails_each_have_their_own_connection(
    server: SmtpTestServer,
) -> None:
    """Emails sent at the same time go on connections of their own; the next one reuses one."""
    relay = mailer(server.port)
    server.delay = 0.2
    await asyncio.gather(*(relay.send_security_code(TO, CODE, 15) for _ in range(3)))
    server.delay = 0.0
    await relay.send_security_code(TO, CODE, 15)
    first_three, last = server.mail_peers[:3], server.mail_peers[3]
    assert len(set(first_three)) == 3
    assert last in first_three


async def test_connection_dropped_by_the_relay_is_replaced(server: SmtpTestServer) -> None:
    """A kept connection the relay closed meanwhile: the email goes on a new one, once."""
    relay = mailer(server.port)
    await relay.send_security_code(TO, CODE, 15)
    server.hang_up_at_mail = 1  # the relay drops the idle connection as it is used again
    await relay.send_security_code(TO, "111111", 15)
    assert len(server.deliveries) == 2
    assert extract_code(server.messages[1]) == "111111"
    assert len(set(server.mail_peers)) == 2


async def test_new_connection_dropped_is_unavailable(server: SmtpTestServer) -> None:
    """On a new connection a hang-up is not retried: the relay is unavailable."""
    server.hang_up_at_mail = 2
    with fails_within(5):
        await mailer(server.port).send_security_code(TO, CODE, 15)
    assert server.deliveries == []


async def test_a_refused_email_leaves_no_connection_behind(server: SmtpTestServer) -> None:
    """A connection on which anything failed is closed: the next email opens a new one."""
    relay = mailer(server.port)
    server.refusing = True
    with fails_within(5):
        await relay.send_security_code(TO, CODE, 15)
    server.refusing = False
    await relay.send_security_code(TO, CODE, 15)
    refused_on, delivered_on = server.mail_peers
    assert refused_on != delivered_on


async def test_idle_connections_expire_and_close_on_stop(
    server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle for longer than IDLE_SECONDS, or kept when the server stops, is
    not used again; the host name said in EHLO is looked up once."""
    lookups: list[str] = []

    def getfqdn() -> str:
        lookups.append("svc.test")
        return "svc.test"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    relay = mailer(server.port)
    monkeypatch.setattr(smtp_mailer, "IDLE_SECONDS", -1.0)
    await relay.send_security_code(TO, CODE, 15)
    await relay.send_security_code(TO, CODE, 15)
    monkeypatch.setattr(smtp_mailer, "IDLE_SECONDS", 30.0)
    await relay.aclose()
    await relay.send_security_code(TO, CODE, 15)
    assert len(set(server.mail_peers)) == 3
    assert len(lookups) == 1


async def test_closed_port_is_unavailable_at_once() -> None:
    """A relay that refuses the connection makes the mailer unavailable at once."""
    with fails_within(2):
        await mailer(free_port()).send_security_code(TO, CODE, 15)


async def test_silent_server_is_unavailable_after_the_timeout() -> None:
    """A relay that accepts the connection but never greets fails once the timeout is spent."""
    async with silent_server() as port:
        with fails_within(2):
            await mailer(port, timeout=0.3).send_security_code(TO, CODE, 15)


async def test_starttls_with_credentials_delivers(tls: TlsContexts) -> None:
    """With STARTTLS and credentials the email goes through an encrypted, authenticated session."""
    async with smtp_server(starttls=tls, credentials=CREDENTIALS) as secure:
        relay = starttls_mailer(secure.port, tls)
        await relay.send_security_code(TO, CODE, 15)

        await secure.wait_for_messages(1)
    assert secure.deliveries[0].tls
    assert secure.deliveries[0].login == CREDENTIALS[0]
    assert extract_code(secure.messages[0]) == CODE


async def test_wrong_password_is_unavailable(tls: TlsContexts) -> None:
    """Credentials the relay rejects make the mailer unavailable."""
    async with smtp_server(starttls=tls, credentials=CREDENTIALS) as secure:
        relay = starttls_mailer(secure.port, tls, password="wrong")
        with fails_within(5):
            await relay.send_security_code(TO, CODE, 15)
        assert secure.deliveries == []


async def test_untrusted_certificate_is_unavailable(tls: TlsContexts) -> None:
    """A relay whose certificate the system does not trust is never sent the email."""
    async with smtp_server(starttls=tls) as secure:
        with fails_within(5):
            await mailer(secure.port, starttls=True).send_security_code(TO, CODE, 15)
        assert secure.deliveries == []


async def test_relay_requiring_starttls_refuses_plain_text(tls: TlsContexts) -> None:
    """A mailer not configured for STARTTLS is refused by a relay that requires it."""
    async with smtp_server(starttls=tls) as secure:
        with fails_within(5):
            await mailer(secure.port).send_security_code(TO, CODE, 15)
        assert secure.deliveries == []


async def test_implicit_tls_delivers(tls: TlsContexts) -> None:
    """With implicit TLS (port 465 style) the email is delivered over TLS from the first byte."""
    async with smtp_server(implicit_tls=tls) as secure:
        await mailer(secure.port, use_tls=True, tls_context=tls.client).send_security_code(
            TO, CODE, 15
        )
        await secure.wait_for_messages(1)
    assert secure.deliveries[0].tls


def test_starttls_and_implicit_tls_together_are_refused() -> None:
    """STARTTLS and implicit TLS cannot both be configured."""
    with pytest.raises(ValueError, match="not both"):
        mailer(25, starttls=True, use_tls=True)


async def test_check_connects_as_a_send_would(tls: TlsContexts) -> None:
    """``check-config --connect``'s probe: STARTTLS and the login as for an email, then EHLO."""
    async with smtp_server(starttls=tls, credentials=CREDENTIALS) as secure:
        assert await starttls_mailer(secure.port, tls).check() == "EHLO answered, login accepted"
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await starttls_mailer(secure.port, tls, password="wrong").check()
        assert secure.deliveries == []
