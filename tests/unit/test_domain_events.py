"""What the use cases count for the metrics (``Events``): logins by method, codes sent, locks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import (
    NIR,
    OTHER_NIR,
    UNKNOWN_NIR,
    credentials,
    make_service,
    refusal,
    send_code,
    start_login,
    wrong_code,
)

from ameli_grpc.domain.errors import DependencyUnavailable, ErrorReason
from ameli_grpc.domain.model import AuthMethod, Channel
from ameli_grpc.domain.policy import Policy

ADDRESS = "203.0.113.9"


async def test_a_login_by_emailed_code_counts_the_code_and_the_login() -> None:
    """The email accepted counts one code; the right code counts one login by email code."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)

    assert fakes.events.codes_sent == 1
    assert not fakes.events.logins
    await service.login.verify_code(login_id, code, trust_device=True)
    assert fakes.events.logins == {AuthMethod.EMAIL_CODE: 1}


async def test_an_email_that_fails_is_not_counted_as_sent() -> None:
    """A mail outage counts no code."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    fakes.mailer.fail(DependencyUnavailable("smtp", "refused"))

    with pytest.raises(DependencyUnavailable):
        await service.login.request_code(login_id)

    assert fakes.events.codes_sent == 0


async def test_logins_without_a_code_are_counted_by_the_method_that_completed_them() -> None:
    """The mobile app's password-only login counts as password; a trusted device as itself."""
    service, fakes = make_service()
    fakes.add_account()
    await service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))
    login_id = await start_login(service)
    verified = await service.login.verify_code(
        login_id, await send_code(service, fakes, login_id), trust_device=True
    )
    assert verified.device_token is not None
    await service.login.check_credentials(credentials(device_token=verified.device_token))

    assert fakes.events.logins == {
        AuthMethod.PASSWORD: 1,
        AuthMethod.EMAIL_CODE: 1,
        AuthMethod.TRUSTED_DEVICE: 1,
    }


async def test_each_lock_is_counted_once_by_kind() -> None:
    """The wrong password, the wrong code and the code request that set a lock count it once,
    by kind; the refusals by that lock afterwards count nothing."""
    service, fakes = make_service(Policy(code_quota=2))
    for nir in (NIR, OTHER_NIR, UNKNOWN_NIR):
        fakes.add_account(nir)
    for _ in range(4):
        await refusal(service.login.check_credentials(credentials(NIR, "faux")))
    login_id = await start_login(service, OTHER_NIR)
    code = await send_code(service, fakes, login_id)
    for _ in range(4):
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))
    login_id = await start_login(service, UNKNOWN_NIR)
    for _ in range(2):
        await service.login.request_code(login_id)
    quota = [await refusal(service.login.request_code(login_id)) for _ in range(2)]

    assert [error.reason for error in quota] == [ErrorReason.CODE_QUOTA_EXCEEDED] * 2
    assert fakes.events.locks == {"password": 1, "code": 1, "quota": 1}


async def test_a_throttled_client_address_is_counted_as_a_lock() -> None:
    """The wrong password that reaches a client address's limit counts one ``client`` lock."""
    service, fakes = make_service(Policy(client_failure_limit=3))
    for serial in range(5):
        nir = f"18001751{serial:05d}"
        await refusal(
            service.login.check_credentials(replace(credentials(nir, "faux"), client_ip=ADDRESS))
        )

    assert fakes.events.locks == {"client": 1}
