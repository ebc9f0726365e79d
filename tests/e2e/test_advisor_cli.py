"""``ameli-advisor``, the advisor's command line, against a real service.

``main`` runs its own event loop (``asyncio.run``), so it is called in a worker
thread, as a separate process would be, while the service runs on the test's
loop. The service logs to this process's stdout too: stdout is checked with
``in``, stderr (only the CLI writes there) exactly.
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time

import pytest
from ameli.auth import advisor_cli
from ameli.auth.v1 import auth_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ADVISOR_KEY, PORTAL_KEY, ServiceUnderTest, nir, refused

INVALID_NIR = "Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez votre saisie."
PARIS_TIME = r"\d\d/\d\d/\d{4} à (\d\d)h(\d\d) \(heure de Paris\)"


async def advisor(service: ServiceUnderTest, *args: str, key: str = ADVISOR_KEY) -> int:
    options = ["--target", service.address, "--api-key", key, "--timeout", "5"]
    return await asyncio.to_thread(advisor_cli.main, [*options, *args])


def reset_args(nir_value: str, *extra: str) -> list[str]:
    return ["reset", nir_value, "--advisor-id", "conseiller-3646", "--reason", "test", *extra]


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


async def test_unlock_lifts_the_lock_and_keeps_the_account(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """`unlock` lifts the password lock without a question; the right password then works."""
    await service.add_account(nir(64))
    for _ in range(3):
        await refused(service.login(nir(64), password="faux"))

    args = ["unlock", nir(64), "--advisor-id", "conseiller-3646", "--reason", "appel 3646"]
    assert await advisor(service, *args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.search(rf"Blocages levés le {PARIS_TIME} : 1 blocage\(s\) actif\(s\)", out), out
    assert (await service.login(nir(64))).WhichOneof("result") == "code_required"


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


async def test_declined_confirmation_keeps_the_account(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, `reset` without --yes asks first; any answer but « o » changes nothing."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    await service.add_account(nir(63))
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert await advisor(service, *reset_args(nir(63))) == 1
    out, err = capsys.readouterr()
    assert (
        f"Réinitialiser le compte {nir(63)} ? Le compte, ses appareils de confiance, "
        "blocages et compteurs seront supprimés. [o/N]"
    ) in out
    assert err.splitlines() == ["Réinitialisation annulée."]
    assert (await service.login(nir(63))).WhichOneof("result") == "code_required"


async def test_reset_of_an_unknown_nir(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resetting a NIR without an account exits 1 with the service's French message."""
    assert await advisor(service, *reset_args(nir(64), "--yes")) == 1
    out, err = capsys.readouterr()
    assert "réinitialisé" not in out
    assert err.splitlines() == ["Aucun compte ameli pour ce numéro de sécurité sociale."]


async def test_a_portal_key_is_refused(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A portal key may not reset accounts: exit 4 with the service's message, account untouched."""
    await service.add_account(nir(65))
    assert await advisor(service, *reset_args(nir(65), "--yes"), key=PORTAL_KEY) == 4
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        "L'application appelante n'est pas autorisée à utiliser ce service."
    ]
    assert (await service.login(nir(65))).WhichOneof("result") == "code_required"


async def test_an_unreachable_service(capsys: pytest.CaptureFixture[str]) -> None:
    """A target where nothing listens exits 3 within the timeout, saying the service is down."""
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    args = ["--target", f"127.0.0.1:{port}", "--timeout", "1", "status", nir(66)]
    assert await asyncio.to_thread(advisor_cli.main, args) == 3
    assert time.monotonic() - started < 3
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
    ]


async def test_a_malformed_nir(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A NIR with a wrong key or too short exits 1 with the INVALID_NIR message."""
    wrong_key = nir(67)[:-2] + f"{int(nir(67)[-2:]) % 97 + 1:02d}"
    assert await advisor(service, "status", wrong_key) == 1
    assert await advisor(service, *reset_args("12345", "--yes")) == 1
    out, err = capsys.readouterr()
    assert "BLOQUÉ" not in out
    assert err.splitlines() == [INVALID_NIR, INVALID_NIR]


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Missing options, a bad timeout or an unconfirmable reset (no terminal) exit 2, no call."""
    assert advisor_cli.main(["reset", nir(68)]) == 2
    assert advisor_cli.main(["--timeout", "0", "status", nir(68)]) == 2
    assert advisor_cli.main(["--target", "127.0.0.1:1", *reset_args(nir(68))]) == 2
    _, err = capsys.readouterr()
    assert "--advisor-id" in err
    assert "Confirmation impossible hors terminal : ajoutez --yes." in err
