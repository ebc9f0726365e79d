"""The NIR (numéro de sécurité sociale): what the insured person types as an identifier."""

from __future__ import annotations

from dataclasses import dataclass

from stdnum.fr import nir as stdnum_nir

from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.messages import Messages

MAX_NIR_INPUT = 64  # generous for 15 characters and separators; longer input is not a NIR


@dataclass(frozen=True)
class Nir:
    """A valid NIR in its 13-character form (without the 2-digit key)."""

    value: str

    @classmethod
    def parse(cls, raw: str, field: str = "nir") -> Nir:
        """Accept 13 characters, or 15 with a correct key; spaces are ignored; Corsica 2A/2B too.

        Raises ``AuthError(INVALID_NIR)`` otherwise. The form is checked here (every call
        parses a NIR, most twice: cheap checks first); the key by python-stdnum.
        """
        compact = "".join(raw.split()).upper() if len(raw) <= MAX_NIR_INPUT else ""
        if compact.isascii():
            if len(compact) == 13:
                if _body_is_wellformed(compact):
                    return cls(compact)
            else:
                number = compact.replace(".", "")  # as stdnum's compact() drops dots
                if (
                    len(number) == 15
                    and _body_is_wellformed(number[:13])
                    and number[13:].isdigit()
                    and stdnum_nir.calc_check_digits(number) == number[13:]
                ):
                    return cls(number[:13])
        raise AuthError(
            ErrorReason.INVALID_NIR,
            Messages.INVALID_NIR,
            violations=(FieldViolation(field, Messages.NIR_FORMAT),),
        )

    def __repr__(self) -> str:  # a NIR must never end up in a log line by accident
        return "Nir(***)"

    __str__ = __repr__


def _body_is_wellformed(body: str) -> bool:
    """13 ASCII characters: digits, but 2A or 2B (Corsica) for the department."""
    digits = body[:5] + body[7:]
    return digits.isdigit() and (body[5:7].isdigit() or body[5:7] in ("2A", "2B"))
