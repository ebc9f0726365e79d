"""A phone number on file: its E.164 form, and whether it can receive the advisor's SMS.

Numbers are read with ``phonenumbers`` (Google's libphonenumber metadata: which
blocks of which numbering plan are allocated, and to what). A national number
``0X XX XX XX XX`` belongs to the French plan, which the overseas departments
share: ``0690``/``0691`` are Guadeloupe, Saint-Martin and Saint-Barthélemy
(``+590``), ``0694`` Guyane (``+594``), ``0696``/``0697`` Martinique
(``+596``), ``0692``/``0693`` La Réunion and ``0639`` Mayotte (``+262``).
``phonenumbers`` read with the region ``FR`` alone turns ``0690 12 34 56`` into
an invalid ``+33690123456``, so a national number is read in each region of the
plan and the region where it is a valid mobile wins (no mobile block is valid in
two of them). A number in international form (``+590 690 …``, ``00590 690 …``,
``+33 (0)6 …``, or any other country's) says its country itself.

Only a mobile receives an SMS: landlines (``01``–``05``, ``0590``, ``0262``…),
``09`` (internet telephony), special and unallocated numbers do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

# The French numbering plan: metropolitan France first, then the overseas regions that share
# its ten-digit national form. Saint-Pierre-et-Miquelon's is shorter (``055 12 34``): a truncated
# metropolitan number could read as one, so it is accepted in international form only (``+508``).
FRENCH_PLAN_REGIONS = ("FR", "GP", "MF", "BL", "GF", "MQ", "RE", "YT")
MAX_PHONE_LENGTH = 32  # as typed, separators included (the accounts column holds 32)
_SEPARATORS = frozenset(" .-/()")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class InvalidPhoneNumber(ValueError):
    """Not a phone number (the message never quotes it)."""


@dataclass(frozen=True)
class PhoneNumber:
    """A valid phone number: ``e164`` (``+590690001234``), ``mobile`` if it can get an SMS."""

    e164: str
    mobile: bool
    national: str | None  # "0690001234" in the ten-digit French plan, else None

    @classmethod
    def parse(cls, raw: str) -> PhoneNumber:
        """Read a phone as typed or stored: national French form, or ``+``/``00`` international.

        Digits, spaces and ``. - / ( )`` only (no letters, no extension). Raises
        ``InvalidPhoneNumber`` unless it is a valid number of an allocated block.
        """
        text = raw.strip()
        body = text.removeprefix("+")
        if (
            not text
            or len(text) > MAX_PHONE_LENGTH
            or not body.isascii()
            or not any(ch.isdigit() for ch in body)
            or not all(ch.isdigit() or ch in _SEPARATORS for ch in body)
        ):
            raise InvalidPhoneNumber("not a phone number")
        number = _read(text)
        if number is None:
            raise InvalidPhoneNumber("not a valid phone number")
        region = phonenumbers.region_code_for_number(number)
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        return cls(
            e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
            mobile=_is_mobile(number),
            national="".join(filter(str.isdigit, national))
            if region in FRENCH_PLAN_REGIONS
            else None,
        )

    def __repr__(self) -> str:  # personal data: never whole in a log line by accident
        return "PhoneNumber(***)"

    __str__ = __repr__


def _read(text: str) -> phonenumbers.PhoneNumber | None:
    """The valid number ``text`` denotes: a mobile if one region reads it so, else any valid."""
    international = text.startswith(("+", "00"))  # says its country: one reading is enough
    valid: list[phonenumbers.PhoneNumber] = []
    for region in FRENCH_PLAN_REGIONS[:1] if international else FRENCH_PLAN_REGIONS:
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            if _is_mobile(number):
                return number
            valid.append(number)
    return valid[0] if valid else None


def _is_mobile(number: phonenumbers.PhoneNumber) -> bool:
    return phonenumbers.number_type(number) in _MOBILE_TYPES
