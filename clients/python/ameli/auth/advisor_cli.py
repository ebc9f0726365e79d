"""``ameli-advisor``: the advisor's command line (GetLockStatus, UnlockAccount, ResetAccount).

Exit status: 0 done, 1 refused by the service (its French message on stderr) or
reset cancelled, 2 usage error, 3 service unreachable or unavailable, 4 key
refused (``CallerNotAllowed``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ameli.auth import client as auth
from ameli.auth.v1 import auth_pb2

__all__ = ["main"]

DEFAULT_TARGET = "127.0.0.1:50051"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_ALLOWED = 0, 1, 2, 3, 4

_LOCK_LABELS = {
    auth_pb2.ERROR_REASON_PASSWORD_ATTEMPTS_LOCKED: "mots de passe erronés",
    auth_pb2.ERROR_REASON_CODE_ATTEMPTS_LOCKED: "codes de sécurité erronés",
    auth_pb2.ERROR_REASON_CODE_QUOTA_EXCEEDED: "trop de codes demandés",
    auth_pb2.ERROR_REASON_ACCOUNT_SUSPENDED: "compte suspendu",
}
_SCOPE_LABELS = {
    auth_pb2.LOCK_SCOPE_UNTRUSTED_DEVICES: ", appareils non reconnus",
    auth_pb2.LOCK_SCOPE_TRUSTED_DEVICES: ", appareils de confiance",
}


def _paris() -> tuple[tzinfo, str]:
    try:
        return ZoneInfo("Europe/Paris"), "heure de Paris"
    except ZoneInfoNotFoundError:  # no system tz database and no tzdata package
        return UTC, "UTC"


def _when(timestamp: Timestamp, *, round_up: bool = False) -> str:
    """``04/01/2023 à 15h47 (heure de Paris)``; an end time is rounded up to the minute."""
    zone, label = _paris()
    moment = timestamp.ToDatetime(tzinfo=UTC)
    if round_up:
        moment = datetime.fromtimestamp(math.ceil(moment.timestamp() / 60) * 60, UTC)
    return f"{moment.astimezone(zone):%d/%m/%Y à %Hh%M} ({label})"


def _masked(nir: str) -> str:
    """The NIR as ``180**********42``: enough for the advisor to check, not to reuse."""
    compact = "".join(nir.split())
    return compact[:3] + "*" * max(len(compact) - 5, 0) + compact[-2:]


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ameli-advisor", description="Blocages et réinitialisation des comptes ameli."
    )
    parser.add_argument(
        "--target",
        type=_target,
        default=os.environ.get("AMELI_ADVISOR_TARGET") or DEFAULT_TARGET,
        help="HOST:PORT du service (AMELI_ADVISOR_TARGET, défaut %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("AMELI_ADVISOR_API_KEY") or None,
        help="clé d'API conseiller (préférer AMELI_ADVISOR_API_KEY)",
    )
    parser.add_argument("--tls", action="store_true", help="TLS avec les racines du système")
    parser.add_argument("--timeout", type=_timeout, default=10.0, help="secondes (défaut 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMANDE")
    status = commands.add_parser("status", help="blocages et compteurs d'un NIR")
    status.add_argument("nir", metavar="NIR")
    unlock = commands.add_parser(
        "unlock", help="lever les blocages et compteurs d'un NIR (le compte reste)"
    )
    unlock.add_argument("nir", metavar="NIR")
    unlock.add_argument("--advisor-id", required=True, help="identifiant du conseiller")
    unlock.add_argument("--reason", required=True, help="motif (journal d'audit)")
    reset = commands.add_parser("reset", help="réinitialiser le compte d'un NIR")
    reset.add_argument("nir", metavar="NIR")
    reset.add_argument("--advisor-id", required=True, help="identifiant du conseiller")
    reset.add_argument("--reason", required=True, help="motif (journal d'audit)")
    reset.add_argument("--send-provisional-code", action="store_true", help="code par SMS")
    reset.add_argument("--yes", action="store_true", help="sans demander de confirmation")
    return parser


def _print_status(nir: str, status: auth_pb2.GetLockStatusResponse) -> None:
    print(f"NIR {_masked(nir)} : {'BLOQUÉ' if status.locked else 'non bloqué'}")
    for lock in status.locks:
        label = _LOCK_LABELS.get(lock.reason, auth_pb2.ErrorReason.Name(lock.reason))
        scope = _SCOPE_LABELS.get(lock.scope, "")
        if lock.HasField("expire_time"):
            print(f"- Blocage ({label}{scope}) jusqu'au {_when(lock.expire_time, round_up=True)}")
        else:  # a suspension: only an advisor's unlock or reset lifts it
            print(f"- Blocage ({label}{scope}) sans date de fin : à lever par « unlock »")
        print(f"  Message affiché à l'assuré : {lock.message}")
    print("Compteurs :")
    print(f"  échecs de mot de passe : {status.password_failures}")
    print(f"  échecs de code : {status.code_failures}")
    print(f"  codes envoyés dans l'heure : {status.codes_sent_in_window}")


def _print_reset(done: auth_pb2.ResetAccountResponse, code_asked: bool) -> None:
    print(f"Compte réinitialisé le {_when(done.reset_time)}.")
    if done.provisional_code_sent:
        until = _when(done.provisional_code_expire_time, round_up=True)
        print(f"Code provisoire envoyé par SMS au {done.masked_phone}, valable jusqu'au {until}.")
    elif code_asked:
        print("Aucun code provisoire envoyé : pas de téléphone mobile enregistré.")
    else:
        print("Aucun code provisoire envoyé (non demandé).")


async def _run(args: argparse.Namespace) -> None:
    if args.tls:
        channel = grpc.aio.secure_channel(args.target, grpc.ssl_channel_credentials())
    else:
        channel = grpc.aio.insecure_channel(args.target)
    async with channel:
        api = auth.AuthClient(channel, api_key=args.api_key, timeout=args.timeout)
        if args.command == "status":
            _print_status(args.nir, await api.get_lock_status(nir=args.nir))
        elif args.command == "unlock":
            unlocked = await api.unlock_account(
                nir=args.nir, advisor_id=args.advisor_id, reason=args.reason
            )
            print(
                f"Blocages levés le {_when(unlocked.unlock_time)} : "
                f"{unlocked.locks_cleared} blocage(s) actif(s) supprimé(s)."
            )
        else:
            done = await api.reset_account(
                nir=args.nir,
                advisor_id=args.advisor_id,
                reason=args.reason,
                send_provisional_code=args.send_provisional_code,
            )
            _print_reset(done, args.send_provisional_code)


def _confirmed(nir: str) -> bool:
    question = (
        f"Réinitialiser le compte {nir} ? Le compte, ses appareils de confiance, "
        "blocages et compteurs seront supprimés. [o/N] "
    )
    try:
        answer = input(question)
    except (EOFError, KeyboardInterrupt):
        print()
        return False
    return answer.strip().lower() in {"o", "oui"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (never raises, never a traceback)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command in ("reset", "unlock") and (
        not args.advisor_id.strip() or not args.reason.strip()
    ):
        parser.print_usage(sys.stderr)
        print("ameli-advisor: --advisor-id et --reason ne peuvent être vides.", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "reset" and not args.yes:
        if not sys.stdin.isatty():
            print("Confirmation impossible hors terminal : ajoutez --yes.", file=sys.stderr)
            return EXIT_USAGE
        if not _confirmed(args.nir):
            print("Réinitialisation annulée.", file=sys.stderr)
            return EXIT_REFUSED
    try:
        asyncio.run(_run(args))
    except auth.AuthServiceError as error:
        print(error.message or f"Refus du service ({error.code.name}).", file=sys.stderr)
        if isinstance(error, auth.CallerNotAllowed):
            return EXIT_NOT_ALLOWED
        return EXIT_UNAVAILABLE if isinstance(error, auth.ServiceUnavailable) else EXIT_REFUSED
    except (grpc.RpcError, OSError, ValueError) as error:  # bad target, TLS set-up...
        print(f"{auth.UNAVAILABLE_MESSAGE} ({type(error).__name__}: {error})", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print("Interrompu.", file=sys.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
