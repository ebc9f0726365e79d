"""The security-code email of step 2 (its French texts are in ``domain/messages.py``).

One builder serves every ``Mailer`` adapter: the outbox writes what it builds,
and the SMTP mailer sends ``SecurityCodeEmails``' prepared bytes, which a test
holds to the builder's, byte for byte (but for the date, the id and the MIME
boundary): the outbox's email is the very email an SMTP relay receives.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, parseaddr
from html import escape
from uuid import uuid4

from ameli_grpc.domain.messages import (
    APP_FOOTER,
    AUTOMATED,
    BANNER,
    GREETING,
    INTRO,
    NO_PHONE,
    NOT_YOU,
    PERSONAL,
    SIGNATURE,
    SUBJECT,
    THANKS,
    VALIDITY,
    minutes,
)

# Inline styles only: mail clients drop <style> blocks and external resources.
_FONT = "font-family:Arial,Helvetica,sans-serif;color:#1a1a1a;font-size:16px;line-height:1.5"
_BANNER_STYLE = (
    "margin:0 0 24px;padding:12px 16px;background:#0c419a;color:#ffffff;"
    "font-size:18px;font-weight:bold;letter-spacing:1px"
)
_CODE_STYLE = (
    "margin:24px 0;font-family:'Courier New',Courier,monospace;font-size:32px;"
    "font-weight:bold;letter-spacing:4px;color:#0c419a"
)
_FOOTER_STYLE = "margin:32px 0 0;padding-top:16px;border-top:1px solid #cccccc;font-size:14px"
_P = "margin:0 0 16px"


class _HeaderClasses(HeaderRegistry):
    """The standard header classes, each made once per header name.

    ``HeaderRegistry`` makes a new class for every header it parses or writes:
    that was a third of the email's CPU. The classes it makes for one name are
    all alike (the values live in their instances), so one of each serves.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# The standard policy (what EmailMessage() uses), with the header classes made once.
_POLICY = default.clone(header_factory=_HeaderClasses())


def spaced_code(code: str) -> str:
    """``123456`` → ``1 2 3 4 5 6``: the digits as the guide prints them."""
    return " ".join(code)


