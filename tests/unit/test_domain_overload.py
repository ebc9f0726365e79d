"""SPEC §7.5: a CheckCredentials that would queue behind too many verifications is shed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fakes import NIR, PASSWORD, UNKNOWN_NIR, credentials, make_service, refusal

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.outcomes import CodeRequired
from ameli_grpc.domain.policy import Policy


async def test_a_shed_request_is_refused_at_once_and_counts_nothing() -> None:
    """Behind a full queue a wrong password is SERVICE_UNAVAILABLE, retry in 1 s: no verify,
    no failure, no lock, no audit row."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.hasher.max_pending, fakes.hasher.pending = 0, 1  # one verification already ahead

    error = await refusal(service.login.check_credentials(credentials(password="faux")))

    assert error.reason is ErrorReason.SERVICE_UNAVAILABLE
    assert error.message == Messages.SERVICE_UNAVAILABLE
    assert error.retry_after == timedelta(seconds=1)
    assert (error.attempts_remaining, error.lock_expire_time) == (None, None)
    assert fakes.hasher.verifications == 0
    status = await service.advisor.get_lock_status(NIR)
    assert (status.password_failures, status.locked) == (0, False)
    assert fakes.audit.events == []


async def test_the_right_password_passes_once_the_queue_has_room() -> None:
    """The right password is shed too while the queue is full, then logs in as usual."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.hasher.max_pending, fakes.hasher.pending = 2, 3

    shed = await refusal(service.login.check_credentials(credentials()))
    fakes.hasher.pending = 2
    outcome = await service.login.check_credentials(credentials())

    assert shed.reason is ErrorReason.SERVICE_UNAVAILABLE
    assert isinstance(outcome, CodeRequired)
    assert fakes.hasher.pending == 2  # the admitted request gave its place back


async def test_an_unknown_nir_is_shed_exactly_like_a_known_one() -> None:
    """Shedding happens before the account is read: an unknown NIR gets the same answer."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.hasher.max_pending, fakes.hasher.pending = 0, 1

    known = await refusal(service.login.check_credentials(credentials(NIR, "faux")))
    unknown = await refusal(service.login.check_credentials(credentials(UNKNOWN_NIR, PASSWORD)))

    def seen(error: AuthError) -> tuple[object, ...]:
        return (error.reason, error.message, error.retry_after, error.attempts_remaining)

    assert seen(unknown) == seen(known)
    assert fakes.hasher.refused == 2
    assert fakes.hasher.verifications == 0


async def test_parallel_wrong_passwords_beyond_the_queue_are_shed_and_not_counted() -> None:
    """Ten wrong passwords at once with room for two: the others are shed, only two count."""
    service, fakes = make_service(Policy(max_password_failures=100))
    fakes.add_account()
    fakes.hasher.max_pending = 1  # one running, one waiting behind it

    errors = await asyncio.gather(
        *(refusal(service.login.check_credentials(credentials(password="faux"))) for _ in range(10))
    )

    reasons = [error.reason for error in errors]
    assert reasons.count(ErrorReason.INVALID_CREDENTIALS) == 2
    assert reasons.count(ErrorReason.SERVICE_UNAVAILABLE) == 8
    status = await service.advisor.get_lock_status(NIR)
    assert status.password_failures == fakes.hasher.verifications == 2
    assert fakes.hasher.pending == 0
