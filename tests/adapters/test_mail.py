"""The security-code email (step 2 of the guide) and the outbox mailer."""

from __future__ import annotations

import os
import re
import threading
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ameli_grpc.adapters import security_code_email
from ameli_grpc.adapters.outbox import OutboxMailer
from ameli_grpc.adapters.security_code_email import (
    SecurityCodeEmails,
    build_security_code_email,
    smtp_bytes,
)
from ameli_grpc.domain.errors import DependencyUnavailable
from tests.support.mail import extract_code, files_in, text_part

SENDER = "Votre Assurance Maladie <ne-pas-repondre@app.assurance-maladie.fr>"
TO = "toto@test.com"
CODE = "123456"

# The body of step 2, word for word from the guide.
GUIDE_PARAGRAPHS = (
    "Bonjour,",
    "Nous vous adressons votre code de sécurité pour vous connecter à votre compte ameli :",
    "1 2 3 4 5 6",
    "Attention ! Ce code est valable seulement 15 minutes. "
    "Au-delà de ce délai, vous devrez demander un nouveau code.",
    "Ce code est strictement personnel et ne doit jamais être communiqué.",
    "Nous ne demandons jamais de code par téléphone.",
    "Si vous n'êtes pas à l'origine de cette demande, contactez votre caisse d'assurance "
    "maladie qui vous donnera les consignes à suivre. "
    "Sachez néanmoins que votre compte ameli reste sécurisé.",
    "Ce message est généré par un automate. Ne pas utiliser la fonctionnalité « répondre à ».",
    "Merci de votre confiance.",
    "Votre caisse d'assurance maladie",
    "Besoin d'accéder à vos remboursements où que vous soyez ?",
    "Téléchargez gratuitement l'appli ameli depuis l'App Store ou Google Play",
)


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def html_part(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("html",))
    assert isinstance(body, EmailMessage)
    content: str = body.get_content()
    return content


def visible_text(html: str) -> str:
    parser = _TextOf()
    parser.feed(html)
    return re.sub(r"\s+", " ", "".join(parser.chunks))


def read_eml(path: Path) -> EmailMessage:
    parsed = BytesParser(policy=default, _class=EmailMessage).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def roundtrip(message: EmailMessage) -> EmailMessage:
    parsed = BytesParser(policy=default, _class=EmailMessage).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_headers_follow_the_guide() -> None:
    """The email comes from the configured sender with the guide's subject, a date and an id."""
    message = roundtrip(build_security_code_email(SENDER, TO, CODE, 15))

    assert message["Subject"] == "Votre code de sécurité pour votre compte ameli"
    assert message["From"] == SENDER
    assert message["To"] == TO
    assert message["Date"].datetime is not None
    assert re.fullmatch(r"<[^<>@\s]+@app\.assurance-maladie\.fr>", message["Message-ID"])


def _comparable(data: bytes) -> bytes:
    """The email with what differs from one email to the next (its date, its id, its MIME
    boundary) replaced by stand-ins."""
    data = re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", data)
    data = re.sub(rb"\r\nMessage-ID: <[0-9a-f]{32}@", b"\r\nMessage-ID: <-@", data)
    (boundary,) = set(re.findall(rb'boundary="([^"]+)"', data))
    return data.replace(boundary, b"-")


PLAIN_LOCAL = st.from_regex(
    r"[a-z0-9!#$%&'*+/?^_`{|}~-]{1,20}(\.[A-Za-z0-9_-]{1,10}){0,2}", fullmatch=True
)
PLAIN_DOMAIN = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,10}){1,3}", fullmatch=True
)
ANY_ADDRESS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", PLAIN_LOCAL, PLAIN_DOMAIN),
    st.emails(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    to=ANY_ADDRESS,
    code=st.from_regex(r"[0-9]{6}", fullmatch=True),
    valid_minutes=st.sampled_from([15, 1, 90]),
    eight_bit=st.booleans(),
)
def test_the_prepared_email_is_the_email_packages_byte_for_byte(
    to: str, code: str, valid_minutes: int, eight_bit: bool
) -> None:
    """Whichever way an email is made (prepared bytes for plain addresses, the email
    package for any other), its bytes are those the email package writes for SMTP, but for
    its date, id and boundary."""
    built = build_security_code_email(SENDER, to, code, valid_minutes)
    expected = smtp_bytes(built, utf8=not to.isascii(), eight_bit=eight_bit)
    email = EMAILS.email(to, code, valid_minutes)
    assert email.recipient == to
    assert _comparable(email.data(eight_bit=eight_bit)) == _comparable(expected)


