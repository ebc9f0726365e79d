"""The demo set: one NIR per case of the guide (README, "Demo data")."""

from __future__ import annotations

from dataclasses import dataclass

from ameli_grpc.accounts_import import AccountRow
from ameli_grpc.domain.model import Affiliation

DEMO_PASSWORD = "Ameli-Demo-2026!"  # noqa: S105 - published demo password, README


@dataclass(frozen=True)
class DemoCase:
    case: str
    row: AccountRow


def _row(
    nir: str,
    email: str | None = "assure.demo@example.fr",
    validated: bool = True,
    phone: str | None = None,
    affiliation: Affiliation = Affiliation.AFFILIATED,
) -> AccountRow:
    return AccountRow(nir, DEMO_PASSWORD, email, validated, phone, affiliation)


DEMO_CASES: tuple[DemoCase, ...] = (
    DemoCase("Connexion sans erreur (étapes 0 à 3)", _row("180017511200169")),
    DemoCase("Cas 1 : absence de mail validé", _row("285056912304514", validated=False)),
    DemoCase("Cas 2 : code de sécurité expiré", _row("192031305507807")),
    DemoCase("Cas 3 : quota de codes atteint", _row("277083306301258")),
    DemoCase("Cas 4 : erreur de mot de passe ou de code", _row("168097654321035")),
    DemoCase("Cas 5 : 3 erreurs de code", _row("291029205109990")),
    DemoCase("Cas 6 : 3 erreurs de mot de passe", _row("175125935012362")),
    DemoCase(
        "Cas 7 : ni régime général ni partenaire",
        _row("262041411804742", affiliation=Affiliation.NOT_COVERED),
    ),
    DemoCase(
        "Cas 8 : rattachement en cours", _row("188074410905663", affiliation=Affiliation.PENDING)
    ),
    DemoCase(
        "FAQ : réinitialisation par le conseiller (mobile enregistré)",
        _row("295019904503233", email=None, validated=False, phone="06 12 34 56 78"),
    ),
    DemoCase("FAQ : application mobile, sans code", _row("299058412306666")),
    DemoCase("NIR né en Corse (2A)", _row("186032A00401286")),
)
