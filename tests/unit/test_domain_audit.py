"""The audit trail (SPEC §8): one row per event, each with its own columns, never a secret."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import (
    EMAIL,
    NIR,
    PASSWORD,
    UNKNOWN_NIR,
    Fakes,
    Service,
    credentials,
    make_service,
    nir_key,
    refusal,
    wrong_code,
)

from ameli_grpc.domain.audit import AuditKind, AuditTrail
from ameli_grpc.domain.context import CallContext, calling
from ameli_grpc.domain.errors import ErrorReason
from ameli_grpc.domain.model import AuditEvent, Channel
from ameli_grpc.domain.outcomes import ClientInfo, CodeRequired, CredentialsInput

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"
CLIENT = ClientInfo("192.0.2.7", BROWSER)
CALL = CallContext(caller="portail-web", request_id="req-42")
ADVISOR = "conseiller-3646"
REASON = "appel de l'assuré"


def _credentials(
    nir: str = NIR, password: str = PASSWORD, channel: Channel = Channel.WEB
) -> CredentialsInput:
    return replace(credentials(nir, password, channel), user_agent=BROWSER)


async def _login_id(service: Service) -> str:
    outcome = await service.login.check_credentials(_credentials())
    assert isinstance(outcome, CodeRequired)
    return outcome.login_id


def _kinds(fakes: Fakes) -> list[str]:
    return [event.kind for event in fakes.audit.events]


def _assert_from_client(event: AuditEvent) -> None:
    """The row names the call and the person's client, the user agent in its own column."""
    assert (event.caller, event.request_id) == (CALL.caller, CALL.request_id)
    assert (event.client_ip, event.user_agent) == (CLIENT.ip, CLIENT.user_agent)
    assert BROWSER not in (event.detail or "")


async def test_every_row_names_the_call_and_the_client_in_their_own_columns() -> None:
    """A web login's rows carry the caller, the request id, the IP and the user agent apart."""
    service, fakes = make_service()
    fakes.add_account()
    with calling(CALL):
        await refusal(service.login.check_credentials(_credentials(password="faux")))
        login_id = await _login_id(service)
        await service.login.request_code(login_id, CLIENT)
        await service.login.verify_code(login_id, fakes.mailer.last_code, True, CLIENT)

    assert _kinds(fakes) == ["password_failed", "authenticated", "device_trusted"]
    for event in fakes.audit.events:
        _assert_from_client(event)
        assert event.account_id is not None
        assert event.nir_ref == fakes.nir_ref()


async def test_a_wrong_password_is_audited_even_for_an_unknown_nir() -> None:
    """Each wrong password is one row; an unknown NIR's has no account, the same columns else."""
    service, fakes = make_service()
    account = fakes.add_account()
    unknown = UNKNOWN_NIR + nir_key(UNKNOWN_NIR)
    with calling(CALL):
        await refusal(service.login.check_credentials(_credentials(password="faux")))
        await refusal(service.login.check_credentials(_credentials(unknown, "faux")))

    known, other = fakes.audit.of_kind("password_failed")
    assert known.account_id == account.account_id
    assert other.account_id is None
    assert other.nir_ref == fakes.nir_ref(UNKNOWN_NIR)
    assert known.detail == "scope=untrusted failures=1"
    for event in (known, other):
        _assert_from_client(event)


async def test_the_failure_that_locks_is_audited_then_its_lock() -> None:
    """The third wrong password writes its failure, then the lock with its scope and end."""
    service, fakes = make_service()
    fakes.add_account()
    with calling(CALL):
        for _ in range(3):
            await refusal(service.login.check_credentials(_credentials(password="faux")))

    assert _kinds(fakes) == ["password_failed"] * 3 + ["locked_password"]
    lock = fakes.audit.events[-1]
    _assert_from_client(lock)
    assert lock.detail is not None
    assert lock.detail.startswith("scope=untrusted until=2023-01-04T14:47:00")


async def test_wrong_codes_are_audited_with_the_client_then_the_code_lock() -> None:
    """Three wrong codes: three ``code_failed`` rows from the client, then ``locked_code``."""
    service, fakes = make_service()
    account = fakes.add_account()
    with calling(CALL):
        login_id = await _login_id(service)
        await service.login.request_code(login_id, CLIENT)
        typed = wrong_code(fakes.mailer.last_code)
        for _ in range(3):
            await refusal(service.login.verify_code(login_id, typed, False, CLIENT))

    assert _kinds(fakes) == ["code_failed"] * 3 + ["locked_code"]
    for event in fakes.audit.events:
        _assert_from_client(event)
        assert event.account_id == account.account_id


