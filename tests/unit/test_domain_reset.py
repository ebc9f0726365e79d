"""ResetAccount's guarantees (SPEC §8): one transaction, the SMS after it, no login outlives it.

Logins are caught at every point where a reset can overtake them: a pending
login, a CheckCredentials whose password was verified against the deleted
account, and a success whose last writes are under way. Each race is set up
with a ``Gate`` that holds one fake at that point while the reset runs to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from fakes import (
    NIR,
    PHONE,
    FakeAuditLog,
    FakePasswordHasher,
    FakeSmsSender,
    Service,
    credentials,
    make_service,
    refusal,
    send_code,
    start_login,
)

from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.model import AuditEvent, Channel
from ameli_grpc.domain.outcomes import Authenticated, CodeRequired, CodeVerified

ADVISOR = "advisor-3646-042"
REASON = "l'assuré n'a plus accès à sa messagerie"


class Gate:
    """Holds whoever passes it until the test opens it; tells the test someone is waiting."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._opened = asyncio.Event()

    async def wait(self) -> None:
        self.reached.set()
        await self._opened.wait()

    def open(self) -> None:
        self._opened.set()


async def reset_while_held(
    service: Service, gate: Gate, call: Coroutine[Any, Any, object]
) -> AuthError:
    """``call`` runs until ``gate`` holds it; the advisor resets the account (no code); then
    it goes on, and its refusal is returned."""
    task = asyncio.create_task(call)
    await gate.reached.wait()
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=False)
    gate.open()
    return await refusal(task)


class HeldHasher(FakePasswordHasher):
    """Holds the first ``verify`` at ``gate``: a password checked while the reset runs."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def verify(self, password_hash: str, password: str) -> bool:
        right = await super().verify(password_hash, password)
        await self.gate.wait()
        return right


class HeldStore(MemoryChallengeStore):
    """Holds the first ``consume_login`` at ``gate``: a right code read, not yet consumed."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def consume_login(self, login_id: str, code_digest: str) -> bool:
        if not self.gate.reached.is_set():
            await self.gate.wait()
        return await super().consume_login(login_id, code_digest)


class HeldAudit(FakeAuditLog):
    """Holds the first row of kind ``kind`` at ``gate``, before it is written."""

    def __init__(self, kind: str, gate: Gate) -> None:
        super().__init__()
        self.kind = kind
        self.gate = gate

    async def record(self, event: AuditEvent) -> None:
        if event.kind == self.kind and not self.gate.reached.is_set():
            await self.gate.wait()
        await super().record(event)


# --- the transaction and the SMS -----------------------------------------------------------


async def test_the_sms_is_sent_only_after_the_reset_is_committed() -> None:
    """When the SMS leaves, the account and its devices are gone, the reset row is written,
    the code is stored and the NIR's logins are already ended."""
    seen: dict[str, object] = {}

    class CheckingSms(FakeSmsSender):
        async def send_provisional_code(self, phone: str, code: str, valid_minutes: int) -> None:
            seen["accounts"] = dict(fakes.accounts.accounts)
            seen["reset rows"] = len(fakes.audit.of_kind("account_reset"))
            seen["code stored"] = NIR in fakes.provisional_codes.codes
            seen["login"] = await fakes.store.get_login(pending, fakes.clock.now())
            await super().send_provisional_code(phone, code, valid_minutes)

    service, fakes = make_service(sms=CheckingSms())
    fakes.add_account(mobile_phone=PHONE)
    pending = await start_login(service)

    done = await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)

    assert done.provisional_code_sent is True
    assert seen == {"accounts": {}, "reset rows": 1, "code stored": True, "login": None}
    kinds = [event.kind for event in fakes.audit.events]
    assert kinds[-2:] == ["account_reset", "provisional_code_sent"]


async def test_a_reset_cancelled_by_its_caller_still_sends_and_audits_the_sms() -> None:
    """Once under way the reset is not cut short by the advisor's deadline: the SMS goes out
    and its row is written even though the call was cancelled."""
    gate = Gate()

    class SlowSms(FakeSmsSender):
        async def send_provisional_code(self, phone: str, code: str, valid_minutes: int) -> None:
            await gate.wait()
            await super().send_provisional_code(phone, code, valid_minutes)

    service, fakes = make_service(sms=SlowSms())
    fakes.add_account(mobile_phone=PHONE)
    call = asyncio.create_task(
        service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)
    )
    await gate.reached.wait()

    call.cancel()
    await asyncio.sleep(0)
    gate.open()
    for _ in range(20):
        await asyncio.sleep(0)

    assert call.cancelled()
    assert len(fakes.sms.sent) == 1
    assert len(fakes.audit.of_kind("provisional_code_sent")) == 1


async def test_two_concurrent_resets_reset_once() -> None:
    """Two advisors resetting one account at once: one reset, one row, one SMS; the other
    is told there is no account."""
    service, fakes = make_service()
    fakes.add_account(mobile_phone=PHONE)

    results = await asyncio.gather(
        service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True),
        service.advisor.reset_account(NIR, "advisor-2", REASON, send_provisional_code=True),
        return_exceptions=True,
    )

    errors = [result for result in results if isinstance(result, Exception)]
    assert [getattr(error, "reason", error) for error in errors] == [ErrorReason.ACCOUNT_NOT_FOUND]
    assert len(fakes.audit.of_kind("account_reset")) == 1
    assert len(fakes.sms.sent) == 1


