"""How personal data is shown back: the masked forms of the guide."""

from __future__ import annotations


def mask_email(email: str) -> str:
    """``toto@test.com`` → ``t***@t***.com`` (guide, step 1)."""
    local, _, domain = email.strip().rpartition("@")
    labels = domain.split(".")
    suffix = f".{labels[-1]}" if len(labels) > 1 else ""
    return f"{local[:1]}***@{domain[:1]}***{suffix}"


def mask_phone(phone: str) -> str:
    """``06 12 34 56 78`` (or ``+33 6 12 34 56 78``) → ``06******78``: two digits each end."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if phone.strip().startswith("+33"):
        digits = "0" + digits[2:]
    if len(digits) < 6:
        return "*" * len(digits)
    return f"{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"
