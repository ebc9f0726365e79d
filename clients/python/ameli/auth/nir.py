"""The NIR check of the service, on the client side: a typo is caught before any call.

The rule is the service's (SPEC §2, ``ameli_grpc.domain.nir``), written again here
because the client package does not depend on the server: 13 characters, or 15
with the right 2-digit key; spaces ignored (dots too in the 15-character form,
as the service's validator does); Corsica's 2A/2B departments accepted; anything
longer than 64 characters, or not ASCII once spaces are gone, refused. A test
checks that both sides accept exactly the same strings.
"""

from __future__ import annotations

import re

__all__ = ["nir_is_valid", "normalized_nir"]

_MAX_INPUT = 64
_DIGITS = re.compile(r"[0-9]+")
# For the key, Corsica counts as 19 (2A) and 18 (2B).
_CORSICA = {"2A": "19", "2B": "18"}


def normalized_nir(raw: str) -> str | None:
    """The 13-character NIR the service will read in ``raw``, or None if it would refuse it."""
    if len(raw) > _MAX_INPUT:
        return None
    compact = "".join(raw.split()).upper()
    if not compact.isascii():
        return None
    if len(compact) == 13 and _wellformed(compact):
        compact += _key(compact)
    compact = compact.replace(".", "")
    if len(compact) != 15 or not _wellformed(compact) or _key(compact) != compact[13:]:
        return None
    return compact[:13]


def nir_is_valid(raw: str) -> bool:
    """True when the service would accept ``raw`` as a NIR."""
    return normalized_nir(raw) is not None


def _wellformed(value: str) -> bool:
    """Digits everywhere but the department (positions 6-7), which may also be 2A or 2B."""
    department = value[5:7]
    digits = _DIGITS.fullmatch(value[:5]) and _DIGITS.fullmatch(value[7:])
    return bool(digits) and (department in _CORSICA or _DIGITS.fullmatch(department) is not None)


def _key(value: str) -> str:
    body = value[:5] + _CORSICA.get(value[5:7], value[5:7]) + value[7:13]
    return f"{97 - int(body) % 97:02d}"
