"""How personal data is shown back: the masked forms of the guide."""

from __future__ import annotations

from ameli_grpc.domain.phone import InvalidPhoneNumber, PhoneNumber


def mask_email(email: str) -> str:
    """``toto@test.com`` → ``t***@t***.com`` (guide, step 1)."""
    local, _, domain = email.strip().rpartition("@")
    labels = domain.split(".")
    suffix = f".{labels[-1]}" if len(labels) > 1 else ""
    return f"{local[:1]}***@{domain[:1]}***{suffix}"


def mask_phone(phone: str) -> str:
    """``06 12 34 56 78`` (or ``+33 6 12 34 56 78``) → ``06******78``: two digits each end.

    A number of the French plan is masked in its national form, overseas too
    (``+590 690 12 34 56`` → ``06******56``); any other, from its digits.
    """
    try:
        digits = PhoneNumber.parse(phone).national or ""
    except InvalidPhoneNumber:
        digits = ""
    digits = digits or "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 6:
        return "*" * len(digits)
    return f"{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"
