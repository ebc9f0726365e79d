"""``ameli-advisor``: the 3646 advisor's command line (the advisor RPCs of AuthService).

``main(argv)`` runs one command and returns the exit status (never raises, never
a traceback). The ``ameli-advisor`` script and ``python -m ameli.advisor`` call it
after silencing gRPC's C-core, which must be done before grpc is imported (see
``ameli.advisor``). The exit statuses are listed in ``advisor_parser.EXIT_STATUSES``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

import grpc

from ameli.auth import advisor_output as output
from ameli.auth import client as auth
from ameli.auth.advisor_connection import Endpoint, TlsFilesError, transport_failure
from ameli.auth.advisor_parser import UsageError, build_parser
from ameli.auth.nir import nir_is_valid

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_ALLOWED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
_MAX_ADVISOR_ID, _MAX_REASON = 64, 500  # SPEC §8, checked again by the service

INVALID_NIR = (
    "Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez votre saisie. "
    "(13 caractères, ou 15 avec la clé ; espaces permis ; 2A ou 2B pour la Corse)"
)


class Failed(Exception):
    """A command that ends without its result: the French message, the exit status and
    the fields of the ``--json`` error object."""

    def __init__(
        self, status: int, message: str, details: Mapping[str, output.JsonValue] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (never raises, never a traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(os.environ).parse_args(argv)
    except SystemExit as exit_:  # --help: already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except UsageError as error:
        error.parser.print_usage(sys.stderr)
        failure = Failed(EXIT_USAGE, error.message, {"kind": "usage"})
        return _report(failure, "--json" in argv, {"command": None, "nir": None})
    shown_nir = output.masked_nir(args.nir) if nir_is_valid(args.nir) else None
    command: dict[str, output.JsonValue] = {"command": args.command, "nir": shown_nir}
    try:
        endpoint, credentials = _checked(args)
        if args.command == "reset" and not args.yes:
            _confirm(args.nir)
        lines, result = asyncio.run(_run(args, endpoint, credentials))
    except Failed as failure:
        return _report(failure, args.json, command)
    except KeyboardInterrupt:
        interrupted = Failed(EXIT_INTERRUPTED, "Interrompu.", {"kind": "interrupted"})
        return _report(interrupted, args.json, command)
    if args.json:
        print(output.json_line({**command, **result}))
    else:
        print("\n".join(lines))
    return EXIT_OK


def _report(failure: Failed, as_json: bool, command: Mapping[str, output.JsonValue]) -> int:
    print(failure.message, file=sys.stderr)
    if as_json:
        error = {"message": failure.message, **failure.details}
        print(output.json_line({**command, "error": error, "exit_status": failure.status}))
    return failure.status


def _checked(args: argparse.Namespace) -> tuple[Endpoint, grpc.ChannelCredentials | None]:
    """Everything that can be checked here, before any question or call (exit 2 otherwise)."""
    usage = {"kind": "usage"}
    if not nir_is_valid(args.nir):
        raise Failed(EXIT_USAGE, INVALID_NIR, {**usage, "reason": "INVALID_NIR"})
    if args.command in ("reset", "unlock", "revoke-devices"):
        for option, value, limit in (
            ("--advisor-id", args.advisor_id, _MAX_ADVISOR_ID),
            ("--reason", args.reason, _MAX_REASON),
        ):
            if not value.strip() or len(value) > limit or not value.isprintable():
                message = f"{option} : de 1 à {limit} caractères, sans retour à la ligne."
                raise Failed(EXIT_USAGE, message, usage)
    endpoint = Endpoint(args.target, args.tls, args.ca_file, args.cert_file, args.key_file)
    try:
        credentials = endpoint.credentials() if endpoint.secure else None
    except TlsFilesError as error:
        raise Failed(EXIT_USAGE, str(error), usage) from error
    return endpoint, credentials


def _confirm(nir: str) -> None:
    """Asks on the terminal; anything but « o » / « oui » cancels (exit 1)."""
    if not sys.stdin.isatty():
        message = "Confirmation impossible hors terminal : ajoutez --yes."
        raise Failed(EXIT_USAGE, message, {"kind": "usage"})
    question = (
        f"Réinitialiser le compte {nir} ? Le compte, ses appareils de confiance, "
        "blocages et compteurs seront supprimés. [o/N] "
    )
    print(question, end="", file=sys.stderr, flush=True)  # stdout stays for --json
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):  # end of input or Ctrl-C: end the question's line
        print(file=sys.stderr)
    if answer.strip().lower() not in {"o", "oui"}:
        raise Failed(EXIT_REFUSED, "Réinitialisation annulée.", {"kind": "cancelled"})


async def _run(
    args: argparse.Namespace, endpoint: Endpoint, credentials: grpc.ChannelCredentials | None
) -> tuple[list[str], dict[str, output.JsonValue]]:
    try:
        async with endpoint.channel(credentials) as channel:
            api = auth.AuthClient(channel, api_key=args.api_key, timeout=args.timeout)
            return await _command(args, api)
    except auth.AuthServiceError as error:
        raise _failure(error, args, endpoint) from error
    except (grpc.RpcError, OSError, ValueError) as error:  # not a status: a bad target...
        message = f"Le service {endpoint.target} est injoignable ({error})."
        raise Failed(EXIT_UNAVAILABLE, message, {"kind": "unreachable"}) from error


async def _command(
    args: argparse.Namespace, api: auth.AuthClient
) -> tuple[list[str], dict[str, output.JsonValue]]:
    """The French lines and the JSON fields of the command's result."""
    nir = args.nir
    if args.command == "status":
        status = await api.get_lock_status(nir=nir)
        return list(output.status_lines(nir, status)), output.json_status(status)
    if args.command == "account":
        account = await api.get_account(nir=nir)
        return list(output.account_lines(nir, account)), output.json_account(account)
    if args.command == "unlock":
        unlocked = await api.unlock_account(nir=nir, advisor_id=args.advisor_id, reason=args.reason)
        line = (
            f"Blocages levés le {output.when(unlocked.unlock_time)} : "
            f"{unlocked.locks_cleared} blocage(s) actif(s) supprimé(s)."
        )
        time = output.json_time(unlocked.unlock_time)
        return [line], {"unlock_time": time, "locks_cleared": unlocked.locks_cleared}
    if args.command == "revoke-devices":
        revoked = await api.revoke_trusted_devices(
            nir=nir, advisor_id=args.advisor_id, reason=args.reason
        )
        line = (
            f"Appareils de confiance révoqués le {output.when(revoked.revoke_time)} : "
            f"{revoked.revoked_count} appareil(s) ; un code de sécurité sera demandé "
            "à la prochaine connexion."
        )
        time = output.json_time(revoked.revoke_time)
        return [line], {"revoke_time": time, "revoked_count": revoked.revoked_count}
    done = await api.reset_account(
        nir=nir,
        advisor_id=args.advisor_id,
        reason=args.reason,
        send_provisional_code=args.send_provisional_code,
    )
    return list(output.reset_lines(done, args.send_provisional_code)), output.json_reset(done)


