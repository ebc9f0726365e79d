"""Another team's integration tests, as they would write them: only the installed plugin.

Not collected by this repository's run (``check_*`` is not a test file name for
pytest's defaults); ``tests/contract/test_testing_plugin.py`` copies it to an
empty directory and runs pytest there as ``test_ameli_plugin.py``.
"""

import pytest
from ameli.auth import Locked, LoginRefused, WrongEntry
from ameli.auth.v1 import auth_pb2

from ameli_grpc.testing import AmeliTestServer

NIR = "180017511200169"
PASSWORD = "Mot-de-passe-Equipe-1"
EMAIL = "equipe@example.fr"


async def test_web_login_with_the_emailed_code(ameli_service: AmeliTestServer) -> None:
    """A web login reads the emailed code with last_code and ends authenticated."""
    ameli_service.add_account(NIR, PASSWORD, email=EMAIL)
    client = ameli_service.client
    checked = await client.check_credentials(nir=NIR, password=PASSWORD)
    assert checked.WhichOneof("result") == "code_required"
    login_id = checked.code_required.login_id
    await client.request_code(login_id=login_id)
    verified = await client.verify_code(login_id=login_id, code=ameli_service.last_code(EMAIL))
    assert verified.authenticated.account_id


async def test_a_lock_is_lifted_by_moving_the_clock(ameli_service: AmeliTestServer) -> None:
    """Three wrong passwords lock the account; advance(minutes=15) lifts the lock."""
    ameli_service.add_account(NIR, PASSWORD, email=EMAIL)
    client = ameli_service.client
    for _ in range(2):
        with pytest.raises(WrongEntry):
            await client.check_credentials(nir=NIR, password="mauvais")
    with pytest.raises(Locked):
        await client.check_credentials(nir=NIR, password="mauvais")
    with pytest.raises(Locked):
        await client.check_credentials(nir=NIR, password=PASSWORD)
    ameli_service.advance(minutes=15)
    checked = await client.check_credentials(nir=NIR, password=PASSWORD)
    assert checked.WhichOneof("result") == "code_required"


async def test_an_advisor_reset_texts_a_provisional_code(ameli_service: AmeliTestServer) -> None:
    """An advisor reset texts a provisional code (last_sms) that opens the account set-up."""
    ameli_service.add_account(NIR, PASSWORD, email=None, mobile_phone="06 12 34 56 78")
    reset = await ameli_service.advisor_client.reset_account(
        nir=NIR, advisor_id="C3646-001", reason="mail perdu", send_provisional_code=True
    )
    assert reset.provisional_code_sent
    code = ameli_service.last_sms("+33612345678")
    checked = await ameli_service.client.check_credentials(
        nir=NIR, password=code, channel=auth_pb2.CHANNEL_WEB
    )
    assert checked.WhichOneof("result") == "account_setup_required"


async def test_a_changed_affiliation_is_seen_at_the_next_login(
    ameli_service: AmeliTestServer,
) -> None:
    """add_account() with another affiliation: the next login sees it, nothing cached."""
    ameli_service.add_account(NIR, PASSWORD, email=EMAIL)
    checked = await ameli_service.client.check_credentials(nir=NIR, password=PASSWORD)
    assert checked.WhichOneof("result") == "code_required"
    ameli_service.add_account(NIR, PASSWORD, email=EMAIL, affiliation="NOT_COVERED")
    with pytest.raises(LoginRefused) as refused:
        await ameli_service.client.check_credentials(nir=NIR, password=PASSWORD)
    assert refused.value.reason == "NOT_COVERED"


def test_a_synchronous_test_uses_the_helpers(ameli_service: AmeliTestServer) -> None:
    """The helpers are plain functions: a test without an event loop adds accounts too."""
    ameli_service.add_account(NIR, PASSWORD, affiliation="PENDING")
    assert ameli_service.target.startswith("127.0.0.1:")
    with pytest.raises(LookupError):
        ameli_service.last_code(EMAIL)


def test_a_synchronous_test_logs_in_with_the_blocking_clients(
    ameli_service: AmeliTestServer,
) -> None:
    """sync_client, sync_mobile_client and sync_advisor_client block: no event loop needed."""
    ameli_service.add_account(NIR, PASSWORD, email=EMAIL)
    client = ameli_service.sync_client
    login_id = client.check_credentials(nir=NIR, password=PASSWORD).code_required.login_id
    client.request_code(login_id=login_id)
    verified = client.verify_code(login_id=login_id, code=ameli_service.last_code(EMAIL))
    assert verified.authenticated.account_id
    mobile = ameli_service.sync_mobile_client.check_credentials(
        nir=NIR, password=PASSWORD, channel=auth_pb2.CHANNEL_MOBILE_APP
    )
    assert mobile.WhichOneof("result") == "authenticated"
    with pytest.raises(WrongEntry):
        client.check_credentials(nir=NIR, password="mauvais")
    status = ameli_service.sync_advisor_client.get_account(nir=NIR)
    assert status.password_failures == 1