EMAILS = SecurityCodeEmails(SENDER)


def test_plain_addresses_are_prepared_once_per_validity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The email package writes the prepared email once (with a few codes, to find the
    digits), then never again for plain addresses; any other address is built in full."""
    built: list[str] = []
    real_build = security_code_email.build_security_code_email

    def build(sender: str, to: str, *args: Any, **kwargs: Any) -> EmailMessage:
        built.append(to)
        return real_build(sender, to, *args, **kwargs)

    monkeypatch.setattr(security_code_email, "build_security_code_email", build)
    emails = SecurityCodeEmails(SENDER)
    for number in range(5):
        emails.email(f"assure.{number}@test.com", f"{number:06d}", 15).data(eight_bit=True)
    assert len(built) == 7  # the layout: one email, then one per digit of the code
    emails.email('"quoted local"@test.com', CODE, 15).data(eight_bit=True)
    emails.email("assure@exémple.fr", CODE, 15)
    assert built[7:] == ['"quoted local"@test.com', "assure@exémple.fr"]


def test_an_address_with_a_mime_boundarys_characters_is_built_in_full() -> None:
    """An "=" in the address could spell the prepared email's boundary: never prepared."""
    to = "===============1234567890123456789==@test.com"
    email = SecurityCodeEmails(SENDER).email(to, CODE, 15)
    parsed = BytesParser(policy=default, _class=EmailMessage).parsebytes(email.data(eight_bit=True))
    assert extract_code(parsed) == CODE


def test_each_email_keeps_its_own_headers() -> None:
    """The header classes are made once for all emails (for speed), never their values; the
    bytes are those the standard policy writes."""
    first = build_security_code_email(SENDER, TO, CODE, 15)
    second = build_security_code_email(SENDER, "autre@test.com", "123456", 15)
    assert (roundtrip(first)["To"], roundtrip(second)["To"]) == (TO, "autre@test.com")
    assert first["Message-ID"] != second["Message-ID"]
    assert first.as_bytes() == first.as_bytes(policy=default)


def test_text_and_html_alternatives_in_utf8() -> None:
    """The email is multipart/alternative with a UTF-8 text part and a UTF-8 HTML part."""
    message = roundtrip(build_security_code_email(SENDER, TO, CODE, 15))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)


def test_text_part_has_every_paragraph_of_the_guide_in_order() -> None:
    """The text part carries the whole body of step 2, in the guide's order."""
    text = text_part(roundtrip(build_security_code_email(SENDER, TO, CODE, 15)))

    positions = [text.find(paragraph) for paragraph in GUIDE_PARAGRAPHS]
    assert -1 not in positions, [p for p in GUIDE_PARAGRAPHS if p not in text]
    assert positions == sorted(positions)


def test_html_part_shows_the_same_text_escaped() -> None:
    """The HTML part shows every paragraph of the guide, with its apostrophes and quotes escaped."""
    html = html_part(roundtrip(build_security_code_email(SENDER, TO, CODE, 15)))

    text = visible_text(html)
    for paragraph in GUIDE_PARAGRAPHS:
        assert paragraph in text
    assert escape("Si vous n'êtes pas à l'origine") in html
    assert "n'êtes" not in html
    assert "<strong>15 minutes</strong>" in html
    assert '<html lang="fr">' in html


def test_html_part_loads_no_external_resource() -> None:
    """The HTML part has inline styles only: no image, stylesheet, script or remote URL."""
    html = html_part(build_security_code_email(SENDER, TO, CODE, 15)).lower()

    for forbidden in ("<img", "<link", "<script", "<style", "url(", "http:", "https:"):
        assert forbidden not in html


