"""The command line of ``ameli-advisor``: commands, options and their French help.

The connection options and ``--json`` are accepted before or after the command
(``ameli-advisor --json status NIR`` or ``ameli-advisor status NIR --json``).
argparse writes its own words in English; the ones an advisor meets (usage,
section titles, the common errors) are given in French here.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["DEFAULT_TARGET", "EXIT_STATUSES", "UsageError", "build_parser"]

DEFAULT_TARGET = "127.0.0.1:50051"
_NIR_EXAMPLE = "1 80 01 75 123 456 60"

EXIT_STATUSES = """\
codes de sortie :
  0    fait
  1    refusé par le service (son message sur la sortie d'erreur : aucun compte pour
       ce NIR, demande invalide...) ou réinitialisation non confirmée
  2    usage : option absente ou invalide, NIR invalide (vérifié avant toute question
       et tout appel), fichier TLS inutilisable, confirmation impossible hors terminal
  3    service injoignable (nom inconnu, connexion refusée, échec TLS, connexion
       fermée, délai dépassé : la phrase nomme l'adresse) ou momentanément indisponible
  4    clé d'API absente, inconnue ou non autorisée pour ces commandes
  130  interrompu (Ctrl-C)"""

EPILOG = f"""\
exemples :
  export AMELI_ADVISOR_TARGET=auth.interne:443 AMELI_ADVISOR_CA_FILE=ac-interne.pem
  export AMELI_ADVISOR_API_KEY=...
  ameli-advisor status "{_NIR_EXAMPLE}"
  ameli-advisor account 180017512345660
  ameli-advisor unlock 180017512345660 --advisor-id C3646-042 --reason "appel, identité vérifiée"
  ameli-advisor revoke-devices 180017512345660 --advisor-id C3646-042 --reason "téléphone volé"
  ameli-advisor reset 180017512345660 --advisor-id C3646-042 --reason "mail perdu" \\
      --send-provisional-code
  ameli-advisor account 180017512345660 --json

Avec --json, la sortie standard reçoit un seul objet JSON : le résultat, ou
{{"error": {{...}}, "exit_status": N}} ; le message en français va toujours sur la
sortie d'erreur. Les NIR affichés sont masqués (180**********60).

variables d'environnement (valeurs par défaut des options) :
  AMELI_ADVISOR_TARGET, AMELI_ADVISOR_API_KEY, AMELI_ADVISOR_CA_FILE,
  AMELI_ADVISOR_CERT_FILE, AMELI_ADVISOR_KEY_FILE

{EXIT_STATUSES}
"""

_COMMANDS = {
    "status": (
        "blocages et compteurs d'échecs d'un NIR",
        "Blocages actifs (motif, portée, fin en heure de Paris, message vu par l'assuré) "
        "et compteurs d'échecs. Répond aussi pour un NIR sans compte.",
        f'ameli-advisor status "{_NIR_EXAMPLE}"',
    ),
    "account": (
        "le compte ameli d'un NIR (mail, téléphone, affiliation, appareils, blocages)",
        "Adresse mail masquée et validée ou non, téléphone masqué, affiliation (RFI), "
        "appareils de confiance, blocages, suspension et compteurs. Code de sortie 1 "
        "si le NIR n'a pas de compte.",
        "ameli-advisor account 180017512345660 --json",
    ),
    "unlock": (
        "lever blocages, compteurs et suspension d'un NIR (le compte reste)",
        "Lève tous les blocages, compteurs, la suspension et le quota de codes du NIR ; "
        "le compte et ses appareils de confiance restent. Journalisé (audit).",
        'ameli-advisor unlock 180017512345660 --advisor-id C3646-042 --reason "appel"',
    ),
    "revoke-devices": (
        "retirer la confiance de tous les appareils d'un NIR (le compte reste)",
        "Chaque appareil de confiance du compte redemandera un code de sécurité. "
        "Code de sortie 1 si le NIR n'a pas de compte. Journalisé (audit).",
        'ameli-advisor revoke-devices 180017512345660 --advisor-id C3646-042 --reason "vol"',
    ),
    "reset": (
        "réinitialiser (supprimer) le compte d'un NIR, après confirmation",
        "Supprime le compte, ses appareils de confiance, blocages et compteurs ; "
        "l'assuré recrée son compte, avec un code provisoire par SMS si demandé. "
        "Demande confirmation sur le terminal (« oui ») sauf avec --yes.",
        'ameli-advisor reset 180017512345660 --advisor-id C3646-042 --reason "mail perdu" \\\n'
        "      --send-provisional-code",
    ),
}

# argparse's messages an advisor may see, in French (others are shown as they are).
_ERRORS_FR = (
    (r"the following arguments are required: (.*)", r"arguments obligatoires absents : \1"),
    (r"unrecognized arguments: (.*)", r"arguments inconnus : \1"),
    (r"argument (\S+): invalid choice: (.*) \(choose from (.*)\)", r"\1 : \2 inconnu (\3)"),
    (r"argument (\S+): expected one argument", r"\1 : une valeur est attendue"),
    (r"ambiguous option: (\S+) could match (.*)", r"option ambiguë : \1 (\2)"),
    (r"argument (\S+): (.*)", r"\1 : \2"),
)


class UsageError(Exception):
    """A command line that cannot be run: the French message and the parser to show."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, "usage : " if prefix is None else prefix)


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(formatter_class=_Formatter, add_help=False, **kwargs)
        self._positionals.title = "arguments"
        self._optionals.title = "options"
        self.add_argument(
            "-h", "--help", action="help", default=argparse.SUPPRESS, help="afficher cette aide"
        )

    def error(self, message: str) -> NoReturn:
        for pattern, french in _ERRORS_FR:
            if re.fullmatch(pattern, message):
                message = re.sub(pattern, french, message)
                break
        raise UsageError(self, f"{self.prog} : {message}")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The parser; option defaults come from ``environ`` (``AMELI_ADVISOR_*``)."""
    parser = _Parser(
        prog="ameli-advisor",
        description="Conseillers du 3646 : blocages, compte, appareils de confiance et "
        "réinitialisation des comptes ameli.",
        epilog=EPILOG,
    )
    _add_common_options(parser, environ)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMANDE", title="commandes"
    )
    for name, (summary, description, example) in _COMMANDS.items():
        command = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=f"exemple :\n  {example}\n\n{EXIT_STATUSES}",
        )
        command.add_argument(
            "nir", metavar="NIR", help="13 caractères, ou 15 avec la clé ; espaces permis"
        )
        if name in ("unlock", "revoke-devices", "reset"):
            command.add_argument("--advisor-id", required=True, help="identifiant du conseiller")
            command.add_argument("--reason", required=True, help="motif (journal d'audit)")
        if name == "reset":
            command.add_argument(
                "--send-provisional-code",
                action="store_true",
                help="envoyer un code provisoire par SMS au mobile du compte",
            )
            command.add_argument("--yes", action="store_true", help="ne pas demander confirmation")
        _add_common_options(command, None)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None) -> None:
    """The connection options and --json; after the command (``environ`` None) they only
    override what was given before it, hence no defaults there."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if environ is None else value

    env = environ or {}
    connection = parser.add_argument_group("connexion au service")
    connection.add_argument(
        "--target",
        type=_target,
        metavar="HÔTE:PORT",
        default=default(env.get("AMELI_ADVISOR_TARGET") or DEFAULT_TARGET),
        help=f"adresse du service (AMELI_ADVISOR_TARGET ; défaut {DEFAULT_TARGET})",
    )
    connection.add_argument(
        "--api-key",
        metavar="CLÉ",
        default=default(env.get("AMELI_ADVISOR_API_KEY") or None),
        help="clé d'API conseiller (préférer AMELI_ADVISOR_API_KEY, invisible dans ps)",
    )
    connection.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="TLS, certificat du service vérifié par les autorités du système",
    )
    for option, variable, text in (
        ("--ca-file", "AMELI_ADVISOR_CA_FILE", "autorité(s) PEM du certificat du service"),
        ("--cert-file", "AMELI_ADVISOR_CERT_FILE", "certificat client PEM (avec --key-file)"),
        ("--key-file", "AMELI_ADVISOR_KEY_FILE", "clé privée PEM du certificat client"),
    ):
        connection.add_argument(
            option,
            type=Path,
            metavar="FICHIER",
            default=default(Path(env[variable]) if env.get(variable) else None),
            help=f"{text} ; implique TLS ({variable})",
        )
    connection.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDES",
        default=default(10.0),
        help="délai de réponse (défaut 10)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="un objet JSON sur la sortie standard",
    )


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"durée invalide : {value!r} (secondes, > 0)")
    return seconds


def _target(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("adresse vide (HOST:PORT attendu)")
    return value.strip()