# --- logins under way ------------------------------------------------------------------------


async def test_a_pending_login_cannot_request_or_verify_a_code_after_the_reset() -> None:
    """RequestCode and VerifyCode of a login started before the reset: LOGIN_NOT_FOUND."""
    service, fakes = make_service()
    fakes.add_account()
    waiting = await start_login(service)
    with_code = await start_login(service)
    code = await send_code(service, fakes, with_code)

    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=False)

    requested = await refusal(service.login.request_code(waiting))
    verified = await refusal(service.login.verify_code(with_code, code, True))
    assert requested.reason is ErrorReason.LOGIN_NOT_FOUND
    assert verified.reason is ErrorReason.LOGIN_NOT_FOUND
    assert fakes.devices.devices == {}


async def test_a_web_login_whose_password_was_checked_during_the_reset_gets_no_login() -> None:
    """The password was right for the account being deleted: no login is given, the answer
    is the one of a NIR without an account, and nothing is counted."""
    gate = Gate()
    service, fakes = make_service(hasher=HeldHasher(gate))
    fakes.add_account()
    error = await reset_while_held(service, gate, service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    assert (await service.advisor.get_lock_status(NIR)).password_failures == 0


async def test_a_mobile_login_whose_password_was_checked_during_the_reset_is_refused() -> None:
    """On the mobile channel (no code step) the same race ends INVALID_CREDENTIALS, and the
    audit trail says the authentication was voided."""
    gate = Gate()
    service, fakes = make_service(hasher=HeldHasher(gate))
    account = fakes.add_account()
    error = await reset_while_held(
        service, gate, service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))
    )

    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    (voided,) = fakes.audit.of_kind("authentication_voided")
    assert (voided.account_id, voided.detail) == (account.account_id, "account_reset")


async def test_a_mobile_success_being_audited_when_the_reset_ends_is_voided() -> None:
    """The reset runs while the ``authenticated`` row of a mobile login is being written: the
    login is refused, since the generation is checked after that last write."""
    gate = Gate()
    service, fakes = make_service(audit=HeldAudit("authenticated", gate))
    fakes.add_account()
    error = await reset_while_held(
        service, gate, service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))
    )

    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    kinds = [event.kind for event in fakes.audit.events]
    assert kinds == ["account_reset", "authenticated", "authentication_voided"]


async def test_a_right_code_whose_login_is_ended_before_it_is_consumed_is_not_counted() -> None:
    """The login was read, then the reset ended it before the right code consumed it:
    LOGIN_NOT_FOUND, not a wrong code."""
    gate = Gate()
    service, fakes = make_service(store=HeldStore(gate))
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    error = await reset_while_held(service, gate, service.login.verify_code(login_id, code, False))

    assert error.reason is ErrorReason.LOGIN_NOT_FOUND
    assert (await service.advisor.get_lock_status(NIR)).code_failures == 0
    assert fakes.audit.of_kind("authenticated") == []


async def test_a_right_code_replaced_before_it_is_consumed_is_still_a_wrong_code() -> None:
    """Without a reset, a code that a newer one replaced between its read and its use is
    a wrong entry, as before: only the latest code of a login is valid."""
    gate = Gate()
    service, fakes = make_service(store=HeldStore(gate))
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    verify = asyncio.create_task(service.login.verify_code(login_id, code, False))
    await gate.reached.wait()

    await send_code(service, fakes, login_id)
    gate.open()
    error = await refusal(verify)

    assert error.reason is ErrorReason.INVALID_CODE
    assert (await service.advisor.get_lock_status(NIR)).code_failures == 1


async def test_a_verify_code_being_audited_when_the_reset_ends_is_login_not_found() -> None:
    """The right code was consumed just before the reset; the reset ends while the success is
    written: LOGIN_NOT_FOUND, and no trusted device is left for the deleted account."""
    for trust_device in (False, True):
        gate = Gate()
        service, fakes = make_service(audit=HeldAudit("authenticated", gate))
        fakes.add_account()
        login_id = await start_login(service)
        code = await send_code(service, fakes, login_id)
        error = await reset_while_held(
            service, gate, service.login.verify_code(login_id, code, trust_device)
        )

        assert error.reason is ErrorReason.LOGIN_NOT_FOUND, trust_device
        assert fakes.devices.devices == {}
        assert len(fakes.audit.of_kind("authentication_voided")) == 1


async def test_logins_started_after_the_reset_are_those_of_a_nir_without_account() -> None:
    """After the reset the old password is a counted wrong entry, as for any unknown NIR."""
    service, fakes = make_service()
    fakes.add_account()
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=False)

    error = await refusal(service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    assert error.attempts_remaining == 2


async def test_logins_unrelated_to_the_reset_go_on() -> None:
    """Another NIR's pending login, and a new account's logins on the reset NIR, succeed."""
    service, fakes = make_service()
    fakes.add_account()
    other_nir = "2900175123456"
    fakes.add_account(other_nir)
    other = await start_login(service, other_nir)
    code = await send_code(service, fakes, other)
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=False)

    verified = await service.login.verify_code(other, code, False)
    fakes.add_account()  # the person creates a new account
    again = await service.login.check_credentials(credentials())
    mobile = await service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))

    assert isinstance(verified, CodeVerified)
    assert isinstance(again, CodeRequired)
    assert isinstance(mobile, Authenticated)
