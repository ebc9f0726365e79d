"""The fakes keep the promises of the ports they stand for, as the SQL adapters do."""

from __future__ import annotations

from dataclasses import replace

from fakes import EMAIL, NIR, OTHER_NIR, PHONE, FakeAccountRepository, FakeTrustedDeviceRepository

from ameli_grpc.domain.model import Account

FIRST = Account(
    account_id="first-id",
    nir=NIR,
    password_hash="fake$first",
    email=EMAIL,
    email_validated=True,
    mobile_phone=PHONE,
)


async def test_adding_an_account_of_a_known_nir_replaces_it_and_keeps_its_id() -> None:
    """Like the SQL repository, the fake replaces a re-imported NIR's fields under its first id."""
    accounts = FakeAccountRepository(FakeTrustedDeviceRepository())
    other = replace(FIRST, account_id="other-id", nir=OTHER_NIR)
    await accounts.add(FIRST)
    await accounts.add(other)
    second = replace(
        FIRST,
        account_id="second-id",
        password_hash="fake$new",
        email="titi@test.com",
        email_validated=False,
        mobile_phone=None,
    )

    await accounts.add(second)

    expected = replace(second, account_id=FIRST.account_id)
    assert await accounts.get_by_nir(NIR) == expected
    assert await accounts.get(FIRST.account_id) == expected
    assert await accounts.get(second.account_id) is None
    assert accounts.accounts == {FIRST.account_id: expected, other.account_id: other}