def build_security_code_email(
    sender: str,
    to: str,
    code: str,
    valid_minutes: int,
    *,
    date: datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The step-2 email: ``multipart/alternative`` with a text and an HTML part (UTF-8).

    ``date`` (now) and ``message_id`` (a new one) are given by the tests only.
    Raises ``ValueError`` for a code that is not made of digits, a
    non-positive validity, or an address that would break the headers.
    """
    if not (code.isascii() and code.isdigit()):
        raise ValueError("the security code must be made of digits")
    if valid_minutes < 1:
        raise ValueError("the validity must be at least one minute")
    message = EmailMessage(policy=_POLICY)
    message["Subject"] = SUBJECT
    message["From"] = sender
    message["To"] = _recipient(to)
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id or new_message_id(_domain_of(sender))
    message.set_content(_text_body(code, valid_minutes), subtype="plain", charset="utf-8")
    message.add_alternative(_html_body(code, valid_minutes), subtype="html", charset="utf-8")
    return message


def new_message_id(domain: str) -> str:
    """``<32 hex digits@domain>``: unique (122 random bits), and of a known length.

    (``make_msgid`` would resolve the host name, blocking, without a domain.)
    """
    return f"<{uuid4().hex}@{domain}>"


def smtp_bytes(message: EmailMessage, *, utf8: bool, eight_bit: bool) -> bytes:
    """The email as an SMTP relay receives it (CRLF line ends), as aiosmtplib's
    ``send_message`` writes it: UTF-8 headers only when ``utf8`` (a non-ASCII
    address: SMTPUTF8), and 7-bit bodies for a relay without 8BITMIME."""
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    return message.as_bytes(policy=policy if eight_bit else policy.clone(cte_type="7bit"))


# The addresses the prepared emails serve: a dot-atom local part and domain in ASCII
# (without "=", which a MIME boundary is made of), short enough for their header line
# never to be folded. Any other (quoted, non-ASCII, long) goes through the email package.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_MAX_LINE = 78  # RFC 5322's recommended line length, where the email package folds
_CODE_LENGTH = 6
_CODE = re.compile(rf"[0-9]{{{_CODE_LENGTH}}}")


@dataclass(frozen=True)
class OutgoingEmail:
    """One security-code email for an SMTP relay: to whom, and its bytes for that relay."""

    recipient: str  # the envelope's (RCPT TO)
    smtputf8: bool  # a non-ASCII address: only for a relay that offers SMTPUTF8
    write: Callable[[bool], bytes]  # 8-bit bodies (the relay offers 8BITMIME) or 7-bit

    def data(self, *, eight_bit: bool) -> bytes:
        return self.write(eight_bit)


class SecurityCodeEmails:
    """The step-2 emails of one sender, for an SMTP relay, each for the cost of a join.

    The email package builds the MIME tree, folds every header and encodes both
    bodies for each email: about 1 ms of the event loop per email, where all
    but the recipient, the date, the message id and the code's digits are the
    same every time. Those bytes are written once per validity and relay kind
    (8-bit or 7-bit bodies), by the email package itself, and each email only
    fills in the parts that vary. The code's digits are found by writing the
    email with different codes and comparing: a digit is one byte wherever it
    lands (quoted-printable or 8-bit bodies), so every code has the same layout.

    Addresses other than plain ones (``_PLAIN_ADDRESS``: quoted, non-ASCII, or
    long enough to be folded) and unusual senders are built by
    ``build_security_code_email`` for each email, as before. A test holds the
    two ways to the same bytes.
    """

    def __init__(self, sender: str) -> None:
        self._sender = sender
        self._envelope_sender = parseaddr(sender)[1]
        self._domain = _domain_of(sender)
        id_line = f"Message-ID: {new_message_id(self._domain)}"
        self._prepares = sender.isascii() and sender.isprintable() and len(id_line) <= _MAX_LINE
        self._layouts: dict[tuple[int, bool], _Layout] = {}

    def email(self, to: str, code: str, valid_minutes: int) -> OutgoingEmail:
        """The email of ``code`` to ``to``; ``ValueError`` as ``build_security_code_email``."""
        to = to.strip()
        plain = len(to) <= _MAX_LINE - len("To: ") and _PLAIN_ADDRESS.fullmatch(to)
        if not (self._prepares and plain and _CODE.fullmatch(code) and valid_minutes >= 1):
            message = build_security_code_email(self._sender, to, code, valid_minutes)
            recipient = message["To"].addresses[0].addr_spec
            # The envelope's addresses decide, as for aiosmtplib: a display name in UTF-8
            # is encoded in the header (RFC 2047), it needs no SMTPUTF8.
            utf8 = not (recipient + self._envelope_sender).isascii()
            return OutgoingEmail(
                recipient,
                utf8,
                lambda eight_bit: smtp_bytes(message, utf8=utf8, eight_bit=eight_bit),
            )
        filled: dict[str | int, bytes] = {
            "to": f"To: {to}\r\n".encode("ascii"),
            "date": f"Date: {format_datetime(datetime.now(UTC))}\r\n".encode("ascii"),
            "id": f"Message-ID: {new_message_id(self._domain)}\r\n".encode("ascii"),
        }
        filled.update((index, digit.encode("ascii")) for index, digit in enumerate(code))
        return OutgoingEmail(
            to, False, lambda eight_bit: self._layout(valid_minutes, eight_bit).join(filled)
        )

    def _layout(self, valid_minutes: int, eight_bit: bool) -> _Layout:
        key = (valid_minutes, eight_bit)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = _Layout.of(self._sender, valid_minutes, eight_bit)
        return layout


_STAND_IN_TO = "recipient@stand-in.invalid"
_STAND_IN_DATE = datetime(2000, 1, 1, tzinfo=UTC)


class _Layout:
    """The bytes of one email cut where it varies: ``constants[0] slot[0] constants[1] …``.

    A slot is ``"to"``, ``"date"`` or ``"id"`` (a whole header line) or the index
    of a digit of the code.
    """

    def __init__(self, constants: list[bytes], slots: list[str | int]) -> None:
        self.constants = constants
        self.slots = slots

    def join(self, filled: Mapping[str | int, bytes]) -> bytes:
        """The email, each slot filled in."""
        parts = [self.constants[0]]
        for slot, constant in zip(self.slots, self.constants[1:], strict=True):
            parts += (filled[slot], constant)
        return b"".join(parts)

    @classmethod
    def of(cls, sender: str, valid_minutes: int, eight_bit: bool) -> _Layout:
        message_id = new_message_id(_domain_of(sender))
        # Chosen once, as the email package would for each email: no body line holds it.
        boundary = f"==============={uuid4().int % 10**19:019d}=="

        def written(code: str) -> bytes:
            message = build_security_code_email(
                sender,
                _STAND_IN_TO,
                code,
                valid_minutes,
                date=_STAND_IN_DATE,
                message_id=message_id,
            )
            message.set_boundary(boundary)
            return smtp_bytes(message, utf8=False, eight_bit=eight_bit)

        base = written("0" * _CODE_LENGTH)
        cuts: list[tuple[int, int, str | int]] = []  # start, end, slot
        for name, line in (
            ("to", f"To: {_STAND_IN_TO}\r\n"),
            ("date", f"Date: {format_datetime(_STAND_IN_DATE)}\r\n"),
            ("id", f"Message-ID: {message_id}\r\n"),
        ):
            start = base.index(line.encode("ascii"))
            cuts.append((start, start + len(line), name))
        for index in range(_CODE_LENGTH):
            other = written("0" * index + "1" + "0" * (_CODE_LENGTH - index - 1))
            if len(other) != len(base):
                raise AssertionError("the code's digits moved the email's layout")
            moved = [(at, at + 1, index) for at in range(len(base)) if other[at] != base[at]]
            if not moved:
                raise AssertionError("a digit of the code is not in the email")
            cuts += moved
        cuts.sort(key=lambda cut: cut[0])
        constants: list[bytes] = []
        slots: list[str | int] = []
        position = 0
        for start, end, slot in cuts:
            constants.append(base[position:start])
            slots.append(slot)
            position = end
        constants.append(base[position:])
        return cls(constants, slots)


def _recipient(to: str) -> Address:
    """Exactly one address, or ``ValueError`` (which never repeats the address)."""
    try:
        return Address(addr_spec=to.strip())
    except (ValueError, IndexError):
        raise ValueError("the recipient is not a single valid email address") from None


def _domain_of(sender: str) -> str:
    _, address = parseaddr(sender)
    domain = address.rpartition("@")[2]
    return domain or "ameli-grpc.invalid"


def _text_body(code: str, valid_minutes: int) -> str:
    paragraphs = (
        BANNER,
        GREETING,
        INTRO,
        spaced_code(code),
        VALIDITY.format(duration=minutes(timedelta(minutes=valid_minutes))),
        PERSONAL,
        NO_PHONE,
        NOT_YOU,
        AUTOMATED,
        f"{THANKS}\n\n{SIGNATURE}",
        "\n".join(APP_FOOTER),
    )
    return "\n\n".join(paragraphs) + "\n"


def _html_body(code: str, valid_minutes: int) -> str:
    before, _, after = VALIDITY.partition("{duration}")
    validity = (
        f"{escape(before)}<strong>{escape(minutes(timedelta(minutes=valid_minutes)))}</strong>"
        f"{escape(after)}"
    )
    paragraphs = "\n".join(
        f'<p style="{_P}">{escape(text)}</p>'
        for text in (PERSONAL, NO_PHONE, NOT_YOU, AUTOMATED, THANKS)
    )
    footer = "<br>\n".join(escape(line) for line in APP_FOOTER)
    return f"""<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(SUBJECT)}</title>
</head>
<body style="margin:0;padding:16px;background:#ffffff">
<div role="article" aria-label="{escape(SUBJECT)}" style="max-width:600px;margin:0 auto;{_FONT}">
<p style="{_BANNER_STYLE}">{escape(BANNER)}</p>
<p style="{_P}">{escape(GREETING)}</p>
<p style="{_P}">{escape(INTRO)}</p>
<p style="{_CODE_STYLE}">{escape(spaced_code(code))}</p>
<p style="{_P}">{validity}</p>
{paragraphs}
<p style="{_P}">{escape(SIGNATURE)}</p>
<p style="{_FOOTER_STYLE}">{footer}</p>
</div>
</body>
</html>
"""
