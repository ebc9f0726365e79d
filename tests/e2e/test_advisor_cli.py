"""``ameli-advisor``, the advisor's command line, against a real service.

Most tests call ``main`` in a worker thread (it runs its own event loop) while
the service runs on the test's loop; the service logs to this process's stdout
too, so stdout is checked with ``in`` and stderr (only the command line writes
there) exactly. What only a real terminal shows — the confirmation question,
gRPC's C-core lines, Ctrl-C — is tested on the ``ameli-advisor`` entry point run
as a separate process (``tests/support/advisor_cli.py``), over a pseudo-terminal
where a question is asked. Connection failures are produced for real: a closed
port, an unresolvable name, TLS against plaintext and plaintext against TLS, an
unknown certificate, a missing client certificate, a port that never answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from ameli.auth import advisor_cli
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from ameli_grpc.domain.model import Affiliation
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ADVISOR_KEY, PORTAL_KEY, ServiceUnderTest, nir, refused
from tests.support.advisor_cli import (
    BARE_MAIN,
    C_CORE_LINE,
    closed_port,
    finish,
    pseudo_terminal,
    run_advisor,
    silent_server,
    start_advisor,
    start_on_terminal,
)
from tests.support.mail import self_signed_tls
from tests.support.waiting import wait_for

CLIENT_ROOT = Path(__file__).resolve().parents[2] / "clients" / "python"
INVALID_NIR = (
    "Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez votre saisie. "
    "(13 caractères, ou 15 avec la clé ; espaces permis ; 2A ou 2B pour la Corse)"
)
NO_ACCOUNT = "Aucun compte ameli pour ce numéro de sécurité sociale."
PARIS_TIME = r"\d\d/\d\d/\d{4} à (\d\d)h(\d\d) \(heure de Paris\)"
QUESTION = "Réinitialiser le compte {} ? Le compte, ses appareils de confiance, blocages et "
ADVISOR = ("--advisor-id", "conseiller-3646", "--reason", "appel 3646")


async def advisor(service: ServiceUnderTest, *args: str, key: str | None = ADVISOR_KEY) -> int:
    options = ["--target", service.address, "--timeout", "5"]
    options += ["--api-key", key] if key else []
    return await asyncio.to_thread(advisor_cli.main, [*options, *args])


def reset_args(nir_value: str, *extra: str) -> list[str]:
    return ["reset", nir_value, *ADVISOR, *extra]


def one_json_object(out: str) -> dict[str, Any]:
    """The last stdout line (the service may log before it), which must be one JSON object."""
    parsed = json.loads(out.strip().splitlines()[-1])
    assert isinstance(parsed, dict)
    return parsed


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the commands ------------------------------------------------------------


async def test_status_of_a_locked_nir(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` shows the lock, its end in Paris time, its message and the counters, NIR masked."""
    await service.add_account(nir(61))
    for _ in range(3):
        await refused(service.login(nir(61), password="faux"))

    assert await advisor(service, "status", nir(61)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert nir(61) not in out
    assert f"NIR {nir(61)[:3]}**********{nir(61)[-2:]} : BLOQUÉ" in out
    shown = re.search(
        rf"- Blocage \(mots de passe erronés, appareils non reconnus\) jusqu'au {PARIS_TIME}", out
    )
    in_message = re.search(r"(\d\d):(\d\d) \(heure de Paris\)", out)
    assert shown, out
    assert in_message, out
    assert shown.groups() == in_message.groups()  # the minute the insured person is told
    assert "Message affiché à l'assuré : Pour des raisons de sécurité" in out
    assert "échecs de mot de passe : 3" in out
    assert "échecs de code : 0" in out
    assert "codes envoyés dans l'heure : 0" in out


async def test_status_of_a_suspended_nir_has_no_end_date(
    make_service: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A suspension is shown without an end date, with the way to lift it."""
    service = await make_service(max_consecutive_failures=2, max_password_failures=10)
    await service.add_account(nir(65))
    for _ in range(2):
        await refused(service.login(nir(65), password="faux"))

    assert await advisor(service, "status", nir(65)) == 0
    out, _ = capsys.readouterr()
    assert (
        "- Blocage (compte suspendu, appareils non reconnus) sans date de fin : "
        "à lever par « unlock »"
    ) in out


async def test_account_shows_contacts_affiliation_devices_locks_and_counters(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`account` shows the masked contacts, the affiliation in words, the trusted device with
    its dates in Paris time, the lock and the counters; `--json` gives the same as one object."""
    await service.add_account(nir(70), mobile_phone="06 12 34 56 78")
    token = (await service.login_on_personal_computer(nir(70))).device_token
    await service.login(nir(70), device_token=token)  # a login that skips the code
    for _ in range(3):
        await refused(service.login(nir(70), password="faux"))

    assert await advisor(service, "account", nir(70)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert nir(70) not in out
    masked = f"{nir(70)[:3]}**********{nir(70)[-2:]}"
    expected = [
        f"Compte ameli du NIR {masked}",
        "  Adresse mail : t***@t***.com (validée)",
        "  Téléphone mobile : 06******78",
        "  Affiliation (RFI) : affilié au régime général ou à un régime partenaire",
        "Appareils de confiance : 1",
    ]
    lines = out.splitlines()
    start = lines.index(expected[0])
    assert lines[start : start + 5] == expected
    assert re.fullmatch(
        rf"- enregistré le {PARIS_TIME}, jusqu'au {PARIS_TIME} ; "
        rf"dernière connexion sans code le {PARIS_TIME}",
        lines[start + 5],
    ), lines[start + 5]
    assert lines[start + 6] == "Blocages : 1"
    assert lines[start + 7].startswith(
        "- Blocage (mots de passe erronés, appareils non reconnus) jusqu'au "
    )
    assert lines[start + 9 :] == [
        "Suspension : non",
        "Compteurs :",
        "  échecs de mot de passe : 3",
        "  échecs de code : 0",
        "  codes envoyés dans l'heure : 0",
    ]

    assert await advisor(service, "account", nir(70), "--json") == 0
    shown = one_json_object(capsys.readouterr().out)
    device = shown["trusted_devices"][0]
    assert timedelta(days=180) < utc(device["expire_time"]) - utc(device["create_time"])
    assert utc(device["last_use_time"]) >= utc(device["create_time"])
    assert [(lock["reason"], lock["scope"]) for lock in shown["locks"]] == [
        ("PASSWORD_ATTEMPTS_LOCKED", "UNTRUSTED_DEVICES")
    ]
    del shown["trusted_devices"], shown["locks"]
    assert shown == {
        "command": "account",
        "nir": masked,
        "masked_email": "t***@t***.com",
        "email_validated": True,
        "masked_phone": "06******78",
        "affiliation": "AFFILIATED",
        "suspended": False,
        "password_failures": 3,
        "code_failures": 0,
        "codes_sent_in_window": 0,
    }


async def test_account_without_phone_nor_validated_email_and_pending(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account with an unvalidated email, no phone, a pending affiliation says each in words."""
    await service.add_account(
        nir(71), email_validated=False, affiliation=Affiliation.PENDING, mobile_phone=None
    )

    assert await advisor(service, "account", nir(71)) == 0
    out, _ = capsys.readouterr()
    for line in (
        "  Adresse mail : t***@t***.com (non validée : aucun code envoyé)",
        "  Téléphone mobile : aucun (pas de code provisoire par SMS)",
        "  Affiliation (RFI) : rattachement à une caisse en cours (connexion refusée d'ici là)",
        "Appareils de confiance : aucun",
        "Blocages : aucun",
        "Suspension : non",
    ):
        assert line in out.splitlines(), line


async def test_account_of_a_nir_without_account(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`account` on a NIR without account says so (exit 1), never « non bloqué »."""
    assert await advisor(service, "account", nir(72)) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [NO_ACCOUNT]
    assert "bloqué" not in out

    assert await advisor(service, "account", nir(72), "--json") == 1
    out, err = capsys.readouterr()
    assert one_json_object(out) == {
        "command": "account",
        "nir": f"{nir(72)[:3]}**********{nir(72)[-2:]}",
        "error": {
            "message": NO_ACCOUNT,
            "kind": "refused",
            "code": "NOT_FOUND",
            "reason": "ACCOUNT_NOT_FOUND",
        },
        "exit_status": 1,
    }
    assert err.splitlines() == [NO_ACCOUNT]


async def test_revoke_devices_makes_the_next_login_ask_for_a_code(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`revoke-devices` revokes the trusted devices (count shown), the account stays."""
    await service.add_account(nir(73))
    token = (await service.login_on_personal_computer(nir(73))).device_token

    assert await advisor(service, "revoke-devices", nir(73), *ADVISOR) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.search(
        rf"Appareils de confiance révoqués le {PARIS_TIME} : 1 appareil\(s\) ; "
        r"un code de sécurité sera demandé à la prochaine connexion\.",
        out,
    ), out
    again = await service.login(nir(73), device_token=token)
    assert again.WhichOneof("result") == "code_required"

    assert await advisor(service, "revoke-devices", nir(73), *ADVISOR, "--json") == 0
    shown = one_json_object(capsys.readouterr().out)
    assert shown["revoked_count"] == 0
    assert shown["command"] == "revoke-devices"
    assert utc(shown["revoke_time"])


async def test_revoke_devices_of_a_nir_without_account(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`revoke-devices` on a NIR without account exits 1 with the service's message."""
    assert await advisor(service, "revoke-devices", nir(74), *ADVISOR) == 1
    out, err = capsys.readouterr()
    assert "révoqués" not in out
    assert err.splitlines() == [NO_ACCOUNT]


async def test_unlock_lifts_the_lock_and_keeps_the_account(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`unlock` lifts the password lock without a question; the right password then works."""
    await service.add_account(nir(64))
    for _ in range(3):
        await refused(service.login(nir(64), password="faux"))

    assert await advisor(service, "unlock", nir(64), *ADVISOR) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.search(rf"Blocages levés le {PARIS_TIME} : 1 blocage\(s\) actif\(s\)", out), out
    assert (await service.login(nir(64))).WhichOneof("result") == "code_required"


async def test_reset_with_a_provisional_code(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reset --send-provisional-code --yes` resets and reports the SMS to the masked mobile."""
    await service.add_account(nir(62), mobile_phone="06 12 34 56 78")
    await refused(service.login(nir(62), password="faux"))

    assert await advisor(service, *reset_args(nir(62), "--send-provisional-code", "--yes")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert nir(62) not in out
    assert re.search(rf"Compte réinitialisé le {PARIS_TIME}\.", out), out
    sent = rf"Code provisoire envoyé par SMS au 06\*\*\*\*\*\*78, valable jusqu'au {PARIS_TIME}\."
    assert re.search(sent, out), out
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(62)))
    assert status.password_failures == 0


async def test_json_outputs_of_status_unlock_and_reset(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --json (before or after the command) stdout ends with one JSON object per command."""
    await service.add_account(nir(75), mobile_phone="06 12 34 56 78")
    for _ in range(3):
        await refused(service.login(nir(75), password="faux"))
    masked = f"{nir(75)[:3]}**********{nir(75)[-2:]}"

    assert await advisor(service, "--json", "status", nir(75)) == 0
    status = one_json_object(capsys.readouterr().out)
    [lock] = status.pop("locks")
    assert status == {
        "command": "status",
        "nir": masked,
        "locked": True,
        "password_failures": 3,
        "code_failures": 0,
        "codes_sent_in_window": 0,
    }
    assert lock["reason"] == "PASSWORD_ATTEMPTS_LOCKED"
    assert lock["scope"] == "UNTRUSTED_DEVICES"
    assert lock["message"].startswith("Pour des raisons de sécurité")
    assert utc(lock["expire_time"]) > datetime.now().astimezone()

    assert await advisor(service, "unlock", nir(75), *ADVISOR, "--json") == 0
    unlocked = one_json_object(capsys.readouterr().out)
    assert (unlocked["command"], unlocked["nir"], unlocked["locks_cleared"]) == (
        "unlock",
        masked,
        1,
    )

    assert await advisor(service, *reset_args(nir(75), "--yes", "--json")) == 0
    reset = one_json_object(capsys.readouterr().out)
    assert reset["provisional_code_sent"] is False
    assert reset["provisional_code_expire_time"] is None
    assert utc(reset["reset_time"]) <= datetime.now().astimezone() + timedelta(seconds=5)


async def test_reset_of_an_unknown_nir(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resetting a NIR without an account exits 1 with the service's French message."""
    assert await advisor(service, *reset_args(nir(64), "--yes")) == 1
    out, err = capsys.readouterr()
    assert "réinitialisé" not in out
    assert err.splitlines() == [NO_ACCOUNT]


async def test_a_refused_or_missing_key(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A portal key may not reset accounts, no key may not call at all: exit 4, account kept."""
    await service.add_account(nir(65))
    assert await advisor(service, *reset_args(nir(65), "--yes"), key=PORTAL_KEY) == 4
    assert await advisor(service, "status", nir(65), key=None) == 4
    _, err = capsys.readouterr()
    refused_key = "L'application appelante n'est pas autorisée à utiliser ce service."
    assert err.splitlines() == [
        refused_key,
        refused_key,
        "(Aucune clé d'API : définissez AMELI_ADVISOR_API_KEY.)",
    ]
    assert (await service.login(nir(65))).WhichOneof("result") == "code_required"


# --- before any question or call -------------------------------------------------


async def test_a_malformed_nir_is_refused_before_any_connection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A NIR with a wrong key, too short or with a letter exits 2 here, no connection made."""
    wrong_key = nir(67)[:-2] + f"{int(nir(67)[-2:]) % 97 + 1:02d}"
    with silent_server() as server:
        for args in (
            ["status", wrong_key],
            ["account", "12345"],
            [*reset_args("18001751234X6", "--yes")],
            ["revoke-devices", "", *ADVISOR],
        ):
            code = await asyncio.to_thread(advisor_cli.main, ["--target", server.address, *args])
            assert code == 2, args
        assert server.connections() == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [INVALID_NIR] * 4


async def test_a_bad_nir_is_refused_before_the_question() -> None:
    """On a terminal, `reset` with a bad NIR exits 2 at once: no question, no connection."""
    with silent_server() as server, pseudo_terminal() as terminal:
        running = await start_on_terminal(
            terminal, "--target", server.address, *reset_args(nir(66)[:-1])
        )
        finished = await running.finish()
        assert server.connections() == 0
    assert finished.status == 2
    assert finished.stderr.splitlines() == [INVALID_NIR]


async def test_reset_asks_on_the_terminal_and_oui_resets(service: ServiceUnderTest) -> None:
    """On a terminal, `reset` asks first; « oui » resets the account."""
    await service.add_account(nir(63))
    with pseudo_terminal() as terminal:
        running = await start_on_terminal(
            terminal, "--target", service.address, "--api-key", ADVISOR_KEY, *reset_args(nir(63))
        )
        question = await running.read_question()
        running.type("oui\n")
        finished = await running.finish()

    assert question.startswith(QUESTION.format(nir(63)))
    assert finished.status == 0, finished
    assert re.fullmatch(rf"Compte réinitialisé le {PARIS_TIME}\.", finished.stdout.splitlines()[0])
    assert not C_CORE_LINE.search(finished.stderr), finished.stderr
    assert (await refused(service.login(nir(63)))).reason == "INVALID_CREDENTIALS"


async def test_reset_answered_non_calls_nothing() -> None:
    """« non » cancels (exit 1): the service is not even connected to, before or after."""
    with silent_server() as server, pseudo_terminal() as terminal:
        running = await start_on_terminal(
            terminal, "--target", server.address, *reset_args(nir(63))
        )
        question = await running.read_question()
        assert server.connections() == 0
        running.type("non\n")
        finished = await running.finish()
        assert server.connections() == 0

    assert question.startswith(QUESTION.format(nir(63)))
    assert finished.status == 1
    assert finished.stdout == ""
    assert finished.stderr.splitlines()[-1] == "Réinitialisation annulée."


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Missing or bad options, or an unconfirmable reset (no terminal), exit 2 without a call."""
    assert advisor_cli.main(["reset", nir(68)]) == 2
    assert advisor_cli.main(["--timeout", "0", "status", nir(68)]) == 2
    assert advisor_cli.main(["--target", "127.0.0.1:1", *reset_args(nir(68))]) == 2
    assert advisor_cli.main(["unlock", nir(68), "--advisor-id", " ", "--reason", "r"]) == 2
    assert advisor_cli.main(["unlock", nir(68), "--advisor-id", "a", "--reason", "x\ny"]) == 2
    assert advisor_cli.main(["frobnicate", nir(68)]) == 2
    _, err = capsys.readouterr()
    assert "ameli-advisor reset : arguments obligatoires absents : --advisor-id, --reason" in err
    assert "ameli-advisor : --timeout : durée invalide : '0' (secondes, > 0)" in err
    assert "Confirmation impossible hors terminal : ajoutez --yes." in err
    assert "--advisor-id : de 1 à 64 caractères, sans retour à la ligne." in err
    assert "--reason : de 1 à 500 caractères, sans retour à la ligne." in err
    assert "ameli-advisor : COMMANDE : 'frobnicate' inconnu" in err
    assert "Traceback" not in err


def test_the_help_lists_commands_examples_and_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--help` (and each command's) is French, with examples and the exit statuses."""
    assert advisor_cli.main(["--help"]) == 0
    main_help = capsys.readouterr().out
    for command in ("status", "account", "unlock", "revoke-devices", "reset"):
        assert f"\n    {command} " in main_help
        assert f"ameli-advisor {command} " in main_help  # an example of each
        assert advisor_cli.main([command, "--help"]) == 0
        assert "exemple :" in capsys.readouterr().out
    for status in (
        "0    fait",
        "1    refusé",
        "2    usage",
        "3    service injoignable",
        "4    clé",
    ):
        assert f"\n  {status}" in main_help
    assert "afficher cette aide" in main_help


def test_the_script_runs_the_quiet_entry_point() -> None:
    """The installed `ameli-advisor` script is the entry point that silences gRPC first."""
    project = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"] == {"ameli-advisor": "ameli.advisor:main"}


# --- connection failures, each told apart and naming the target -------------------


class _LockStatusOnly(auth_pb2_grpc.AuthServiceServicer):
    async def GetLockStatus(  # noqa: N802 - generated servicer method name
        self,
        request: auth_pb2.GetLockStatusRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.GetLockStatusRequest, auth_pb2.GetLockStatusResponse
        ],
    ) -> auth_pb2.GetLockStatusResponse:
        return auth_pb2.GetLockStatusResponse(locked=False)


@dataclass(frozen=True)
class GrpcServers:
    """Small gRPC servers: plaintext, TLS, TLS asking for a client certificate; their files."""

    plaintext: str
    tls: str
    mutual_tls: str
    cert: Path
    key: Path
    other_cert: Path


@pytest.fixture
async def grpc_servers(tmp_path: Path) -> AsyncIterator[GrpcServers]:
    self_signed_tls(tmp_path)
    (tmp_path / "other").mkdir()
    self_signed_tls(tmp_path / "other")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    pair = [(key.read_bytes(), cert.read_bytes())]
    started, addresses = [], []
    for credentials in (
        None,
        grpc.ssl_server_credentials(pair),
        grpc.ssl_server_credentials(pair, cert.read_bytes(), require_client_auth=True),
    ):
        server = grpc.aio.server()
        # Only GetLockStatus is answered; the other RPCs stay UNIMPLEMENTED.
        servicer = _LockStatusOnly()  # type: ignore[abstract]
        auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
        if credentials is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        started.append(server)
        addresses.append(f"127.0.0.1:{port}")
    plaintext, tls, mutual_tls = addresses
    yield GrpcServers(plaintext, tls, mutual_tls, cert, key, tmp_path / "other" / "cert.pem")
    for server in started:
        await server.stop(grace=None)


def _failures(servers: GrpcServers, silent: str) -> list[tuple[str, list[str], str]]:
    """(failure kind, options, expected sentence) of each way to miss the service."""
    refused_at = closed_port()
    return [
        (
            "connection_refused",
            ["--target", refused_at],
            f"Connexion refusée par {refused_at} : aucun service n'écoute à cette adresse. "
            "Vérifiez --target et que le service est démarré.",
        ),
        (
            "dns",
            ["--target", "nonexistent.invalid:50051"],
            "Nom inconnu : « nonexistent.invalid » ne se résout pas (DNS), le service "
            "nonexistent.invalid:50051 est introuvable. Vérifiez --target.",
        ),
        (
            "tls",
            ["--target", servers.plaintext, "--ca-file", str(servers.cert)],
            f"Échec TLS avec {servers.plaintext} : le service ne répond pas en TLS. "
            "Retirez --tls et --ca-file, ou vérifiez le port.",
        ),
        (
            "tls",
            ["--target", servers.tls, "--tls"],
            f"Échec TLS avec {servers.tls} : le certificat du service n'est pas reconnu. "
            "Indiquez l'autorité qui l'a signé avec --ca-file.",
        ),
        (
            "tls",
            ["--target", servers.tls, "--ca-file", str(servers.other_cert)],
            f"Échec TLS avec {servers.tls} : le certificat du service n'est pas reconnu. "
            "Indiquez l'autorité qui l'a signé avec --ca-file.",
        ),
        (
            "connection_closed",
            ["--target", servers.tls],
            f"Le service {servers.tls} a fermé la connexion : "
            "le service attend-il TLS (--tls, --ca-file) ?",
        ),
        (
            "connection_closed",
            ["--target", servers.mutual_tls, "--ca-file", str(servers.cert)],
            f"Le service {servers.mutual_tls} a fermé la connexion : "
            "certificat client absent ou refusé (--cert-file, --key-file) ?",
        ),
        (
            "deadline_exceeded",
            ["--target", silent, "--timeout", "1"],
            f"Pas de réponse du service {silent} dans le délai de 1 s (--timeout) : "
            "service surchargé ou bloqué, ou adresse qui n'est pas celle du service.",
        ),
    ]


async def test_each_connection_failure_is_told_apart_naming_the_target(
    grpc_servers: GrpcServers,
) -> None:
    """Refused, unresolved, TLS, closed and silent services each get their own sentence
    naming the target, exit 3, the failure kind in --json, and no gRPC line on stderr."""
    with silent_server() as silent:
        failures = _failures(grpc_servers, silent.address)
        runs = await asyncio.gather(
            *(run_advisor("--timeout", "5", *options, "status", nir(69), "--json")
              for _, options, _ in failures)
        )  # fmt: skip
    for (kind, options, sentence), finished in zip(failures, runs, strict=True):
        assert finished.status == 3, (options, finished)
        assert finished.stderr.splitlines() == [sentence], (options, finished.stderr)
        error = json.loads(finished.stdout)["error"]
        assert (error["kind"], error["failure"], error["message"]) == (
            "unreachable",
            kind,
            sentence,
        )


async def test_the_deadline_is_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    """A service that never answers is given up after --timeout, not later."""
    with silent_server() as silent:
        started = time.monotonic()
        args = ["--target", silent.address, "--timeout", "1", "status", nir(69)]
        assert await asyncio.to_thread(advisor_cli.main, args) == 3
        assert 0.9 < time.monotonic() - started < 3
        assert silent.connections() >= 1
    assert "dans le délai de 1 s" in capsys.readouterr().err


async def test_without_the_entry_point_grpc_would_write_its_lines(
    grpc_servers: GrpcServers,
) -> None:
    """The same TLS failure without the entry point's settings shows gRPC's lines (what the
    check above would catch)."""
    options = [
        "--target",
        grpc_servers.plaintext,
        "--ca-file",
        str(grpc_servers.cert),
        "status",
        nir(69),
    ]
    bare = await run_advisor(*options, entry=BARE_MAIN)
    quiet = await run_advisor(*options)
    assert bare.status == quiet.status == 3
    assert C_CORE_LINE.search(bare.stderr), bare.stderr
    assert not C_CORE_LINE.search(quiet.stderr)


async def test_client_certificate_and_ca_file(
    grpc_servers: GrpcServers, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ca-file trusts the service's certificate, --cert-file/--key-file present the client's."""
    ca = ["--ca-file", str(grpc_servers.cert)]
    client = ["--cert-file", str(grpc_servers.cert), "--key-file", str(grpc_servers.key)]
    for options in (
        ["--target", grpc_servers.tls, *ca],
        ["--target", grpc_servers.mutual_tls, *ca, *client],
    ):
        assert await asyncio.to_thread(advisor_cli.main, [*options, "status", nir(69)]) == 0
        assert capsys.readouterr().out.startswith("NIR ")


async def test_unusable_tls_files_are_usage_errors(
    grpc_servers: GrpcServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing, non-PEM or mismatched CA, certificate or key file exits 2 before any call."""
    (tmp_path / "not-pem.txt").write_text("pas un certificat\n", encoding="utf-8")
    with silent_server() as silent:
        cases = {
            f"--ca-file {tmp_path / 'absent.pem'} : fichier illisible": [
                "--ca-file", str(tmp_path / "absent.pem")
            ],
            f"--ca-file {tmp_path / 'not-pem.txt'} : aucun certificat PEM utilisable": [
                "--ca-file", str(tmp_path / "not-pem.txt")
            ],
            "--cert-file et --key-file vont ensemble : indiquez les deux.": [
                "--cert-file", str(grpc_servers.cert)
            ],
            "ou qui ne vont pas ensemble": [
                "--cert-file", str(grpc_servers.other_cert), "--key-file", str(grpc_servers.key)
            ],
        }  # fmt: skip
        for sentence, options in cases.items():
            args = ["--target", silent.address, *options, "status", nir(69)]
            assert await asyncio.to_thread(advisor_cli.main, args) == 2, options
            [line] = capsys.readouterr().err.splitlines()
            assert sentence in line, line
        assert silent.connections() == 0


async def test_ctrl_c_during_a_call_exits_130() -> None:
    """Ctrl-C while waiting for the service ends with « Interrompu. », status 130, no traceback."""
    with silent_server() as silent:
        process = await start_advisor(
            "--target", silent.address, "--timeout", "30", "status", nir(69)
        )
        await wait_for(lambda: silent.connections() >= 1, timeout=10, what="a connection")
        process.send_signal(signal.SIGINT)
        finished = await finish(process, timeout=10)
    assert finished.status == 130
    assert finished.stderr.splitlines() == ["Interrompu."]
    assert finished.stdout == ""