async def test_the_quota_lock_is_audited_once_by_the_request_that_sets_it() -> None:
    """The sixth code request sets the quota lock (one ``locked_quota``); the seventh adds none."""
    service, fakes = make_service()
    fakes.add_account()
    with calling(CALL):
        login_id = await _login_id(service)
        for _ in range(5):
            await service.login.request_code(login_id, CLIENT)
        for _ in range(2):
            error = await refusal(service.login.request_code(login_id, CLIENT))
            assert error.reason is ErrorReason.CODE_QUOTA_EXCEEDED

    (event,) = fakes.audit.of_kind("locked_quota")
    _assert_from_client(event)
    assert event.detail == "codes_sent=5"


async def test_a_login_without_code_is_audited_with_its_methods() -> None:
    """The mobile app's password-only login: ``authenticated`` with the method and the client."""
    service, fakes = make_service()
    fakes.add_account()
    with calling(CALL):
        await service.login.check_credentials(_credentials(channel=Channel.MOBILE_APP))

    (event,) = fakes.audit.events
    assert (event.kind, event.detail) == ("authenticated", "password")
    _assert_from_client(event)


async def test_the_advisor_reason_has_its_own_column() -> None:
    """Unlock and reset rows: the advisor and the reason apart, the rest in the detail."""
    service, fakes = make_service()
    fakes.add_account()
    with calling(CallContext("advisor-1", "req-7")):
        await service.advisor.unlock_account(NIR + nir_key(NIR), ADVISOR, REASON)
        await service.advisor.reset_account(NIR + nir_key(NIR), ADVISOR, REASON, False)

    unlocked, reset = fakes.audit.events
    assert (unlocked.kind, unlocked.detail) == ("account_unlocked", "locks_cleared=0")
    assert (reset.kind, reset.detail) == ("account_reset", "provisional_code_stored=False")
    for event in (unlocked, reset):
        assert (event.advisor_id, event.reason) == (ADVISOR, REASON)
        assert (event.caller, event.request_id) == ("advisor-1", "req-7")
        assert event.client_ip is None
        assert event.user_agent is None


async def test_outside_a_call_the_row_has_no_caller_nor_request_id() -> None:
    """A use case run from the command line or a test: the call's columns stay empty."""
    service, fakes = make_service()
    await refusal(service.login.check_credentials(credentials(password="faux")))

    (event,) = fakes.audit.events
    assert (event.caller, event.request_id) == (None, None)


@pytest.mark.parametrize("length", [512, 4000])
async def test_the_user_agent_column_never_exceeds_its_size(length: int) -> None:
    """A user agent longer than the column (never from a gateway, which is checked) is cut."""
    fakes = make_service()[1]
    trail = AuditTrail(fakes.audit)
    await trail.record(
        AuditKind.PASSWORD_FAILED, "ref", fakes.clock.now(), client=ClientInfo("", "a" * length)
    )

    (event,) = fakes.audit.events
    assert event.user_agent == "a" * 512
    assert event.client_ip is None


async def test_no_secret_reaches_the_audit_trail() -> None:
    """After every kind of login event, no row holds the NIR, email, password, code or token."""
    service, fakes = make_service()
    fakes.add_account()
    with calling(CALL):
        await refusal(service.login.check_credentials(_credentials(password="faux-Secret-9")))
        login_id = await _login_id(service)
        await service.login.request_code(login_id, CLIENT)
        first_code = fakes.mailer.last_code
        await refusal(service.login.verify_code(login_id, wrong_code(first_code), False, CLIENT))
        await service.login.request_code(login_id, CLIENT)
        verified = await service.login.verify_code(login_id, fakes.mailer.last_code, True, CLIENT)
    assert verified.device_token is not None

    secrets = [NIR, EMAIL, PASSWORD, "faux-Secret-9", first_code, fakes.mailer.last_code]
    secrets += [verified.device_token, login_id]
    rows = repr(fakes.audit.events)
    assert len(fakes.audit.events) == 4
    for secret in secrets:
        assert secret not in rows