@pytest.mark.parametrize(
    ("minutes", "expected"), [(15, "15 minutes."), (5, "5 minutes."), (1, "1 minute.")]
)
def test_validity_follows_the_configured_lifetime(minutes: int, expected: str) -> None:
    """The warning states the configured lifetime, "minute" in the singular for one."""
    message = roundtrip(build_security_code_email(SENDER, TO, CODE, minutes))

    assert f"valable seulement {expected}" in text_part(message)
    assert f"valable seulement {expected}" in visible_text(html_part(message))


def test_code_is_spaced_and_keeps_its_leading_zero() -> None:
    """The code is written as six digits separated by single spaces, leading zero included."""
    message = roundtrip(build_security_code_email(SENDER, TO, "012345", 15))

    assert "0 1 2 3 4 5" in text_part(message)
    assert "0 1 2 3 4 5" in html_part(message)
    assert extract_code(message) == "012345"


@pytest.mark.parametrize(
    ("to", "code", "minutes"),
    [
        ("victim@test.com\nBcc: other@evil.test", CODE, 15),
        ("a@test.com, b@test.com", CODE, 15),
        ("", CODE, 15),
        (TO, "12<b>3", 15),
        (TO, CODE, 0),
    ],
)
def test_malformed_input_is_refused(to: str, code: str, minutes: int) -> None:
    """A second recipient, a header injection, a non-digit code or no validity is refused."""
    with pytest.raises(ValueError, match=r"^(?!.*@)"):
        build_security_code_email(SENDER, to, code, minutes)


async def test_outbox_mailer_writes_a_parseable_eml(tmp_path: Path) -> None:
    """The outbox mailer creates its directory and writes one .eml file not named after anyone."""
    directory = tmp_path / "var" / "outbox"
    await OutboxMailer(directory, SENDER).send_security_code(TO, CODE, 15)

    files = files_in(directory)
    assert len(files) == 1
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{32}\.eml", files[0].name)
    message = read_eml(files[0])
    assert message["To"] == TO
    assert message["From"] == SENDER
    assert extract_code(message) == CODE


async def test_outbox_mailer_logs_the_masked_address_and_file_only(tmp_path: Path) -> None:
    """The outbox mailer logs one line with the masked address and the file name, never the code."""
    with capture_logs() as logs:
        await OutboxMailer(tmp_path, SENDER).send_security_code(TO, CODE, 15)

    assert len(logs) == 1
    (written,) = files_in(tmp_path)
    assert logs[0]["to"] == "t***@t***.com"
    assert logs[0]["outbox_file"] == written.name
    dump = repr(logs)
    for secret in (CODE, "1 2 3 4 5 6", TO, "toto"):
        assert secret not in dump


async def test_outbox_mailer_writes_each_email_to_its_own_file(tmp_path: Path) -> None:
    """Two emails sent at once land in two files and no temporary file is left behind."""
    mailer = OutboxMailer(tmp_path, SENDER)
    await mailer.send_security_code(TO, "111111", 15)
    await mailer.send_security_code(TO, "222222", 15)

    files = files_in(tmp_path)
    assert [path.suffix for path in files] == [".eml", ".eml"]
    assert {extract_code(read_eml(path)) for path in files} == {"111111", "222222"}


async def test_outbox_mailer_writes_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox file is written in a worker thread, never on the event loop's thread."""
    threads: list[threading.Thread] = []
    real_replace = os.replace

    def spy(source: str, target: Path) -> None:
        threads.append(threading.current_thread())
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    await OutboxMailer(tmp_path, SENDER).send_security_code(TO, CODE, 15)

    assert threads
    assert threads[0] is not threading.current_thread()


async def test_outbox_mailer_that_cannot_write_is_unavailable(tmp_path: Path) -> None:
    """An outbox that cannot be written raises DependencyUnavailable and leaves no file."""
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the directory should be")

    with capture_logs() as logs, pytest.raises(DependencyUnavailable) as raised:
        await OutboxMailer(blocker / "mails", SENDER).send_security_code(TO, CODE, 15)

    assert isinstance(raised.value.__cause__, OSError)
    assert logs == []
    assert files_in(tmp_path) == [blocker]
