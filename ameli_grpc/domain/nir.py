"""The NIR (numéro de sécurité sociale): what the insured person types as an identifier."""

from __future__ import annotations

from dataclasses import dataclass

from stdnum.exceptions import ValidationError
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

        Raises ``AuthError(INVALID_NIR)`` otherwise.
        """
        compact = "".join(raw.split()).upper() if len(raw) <= MAX_NIR_INPUT else ""
        if len(compact) == 13 and compact.isascii():
            compact += stdnum_nir.calc_check_digits(compact) if _body_is_wellformed(compact) else ""
        try:
            valid = stdnum_nir.validate(compact) if compact.isascii() else ""
        except (ValidationError, ValueError):
            valid = ""
        if len(valid) != 15:
            raise AuthError(
                ErrorReason.INVALID_NIR,
                Messages.INVALID_NIR,
                violations=(FieldViolation(field, Messages.NIR_FORMAT),),
            )
        return cls(valid[:13])

    def __repr__(self) -> str:  # a NIR must never end up in a log line by accident
        return "Nir(***)"

    __str__ = __repr__


def _body_is_wellformed(body: str) -> bool:
    digits = body[:5] + body[7:]
    return digits.isdigit() and (body[5:7].isdigit() or body[5:7] in ("2A", "2B"))
