"""The login of the guide without errors (steps 0 to 3), trusted devices and channels."""

from __future__ import annotations

from email.utils import parseaddr

from ameli.auth.v1 import auth_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import EMAIL, ServiceUnderTest, nir, refused
from tests.support.mail import extract_code, text_part


async def test_password_then_emailed_code_logs_in(service: ServiceUnderTest) -> None:
    """NIR + password, then the 6-digit code received by email, log the person in."""
    await service.add_account(nir(1))
    response = await service.login(nir(1), channel=auth_pb2.CHANNEL_WEB)
    assert response.WhichOneof("result") == "code_required"
    assert response.code_required.masked_email == "t***@t***.com"
    login_id = response.code_required.login_id

    sent = await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    assert sent.masked_email == "t***@t***.com"
    assert sent.codes_remaining == 4
    message = (await service.smtp.wait_for_messages(1))[0]
    assert service.smtp.deliveries[0].rcpt_tos == (EMAIL,)
    assert message["Subject"] == "Votre code de sécurité pour votre compte ameli"
    assert parseaddr(message["From"])[1] == "ne-pas-repondre@app.assurance-maladie.fr"
    assert "Ce code est valable seulement 15 minutes" in text_part(message)

    typed = extract_code(message)
    verified = await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=typed)
    )
    assert list(verified.authenticated.methods) == [
        auth_pb2.AUTH_METHOD_PASSWORD,
        auth_pb2.AUTH_METHOD_EMAIL_CODE,
    ]
    assert verified.device_token == ""


async def test_accepts_nir_without_key_and_with_spaces(service: ServiceUnderTest) -> None:
    """The NIR may be typed with 13 characters, or with its key and spaces."""
    await service.add_account(nir(2))
    spaced = " ".join([nir(2)[:1], nir(2)[1:3], nir(2)[3:5], nir(2)[5:]])
    for typed in (nir(2, with_key=False), spaced):
        response = await service.login(typed)
        assert response.WhichOneof("result") == "code_required"


async def test_trusted_device_skips_the_code_even_after_restart(
    service: ServiceUnderTest,
) -> None:
    """ "Je me connecte avec mon ordinateur personnel": no code on that device, across restarts."""
    await service.add_account(nir(3))
    verified = await service.login_on_personal_computer(nir(3))
    token = verified.device_token
    assert token
    months = verified.device_trust_expire_time.ToDatetime() - (
        verified.authenticated.authenticate_time.ToDatetime()
    )
    assert 181 <= months.days <= 184  # six calendar months

    await service.restart()
    again = await service.login(nir(3), device_token=token)
    assert again.WhichOneof("result") == "authenticated"
    assert auth_pb2.AUTH_METHOD_TRUSTED_DEVICE in again.authenticated.methods

    other_browser = await service.login(nir(3))
    assert other_browser.WhichOneof("result") == "code_required"


async def test_device_token_is_bound_to_its_account(service: ServiceUnderTest) -> None:
    """A trusted-device token of one account does not spare another account the code."""
    await service.add_account(nir(4))
    await service.add_account(nir(5))
    token = (await service.login_on_personal_computer(nir(4))).device_token
    response = await service.login(nir(5), device_token=token)
    assert response.WhichOneof("result") == "code_required"


async def test_mobile_app_needs_no_code(service: ServiceUnderTest) -> None:
    """On the mobile app the password alone logs in (FAQ)."""
    await service.add_account(nir(6))
    response = await service.login(nir(6), channel=auth_pb2.CHANNEL_MOBILE_APP)
    assert response.WhichOneof("result") == "authenticated"
    assert list(response.authenticated.methods) == [auth_pb2.AUTH_METHOD_PASSWORD]
    assert not service.smtp.deliveries


async def test_franceconnect_asks_for_a_code_unless_configured_otherwise(
    make_service: ServiceFactory,
) -> None:
    """FranceConnect requires the code by default; configuration can lift it."""
    strict: ServiceUnderTest = await make_service()
    await strict.add_account(nir(7))
    response = await strict.login(nir(7), channel=auth_pb2.CHANNEL_FRANCECONNECT)
    assert response.WhichOneof("result") == "code_required"
    lenient: ServiceUnderTest = await make_service(franceconnect_requires_code=False)
    response = await lenient.login(nir(7), channel=auth_pb2.CHANNEL_FRANCECONNECT)
    assert response.WhichOneof("result") == "authenticated"


async def test_unspecified_channel_is_treated_as_web(service: ServiceUnderTest) -> None:
    """A request without a channel gets the web's rules: a code is required."""
    await service.add_account(nir(8))
    response = await service.login(nir(8), channel=auth_pb2.CHANNEL_UNSPECIFIED)
    assert response.WhichOneof("result") == "code_required"


async def test_a_new_code_replaces_the_previous_one(service: ServiceUnderTest) -> None:
    """Only the latest code of a login is valid."""
    await service.add_account(nir(9))
    login_id = (await service.login(nir(9))).code_required.login_id
    first = await service.request_code(login_id)
    second = await service.request_code(login_id)
    if first != second:  # one chance in a million that both codes are equal
        refusal = await refused(
            service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=first))
        )
        assert refusal.reason == "INVALID_CODE"
    verified = await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=second)
    )
    assert verified.authenticated.account_id
