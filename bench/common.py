"""What the targets and the load generator share: keys, password, accounts' NIRs and emails."""

from __future__ import annotations

from stdnum.fr import nir as stdnum_nir

PORTAL_KEY = "bench-portal-key"
MOBILE_KEY = "bench-mobile-key"
PASSWORD = "Bon-Mot-de-Passe-1"  # noqa: S105 - the accounts' test password
WRONG_PASSWORD = "not-the-password"  # noqa: S105 - the flood's
CALL_TIMEOUT = 10.0  # seconds, for every RPC and every wait for an email
FLOOD_FIRST_SERIAL = 50_000  # unknown NIRs: never loaded as accounts


def nir(serial: int) -> str:
    """A valid NIR (man born January 1980 in Paris), different for each ``serial``."""
    body = f"18001751{serial:05d}"
    return body + str(stdnum_nir.calc_check_digits(body))


def email(serial: int) -> str:
    return f"bench-{serial}@bench.test"


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)