def _failure(error: auth.AuthServiceError, args: argparse.Namespace, endpoint: Endpoint) -> Failed:
    """The exit status and French message of a failed call (see ``EXIT_STATUSES``)."""
    status: dict[str, output.JsonValue] = {"code": error.code.name, "reason": error.reason}
    if failure := transport_failure(error, endpoint, args.timeout):
        details = {"kind": "unreachable", "failure": failure.kind.value, **status}
        return Failed(EXIT_UNAVAILABLE, failure.message, details)
    if isinstance(error, auth.CallerNotAllowed):
        message = error.message
        if not args.api_key:
            message += "\n(Aucune clé d'API : définissez AMELI_ADVISOR_API_KEY.)"
        return Failed(EXIT_NOT_ALLOWED, message, {"kind": "not_allowed", **status})
    if isinstance(error, auth.ServiceUnavailable):
        return Failed(EXIT_UNAVAILABLE, error.message, {"kind": "unavailable", **status})
    message = error.message or f"Refus du service ({error.code.name})."
    if error.code is grpc.StatusCode.UNIMPLEMENTED:
        message = (
            f"Le service {endpoint.target} ne connaît pas la commande « {args.command} » "
            "(version du service plus ancienne que ce client)."
        )
    return Failed(EXIT_REFUSED, message, {"kind": "refused", **status})


if __name__ == "__main__":
    sys.exit(main())
