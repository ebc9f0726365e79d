"""The security-code email of step 2 (its French texts are in ``domain/messages.py``).

One builder serves every ``Mailer`` adapter (outbox and SMTP), so the message
written to the outbox is the very message an SMTP relay would receive.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape

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


def build_security_code_email(sender: str, to: str, code: str, valid_minutes: int) -> EmailMessage:
    """The step-2 email: ``multipart/alternative`` with a text and an HTML part (UTF-8).

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
    message["Date"] = format_datetime(datetime.now(UTC))
    # An explicit domain: make_msgid() would otherwise resolve the host name (blocking).
    message["Message-ID"] = make_msgid(domain=_domain_of(sender))
    message.set_content(_text_body(code, valid_minutes), subtype="plain", charset="utf-8")
    message.add_alternative(_html_body(code, valid_minutes), subtype="html", charset="utf-8")
    return message


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
