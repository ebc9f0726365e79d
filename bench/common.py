"""What the targets and the load generator share: keys, password, accounts' NIRs and emails."""

from __future__ import annotations

from stdnum.fr import nir as stdnum_nir

PORTAL_KEY = "bench-portal-key"
MOBILE_KEY = "bench-mobile-key"
PASSWORD = "Bon-Mot-de-Passe-1"  # noqa: S105 - the accounts' test password
WRONG_PASSWORD = "not-the-password"  # noqa: S105 - the flood's
CALL_TIMEOUT = 10.0  # seconds, for every RPC and every wait for an email
FLOOD_NIRS_PER_SLOT = 3_000  # a flood's slot tries each of its NIRs once


def nir(serial: int) -> str:
    """An account's valid NIR (man born January 1980 in Paris), one per ``serial`` < 100 000."""
    return _with_key(f"18001751{serial:05d}")


def unknown_nir(serial: int) -> str:
    """A valid NIR no account has (woman born June 1985 in Marseille), one per ``serial``
    < 1 000 000: the accounts' NIRs are all men's."""
    return _with_key(f"2850613{serial:06d}")


def _with_key(body: str) -> str:
    assert len(body) == 13, body
    return body + str(stdnum_nir.calc_check_digits(body))


def email(serial: int) -> str:
    return f"bench-{serial}@bench.test"


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)
